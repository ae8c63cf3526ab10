package repository

import (
	"context"
	"database/sql"

	"github.com/keel-go/keel/aggregate"
)

// Querier is what a repository needs of a database handle. *sql.DB, *sql.Tx,
// *sqlx.DB, *sqlx.Tx and the unit of work's *uow.Tx all satisfy it, so a
// repository always runs inside whichever transaction the caller holds.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tracker is implemented by a Querier that wants to know which aggregates
// were written through it. After every successful Save or Delete, a
// repository calls Track with the aggregate when its Querier is a Tracker.
//
// The unit of work's transaction is a Tracker: it writes each tracked
// aggregate's pending events to the outbox in the same transaction, and
// marks them committed after the transaction commits. Repositories
// themselves never write outbox rows and never clear pending events.
type Tracker interface {
	Track(a aggregate.Aggregate)
}

// LockAdvisor is implemented by a Querier that decides, aggregate by
// aggregate, whether Get reads with a row lock. When Get's Querier is a
// LockAdvisor and ShouldLock returns true for the aggregate's type and id,
// Get reads as GetForUpdate does.
//
// The unit of work's transaction is one: by default it asks for the lock
// on an aggregate that lost a version conflict in an earlier attempt of the
// same unit, so the retry waits for the row instead of conflicting again,
// or recently in another unit of its Runner (see uow.Contention).
type LockAdvisor interface {
	ShouldLock(aggregateType, id string) bool
}

// Repository loads and stores aggregates of type T with optimistic
// versioning. *Document and *Table implement it; application code can
// depend on it to switch between the two storage styles.
type Repository[T aggregate.Aggregate] interface {
	// Get loads the aggregate with the given id. It returns an error
	// matching ErrNotFound when there is none. When q is a LockAdvisor
	// that asks for a lock on the aggregate, Get is GetForUpdate.
	Get(ctx context.Context, q Querier, id string) (T, error)
	// GetForUpdate is Get that also locks the row until q's transaction
	// ends, so that concurrent writers queue instead of conflicting.
	GetForUpdate(ctx context.Context, q Querier, id string) (T, error)
	// Exists reports whether an aggregate with the given id is stored.
	Exists(ctx context.Context, q Querier, id string) (bool, error)
	// Save inserts a new aggregate (version 0) or updates a loaded one,
	// moving it to the next version. A stale version returns a
	// *ConflictError.
	Save(ctx context.Context, q Querier, a T) error
	// Delete removes a loaded aggregate if it is still at the version it
	// was loaded at; otherwise it returns a *ConflictError.
	Delete(ctx context.Context, q Querier, a T) error
}
