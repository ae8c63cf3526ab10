package uow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/outbox"
)

// ErrBatchAborted is matched by the error Batch.Do returns once the batch's
// transaction can no longer be used: a savepoint could not be set, released
// or rolled back to, because the connection broke or the database rolled
// the whole transaction back (InnoDB does on a deadlock). DoBatch then
// rolls back and returns the cause, and runs the batch again when the cause
// is transient.
var ErrBatchAborted = errors.New("keel: the batch's transaction was aborted")

// Batch is one transaction shared by many units of work, which run one
// after another through Do, each in a savepoint of its own: a unit that
// fails is undone alone and the others commit together. Batching saves a
// commit (a disk flush) per unit when many small units arrive at once, as
// deliveries of messages to handlers do.
//
// A Batch is valid only inside the function given to DoBatch, and is not
// safe for concurrent use.
type Batch struct {
	r       *Runner
	tx      *sql.Tx
	save    string // statements of the units' savepoint
	release string
	undo    string
	next    string // release and save in one call, where the dialect can
	pending bool   // the savepoint of the last unit that succeeded is still set
	aborted error  // why the transaction can no longer be used
	tracked []tracked
	written []outbox.Message
	units   int // units that succeeded, committed with the batch
}

// DoBatch runs fn in one transaction in which fn runs units of work with
// Batch.Do, and commits it when fn returns nil. After the commit it marks
// the events of every unit that succeeded committed, wakes the store's
// relays if the units wrote messages, and runs the AfterCommit hooks once,
// with all of those messages.
//
// If fn fails, or the transaction was aborted (see ErrBatchAborted), or the
// commit fails, nothing commits. When the cause is a transient database
// error (serialization failure, deadlock, busy SQLite) the batch runs again
// from the start, up to Config.MaxAttempts times, like Do; fn must
// therefore start afresh each time it runs. Statements fn runs through
// Batch.Conn outside any unit are part of the batch too.
func (r *Runner) DoBatch(ctx context.Context, fn func(ctx context.Context, b *Batch) error) error {
	return r.retry(ctx, func() error { return r.batchOnce(ctx, fn) })
}

func (r *Runner) batchOnce(ctx context.Context, fn func(ctx context.Context, b *Batch) error) error {
	var b *Batch
	err := r.inTx(ctx, "batch", func(sqlTx *sql.Tx) error {
		q := r.d.SQL()
		b = &Batch{r: r, tx: sqlTx, save: q.Savepoint, release: q.ReleaseSavepoint, undo: q.RollbackToSavepoint, next: q.NextSavepoint}
		if err := fn(ctx, b); err != nil {
			if b.aborted != nil && errors.Is(err, ErrBatchAborted) {
				return b.aborted
			}
			return err
		}
		return b.aborted
	})
	if err != nil {
		return err
	}
	r.tel.UnitsCommitted.Add(ctx, int64(b.units))
	r.committed(ctx, b.tracked, b.written)
	return nil
}

// Conn returns the batch's transaction, for statements that belong to no
// unit. They commit or roll back with the batch.
func (b *Batch) Conn() Conn { return b.tx }

// Err returns nil while the batch's transaction is usable, and otherwise
// an error matching ErrBatchAborted that says why it is not.
func (b *Batch) Err() error {
	if b.aborted == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrBatchAborted, b.aborted)
}

// Do runs fn as one unit of work inside the batch: it runs fn, the
// in-transaction handlers and the outbox writes as Runner.Do does, after a
// savepoint set before the unit's first statement (a unit that runs none
// costs nothing). When fn, a handler or a write fails, the batch rolls back
// to the savepoint, undoing this unit alone, and Do returns the error; the
// batch goes on. A version conflict or a transient error re-runs fn the
// same way, up to Config.MaxAttempts times with backoff. A panic in fn
// rolls back to the savepoint and is re-raised.
//
// Do returns an error matching ErrBatchAborted, without running fn, once
// the batch's transaction is no longer usable; see Err.
func (b *Batch) Do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return b.r.retry(ctx, func() error { return b.once(ctx, fn) })
}

func (b *Batch) once(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) (err error) {
	if err := b.Err(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u := &unit{b: b}
	t := &Tx{conn: u, r: b.r}
	done := false
	defer func() {
		if done {
			return
		}
		p := recover()
		if u.set && b.aborted == nil {
			// The unit's context may be what ended it; the savepoint must
			// be rolled back all the same.
			bg := context.WithoutCancel(ctx)
			_, rerr := b.tx.ExecContext(bg, b.undo)
			if rerr == nil {
				_, rerr = b.tx.ExecContext(bg, b.release)
			}
			if rerr != nil {
				cause := err
				if p != nil {
					cause = fmt.Errorf("panic: %v", p)
				}
				b.abort(fmt.Errorf("keel: a unit of the batch failed (%w) and rolling back to its savepoint then failed: %w", cause, rerr))
			}
		}
		if p != nil {
			panic(p)
		}
		if b.aborted != nil {
			err = b.Err()
		}
	}()
	if err := fn(ctx, t); err != nil {
		return err
	}
	if err := b.r.flush(ctx, t); err != nil {
		return err
	}
	if b.aborted != nil {
		return b.Err()
	}
	if u.set {
		if b.next != "" {
			// The next unit's savepoint releases this one, in the same
			// round trip; the commit releases the last.
			b.pending = true
		} else if _, err := b.tx.ExecContext(context.WithoutCancel(ctx), b.release); err != nil {
			b.abort(fmt.Errorf("keel: release the savepoint of a unit of the batch: %w", err))
			return b.Err()
		}
	}
	done = true
	b.tracked = append(b.tracked, t.tracked...)
	b.written = append(b.written, t.written...)
	b.units++
	return nil
}

// abort records the first reason the batch's transaction became unusable.
func (b *Batch) abort(err error) {
	if b.aborted == nil {
		b.aborted = err
	}
}

// unit is the Conn of a unit of work in a batch: it sets the unit's
// savepoint before the unit's first statement.
type unit struct {
	b   *Batch
	set bool
}

// begin sets the savepoint if it is not set yet. A savepoint that cannot
// be set leaves the transaction in an unknown state, so it aborts the
// batch.
func (u *unit) begin(ctx context.Context) error {
	if u.set {
		return nil
	}
	if err := u.b.Err(); err != nil {
		return err
	}
	stmt := u.b.save
	if u.b.pending {
		stmt = u.b.next
	}
	if _, err := u.b.tx.ExecContext(context.WithoutCancel(ctx), stmt); err != nil {
		u.b.abort(fmt.Errorf("keel: set the savepoint of a unit of the batch: %w", err))
		return u.b.Err()
	}
	u.b.pending = false
	u.set = true
	return nil
}

func (u *unit) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := u.begin(ctx); err != nil {
		return nil, err
	}
	return u.b.tx.ExecContext(ctx, query, args...)
}

func (u *unit) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := u.begin(ctx); err != nil {
		return nil, err
	}
	return u.b.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs the query even when the savepoint could not be set:
// *sql.Row carries no error of its own making, and the batch, aborted,
// will roll back whatever the query did.
func (u *unit) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	_ = u.begin(ctx)
	return u.b.tx.QueryRowContext(ctx, query, args...)
}

// raw returns the batch's transaction for Tx.Conn, once the savepoint is
// set.
func (u *unit) raw(ctx context.Context) Conn {
	_ = u.begin(ctx)
	return u.b.tx
}

// committed does what follows the commit of units: it marks the events of
// their tracked aggregates committed, wakes the store's relays if they
// wrote messages, and runs the AfterCommit hooks with those messages.
func (r *Runner) committed(ctx context.Context, tracked []tracked, written []outbox.Message) {
	for _, tr := range tracked {
		aggstate.MarkCommitted(tr.a)
	}
	if len(written) > 0 {
		r.st.Notify()
	}
	for _, h := range r.hooks {
		h(ctx, written)
	}
}
