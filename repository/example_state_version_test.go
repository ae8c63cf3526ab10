package repository_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store/storetest"
)

// Thermostat's state, version 2: the set point in tenths of a degree.
// Version 1 stored {"celsius": 21.5}.
type Thermostat struct {
	aggregate.Root
	SetPoint int `json:"set_point_tenths"`
}

// A document saved by an older release loads through its migration; the
// next save stores the current shape.
func ExampleDocumentConfig_migrations() {
	t := new(testdb.ExampleT) // in a test, the test's *testing.T
	defer t.Finish()
	st := storetest.Open(t)
	ctx := context.Background()

	// The row as the first release saved it.
	q := st.Dialect().Rebind("INSERT INTO " + st.Table("aggregates") +
		" (aggregate_type, aggregate_id, version, state, created_at, updated_at) VALUES ('thermostat', 'hall', 1, ?, ?, ?)")
	now := st.Dialect().Time(time.Now())
	if _, err := st.DB().ExecContext(ctx, q, `{"celsius":21.5}`, now, now); err != nil {
		t.Fatal(err)
	}

	repo, err := repository.NewDocument(st, repository.DocumentConfig[*Thermostat]{
		Type:         "thermostat",
		New:          func() *Thermostat { return new(Thermostat) },
		StateVersion: 2,
		Migrations: map[int]func([]byte) ([]byte, error){
			1: func(state []byte) ([]byte, error) {
				var v1 struct {
					Celsius float64 `json:"celsius"`
				}
				if err := json.Unmarshal(state, &v1); err != nil {
					return nil, err
				}
				return json.Marshal(map[string]int{"set_point_tenths": int(v1.Celsius * 10)})
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	th, err := repo.Get(ctx, st.DB(), "hall")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("loaded:", th.SetPoint)

	th.SetPoint = 200
	if err := repo.Save(ctx, st.DB(), th); err != nil {
		t.Fatal(err)
	}
	var state string
	var version int
	q = st.Dialect().Rebind("SELECT state, state_version FROM " + st.Table("aggregates") + " WHERE aggregate_id = ?")
	if err := st.DB().QueryRowContext(ctx, q, "hall").Scan(&state, &version); err != nil {
		t.Fatal(err)
	}
	var stored map[string]int
	_ = json.Unmarshal([]byte(state), &stored)
	fmt.Println("stored:", stored, "at state version", version)
	// Output:
	// loaded: 215
	// stored: map[set_point_tenths:200] at state version 2
}
