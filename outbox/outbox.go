package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// Config configures an Outbox. The zero value is ready to use.
type Config struct {
	// Dialect is "sqlite" or "postgres". If empty, it is detected from the
	// database driver (mattn/go-sqlite3, lib/pq or pgx's stdlib).
	Dialect string
	// TablePrefix is prepended to every keel table name. If empty, the
	// default "keel_" is used, giving keel_outbox, keel_inbox and so on. It
	// must be letters, digits and underscores.
	TablePrefix string
	// DisableNotify stops EnqueueTx from sending a PostgreSQL notification
	// that wakes listening relays in other processes. NOTIFY serialises
	// commits briefly; without it relays find new rows by polling. Ignored
	// on SQLite.
	DisableNotify bool
}

// Outbox writes messages into the outbox table inside the caller's
// transaction. It is safe for concurrent use.
type Outbox struct {
	db      *sql.DB
	d       *dialect.Dialect
	prefix  string
	table   string
	notify  string // non-empty when EnqueueTx notifies listening relays
	channel string
	mu      sync.Mutex
	inserts map[int]string // batch size -> rebound INSERT
}

// Execer is what EnqueueTx needs of a transaction: *sql.Tx, *sqlx.Tx and
// *uow.Tx all satisfy it.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// New returns an Outbox over db. It validates the configuration but does not
// touch the database; a missing table is reported by the first write, as an
// error wrapping ErrNotMigrated.
func New(db *sql.DB, cfg Config) (*Outbox, error) {
	d, prefix, err := cfg.resolve(db)
	if err != nil {
		return nil, err
	}
	o := &Outbox{db: db, d: d, prefix: prefix, table: prefix + "outbox", channel: notifyChannel(prefix), inserts: map[int]string{}}
	if d.IsPostgres() && !cfg.DisableNotify {
		o.notify = "SELECT pg_notify($1, '')"
	}
	return o, nil
}

func (cfg Config) resolve(db *sql.DB) (*dialect.Dialect, string, error) {
	d, err := dialect.Resolve(db, cfg.Dialect)
	if err != nil {
		return nil, "", err
	}
	prefix, err := dialect.Prefix(cfg.TablePrefix)
	if err != nil {
		return nil, "", err
	}
	return d, prefix, nil
}

// Migrate creates or upgrades every keel table (aggregates, outbox, inbox,
// relay leases, idempotency keys) for cfg's dialect and prefix. It is
// idempotent and safe to call from several processes at once.
func Migrate(ctx context.Context, db *sql.DB, cfg Config) error {
	d, prefix, err := cfg.resolve(db)
	if err != nil {
		return err
	}
	return d.Migrate(ctx, db, prefix)
}

// CheckSchema returns an error wrapping ErrNotMigrated unless every migration
// this version of keel ships has been applied.
func (o *Outbox) CheckSchema(ctx context.Context) error {
	return o.d.CheckSchema(ctx, o.db, o.prefix)
}

// Table returns the outbox table's name.
func (o *Outbox) Table() string { return o.table }

// Dialect returns the name of the SQL dialect in use.
func (o *Outbox) Dialect() string { return o.d.Name }

// DB returns the database the Outbox was created with.
func (o *Outbox) DB() *sql.DB { return o.db }

// Enqueue writes msgs in a transaction of its own. Use EnqueueTx to write
// them atomically with other changes.
func (o *Outbox) Enqueue(ctx context.Context, msgs ...Message) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := o.EnqueueTx(ctx, tx, msgs...); err != nil {
		return err
	}
	return tx.Commit()
}

// EnqueueTx writes msgs as pending outbox rows inside tx. If tx rolls back,
// so do the messages; once it commits, a relay will deliver them. Messages
// are inserted in the order given, which is their delivery order per key.
// Empty ids are filled with new UUIDv7s (the caller's slice is updated) and
// zero OccurredAt times with the current time. On PostgreSQL it also sends one
// notification (delivered at commit) that wakes listening relays; see
// Config.DisableNotify.
func (o *Outbox) EnqueueTx(ctx context.Context, tx Execer, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if tx == nil {
		return fmt.Errorf("%w: nil transaction passed to EnqueueTx", ErrInvalidMessage)
	}
	now := time.Now().UTC()
	maxRows := 1000
	if !o.d.IsPostgres() {
		maxRows = 500
	}
	args := make([]any, 0, min(len(msgs), maxRows)*insertColumns)
	for start := 0; start < len(msgs); start += maxRows {
		chunk := msgs[start:min(start+maxRows, len(msgs))]
		args = args[:0]
		for i := range chunk {
			m := &chunk[i]
			if err := m.validate(start + i); err != nil {
				return err
			}
			if m.ID == "" {
				m.ID = aggregate.NewMessageID()
			}
			if m.OccurredAt.IsZero() {
				m.OccurredAt = now
			}
			headers, err := encodeHeaders(m.Headers)
			if err != nil {
				return fmt.Errorf("%w: message %d headers: %v", ErrInvalidMessage, start+i, err)
			}
			key := m.PartitionKey()
			args = append(args, m.ID, m.Topic, key, PartitionOf(key), m.Name,
				m.AggregateType, m.AggregateID, m.AggregateVersion, m.Payload, headers,
				m.CorrelationID, m.CausationID, o.d.Time(m.OccurredAt), o.d.Time(now))
		}
		// The last chunk carries the notification in the same statement, so
		// waking other relays costs no extra round trip.
		notify := o.notify != "" && start+maxRows >= len(msgs)
		if notify {
			args = append(args, o.channel)
		}
		if _, err := tx.ExecContext(ctx, o.insertSQL(len(chunk), notify), args...); err != nil {
			return o.wrapErr(err, "enqueue")
		}
	}
	return nil
}

const insertColumns = 14

// insertSQL returns the INSERT of n rows; with notify, wrapped so that the
// same statement also calls pg_notify with one more parameter, the channel.
func (o *Outbox) insertSQL(n int, notify bool) string {
	key := n << 1
	if notify {
		key |= 1
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if q, ok := o.inserts[key]; ok {
		return q
	}
	var b strings.Builder
	if notify {
		b.WriteString("WITH ins AS (")
	}
	b.WriteString("INSERT INTO ")
	b.WriteString(o.table)
	b.WriteString(" (id, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at, created_at) VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", insertColumns), ", ") + ")"
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	if notify {
		b.WriteString(") SELECT pg_notify(?, '')")
	}
	q := o.d.Rebind(b.String())
	if len(o.inserts) < 64 {
		o.inserts[key] = q
	}
	return q
}

func (o *Outbox) wrapErr(err error, op string) error {
	if dialect.IsMissingTable(err) {
		return fmt.Errorf("keel: outbox %s: %w", op, dialect.MissingTable(err, o.table))
	}
	if dialect.IsUniqueViolation(err) {
		return fmt.Errorf("%w: duplicate message id: %v", ErrInvalidMessage, err)
	}
	return fmt.Errorf("keel: outbox %s: %w", op, err)
}
