package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrUnknownMessage is returned by Lookup for a message id the outbox does
// not hold: never enqueued, or delivered and deleted (or cleaned up after
// its retention).
var ErrUnknownMessage = errors.New("keel: no outbox message with this id")

// State is where an outbox row stands in its delivery.
type State int

// The states of an outbox row.
const (
	// StatePending rows wait for delivery, first or after a failure.
	StatePending State = 0
	// StateDelivered rows were delivered and are kept for
	// RelayConfig.Retention.
	StateDelivered State = 1
	// StateParked rows used up their attempts or failed permanently; they
	// wait for Requeue, RequeueKey or RequeueError.
	StateParked State = 2
)

// String returns "pending", "delivered" or "parked".
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateDelivered:
		return "delivered"
	case StateParked:
		return "parked"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler, so a State reads as its
// name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Record is one outbox row as Lookup reads it: the message and its
// delivery state.
type Record struct {
	Message
	// State is the row's state.
	State State
	// LastError is the error of the last failed attempt, if any.
	LastError string
	// NextAttemptAt is when a pending row that failed is tried again, and
	// when a parked row was parked; zero otherwise.
	NextAttemptAt time.Time
	// DeliveredAt is when a delivered row was delivered; zero otherwise.
	DeliveredAt time.Time
}

// Lookup reads the outbox row of the message with the given id, whatever
// its state. It returns an error wrapping ErrUnknownMessage when there is
// none.
func (o *Outbox) Lookup(ctx context.Context, id string) (Record, error) {
	return o.lookup(ctx, o.db, id)
}

// lookup is Lookup through q.
func (o *Outbox) lookup(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, id string) (Record, error) {
	rows, err := q.QueryContext(ctx, o.q.Lookup, id)
	if err != nil {
		return Record{}, o.wrap("look up message", err, o.table)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Record{}, o.wrap("look up message", err, o.table)
		}
		return Record{}, fmt.Errorf("%w: id %s", ErrUnknownMessage, dialect.Quote(id))
	}
	var (
		r         Record
		lastErr   sql.NullString
		next, del dialect.Timestamp
	)
	if r.Message, err = o.scanMessage(rows, &r.State, &lastErr, &next, &del); err != nil {
		return Record{}, o.wrap("look up message", err, o.table)
	}
	r.LastError, r.NextAttemptAt, r.DeliveredAt = lastErr.String, next.Time, del.Time
	return r, o.wrap("look up message", rows.Close(), o.table)
}

// Lease is one partition's lease, as Leases reads it.
type Lease struct {
	// Partition is the partition number, from 0 to 63 (the outbox
	// hashes partition keys into 64 partitions).
	Partition int
	// Owner is the ID of the relay holding the partition, or "" when no
	// relay holds it.
	Owner string
	// ExpiresAt is when the lease ends unless its owner renews it. A lease
	// past its expiry is free for any relay to take.
	ExpiresAt time.Time
}

// Held reports whether a relay holds the lease at time now: it has an
// owner and has not expired.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && l.ExpiresAt.After(now) }

// Leases lists the lease of every partition, in partition order, to show
// which relay delivers which partitions.
func (o *Outbox) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := o.db.QueryContext(ctx, o.q.Leases)
	if err != nil {
		return nil, o.wrap("list leases", err, o.st.Table("outbox_leases"))
	}
	defer rows.Close()
	out := make([]Lease, 0, dialect.Partitions)
	for rows.Next() {
		var (
			l   Lease
			exp dialect.Timestamp
		)
		if err := rows.Scan(&l.Partition, &l.Owner, &exp); err != nil {
			return nil, o.wrap("list leases", err, o.st.Table("outbox_leases"))
		}
		l.ExpiresAt = exp.Time
		out = append(out, l)
	}
	return out, o.wrap("list leases", rows.Err(), o.st.Table("outbox_leases"))
}

// RelayInfo is one live relay as Relays reads it.
type RelayInfo struct {
	// ID is the relay's name (RelayConfig.ID).
	ID string
	// ExpiresAt is when its heartbeat lapses: a relay renews it every
	// LeaseDuration/3, so one past it has stopped or lost the database.
	ExpiresAt time.Time
	// Delivered counts the messages it delivered since its Run or Drain
	// started, as of its last heartbeat. Two reads some time apart give
	// its delivery rate, from the database alone.
	Delivered int64
	// Partitions is how many partitions it holds now: leases naming it
	// that have not expired.
	Partitions int
}

// Relays lists the live relays (heartbeat not lapsed), in id order, with
// how much each delivered and how many partitions it holds, from any
// process that reaches the database.
func (o *Outbox) Relays(ctx context.Context) ([]RelayInfo, error) {
	table := o.st.Table("outbox_relays")
	now := o.d.Time(time.Now())
	rows, err := o.db.QueryContext(ctx, o.q.Relays, now, now)
	if err != nil {
		return nil, o.wrap("list relays", err, table)
	}
	defer rows.Close()
	var out []RelayInfo
	for rows.Next() {
		var (
			r   RelayInfo
			exp dialect.Timestamp
		)
		if err := rows.Scan(&r.ID, &exp, &r.Delivered, &r.Partitions); err != nil {
			return nil, o.wrap("list relays", err, table)
		}
		r.ExpiresAt = exp.Time
		out = append(out, r)
	}
	return out, o.wrap("list relays", rows.Err(), table)
}
