package repository_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
)

// Meter's state as the first release saved it: {"watts": 1500}.
type meterV1 struct {
	aggregate.Root
	Watts int `json:"watts"`
}

// Meter's state now: {"kw": 1.5, "unit": "kW"}.
type meterV2 struct {
	aggregate.Root
	Kilowatts float64 `json:"kw"`
	Unit      string  `json:"unit"`
}

func wattsToKilowatts(state []byte) ([]byte, error) {
	var old struct {
		Watts int `json:"watts"`
	}
	if err := json.Unmarshal(state, &old); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"kw": float64(old.Watts) / 1000, "unit": "kW"})
}

func meterRepo[T aggregate.Aggregate](t *testing.T, st *store.Store, newT func() T, version int, migrations map[int]func([]byte) ([]byte, error)) *repository.Document[T] {
	t.Helper()
	r, err := repository.NewDocument(st, repository.DocumentConfig[T]{Type: "meter", New: newT, StateVersion: version, Migrations: migrations})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// storedState reads a meter's row as it is in the table.
func storedState(t *testing.T, db testdb.DB, id string) (map[string]any, int) {
	t.Helper()
	var (
		state   string
		version int
	)
	q := db.Dialect().Rebind("SELECT state, state_version FROM " + db.Table("aggregates") + " WHERE aggregate_type = 'meter' AND aggregate_id = ?")
	if err := db.SQL().QueryRow(q, id).Scan(&state, &version); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(state), &m); err != nil {
		t.Fatal(err)
	}
	return m, version
}

// TestDocumentStateMigratesOnLoad: state saved by the first release loads
// through its migration into the new shape, and the next save stores the
// new shape at the new version. A gap in the migrations, and state newer
// than the release, are clear errors.
func TestDocumentStateMigratesOnLoad(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		ctx := context.Background()
		old := meterRepo(t, db.Store, func() *meterV1 { return &meterV1{} }, 0, nil)
		m := &meterV1{Watts: 1500}
		m.Init("meter", "m-1")
		if err := old.Save(ctx, db.SQL(), m); err != nil {
			t.Fatal(err)
		}
		if state, v := storedState(t, db, "m-1"); v != 1 || state["watts"] != float64(1500) {
			t.Fatalf("the first release stored %v at version %d", state, v)
		}

		repo := meterRepo(t, db.Store, func() *meterV2 { return &meterV2{} }, 2, map[int]func([]byte) ([]byte, error){1: wattsToKilowatts})
		got, err := repo.Get(ctx, db.SQL(), "m-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Kilowatts != 1.5 || got.Unit != "kW" || got.Version() != 1 {
			t.Fatalf("loaded %+v at version %d; want 1.5 kW at version 1", got, got.Version())
		}
		if state, v := storedState(t, db, "m-1"); v != 1 || state["watts"] != float64(1500) {
			t.Fatalf("loading rewrote the row: %v at version %d", state, v)
		}
		got.Kilowatts = 2
		if err := repo.Save(ctx, db.SQL(), got); err != nil {
			t.Fatal(err)
		}
		if state, v := storedState(t, db, "m-1"); v != 2 || state["kw"] != float64(2) || state["unit"] != "kW" || state["watts"] != nil {
			t.Fatalf("the save stored %v at state version %d; want the new shape at version 2", state, v)
		}
		if again, err := repo.Get(ctx, db.SQL(), "m-1"); err != nil || again.Kilowatts != 2 {
			t.Fatalf("reload: %+v, %v", again, err)
		}

		// A release at version 3 with no migration from 2.
		gap := meterRepo(t, db.Store, func() *meterV2 { return &meterV2{} }, 3, map[int]func([]byte) ([]byte, error){1: wattsToKilowatts})
		_, err = gap.Get(ctx, db.SQL(), "m-1")
		if !errors.Is(err, repository.ErrStateVersion) || !strings.Contains(err.Error(), "state saved at version 2, but this repository's StateVersion is 3 and DocumentConfig.Migrations has no migration from version 2 to 3") {
			t.Fatalf("gap: %v", err)
		}
		// The first release meets state the second one saved.
		if _, err = old.Get(ctx, db.SQL(), "m-1"); !errors.Is(err, repository.ErrStateVersion) || !strings.Contains(err.Error(), "by a newer release") {
			t.Fatalf("newer: %v", err)
		}
	})
}

func TestDocumentStateVersionConfig(t *testing.T) {
	db := testdb.Open(t, testdb.SQLiteModernc)
	for _, tc := range []struct {
		version int
		mig     map[int]func([]byte) ([]byte, error)
		says    string
	}{
		{-1, nil, "StateVersion"},
		{2, map[int]func([]byte) ([]byte, error){2: wattsToKilowatts}, "from version 2, outside [1, StateVersion 2)"},
		{2, map[int]func([]byte) ([]byte, error){1: nil}, "is nil"},
	} {
		_, err := repository.NewDocument(db.Store, repository.DocumentConfig[*meterV2]{Type: "meter", New: func() *meterV2 { return &meterV2{} }, StateVersion: tc.version, Migrations: tc.mig})
		if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%d %v: %v; want ErrInvalidConfig saying %q", tc.version, tc.mig, err, tc.says)
		}
	}
}
