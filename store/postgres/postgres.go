// Package postgres is keel's PostgreSQL dialect. It works with lib/pq
// (driver name "postgres") and with pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib), and imports neither, so a program links
// only the driver it chooses:
//
//	pool, err := pgxpool.New(ctx, dsn)
//	db := stdlib.OpenDBFromPool(pool)
//	st, err := store.Open(db, postgres.Dialect(), store.Options{
//		Listener: pgxlisten.New(db), // wake relays on commits in other processes
//	})
//
// Every unit of work that writes outbox rows also sends a notification in
// the same statement, delivered at commit; relays whose store has a
// Listener wake on it at once. Package pgxlisten listens through pgx, on a
// connection of the *sql.DB's own pool, and package pqlisten through lib/pq,
// on a dedicated connection it opens from a connection string.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect returns the PostgreSQL dialect, for store.Open.
func Dialect() store.Dialect { return pg{} }

type pg struct{}

var sqlText = func() dialect.SQL {
	q := dialect.Standard(
		func(expr string) string { return expr + " = ANY(?::bigint[])" },
		// A subquery, not "= ANY(array)": PostgreSQL hashes the keys of a
		// NOT IN subquery once, while it tests a NOT = ANY of a parameter
		// element by element for every row under a generic plan (a
		// prepared claim ahead leaving out a thousand keys of batches in
		// flight took four times as long).
		func(expr string) string { return expr + " IN (SELECT unnest(?::text[]))" })
	q.Fail = `UPDATE {p}outbox AS o
SET state = v.state, attempts = o.attempts + 1, next_attempt_at = v.next_at, last_error = v.err
FROM (SELECT unnest(?::bigint[]) AS seq, unnest(?::smallint[]) AS state,
             unnest(?::timestamptz[]) AS next_at, unnest(?::text[]) AS err) AS v
WHERE o.seq = v.seq AND o.state = 0`
	// The rows are inserted in the order given; callers sort them, so that
	// two transactions claiming overlapping rows wait rather than deadlock.
	q.InboxClaim = `INSERT INTO {p}inbox (handler, message_id, processed_at)
SELECT ?::text, m, ?::timestamptz FROM unnest(?::text[]) AS m
ON CONFLICT (handler, message_id) DO NOTHING
RETURNING message_id`
	q.InboxRelease = `DELETE FROM {p}inbox WHERE handler = ?::text AND message_id = ANY(?::text[])`
	q.MigrationsCreate = `CREATE TABLE IF NOT EXISTS {p}migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`
	q.MigrationsLiteral = `INSERT INTO {p}migrations (version, name, applied_at) VALUES (%d, %s, now());`
	// A relay moving due messages waits for rows another has locked rather
	// than skip them: moves then commit in the order their messages fell
	// due, which keeps a key's messages in order across relays.
	q.DueScheduled += " FOR UPDATE"
	return q
}()

func (pg) Name() string               { return "postgres" }
func (pg) Rebind(query string) string { return dialect.RebindDollar(query) }

// Time stores timestamps as TIMESTAMPTZ.
func (pg) Time(t time.Time) any { return t.UTC() }

// Int64s encodes a list as an array literal, cast by the statements.
func (pg) Int64s(v []int64) any { return dialect.ListOf(v, '{', '}') }

// Strings encodes a list of text as an array literal, cast by the
// statements.
func (pg) Strings(v []string) any {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		quoteElement(&b, s)
	}
	b.WriteByte('}')
	return b.String()
}

// Failures encodes the failure rows as four parallel array literals.
func (d pg) Failures(fs []dialect.Failure) ([]any, error) {
	seqs := make([]int64, len(fs))
	states := make([]int64, len(fs))
	var nexts, errs strings.Builder
	nexts.WriteByte('{')
	errs.WriteByte('{')
	for i, f := range fs {
		seqs[i], states[i] = f.Seq, int64(f.State)
		if i > 0 {
			nexts.WriteByte(',')
			errs.WriteByte(',')
		}
		nexts.WriteString(f.NextAt.UTC().Format(time.RFC3339Nano))
		quoteElement(&errs, f.Err)
	}
	nexts.WriteByte('}')
	errs.WriteByte('}')
	return []any{d.Int64s(seqs), d.Int64s(states), nexts.String(), errs.String()}, nil
}

// quoteElement writes s as a double-quoted element of an array literal.
func quoteElement(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func (pg) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is always there
	}
	return sub
}

// BeginMigration serialises migrators on an advisory lock held until the
// migration's transaction ends.
func (pg) BeginMigration(ctx context.Context, conn *sql.Conn, prefix string) (func(bool) error, error) {
	end, err := dialect.BeginTx(ctx, conn, "BEGIN")
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "keel.migrate."+prefix); err != nil {
		_ = end(false)
		return nil, err
	}
	return end, nil
}

func (pg) SQL() dialect.SQL { return sqlText }

func (pg) InsertIfAbsent(table string, columns, key []string) string {
	return dialect.OnConflictDoNothing(table, columns, key)
}

func (pg) ForUpdate() string { return " FOR UPDATE" }

// MaxInsertRows keeps a 14-column INSERT well under the protocol's limit of
// 65,535 parameters.
func (pg) MaxInsertRows() int { return 1000 }

// Writers is 4: PostgreSQL flushes the commits of concurrent transactions
// together, so a few writers overlap their round trips and flushes, and
// four stay within the smallest connection pools (pgxpool's default).
func (pg) Writers() int { return 4 }

// WithNotify wraps the outbox INSERT so that the same statement queues a
// notification, which PostgreSQL delivers at commit and drops on rollback.
func (pg) WithNotify(insert string) string {
	return "WITH ins AS (" + insert + ") SELECT pg_notify(?, '')"
}

func (pg) Notify() string { return "SELECT pg_notify(?, '')" }

// sqlState finds the SQLSTATE of a driver error: lib/pq's *pq.Error and
// pgx's *pgconn.PgError both have a SQLState method.
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

func (pg) Classify(err error) dialect.Class {
	switch sqlState(err) {
	case "23505":
		return dialect.Unique
	case "23503":
		return dialect.ForeignKey
	case "42P01":
		return dialect.MissingTable
	case "42701":
		return dialect.DuplicateColumn
	case "40001", "40P01":
		return dialect.Transient
	}
	return dialect.Other
}

// ConstraintName reads the constraint field of the driver's error:
// Constraint on lib/pq's, ConstraintName on pgx's.
func (pg) ConstraintName(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		for _, field := range []string{"Constraint", "ConstraintName"} {
			if f := v.Elem().FieldByName(field); f.IsValid() && f.Kind() == reflect.String {
				return f.String()
			}
		}
	}
	return ""
}
