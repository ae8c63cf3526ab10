package main

import (
	"testing"

	"github.com/keel-go/keel/examples/internal/demotest"
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

func TestRun(t *testing.T) { demotest.Output(t, run, want) }
