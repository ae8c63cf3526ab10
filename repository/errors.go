package repository

import (
	"errors"
	"fmt"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrNotFound is returned by Get and GetForUpdate when no aggregate has the
// requested id, and by Delete for an aggregate that was never saved.
var ErrNotFound = errors.New("keel: aggregate not found")

// ErrConflict is matched by every *ConflictError: the stored version of an
// aggregate is not the one the caller loaded. Reload the aggregate and apply
// the command again, or report the conflict to the user.
var ErrConflict = errors.New("keel: version conflict")

// ErrUniqueViolation is matched by a *ConstraintError for a violated unique
// or primary-key constraint, such as a second person with the same social
// security number.
var ErrUniqueViolation = errors.New("keel: unique constraint violated")

// ErrForeignKeyViolation is matched by a *ConstraintError for a violated
// foreign-key constraint, such as a vehicle assigned to a driver that does
// not exist.
var ErrForeignKeyViolation = errors.New("keel: foreign key constraint violated")

// ErrUntracked is returned by Save and Delete for an aggregate with
// pending events when the Querier does not track aggregates (a plain
// *sql.Tx, say): its events would never reach the outbox. Run the change in
// a unit of work: uow.Runner.Do, or Runner.Join with your own transaction.
var ErrUntracked = errors.New("keel: aggregate has events but is saved outside a unit of work")

// ErrInvalidID is returned for an aggregate id keel cannot store: longer
// than 512 bytes (the limit the key's index sets) or not valid UTF-8.
var ErrInvalidID = errors.New("keel: invalid aggregate id")

// ConflictError reports an optimistic-concurrency conflict: Save or Delete
// expected the stored aggregate to be at version Expected, but it was at
// Actual. Expected is 0 when a new aggregate's id was already taken; Actual
// is 0 when the stored aggregate has been deleted.
type ConflictError struct {
	Type     string // aggregate type
	ID       string // aggregate id
	Expected int64  // version the caller loaded (0 for a new aggregate)
	Actual   int64  // version stored in the database (0 if there is no row)
}

// Error describes the conflict.
func (e *ConflictError) Error() string {
	id := dialect.Quote(e.ID)
	switch {
	case e.Expected == 0:
		return fmt.Sprintf("keel: version conflict: %s %s is new but version %d is already stored", e.Type, id, e.Actual)
	case e.Actual == 0:
		return fmt.Sprintf("keel: version conflict: %s %s was loaded at version %d but is no longer stored (deleted concurrently)", e.Type, id, e.Expected)
	}
	return fmt.Sprintf("keel: version conflict: %s %s was loaded at version %d but version %d is stored", e.Type, id, e.Expected, e.Actual)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ConstraintError reports a violated unique or foreign-key constraint of the
// table an aggregate is stored in. It matches ErrUniqueViolation or
// ErrForeignKeyViolation, and unwraps to the driver's error.
type ConstraintError struct {
	// Constraint names the violated constraint. PostgreSQL and MySQL
	// report its name ("drivers_ssn_key"; on MySQL, the name of a unique
	// constraint's index); SQLite reports the columns of a unique
	// constraint ("drivers.ssn") and nothing for a foreign key.
	Constraint string
	// Err is the driver's error.
	Err error

	kind dialect.Class // Unique or ForeignKey, as the dialect classified Err
}

// Error describes the violation.
func (e *ConstraintError) Error() string {
	kind := "constraint"
	switch e.kind {
	case dialect.Unique:
		kind = "unique constraint"
	case dialect.ForeignKey:
		kind = "foreign key constraint"
	}
	if e.Constraint == "" {
		return fmt.Sprintf("keel: %s violated: %v", kind, e.Err)
	}
	return fmt.Sprintf("keel: %s %q violated: %v", kind, e.Constraint, e.Err)
}

// Unwrap returns the driver's error.
func (e *ConstraintError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUniqueViolation or ErrForeignKeyViolation
// and the driver's error is of that kind.
func (e *ConstraintError) Is(target error) bool {
	switch target {
	case ErrUniqueViolation:
		return e.kind == dialect.Unique
	case ErrForeignKeyViolation:
		return e.kind == dialect.ForeignKey
	}
	return false
}

// missingTableError reports that an application's own table does not exist.
// It matches store.ErrNotMigrated but, unlike the document table's error,
// does not suggest Store.Migrate, which creates only keel's tables.
type missingTableError struct {
	table string
	err   error
}

func (e *missingTableError) Error() string {
	return fmt.Sprintf("keel: table %s does not exist; create it in the application's migrations (Store.Migrate creates only keel's own tables): %v", e.table, e.err)
}

func (e *missingTableError) Unwrap() []error { return []error{dialect.ErrNotMigrated, e.err} }
