// Package dialect is the contract between keel's core packages and the SQL
// databases it runs on. A dialect package (store/sqlite, store/postgres)
// implements Dialect; the core packages (repository, uow, outbox, dispatch)
// reach a database only through it and through the statements it renders,
// so they never ask which database they are on.
//
// What every dialect shares (identifier rules, the timestamp scanner,
// migration files, statement rendering, bounded deletes) lives here once.
package dialect

import (
	"context"
	"database/sql"
	"io/fs"
	"time"
)

// Dialect is one SQL database family.
type Dialect interface {
	// Name is the dialect's short name: "sqlite" or "postgres".
	Name() string

	// Rebind rewrites the "?" placeholders of query into the dialect's own
	// style. Question marks inside quoted literals are left alone.
	Rebind(query string) string

	// Time converts t into the value stored in a timestamp column.
	// Timestamp scans it back.
	Time(t time.Time) any
	// Int64s encodes a list of numbers as the single parameter that the
	// "list" placeholders of the dialect's statements take.
	Int64s(v []int64) any
	// Strings is Int64s for a list of text values.
	Strings(v []string) any
	// Failures encodes the rows of the Fail statement as its parameters.
	Failures(fs []Failure) ([]any, error)

	// Classify says what kind of failure a driver error is.
	Classify(err error) Class
	// ConstraintName returns the name of the violated constraint when the
	// driver reports it, or "".
	ConstraintName(err error) string

	// Migrations returns the dialect's migration files: one NNNN_name.sql
	// per version, with {{p}} standing for the table prefix.
	Migrations() fs.FS
	// BeginMigration serialises migrators on conn (a transaction, a lock)
	// and returns the function that ends it, committing when commit is true.
	BeginMigration(ctx context.Context, conn *sql.Conn, prefix string) (end func(commit bool) error, err error)

	// SQL returns keel's statements for this dialect, with {p} standing for
	// the table prefix and "?" for placeholders; Render completes them.
	SQL() SQL

	// InsertIfAbsent returns an INSERT of one row into table that does
	// nothing when a row with the same key columns exists: it either
	// affects no row or fails with an error that Classify reports as
	// KeyConflict. Any other unique constraint still fails as Unique.
	InsertIfAbsent(table string, columns, key []string) string
	// ForUpdate is appended to a single-row SELECT to lock the row until the
	// transaction ends; "" where the database locks otherwise.
	ForUpdate() string
	// MaxInsertRows bounds the rows of one multi-row INSERT into the outbox.
	MaxInsertRows() int
	// Writers is how many transactions writing at once make good use of
	// the database when each is bound by its commit, not by CPU: 1 where
	// writers take turns (SQLite), more where commits overlap.
	Writers() int
}

// Notifier is implemented by dialects whose database can carry a wake-up
// to other processes in the same statement as the outbox INSERT, delivered
// at commit (PostgreSQL's pg_notify).
type Notifier interface {
	// WithNotify wraps insert so that it also notifies the channel given as
	// one more parameter, after the INSERT's own.
	WithNotify(insert string) string
	// Notify is a statement that notifies the channel given as its only
	// parameter, for wake-ups that ride on no INSERT (a requeue).
	Notify() string
}

// SessionChecker is implemented by dialects whose server settings can
// break one of keel's guarantees (an isolation level that reads
// uncommitted rows, say). The store checks them in Migrate and
// CheckSchema, and so before a relay starts.
type SessionChecker interface {
	// CheckSession returns an error, wrapping ErrInvalidConfig and saying
	// how to fix the setting, when db's sessions would break a guarantee.
	CheckSession(ctx context.Context, db *sql.DB) error
}

// CurrentReader is implemented by dialects whose plain reads inside a
// transaction can be older than its writes: under InnoDB's REPEATABLE READ
// an UPDATE finds the latest committed row, while a SELECT after it still
// reads the snapshot of the transaction's first read.
type CurrentReader interface {
	// ReadCurrent is appended to a single-row SELECT so that it reads the
	// latest committed row, with the weakest lock that does.
	ReadCurrent() string
}

// KeysFilteredByRelay is implemented by dialects whose database tests a
// list parameter against every row it reads, too slowly for the thousand
// keys of a batch in flight (MySQL and MariaDB evaluate the JSON_TABLE of
// a NOT IN anew for each row). A relay on such a dialect claims ahead with
// only its few held keys in the ClaimAhead list, asks for as many more rows
// as its batches in flight hold, and drops the rows of their keys itself.
type KeysFilteredByRelay interface {
	KeysFilteredByRelay()
}

// Class is the kind of a driver error, as far as keel cares.
type Class int

// Error classes.
const (
	// Other is any error keel has no special handling for.
	Other Class = iota
	// Unique is a violated unique or primary-key constraint.
	Unique
	// KeyConflict is a duplicate key reported by an InsertIfAbsent statement
	// that fails instead of affecting no row.
	KeyConflict
	// ForeignKey is a violated foreign-key constraint.
	ForeignKey
	// MissingTable says a table does not exist.
	MissingTable
	// Transient is a serialization failure, a deadlock or a busy database:
	// the transaction may succeed if run again.
	Transient
	// DuplicateColumn says a column being added exists already: the
	// statement adding it ran before, and Migrate takes it as applied.
	DuplicateColumn
)

// Failure is one row of the Fail statement: an outbox row whose delivery
// failed, its new state, its next attempt (or when it was parked) and the
// error text.
type Failure struct {
	Seq    int64
	State  int
	NextAt time.Time
	Err    string
}
