package store

import (
	"database/sql"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/dialect"
)

// Dialect is a SQL database family: the value that store/sqlite's and
// store/postgres's Dialect functions return. It carries the dialect's SQL,
// placeholder style, error classification and embedded migrations. Only
// keel's own dialect packages implement it.
type Dialect = dialect.Dialect

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// TablePrefix is prepended to every keel table name. If empty, "keel_"
	// is used, giving keel_outbox, keel_inbox and so on. It must be
	// letters, digits and underscores, start with a letter or underscore,
	// and be at most 40 characters.
	TablePrefix string

	// Listener wakes this process's relays when a transaction in another
	// process commits outbox rows. If nil, relays find such rows by polling
	// (within their MaxPollInterval, 1s by default); commits in this
	// process wake them at once whatever this is. For PostgreSQL, use
	// pgxlisten.New or pqlisten.New.
	Listener Listener

	// DisableNotify stops the wake-up notifications sent for other
	// processes' relays, on dialects that send them (PostgreSQL): with the
	// outbox rows of each unit of work, and after a requeue. It saves a
	// little at each commit. Set it only when no relay outside this process
	// needs waking: they would find new rows by polling alone.
	DisableNotify bool

	// Logger is the default logger of everything built from the Store
	// (relays, runners, routers), and receives the listener's reports. If
	// nil, slog.Default() is used; pass slog.New(slog.DiscardHandler) for
	// silence.
	Logger *slog.Logger

	// TracerProvider records keel's spans: units of work, relay batches,
	// handlers and Kafka consumers, and the trace context stored with every
	// outbox message. If nil, OpenTelemetry's global provider is used,
	// which records nothing until the application installs an SDK.
	TracerProvider trace.TracerProvider

	// MeterProvider records keel's metrics (docs/operations.md lists them).
	// If nil, OpenTelemetry's global provider is used, which records
	// nothing until the application installs an SDK.
	MeterProvider metric.MeterProvider

	// Now is the clock that decides when scheduled messages fall due
	// (outbox.Message.NotBefore): whether an enqueued message is scheduled
	// or delivered at once, and when relays move it into the outbox. Tests
	// of timers set a clock they advance, then call Store.Notify to wake
	// the relays, instead of sleeping. If nil, time.Now is used.
	Now func() time.Time
}

// Store is keel's side of one database: the handle, its dialect, and the
// names of keel's tables. Build it once with Open and pass it to every
// constructor (repositories, the unit-of-work runner, the outbox, relays),
// so they all agree on where keel's tables are. A Store is safe for
// concurrent use.
type Store struct {
	db     *sql.DB
	d      Dialect
	prefix string
	opts   Options

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	listen *listening // the running listener, or nil
}

// Open returns a Store over db, whose dialect is d (sqlite.Dialect() or
// postgres.Dialect()). It checks its arguments but does not touch the
// database: call Migrate to create or upgrade keel's tables, or CheckSchema
// to verify tables created another way.
func Open(db *sql.DB, d Dialect, opts Options) (*Store, error) {
	if db == nil {
		return nil, dialect.Invalid("store.Open: nil *sql.DB; pass an open database handle, such as the result of sql.Open")
	}
	if d == nil {
		return nil, dialect.Invalid("store.Open: nil Dialect; pass sqlite.Dialect(), postgres.Dialect() or mysql.Dialect() from keel's store/sqlite, store/postgres or store/mysql")
	}
	prefix, err := dialect.Prefix(opts.TablePrefix)
	if err != nil {
		return nil, err
	}
	opts.TablePrefix = prefix
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{db: db, d: d, prefix: prefix, opts: opts, subs: map[chan struct{}]struct{}{}}, nil
}

// DB returns the database handle the Store was opened with.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the Store's dialect.
func (s *Store) Dialect() Dialect { return s.d }

// TablePrefix returns the prefix of keel's table names, such as "keel_".
func (s *Store) TablePrefix() string { return s.prefix }

// Table returns the full name of one of keel's tables: Table("outbox") is
// "keel_outbox" under the default prefix.
func (s *Store) Table(name string) string { return s.prefix + name }

// Options returns the options the Store was opened with, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// Now returns the current time by the Store's clock (Options.Now).
func (s *Store) Now() time.Time { return s.opts.Now() }

// Logger returns the Store's default logger.
func (s *Store) Logger() *slog.Logger { return s.opts.Logger }
