package repository_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// Driver and Vehicle model two set rules from the seeds: a social security
// number belongs to one driver, and a driver drives one vehicle at a time.
// Both are enforced by the application's own constraints.
type Driver struct {
	aggregate.Root
	Name string
	SSN  string
}

type Vehicle struct {
	aggregate.Root
	Plate    string
	DriverID sql.NullString
}

func newDriver(id, name, ssn string) *Driver {
	d := &Driver{Name: name, SSN: ssn}
	d.Init("driver", id)
	return d
}

func newVehicle(id, plate, driverID string) *Vehicle {
	v := &Vehicle{Plate: plate, DriverID: sql.NullString{String: driverID, Valid: driverID != ""}}
	v.Init("vehicle", id)
	return v
}

type fleet struct {
	drivers  *repository.Table[*Driver]
	vehicles *repository.Table[*Vehicle]
}

func newFleet(t *testing.T, db testdb.DB) fleet {
	t.Helper()
	// Unique columns are VARCHAR, which MySQL can index whole; the
	// referencing column has the type of the key it references.
	exec(t, db, `CREATE TABLE drivers (
		id      `+keyType(db)+` PRIMARY KEY,
		version BIGINT NOT NULL,
		name    TEXT NOT NULL,
		ssn     VARCHAR(64) NOT NULL,
		CONSTRAINT drivers_ssn_key UNIQUE (ssn))`)
	exec(t, db, `CREATE TABLE vehicles (
		id        `+keyType(db)+` PRIMARY KEY,
		version   BIGINT NOT NULL,
		plate     TEXT NOT NULL,
		driver_id `+keyType(db)+`,
		CONSTRAINT vehicles_driver_fkey FOREIGN KEY (driver_id) REFERENCES drivers (id),
		CONSTRAINT vehicles_one_driver UNIQUE (driver_id))`)
	drivers, err := repository.NewTable(db.Store, repository.TableConfig[*Driver]{
		Table:   "drivers",
		Type:    "driver",
		New:     func() *Driver { return new(Driver) },
		Columns: []string{"name", "ssn"},
		Fields:  func(d *Driver) []any { return []any{&d.Name, &d.SSN} },
	})
	if err != nil {
		t.Fatal(err)
	}
	vehicles, err := repository.NewTable(db.Store, repository.TableConfig[*Vehicle]{
		Table:   "vehicles",
		Type:    "vehicle",
		New:     func() *Vehicle { return new(Vehicle) },
		Columns: []string{"plate", "driver_id"},
		Fields:  func(v *Vehicle) []any { return []any{&v.Plate, &v.DriverID} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return fleet{drivers, vehicles}
}

// wantConstraint checks that err is a *ConstraintError of kind, naming the
// constraint as the database reports it: PostgreSQL and MySQL name the
// constraint (serverName), SQLite the columns of a unique constraint and
// nothing for a foreign key (sqliteName).
func wantConstraint(t *testing.T, err, kind error, serverName, sqliteName string, named bool) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	if errors.Is(err, repository.ErrConflict) {
		t.Fatalf("constraint violation %v also matches ErrConflict", err)
	}
	var ce *repository.ConstraintError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T, want *ConstraintError", err)
	}
	if ce.Err == nil || errors.Unwrap(ce) != ce.Err {
		t.Fatalf("ConstraintError does not unwrap to the driver error: %#v", ce)
	}
	want := sqliteName
	if named {
		want = serverName
	}
	if ce.Constraint != want {
		t.Errorf("constraint = %q, want %q (%v)", ce.Constraint, want, err)
	}
}

func TestConstraintViolations(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, tdb testdb.DB) {
		t.Parallel()
		ctx := context.Background()
		f := newFleet(t, tdb)
		named := tdb.Setup.IsPostgres() || tdb.Setup.IsMySQL()
		db := tdb.SQL()

		alice := newDriver("d1", "Alice", "123-45-6789")
		if err := f.drivers.Save(ctx, db, alice); err != nil {
			t.Fatal(err)
		}

		t.Run("unique SSN", func(t *testing.T) {
			tx := tracking(begin(t, tdb))
			err := f.drivers.Save(ctx, tx, newDriver("d2", "Mallory", "123-45-6789"))
			wantConstraint(t, err, repository.ErrUniqueViolation, "drivers_ssn_key", "drivers.ssn", named)
			if len(tx.tracked) != 0 {
				t.Fatal("a failed save was tracked")
			}
		})

		t.Run("unique SSN on update", func(t *testing.T) {
			bob := newDriver("d3", "Bob", "987-65-4321")
			if err := f.drivers.Save(ctx, db, bob); err != nil {
				t.Fatal(err)
			}
			bob.SSN = alice.SSN
			err := f.drivers.Save(ctx, db, bob)
			wantConstraint(t, err, repository.ErrUniqueViolation, "drivers_ssn_key", "drivers.ssn", named)
			if bob.Version() != 1 {
				t.Fatalf("version after a failed update = %d, want 1", bob.Version())
			}
		})

		t.Run("one driver per vehicle", func(t *testing.T) {
			if err := f.vehicles.Save(ctx, db, newVehicle("v1", "KEEL-1", "d1")); err != nil {
				t.Fatal(err)
			}
			err := f.vehicles.Save(ctx, db, newVehicle("v2", "KEEL-2", "d1"))
			wantConstraint(t, err, repository.ErrUniqueViolation, "vehicles_one_driver", "vehicles.driver_id", named)

			// Without a driver the vehicle is fine; NULLs do not collide.
			for _, id := range []string{"v3", "v4"} {
				if err := f.vehicles.Save(ctx, db, newVehicle(id, "KEEL-"+id, "")); err != nil {
					t.Fatal(err)
				}
			}
			got, err := f.vehicles.Get(ctx, db, "v1")
			if err != nil {
				t.Fatal(err)
			}
			if got.DriverID != (sql.NullString{String: "d1", Valid: true}) || got.Plate != "KEEL-1" {
				t.Fatalf("loaded vehicle = %+v", got)
			}
		})

		t.Run("foreign key", func(t *testing.T) {
			err := f.vehicles.Save(ctx, db, newVehicle("v9", "KEEL-9", "nobody"))
			wantConstraint(t, err, repository.ErrForeignKeyViolation, "vehicles_driver_fkey", "", named)

			// Carol drives v5, so deleting her would break the reference.
			carol := newDriver("d5", "Carol", "555-55-5555")
			if err := f.drivers.Save(ctx, db, carol); err != nil {
				t.Fatal(err)
			}
			if err := f.vehicles.Save(ctx, db, newVehicle("v5", "KEEL-5", "d5")); err != nil {
				t.Fatal(err)
			}
			err = f.drivers.Delete(ctx, db, carol)
			wantConstraint(t, err, repository.ErrForeignKeyViolation, "vehicles_driver_fkey", "", named)
		})
	})
}
