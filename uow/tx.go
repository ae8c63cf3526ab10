package uow

import (
	"context"
	"database/sql"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// Conn is what a unit of work needs of a transaction. *sql.Tx and *sqlx.Tx
// satisfy it, so Join accepts either.
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is the transaction of one unit of work. Pass it to repositories as
// their Querier: every aggregate they save through it is tracked, and its
// recorded events are written to the outbox before the transaction commits.
//
// A Tx is valid only inside the function given to Do or Join, and is not
// safe for concurrent use.
type Tx struct {
	conn    Conn
	r       *Runner
	tracked []tracked
	extra   []outbox.Message
	result  []byte
	written []outbox.Message
	// conflicted lists the aggregates that lost a version conflict in
	// earlier attempts of this call, which Get locks (see ShouldLock).
	conflicted []aggregateKey
}

type tracked struct {
	a       aggregate.Aggregate
	seen    int // pending events already passed to in-transaction handlers
	stamped int // pending events that already have their metadata
}

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.conn.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.conn.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a single-row query in the transaction.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(ctx, query, args...)
}

// Conn returns the underlying transaction: the *sql.Tx that Do or DoBatch
// began, or whatever was passed to Join.
func (t *Tx) Conn() Conn {
	if u, ok := t.conn.(*unit); ok {
		return u.raw(context.Background())
	}
	return t.conn
}

// ShouldLock reports whether a repository's Get through this Tx should lock
// the row of the aggregate it reads, as GetForUpdate does. It follows the
// Runner's Config.Contention: under Adaptive it is true for an aggregate
// that conflicted in an earlier attempt of this call, or that is hot in the
// Runner (see Adaptive); under LockOnRetry only for the former; under AlwaysLock for every aggregate; under NeverLock for
// none. Repositories call it (see repository.LockAdvisor); applications
// rarely need to.
func (t *Tx) ShouldLock(aggregateType, id string) bool {
	switch t.r.cfg.Contention {
	case NeverLock:
		return false
	case AlwaysLock:
		return true
	}
	k := aggregateKey{aggregateType, id}
	for _, c := range t.conflicted {
		if c == k {
			return true
		}
	}
	return t.r.cfg.Contention == Adaptive && t.r.hot.has(k)
}

// Store returns the store of the unit's Runner: its Dialect rebinds the
// placeholders of statements a function runs through the Tx.
func (t *Tx) Store() *store.Store { return t.r.st }

// Track registers a saved aggregate with the unit, so that its pending
// events are written to the outbox at commit. Repositories call it after
// every successful save; tracking the same aggregate twice has no effect.
func (t *Tx) Track(a aggregate.Aggregate) {
	for _, tr := range t.tracked {
		if tr.a == a {
			return
		}
	}
	t.tracked = append(t.tracked, tracked{a: a})
}

// Tracked returns the aggregates saved in this unit so far, in order.
func (t *Tx) Tracked() []aggregate.Aggregate {
	out := make([]aggregate.Aggregate, len(t.tracked))
	for i, tr := range t.tracked {
		out[i] = tr.a
	}
	return out
}

// Enqueue adds messages that are not aggregate events (an integration
// command for another service, say) to the outbox in this transaction.
// They are written after the events of tracked aggregates.
func (t *Tx) Enqueue(msgs ...outbox.Message) {
	t.extra = append(t.extra, msgs...)
}

// SetResult stores the outcome of an idempotent command (see
// Runner.DoIdempotent), so that a retried duplicate can return it.
func (t *Tx) SetResult(b []byte) {
	t.result = append([]byte(nil), b...)
}
