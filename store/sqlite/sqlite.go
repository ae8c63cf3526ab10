// Package sqlite is keel's SQLite dialect. It works with either driver:
// github.com/mattn/go-sqlite3 (cgo; driver name "sqlite3") and
// modernc.org/sqlite (pure Go; driver name "sqlite"). It imports neither,
// so a program links only the driver it chooses:
//
//	import _ "github.com/mattn/go-sqlite3"
//
//	db, err := sql.Open("sqlite3", sqlite.FileDSN("app.db"))
//	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
//
// Build with CGO_ENABLED=0 and import modernc.org/sqlite instead, opening
// the driver named "sqlite" with the same DSN.
//
// SQLite lets one connection write at a time. Open it with the options of
// FileDSN: write-ahead logging (readers never block the writer), a busy
// timeout (a second writer waits instead of failing), transactions that
// take the write lock at BEGIN (no lock upgrades, so no deadlocks), foreign
// keys enforced, and synchronous=NORMAL, durable under WAL except for the
// last commits before a power loss.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"io/fs"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// DSNOptions are the connection options keel recommends for SQLite, in the
// query-string form both mattn/go-sqlite3 and modernc.org/sqlite accept.
const DSNOptions = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=on&_synchronous=NORMAL"

// FileDSN returns the data source name of the database file at path, with
// DSNOptions.
func FileDSN(path string) string {
	return "file:" + path + "?" + DSNOptions
}

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect returns the SQLite dialect, for store.Open.
func Dialect() store.Dialect { return lite{} }

type lite struct{}

var sqlText = func() dialect.SQL {
	inJSON := func(expr string) string { return expr + " IN (SELECT value FROM json_each(?))" }
	q := dialect.Standard(inJSON, inJSON)
	// Failures travel as one JSON array of [seq, state, next_at, error] rows.
	q.Fail = `UPDATE {p}outbox AS o
SET state = v.state, attempts = o.attempts + 1, next_attempt_at = v.next_at, last_error = v.err
FROM (SELECT json_extract(value, '$[0]') AS seq, json_extract(value, '$[1]') AS state,
             json_extract(value, '$[2]') AS next_at, json_extract(value, '$[3]') AS err
      FROM json_each(?)) AS v
WHERE o.seq = v.seq AND o.state = 0`
	// "WHERE true" tells SQLite's parser that ON CONFLICT begins the upsert
	// clause.
	q.InboxClaim = `INSERT INTO {p}inbox (handler, message_id, processed_at)
SELECT ?, value, ? FROM json_each(?) WHERE true
ON CONFLICT (handler, message_id) DO NOTHING
RETURNING message_id`
	q.InboxRelease = `DELETE FROM {p}inbox WHERE handler = ? AND message_id IN (SELECT value FROM json_each(?))`
	q.MigrationsCreate = `CREATE TABLE IF NOT EXISTS {p}migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`
	q.MigrationsLiteral = `INSERT INTO {p}migrations (version, name, applied_at) VALUES (%d, %s, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));`
	return q
}()

func (lite) Name() string               { return "sqlite" }
func (lite) Rebind(query string) string { return query }

// Time stores timestamps as integer Unix microseconds.
func (lite) Time(t time.Time) any { return t.UnixMicro() }

// Int64s encodes a list as a JSON array, read with json_each.
func (lite) Int64s(v []int64) any { return dialect.ListOf(v, '[', ']') }

// Strings encodes a list of text as a JSON array, read with json_each.
func (lite) Strings(v []string) any { return dialect.JSONStrings(v) }

// Failures encodes the failure rows as one JSON array, read with json_each.
func (d lite) Failures(fs []dialect.Failure) ([]any, error) { return dialect.JSONFailures(fs, d.Time) }

func (lite) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is always there
	}
	return sub
}

// BeginMigration takes the database's write lock at BEGIN, so concurrent
// migrators run one after another.
func (lite) BeginMigration(ctx context.Context, conn *sql.Conn, _ string) (func(bool) error, error) {
	return dialect.BeginTx(ctx, conn, "BEGIN IMMEDIATE")
}

func (lite) SQL() dialect.SQL { return sqlText }

func (lite) InsertIfAbsent(table string, columns, key []string) string {
	return dialect.OnConflictDoNothing(table, columns, key)
}

// ForUpdate is empty: SQLite has no row locks. A transaction opened with
// _txlock=immediate holds the database's write lock from BEGIN, which
// serialises the read already.
func (lite) ForUpdate() string { return "" }

// MaxInsertRows keeps a 14-column INSERT well under SQLite's default limit
// of 32,766 parameters.
func (lite) MaxInsertRows() int { return 500 }

// Writers is 1: SQLite lets one transaction write at a time, so a second
// writer only waits for the lock.
func (lite) Writers() int { return 1 }
