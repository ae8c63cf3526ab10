package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/dialect"
)

// ErrNotScheduled is returned by CancelTx for a message that is not waiting
// for its time: it was never scheduled, was cancelled, or already fell due
// and went to the outbox. The error says which, when it can tell.
var ErrNotScheduled = errors.New("keel: no scheduled message with this id")

// CancelTx cancels the scheduled message with the given id (see
// Message.NotBefore) inside tx: if tx commits, the message is never
// delivered. A message that already fell due is in the outbox and cannot
// be cancelled: CancelTx then returns an error wrapping ErrNotScheduled
// that says whether it is pending, delivered or parked, so a caller racing
// its own timer learns that the timer won. Like EnqueueTx, it takes the
// caller's transaction: *sql.Tx, *sqlx.Tx and *uow.Tx satisfy Execer.
func (o *Outbox) CancelTx(ctx context.Context, tx Execer, id string) error {
	if tx == nil {
		return dialect.Invalid("CancelTx: nil transaction; pass the transaction to cancel the message in")
	}
	res, err := tx.ExecContext(ctx, o.q.CancelScheduled, id)
	if err != nil {
		return o.wrap("cancel", err, o.scheduled)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return o.wrap("cancel", err, o.scheduled)
	}
	if n == 1 {
		return nil
	}
	// Not scheduled: say where it is. Read through tx when it can query
	// (a *sql.Tx or *uow.Tx), so that a caller holding the last connection
	// of a bounded pool does not wait for another; else outside it.
	var r Record
	if q, ok := tx.(interface {
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}); ok {
		r, err = o.lookup(ctx, q, id)
	} else {
		r, err = o.Lookup(ctx, id)
	}
	switch {
	case errors.Is(err, ErrUnknownMessage):
		return fmt.Errorf("%w: id %s: never scheduled, already cancelled, or delivered and deleted", ErrNotScheduled, dialect.Quote(id))
	case err != nil:
		return fmt.Errorf("%w: id %s (%v)", ErrNotScheduled, dialect.Quote(id), err)
	}
	return fmt.Errorf("%w: id %s already fell due and is %s", ErrNotScheduled, dialect.Quote(id), r.State)
}

// moveBatch is how many due messages one transaction moves.
const moveBatch = 1000

// moveDue moves up to moveBatch scheduled messages due by now into the
// outbox, in one transaction, and returns how many it moved. Several
// relays may run it at once, one after another: on PostgreSQL and MySQL a
// relay waits for the due rows another has locked, and SQLite runs one
// writer at a time. Taking the rows another relay has not locked instead
// would let a later move commit first, and its messages take outbox
// positions ahead of earlier messages of the same keys.
func (o *Outbox) moveDue(ctx context.Context, now time.Time) (int, error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, o.q.DueScheduled, o.d.Time(now.UTC()), moveBatch)
	if err != nil {
		return 0, o.wrap("move due messages", err, o.scheduled)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	list := o.d.Strings(ids)
	res, err := tx.ExecContext(ctx, o.q.MoveScheduled, list)
	if err != nil {
		return 0, o.wrap("move due messages", err, o.table)
	}
	moved, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, o.q.DeleteScheduled, list); err != nil {
		return 0, o.wrap("move due messages", err, o.scheduled)
	}
	if o.notifier != nil {
		if _, err := tx.ExecContext(ctx, o.d.Rebind(o.notifier.Notify()), o.channel); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if int(moved) < len(ids) {
		o.log.Warn("keel: scheduled messages fell due with the id of a message already in the outbox; they were dropped as duplicates of it",
			"due", len(ids), "moved", moved)
	}
	o.st.Notify()
	return len(ids), nil
}

// moveAllDue moves every scheduled message due by now into the outbox.
func (o *Outbox) moveAllDue(ctx context.Context, now time.Time) error {
	for {
		n, err := o.moveDue(ctx, now)
		if err != nil || n < moveBatch {
			return err
		}
	}
}

// nextDue returns when the next scheduled message falls due, and false
// when none is scheduled.
func (o *Outbox) nextDue(ctx context.Context) (time.Time, bool, error) {
	var next dialect.Timestamp
	if err := o.db.QueryRowContext(ctx, o.q.NextDue).Scan(&next); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return time.Time{}, false, nil
		}
		return time.Time{}, false, o.wrap("read next due time", err, o.scheduled)
	}
	return next.Time, !next.IsZero(), nil
}

// scheduleLoop moves scheduled messages into the outbox as they fall due,
// until ctx is done. It sleeps until the next due time, or at most
// MaxPollInterval (messages scheduled by other processes without a
// Listener are found then), and wakes early when the store reports a
// commit, which may have scheduled an earlier message. It returns when ctx
// is done, or when no retry can help (see fatal), leaving the delivery loop
// to report that.
func (r *Relay) scheduleLoop(ctx context.Context) {
	wake, unsubscribe := r.ob.st.Subscribe()
	defer unsubscribe()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
		wait, err := r.moveDue(ctx)
		if err != nil {
			if fatal(err) {
				// The delivery loop meets it too, and ends Run with it
				// once it has recorded what it can of its batches.
				return
			}
			if ctx.Err() != nil {
				return
			}
			failures++
			r.log.Error("keel: relay could not move due scheduled messages; retrying", "err", err, "failures", failures)
			wait = backoff.Policy{Base: r.cfg.MinPollInterval, Max: r.cfg.MaxPollInterval}.Delay(failures)
		} else {
			failures = 0
		}
		timer.Reset(wait)
	}
}

// moveDue moves what is due and returns how long to wait before looking
// again. It reads the next due time first, so that a relay with nothing
// due takes no write lock.
func (r *Relay) moveDue(ctx context.Context) (time.Duration, error) {
	for {
		next, ok, err := r.ob.nextDue(ctx)
		if err != nil {
			return 0, err
		}
		now := r.ob.st.Now()
		switch {
		case !ok:
			return r.cfg.MaxPollInterval, nil
		case next.After(now):
			return min(r.cfg.MaxPollInterval, next.Sub(now)), nil
		}
		n, err := r.ob.moveDue(ctx, now)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			// Due rows another relay has locked: it is moving them.
			return r.cfg.MinPollInterval, nil
		}
	}
}
