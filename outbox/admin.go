package outbox

import (
	"context"
	"database/sql"
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
	// they wait for Requeue, RequeueKey or RequeueError.
	Parked int64
	// OldestPending is the age of the oldest pending row, measured from its
	// enqueue; zero when nothing is pending. Alert on it.
	OldestPending time.Duration
	// Scheduled counts messages waiting for their time (Message.NotBefore),
	// outside the outbox; they are not counted as pending.
	Scheduled int64
}

// Stats counts pending, retrying and parked rows across all partitions.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	var (
		s      Stats
		oldest dialect.Timestamp
	)
	if err := o.db.QueryRowContext(ctx, o.q.StatsPending).Scan(&s.Pending, &s.Retrying, &oldest); err != nil {
		return Stats{}, o.wrap("stats", err, o.table)
	}
	if err := o.db.QueryRowContext(ctx, o.q.StatsParked).Scan(&s.Parked); err != nil {
		return Stats{}, o.wrap("stats", err, o.table)
	}
	if err := o.db.QueryRowContext(ctx, o.q.StatsScheduled).Scan(&s.Scheduled); err != nil {
		return Stats{}, o.wrap("stats", err, o.scheduled)
	}
	if !oldest.IsZero() {
		s.OldestPending = max(time.Since(oldest.Time), 0)
	}
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
// first 100 in outbox order. Filters combine: Key, Name and Error together
// list the parked rows that match all three.
type ParkedQuery struct {
	// Key, if set, lists only the parked rows of this partition key.
	Key string
	// Name, if set, lists only parked rows of this event name.
	Name string
	// Error, if set, lists only parked rows whose last error has this
	// fingerprint (ErrorFingerprint, as ParkedErrors lists them). It is
	// matched in Go, over the rows the other filters select, read in
	// pages of 1000: a page of a rare error may read many parked rows.
	Error string
	// AfterSeq lists rows after this outbox position; pass the Seq of the
	// last row of the previous page to page on.
	AfterSeq int64
	// Limit caps the rows returned. If zero, 100 are returned at most.
	Limit int
}

// Parked lists the parked rows the query selects, in outbox order, with
// their last error and attempt count (Message.Attempts). An Error that is
// not a fingerprint is refused with an error wrapping
// store.ErrInvalidConfig.
func (o *Outbox) Parked(ctx context.Context, q ParkedQuery) ([]ParkedMessage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultParkedLimit
	}
	if q.Error != "" {
		if err := checkFingerprint("Parked", q.Error); err != nil {
			return nil, err
		}
	}
	// The statement's parameters between AfterSeq and the limit.
	query, filter := o.q.Parked, []any{}
	switch {
	case q.Key != "" && q.Name != "":
		query, filter = o.q.ParkedByKeyName, []any{PartitionOf(q.Key), q.Key, q.Name}
	case q.Key != "":
		query, filter = o.q.ParkedByKey, []any{PartitionOf(q.Key), q.Key}
	case q.Name != "":
		query, filter = o.q.ParkedByName, []any{q.Name}
	}
	read := func(after int64, n int, keep func(*ParkedMessage) bool, out []ParkedMessage) ([]ParkedMessage, int, int64, error) {
		return o.readParked(ctx, query, append(append([]any{after}, filter...), n), keep, out, limit)
	}
	if q.Error == "" {
		out, _, _, err := read(q.AfterSeq, limit, nil, nil)
		return out, err
	}
	keep := func(p *ParkedMessage) bool { return ErrorFingerprint(p.LastError) == q.Error }
	var (
		out   []ParkedMessage
		after = q.AfterSeq
	)
	for {
		var (
			n   int
			err error
		)
		out, n, after, err = read(after, parkedPage, keep, out)
		if err != nil || n < parkedPage || len(out) == limit {
			return out, err
		}
	}
}

// readParked runs a Parked statement and appends to out the rows keep
// accepts (every row when keep is nil), stopping once out holds limit
// rows. It returns out, how many rows it read and the seq of the last.
func (o *Outbox) readParked(ctx context.Context, query string, args []any, keep func(*ParkedMessage) bool, out []ParkedMessage, limit int) ([]ParkedMessage, int, int64, error) {
	rows, err := o.db.QueryContext(ctx, query, args...)
	if err != nil {
		return out, 0, 0, o.wrap("list parked", err, o.table)
	}
	defer rows.Close()
	var (
		n    int
		last int64
	)
	for len(out) < limit && rows.Next() {
		var (
			p        ParkedMessage
			lastErr  *string
			parkedAt dialect.Timestamp
		)
		if p.Message, err = o.scanMessage(rows, &lastErr, &parkedAt); err != nil {
			return out, n, last, o.wrap("list parked", err, o.table)
		}
		n, last = n+1, p.Seq
		p.ParkedAt = parkedAt.Time
		if lastErr != nil {
			p.LastError = *lastErr
		}
		if keep == nil || keep(&p) {
			out = append(out, p)
		}
	}
	return out, n, last, o.wrap("list parked", rows.Err(), o.table)
}

// Requeue makes the parked message with the given id pending again, with a
// fresh set of attempts, and wakes the relays. Under ParkKey the key's held
// messages follow it. It returns an error wrapping ErrNotParked when no
// parked message has that id.
func (o *Outbox) Requeue(ctx context.Context, id string) error {
	res, err := o.db.ExecContext(ctx, o.q.Requeue, id)
	if err != nil {
		return o.wrap("requeue", err, o.table)
	}
	if n, err := res.RowsAffected(); err != nil {
		return o.wrap("requeue", err, o.table)
	} else if n == 0 {
		return fmt.Errorf("%w: id %s", ErrNotParked, dialect.Quote(id))
	}
	o.log.InfoContext(ctx, "keel: outbox message requeued", "id", id)
	o.wake(ctx)
	return nil
}

// RequeueKey makes every parked message of a partition key pending again,
// with a fresh set of attempts, wakes the relays, and returns how many it
// requeued.
func (o *Outbox) RequeueKey(ctx context.Context, key string) (int64, error) {
	res, err := o.db.ExecContext(ctx, o.q.RequeueKey, PartitionOf(key), key)
	if err != nil {
		return 0, o.wrap("requeue key", err, o.table)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, o.wrap("requeue key", err, o.table)
	}
	if n > 0 {
		o.log.InfoContext(ctx, "keel: outbox key requeued", "key", key, "messages", n)
		o.wake(ctx)
	}
	return n, nil
}

// wake wakes this process's relays, and, where the dialect can, relays in
// other processes: a requeue usually comes from an operator's tool, not
// from the process that runs the relays.
func (o *Outbox) wake(ctx context.Context) {
	o.st.Notify()
	if o.notifier == nil {
		return
	}
	if _, err := o.db.ExecContext(ctx, o.d.Rebind(o.notifier.Notify()), o.channel); err != nil {
		o.log.WarnContext(ctx, "keel: could not notify other processes' relays; they find the rows by polling", "err", err)
	}
}

// DefaultCleanupBatch is the batch size Cleanup uses when given 0.
const DefaultCleanupBatch = 1000

// Cleanup deletes delivered rows kept for retention (see
// RelayConfig.Retention) that were delivered more than olderThan ago, at
// most batch rows per statement (DefaultCleanupBatch if batch is 0), and
// returns how many it deleted. A running relay with Retention set calls it
// every CleanupInterval; several processes may run it at once.
func (o *Outbox) Cleanup(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan < 0 {
		return 0, dialect.Invalid("Cleanup: olderThan is %v; pass how long delivered rows are kept, or 0 for all of them", olderThan)
	}
	switch {
	case batch < 0:
		return 0, dialect.Invalid("Cleanup: batch is %d; pass a positive size, or 0 for %d", batch, DefaultCleanupBatch)
	case batch == 0:
		batch = DefaultCleanupBatch
	}
	n, err := dialect.DeleteInBatches(ctx, o.db, o.q.Cleanup, o.d.Time(time.Now().Add(-olderThan)), batch)
	return n, o.wrap("cleanup", err, o.table)
}

// scanMessage scans dialect.MessageColumns, then extra.
func (o *Outbox) scanMessage(rows *sql.Rows, extra ...any) (Message, error) {
	var (
		m          Message
		headers    string
		occurred   dialect.Timestamp
		enqueuedAt dialect.Timestamp
	)
	dest := append([]any{&m.Seq, &m.ID, &m.Topic, &m.Key, &m.Name, &m.AggregateType, &m.AggregateID,
		&m.AggregateVersion, &m.Payload, &headers, &m.CorrelationID, &m.CausationID, &occurred, &enqueuedAt, &m.Attempts}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return m, err
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	m.OccurredAt, m.EnqueuedAt = occurred.Time, enqueuedAt.Time
	h, err := DecodeHeaders(headers)
	if err != nil {
		o.log.Warn("keel: outbox row has corrupt headers; delivering without them", "id", m.ID, "err", err)
	}
	m.Headers = h
	return m, nil
}
