package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
)

const want = `Drivers: Alice (available), Bob (on vacation). Vehicles: KEEL-001, KEEL-002, no drivers yet.

1. Assign Alice to KEEL-001.
   Assigned: KEEL-001 has driver "alice" (vehicle version 2; the driver was only read).

2. Assign Bob to KEEL-002.
   Refused by Vehicle.AssignDriver (driver is on vacation: Bob). Nothing was saved.

3. Assign Alice to KEEL-002 as well.
   Refused by the unique constraint on vehicles.driver_id: Alice already drives KEEL-001.
   Vehicle.AssignDriver saw nothing wrong; only the table sees the whole set.

4. Remove Alice from the drivers while she still drives KEEL-001.
   Refused by the foreign key from vehicles.driver_id (repository.ErrForeignKeyViolation).

5. Alice starts a vacation after she was assigned.
   The rule was checked when the vehicle was assigned; it cannot stop a driver leaving.
   Exception report, vehicles whose driver is away:
   - KEEL-001 is assigned to Alice, who is on vacation: reassign it

The outbox holds 7 events from the committed units, none from the refused ones.
`

// TestRun tells the example's story on every database the environment
// offers, each in a fresh one.
func TestRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		if st.Dialect().Name() == storetest.MySQL {
			t.Skip("the example's own tables are written for SQLite and PostgreSQL, the databases its program runs on")
		}
		t.Parallel()
		var out strings.Builder
		if err := tell(t.Context(), &out, st); err != nil {
			t.Fatalf("tell: %v\noutput so far:\n%s", err, out.String())
		}
		if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), out.String()); diff != "" {
			t.Errorf("output differs (-want +got):\n%s", diff)
		}
	})
}

// The vehicle's rule, without a database.
func TestVehicleRules(t *testing.T) {
	alice := HireDriver("d-1", "Alice")
	t.Run("a driver is assigned", func(t *testing.T) {
		aggregatetest.Given(t, RegisterVehicle("v-1", "KEEL-001")).
			When(func(v *Vehicle) error { return v.AssignDriver(alice) }).
			Then(DriverAssigned{DriverID: "d-1"})
	})
	t.Run("assigning the same driver again records nothing", func(t *testing.T) {
		aggregatetest.Given(t, RegisterVehicle("v-1", "KEEL-001"), func(v *Vehicle) error { return v.AssignDriver(alice) }).
			When(func(v *Vehicle) error { return v.AssignDriver(alice) }).
			ThenNothing()
	})
	t.Run("not a driver on vacation", func(t *testing.T) {
		away := HireDriver("d-2", "Bob")
		away.StartVacation()
		aggregatetest.Given(t, RegisterVehicle("v-1", "KEEL-001")).
			When(func(v *Vehicle) error { return v.AssignDriver(away) }).
			ThenError(ErrDriverOnVacation)
	})
}
