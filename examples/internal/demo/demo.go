// Package demo is the plumbing the examples share: the command-line flag,
// a fresh database for every run, and money formatting. It is not part of
// keel's API; each example's run function shows the parts that are.
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

	_ "github.com/lib/pq"           // PostgreSQL driver
	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

// SQLiteOptions are the connection options keel recommends for SQLite:
// write-ahead logging so readers never block the writer, a busy timeout so
// a second writer waits instead of failing, transactions that take the
// write lock at BEGIN (no lock upgrades, so no deadlocks), foreign keys
// enforced, and NORMAL synchronous mode, which is durable under WAL except
// for the last commits before a power loss.
const SQLiteOptions = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=on&_synchronous=NORMAL"

// SQLiteDSN returns the data source name of a database file in dir.
func SQLiteDSN(dir string) string {
	return "file:" + filepath.Join(dir, "keel.db") + "?" + SQLiteOptions
}

// Driver returns the database/sql driver name for dsn: "postgres" for a
// PostgreSQL URL or key=value string, "sqlite3" for anything else.
func Driver(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") ||
		strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=") {
		return "postgres"
	}
	return "sqlite3"
}

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

func prepare(ctx context.Context, pgURL string) (dsn string, cleanup func(), err error) {
	if pgURL == "" {
		dir, err := os.MkdirTemp("", "keel-example-")
		if err != nil {
			return "", nil, err
		}
		return SQLiteDSN(dir), func() { os.RemoveAll(dir) }, nil
	}
	admin, err := sql.Open("postgres", pgURL)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "keel_example_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	dsn, err = withSearchPath(pgURL, schema)
	if err != nil {
		admin.Close()
		return "", nil, err
	}
	return dsn, func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	}, nil
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

// Money formats an amount in cents, such as 2500 as "25.00".
func Money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}
