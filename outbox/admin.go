package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// Stats is a snapshot of the outbox, for dashboards and alerts.
type Stats struct {
	// Pending counts rows waiting for delivery, including rows waiting to
	// retry after a failure.
	Pending int64
	// Retrying counts pending rows that have failed at least once.
	Retrying int64
	// Parked counts rows that used up their attempts or failed permanently;
	// they wait for Requeue or RequeueKey.
	Parked int64
	// OldestPending is the age of the oldest pending row, measured from its
	// enqueue; zero when nothing is pending. Alert on it.
	OldestPending time.Duration
	// Partitions is how many partitions this relay holds a lease on now.
	Partitions int
}

// Stats counts pending and parked rows across all partitions.
func (r *Relay) Stats(ctx context.Context) (Stats, error) {
	var (
		s      Stats
		oldest dialect.Timestamp
	)
	if err := r.db.QueryRowContext(ctx, r.q.statsPending).Scan(&s.Pending, &s.Retrying, &oldest); err != nil {
		return Stats{}, r.wrap("stats", err, r.ob)
	}
	if err := r.db.QueryRowContext(ctx, r.q.statsParked).Scan(&s.Parked); err != nil {
		return Stats{}, r.wrap("stats", err, r.ob)
	}
	if !oldest.IsZero() {
		s.OldestPending = max(time.Since(oldest.Time), 0)
	}
	s.Partitions = r.partitionCount()
	return s, nil
}

// ParkedMessage is a parked outbox row.
type ParkedMessage struct {
	Message
	// LastError is the error of the last failed attempt.
	LastError string
	// ParkedAt is when the row was parked.
	ParkedAt time.Time
}

// ParkedQuery selects parked rows for Parked. The zero value lists the
// first 100 in outbox order.
type ParkedQuery struct {
	// Key, if set, lists only the parked rows of this partition key.
	Key string
	// AfterSeq lists rows after this outbox position; pass the Seq of the
	// last row of the previous page to page on.
	AfterSeq int64
	// Limit caps the rows returned. If zero, 100 are returned at most.
	Limit int
}

// Parked lists parked rows in outbox order, with their last error and
// attempt count (Message.Attempts).
func (r *Relay) Parked(ctx context.Context, q ParkedQuery) ([]ParkedMessage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query, args := r.q.parked, []any{q.AfterSeq, limit}
	if q.Key != "" {
		query, args = r.q.parkedByKey, []any{q.AfterSeq, PartitionOf(q.Key), q.Key, limit}
	}
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, r.wrap("list parked", err, r.ob)
	}
	defer rows.Close()
	var out []ParkedMessage
	for rows.Next() {
		var (
			p        ParkedMessage
			lastErr  *string
			parkedAt dialect.Timestamp
		)
		m, _, err := r.scanMessage(rows, &lastErr, &parkedAt)
		if err != nil {
			return nil, r.wrap("list parked", err, r.ob)
		}
		p.Message, p.ParkedAt = m, parkedAt.Time
		if lastErr != nil {
			p.LastError = *lastErr
		}
		out = append(out, p)
	}
	return out, r.wrap("list parked", rows.Err(), r.ob)
}

// Requeue makes the parked message with the given id pending again, with a
// fresh set of attempts, and wakes the relay. Under ParkKey the key's held
// messages follow it. It returns an error wrapping ErrNotParked when no
// parked message has that id.
func (r *Relay) Requeue(ctx context.Context, id string) error {
	res, err := r.db.ExecContext(ctx, r.q.requeue, id)
	if err != nil {
		return r.wrap("requeue", err, r.ob)
	}
	if n, err := res.RowsAffected(); err != nil {
		return r.wrap("requeue", err, r.ob)
	} else if n == 0 {
		return fmt.Errorf("%w: id %q", ErrNotParked, id)
	}
	r.log.Info("keel: outbox message requeued", "id", id)
	r.Notify()
	return nil
}

// RequeueKey makes every parked message of a partition key pending again,
// with a fresh set of attempts, wakes the relay, and returns how many it
// requeued.
func (r *Relay) RequeueKey(ctx context.Context, key string) (int64, error) {
	res, err := r.db.ExecContext(ctx, r.q.requeueKey, PartitionOf(key), key)
	if err != nil {
		return 0, r.wrap("requeue key", err, r.ob)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, r.wrap("requeue key", err, r.ob)
	}
	if n > 0 {
		r.log.Info("keel: outbox key requeued", "key", key, "messages", n)
		r.Notify()
	}
	return n, nil
}

// Cleanup deletes delivered rows older than Retention (every delivered row
// when Retention is zero), CleanupBatch rows per statement, and returns how
// many it deleted. A running relay calls it every CleanupInterval when
// Retention > 0; several relays may run it at once.
func (r *Relay) Cleanup(ctx context.Context) (int64, error) {
	cutoff := r.d.Time(time.Now().Add(-r.cfg.Retention))
	n, err := dialect.DeleteInBatches(ctx, r.db, r.q.cleanup, cutoff, r.cfg.CleanupBatch)
	if err != nil {
		err = r.wrap("cleanup", err, r.ob)
	}
	return n, err
}
