// Command vehicle answers two questions from the seed threads.
//
// Seed 000: "Can an aggregate take another aggregate as a parameter?" A
// vehicle cannot be given a driver who is on vacation. Vehicle.AssignDriver
// takes the Driver aggregate and only reads it; the unit of work saves the
// vehicle alone. The runner here is configured with uow.RefuseMultiple, so
// a unit that changed the driver as well would be rolled back: reading
// other aggregates to make a decision is fine, changing them is a
// different question (see the coupon example).
//
// Seed 002: "How do I check that a value is unique across a set?" No single
// Vehicle can know whether its driver already drives another vehicle. That
// is a rule over the whole set, and the database enforces it best: vehicles
// live in the application's own table (repository.NewTable), whose unique
// constraint on driver_id makes a second assignment fail with
// repository.ErrUniqueViolation, even when two requests race. A foreign key
// keeps a driver who still drives a vehicle from being removed.
//
// A decision made from another aggregate's state goes stale: a driver may
// start a vacation right after being assigned. The example ends with the
// answer the thread recommends for that, an exception report.
//
// Run it with:
//
//	go run ./examples/vehicle
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// ErrDriverOnVacation is returned by Vehicle.AssignDriver.
var ErrDriverOnVacation = errors.New("driver is on vacation")

// Driver is an aggregate stored in the drivers table.
type Driver struct {
	aggregate.Root
	Name       string `db:"name"`
	OnVacation bool   `db:"on_vacation"`
}

// DriverHired is recorded when a driver joins.
type DriverHired struct {
	Name string `json:"name"`
}

// EventName implements aggregate.Event.
func (DriverHired) EventName() string { return "driver.hired" }

// VacationStarted is recorded when a driver goes on vacation.
type VacationStarted struct{}

// EventName implements aggregate.Event.
func (VacationStarted) EventName() string { return "driver.vacation_started" }

// HireDriver creates a driver.
func HireDriver(id, name string) *Driver {
	d := &Driver{Name: name}
	d.Init("driver", id)
	d.Record(DriverHired{Name: name})
	return d
}

// StartVacation marks the driver as away.
func (d *Driver) StartVacation() {
	if d.OnVacation {
		return
	}
	d.OnVacation = true
	d.Record(VacationStarted{})
}

// Vehicle is an aggregate stored in the vehicles table.
type Vehicle struct {
	aggregate.Root
	Plate    string
	DriverID string // empty when no driver is assigned
}

// VehicleRegistered is recorded when a vehicle joins the fleet.
type VehicleRegistered struct {
	Plate string `json:"plate"`
}

// EventName implements aggregate.Event.
func (VehicleRegistered) EventName() string { return "vehicle.registered" }

// DriverAssigned is recorded when a vehicle gets a driver.
type DriverAssigned struct {
	DriverID string `json:"driver_id"`
}

// EventName implements aggregate.Event.
func (DriverAssigned) EventName() string { return "vehicle.driver_assigned" }

// RegisterVehicle creates a vehicle without a driver.
func RegisterVehicle(id, plate string) *Vehicle {
	v := &Vehicle{Plate: plate}
	v.Init("vehicle", id)
	v.Record(VehicleRegistered{Plate: plate})
	return v
}

// AssignDriver gives the vehicle a driver. It reads d to enforce the rule
// that a driver on vacation cannot be assigned, and never changes it.
func (v *Vehicle) AssignDriver(d *Driver) error {
	if d.OnVacation {
		return fmt.Errorf("%w: %s", ErrDriverOnVacation, d.Name)
	}
	if v.DriverID == d.ID() {
		return nil
	}
	v.DriverID = d.ID()
	v.Record(DriverAssigned{DriverID: d.ID()})
	return nil
}

// nullable stores an empty string as SQL NULL, so that vehicles without a
// driver do not collide on the unique driver_id column.
type nullable string

// Value implements driver.Valuer.
func (n nullable) Value() (driver.Value, error) {
	if n == "" {
		return nil, nil
	}
	return string(n), nil
}

// Scan implements sql.Scanner.
func (n *nullable) Scan(src any) error {
	switch s := src.(type) {
	case nil:
		*n = ""
	case string:
		*n = nullable(s)
	case []byte:
		*n = nullable(s)
	default:
		return fmt.Errorf("driver_id: cannot scan %T", src)
	}
	return nil
}

// schema is the application's own tables. The unique constraint on
// vehicles.driver_id is the set-wide rule "a driver drives at most one
// vehicle"; the foreign key keeps assignments pointing at real drivers.
var schema = []string{
	`CREATE TABLE drivers (
		id          TEXT PRIMARY KEY,
		version     INTEGER NOT NULL,
		name        TEXT NOT NULL,
		on_vacation BOOLEAN NOT NULL)`,
	`CREATE TABLE vehicles (
		id        TEXT PRIMARY KEY,
		version   INTEGER NOT NULL,
		plate     TEXT NOT NULL UNIQUE,
		driver_id TEXT UNIQUE REFERENCES drivers (id))`,
}

type fleet struct {
	runner   *uow.Runner
	drivers  *repository.Table[*Driver]
	vehicles *repository.Table[*Vehicle]
}

func run(ctx context.Context, w io.Writer, dsn string) error {
	st, closeDB, err := demo.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	return tell(ctx, w, st)
}

// tell runs the example on st, whose database has keel's tables: the
// program gives it a fresh database, and the test a storetest one.
func tell(ctx context.Context, w io.Writer, st *store.Store) error {
	var err error
	db := st.DB()
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}

	var f fleet
	// Columns and Fields come from the db tags.
	f.drivers, err = repository.NewTable(st, repository.TableConfig[*Driver]{
		Table: "drivers", Type: "driver", New: func() *Driver { return new(Driver) },
	})
	if err != nil {
		return err
	}
	f.vehicles, err = repository.NewTable(st, repository.TableConfig[*Vehicle]{
		Table:   "vehicles",
		Type:    "vehicle",
		New:     func() *Vehicle { return new(Vehicle) },
		Columns: []string{"plate", "driver_id"},
		Fields:  func(v *Vehicle) []any { return []any{&v.Plate, (*nullable)(&v.DriverID)} },
	})
	if err != nil {
		return err
	}
	// Every unit in this example changes one aggregate; RefuseMultiple
	// makes that a checked rule rather than a convention.
	f.runner, err = uow.New(st, uow.Config{MultiAggregate: uow.RefuseMultiple})
	if err != nil {
		return err
	}

	// The fleet: two drivers, one already away, and two vehicles.
	alice, bob := HireDriver("alice", "Alice"), HireDriver("bob", "Bob")
	bob.StartVacation()
	for _, d := range []*Driver{alice, bob} {
		if err := f.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return f.drivers.Save(ctx, tx, d)
		}); err != nil {
			return err
		}
	}
	for _, v := range []*Vehicle{RegisterVehicle("v1", "KEEL-001"), RegisterVehicle("v2", "KEEL-002")} {
		if err := f.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return f.vehicles.Save(ctx, tx, v)
		}); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "Drivers: Alice (available), Bob (on vacation). Vehicles: KEEL-001, KEEL-002, no drivers yet.")

	fmt.Fprintln(w, "\n1. Assign Alice to KEEL-001.")
	if err := f.assign(ctx, "v1", "alice"); err != nil {
		return err
	}
	v1, err := f.vehicles.Get(ctx, db, "v1")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   Assigned: KEEL-001 has driver %q (vehicle version %d; the driver was only read).\n", v1.DriverID, v1.Version())

	fmt.Fprintln(w, "\n2. Assign Bob to KEEL-002.")
	err = f.assign(ctx, "v2", "bob")
	if !errors.Is(err, ErrDriverOnVacation) {
		return fmt.Errorf("assigning bob: want ErrDriverOnVacation, got %v", err)
	}
	fmt.Fprintf(w, "   Refused by Vehicle.AssignDriver (%v). Nothing was saved.\n", err)

	fmt.Fprintln(w, "\n3. Assign Alice to KEEL-002 as well.")
	err = f.assign(ctx, "v2", "alice")
	var ce *repository.ConstraintError
	if !errors.Is(err, repository.ErrUniqueViolation) || !errors.As(err, &ce) {
		return fmt.Errorf("second vehicle for alice: want ErrUniqueViolation, got %v", err)
	}
	fmt.Fprintln(w, "   Refused by the unique constraint on vehicles.driver_id: Alice already drives KEEL-001.")
	fmt.Fprintln(w, "   Vehicle.AssignDriver saw nothing wrong; only the table sees the whole set.")

	fmt.Fprintln(w, "\n4. Remove Alice from the drivers while she still drives KEEL-001.")
	err = f.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		d, err := f.drivers.Get(ctx, tx, "alice")
		if err != nil {
			return err
		}
		return f.drivers.Delete(ctx, tx, d)
	})
	if !errors.Is(err, repository.ErrForeignKeyViolation) {
		return fmt.Errorf("removing alice: want ErrForeignKeyViolation, got %v", err)
	}
	fmt.Fprintln(w, "   Refused by the foreign key from vehicles.driver_id (repository.ErrForeignKeyViolation).")

	fmt.Fprintln(w, "\n5. Alice starts a vacation after she was assigned.")
	if err := f.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		d, err := f.drivers.Get(ctx, tx, "alice")
		if err != nil {
			return err
		}
		d.StartVacation()
		return f.drivers.Save(ctx, tx, d)
	}); err != nil {
		return err
	}
	fmt.Fprintln(w, "   The rule was checked when the vehicle was assigned; it cannot stop a driver leaving.")
	fmt.Fprintln(w, "   Exception report, vehicles whose driver is away:")
	report, err := awayReport(ctx, db)
	if err != nil {
		return err
	}
	for _, line := range report {
		fmt.Fprintln(w, "   -", line)
	}

	var events int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+st.Table("outbox")).Scan(&events); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nThe outbox holds %d events from the committed units, none from the refused ones.\n", events)
	return nil
}

// assign runs the assignment command: load the driver (read only) and the
// vehicle, let the vehicle decide, save the vehicle.
func (f *fleet) assign(ctx context.Context, vehicleID, driverID string) error {
	return f.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		// GetForUpdate locks the driver's row until the unit ends
		// (PostgreSQL; SQLite's write lock covers it already), so a
		// vacation cannot start between this check and the commit.
		d, err := f.drivers.GetForUpdate(ctx, tx, driverID)
		if err != nil {
			return err
		}
		v, err := f.vehicles.Get(ctx, tx, vehicleID)
		if err != nil {
			return err
		}
		if err := v.AssignDriver(d); err != nil {
			return err
		}
		return f.vehicles.Save(ctx, tx, v)
	})
}

// awayReport lists vehicles assigned to a driver who is on vacation: a
// plain query over both tables, for a person to act on.
func awayReport(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT v.plate, d.name
		FROM vehicles v JOIN drivers d ON d.id = v.driver_id
		WHERE d.on_vacation
		ORDER BY v.plate`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var plate, name string
		if err := rows.Scan(&plate, &name); err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s is assigned to %s, who is on vacation: reassign it", plate, name))
	}
	return out, rows.Err()
}
