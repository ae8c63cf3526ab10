// Package demo is the plumbing the examples share: the command-line flag,
// a fresh database for every run, opening it with the right driver, waiting
// for the relay, and money formatting. It is not part of keel's API; each
// example's run function shows the parts that are.
//
// SQLite goes through mattn/go-sqlite3 (driver "sqlite3") when cgo is
// enabled, the default, and through modernc.org/sqlite (driver "sqlite"),
// which is pure Go, when the examples are built with CGO_ENABLED=0.
// PostgreSQL goes through pgx: a pgxpool wrapped by stdlib.OpenDBFromPool,
// with pgxlisten waking the relays, so the examples link neither lib/pq nor
// a second PostgreSQL driver.
package demo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
	"github.com/keel-go/keel/store/sqlite"
)

// Main parses the -postgres flag, prepares an empty database (a SQLite
// file in a temporary directory by default, or a new schema in the given
// PostgreSQL database), calls run with its data source name, removes the
// database again, and exits 1 if run failed.
func Main(run func(ctx context.Context, w io.Writer, dsn string) error) {
	pg := flag.String("postgres", "", "run on PostgreSQL at this URL, in a schema of its own that is dropped afterwards\n(e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dsn, cleanup, err := prepare(ctx, *pg)
	if err == nil {
		err = run(ctx, os.Stdout, dsn)
		cleanup()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		stop()
		os.Exit(1)
	}
}

// Open opens the database at dsn with the driver this build uses for it
// and returns keel's store over it, and a function that closes both. A
// PostgreSQL store gets a pgxlisten Listener, so its relays wake at once on
// commits in other processes too.
func Open(ctx context.Context, dsn string) (*store.Store, func(), error) {
	if !isPostgres(dsn) {
		db, err := sql.Open(SQLiteDriver, dsn)
		if err != nil {
			return nil, nil, err
		}
		st, err := store.Open(db, sqlite.Dialect(), store.Options{})
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return st, func() { db.Close() }, nil
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	closeAll := func() {
		db.Close() // does not close the pool
		pool.Close()
	}
	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pgxlisten.New(db)})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return st, closeAll, nil
}

// isPostgres reports whether dsn is a PostgreSQL URL or key=value string
// rather than a SQLite file name.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") ||
		strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=")
}

func prepare(ctx context.Context, pgURL string) (dsn string, cleanup func(), err error) {
	if pgURL == "" {
		dir, err := os.MkdirTemp("", "keel-example-")
		if err != nil {
			return "", nil, err
		}
		return sqlite.FileDSN(filepath.Join(dir, "keel.db")), func() { os.RemoveAll(dir) }, nil
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	schema := "keel_example_" + hex.EncodeToString(b)
	if err := admin(ctx, pgURL, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	dsn, err = withSearchPath(pgURL, schema)
	if err != nil {
		return "", nil, err
	}
	return dsn, func() {
		if err := admin(context.Background(), pgURL, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "drop schema %s: %v\n", schema, err)
		}
	}, nil
}

// admin runs one statement on a connection of its own.
func admin(ctx context.Context, pgURL, stmt string) error {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, stmt)
	return err
}

// withSearchPath adds a search_path parameter to a PostgreSQL URL or
// key=value connection string, so every table lands in schema.
func withSearchPath(dsn, schema string) (string, error) {
	if !strings.Contains(dsn, "://") {
		return strings.TrimSpace(dsn + " search_path=" + schema), nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse -postgres URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// WaitFor polls cond until it holds, ctx is done, or ten seconds pass.
func WaitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Settle steps relay with Drain until nothing is pending, messages waiting
// for a retry included, and fails if a message is parked. Examples that
// narrate each hop use it; a service runs the relay with Run instead.
func Settle(ctx context.Context, relay *outbox.Relay) error {
	return WaitFor(ctx, "an empty outbox", func() (bool, error) {
		if _, err := relay.Drain(ctx); err != nil {
			return false, err
		}
		st, err := relay.Outbox().Stats(ctx)
		if err != nil {
			return false, err
		}
		if st.Parked > 0 {
			return false, fmt.Errorf("%d messages parked", st.Parked)
		}
		return st.Pending == 0, nil
	})
}

// Money formats an amount in cents, such as 2500 as "25.00".
func Money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}
