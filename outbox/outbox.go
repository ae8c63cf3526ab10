package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/store"
)

// Outbox writes messages into the outbox table inside the caller's
// transaction, and administers the table: Stats, Parked, ParkedKeys,
// ParkedErrors, Lookup, Leases, Relays, Requeue, RequeueKey, RequeueError
// and Cleanup need no relay and no Publisher. It is safe for concurrent
// use.
type Outbox struct {
	st    *store.Store
	db    *sql.DB
	d     dialect.Dialect
	q     dialect.SQL
	table string
	// scheduled is the table of messages scheduled for later.
	scheduled string
	log       *slog.Logger
	tel       *telemetry.Telemetry

	// notifier is set when EnqueueTx carries a wake-up for other processes
	// in its INSERT (PostgreSQL, unless the store disables it).
	notifier dialect.Notifier
	channel  string

	mu      sync.Mutex
	inserts map[int]string // rows<<1 | notify -> rebound INSERT
}

// Execer is what EnqueueTx needs of a transaction: *sql.Tx, *sqlx.Tx and
// *uow.Tx all satisfy it.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// New returns the Outbox of st's database. It does not touch the database;
// a missing table is reported by the first write, as an error wrapping
// store.ErrNotMigrated.
func New(st *store.Store) (*Outbox, error) {
	if st == nil {
		return nil, dialect.Invalid("outbox.New: nil *store.Store; pass the store from store.Open")
	}
	d := st.Dialect()
	o := &Outbox{
		st:        st,
		db:        st.DB(),
		d:         d,
		q:         dialect.Render(d, d.SQL(), st.TablePrefix()),
		table:     st.Table("outbox"),
		scheduled: st.Table("scheduled"),
		log:       st.Logger(),
		tel:       telemetry.For(st.Options().TracerProvider, st.Options().MeterProvider),
		channel:   dialect.Channel(st.TablePrefix()),
		inserts:   map[int]string{},
	}
	if n, ok := d.(dialect.Notifier); ok && !st.Options().DisableNotify {
		o.notifier = n
	}
	return o, nil
}

// Store returns the store the Outbox was created from.
func (o *Outbox) Store() *store.Store { return o.st }

// Enqueue writes msgs in a transaction of its own and wakes this process's
// relays once it commits. Use EnqueueTx to write them atomically with other
// changes.
func (o *Outbox) Enqueue(ctx context.Context, msgs ...Message) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := o.EnqueueTx(ctx, tx, msgs...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	o.st.Notify()
	return nil
}

// EnqueueTx writes msgs as pending outbox rows inside tx. If tx rolls back,
// so do the messages; once it commits, a relay will deliver them. Messages
// are inserted in the order given, which is their delivery order per key.
// Empty ids are filled with new UUIDv7s (the caller's slice is updated) and
// zero OccurredAt times with the current time.
//
// When ctx carries an OpenTelemetry span, each message without a
// traceparent header is stored with the span's W3C trace context
// (traceparent and tracestate headers; the caller's slice gets the new
// header maps, and the maps it passed are left as they were), so that
// relays, Kafka consumers and handlers continue the trace that wrote it.
//
// Every message is checked before anything is written: a missing Name or
// Payload, an ID over 255 bytes, a partition key over 512 bytes, a text
// field or header that is not valid UTF-8, or a text field holding a NUL
// byte fails the whole call with an error wrapping ErrInvalidMessage.
//
// On PostgreSQL the last INSERT also queues a notification, delivered at
// commit, that wakes listening relays in other processes (see
// store.Options.DisableNotify). Relays in this process are woken by the
// unit of work after its commit; callers committing tx themselves call
// Store.Notify.
func (o *Outbox) EnqueueTx(ctx context.Context, tx Execer, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if tx == nil {
		return fmt.Errorf("%w: nil transaction passed to EnqueueTx", ErrInvalidMessage)
	}
	for i := range msgs {
		if err := msgs[i].validate(i); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	for i := range msgs {
		m := &msgs[i]
		if m.ID == "" {
			m.ID = aggregate.NewMessageID()
		}
		if m.OccurredAt.IsZero() {
			m.OccurredAt = now
		}
		m.Headers = telemetry.Inject(ctx, m.Headers)
	}
	// Messages for later go to the scheduled table, the others to the
	// outbox; each keeps its order among its own.
	// The store's clock decides what is scheduled, as it decides when the
	// relays move it (Options.Now).
	clock := o.st.Now()
	scheduled := slices.ContainsFunc(msgs, func(m Message) bool { return m.NotBefore.After(clock) })
	if !scheduled {
		// The usual case: no copies, one table.
		return o.insert(ctx, tx, o.table, msgs, now, true)
	}
	var later, soon []Message
	for _, m := range msgs {
		if m.NotBefore.After(clock) {
			later = append(later, m)
		} else {
			soon = append(soon, m)
		}
	}
	if err := o.insert(ctx, tx, o.table, soon, now, false); err != nil {
		return err
	}
	return o.insert(ctx, tx, o.scheduled, later, now, true)
}

// insert writes msgs into table (the outbox or the scheduled table) with
// multi-row INSERTs. When notify is set, the last INSERT also notifies other
// processes' relays, where the dialect can, so waking them costs no extra
// round trip.
func (o *Outbox) insert(ctx context.Context, tx Execer, table string, msgs []Message, now time.Time, notify bool) error {
	scheduled := table == o.scheduled
	maxRows := o.d.MaxInsertRows()
	if scheduled {
		maxRows = max(1, maxRows*insertColumns/(insertColumns+1))
	}
	args := make([]any, 0, min(len(msgs), maxRows)*(insertColumns+1)+1)
	for start := 0; start < len(msgs); start += maxRows {
		chunk := msgs[start:min(start+maxRows, len(msgs))]
		args = args[:0]
		for i := range chunk {
			m := &chunk[i]
			headers, err := encodeHeaders(m.Headers)
			if err != nil {
				return fmt.Errorf("%w: message %s headers: %v", ErrInvalidMessage, dialect.Quote(m.ID), err)
			}
			key := m.PartitionKey()
			args = append(args, m.ID, m.Topic, key, PartitionOf(key), m.Name,
				m.AggregateType, m.AggregateID, m.AggregateVersion, m.Payload, headers,
				m.CorrelationID, m.CausationID, o.d.Time(m.OccurredAt), o.d.Time(now))
			if scheduled {
				args = append(args, o.d.Time(m.NotBefore.UTC()))
			}
		}
		last := notify && o.notifier != nil && start+maxRows >= len(msgs)
		if last {
			args = append(args, o.channel)
		}
		if _, err := tx.ExecContext(ctx, o.insertSQL(table, len(chunk), last), args...); err != nil {
			return o.wrapWrite(err, table)
		}
	}
	return nil
}

const insertColumns = 14

// insertSQL returns the INSERT of n rows into table (the outbox, or the
// scheduled table with its due_at column), with notify wrapped by the
// dialect so that the same statement also notifies the channel.
func (o *Outbox) insertSQL(table string, n int, notify bool) string {
	key := n << 2
	if notify {
		key |= 1
	}
	columns := insertColumns
	if table == o.scheduled {
		key |= 2
		columns++
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if q, ok := o.inserts[key]; ok {
		return q
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(table)
	b.WriteString(" (id, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at, created_at")
	if columns > insertColumns {
		b.WriteString(", due_at")
	}
	b.WriteString(") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", columns), ", ") + ")"
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	q := b.String()
	if notify {
		q = o.notifier.WithNotify(q)
	}
	q = o.d.Rebind(q)
	if len(o.inserts) < 64 {
		o.inserts[key] = q
	}
	return q
}

func (o *Outbox) wrapWrite(err error, table string) error {
	switch o.d.Classify(err) {
	case dialect.MissingTable:
		return fmt.Errorf("keel: outbox enqueue: %w", dialect.WrapMissing(o.d, err, table))
	case dialect.Unique, dialect.KeyConflict:
		return fmt.Errorf("%w: duplicate message id: %v", ErrInvalidMessage, err)
	}
	return fmt.Errorf("keel: outbox enqueue: %w", err)
}

// wrap names the operation and maps a missing table to store.ErrNotMigrated.
func (o *Outbox) wrap(op string, err error, table string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("keel: outbox %s: %w", op, dialect.WrapMissing(o.d, err, table))
}
