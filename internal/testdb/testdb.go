// Package testdb opens real databases for keel's tests: a SQLite file in a
// temporary directory, and PostgreSQL from KEEL_TEST_POSTGRES in a schema of
// its own that is dropped when the test ends.
//
// Without KEEL_TEST_POSTGRES the PostgreSQL tests skip and say why; when CI
// is set they fail instead, so a CI run can never pass without PostgreSQL.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keel-go/keel/internal/dialect"

	_ "github.com/lib/pq"           // PostgreSQL driver
	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

// EnvPostgres names the environment variable holding a PostgreSQL URL.
const EnvPostgres = "KEEL_TEST_POSTGRES"

// SQLiteDSNOptions are the connection options keel recommends for SQLite:
// WAL, a busy timeout, and transactions that take the write lock at BEGIN,
// which turns lock-upgrade deadlocks into orderly waits.
const SQLiteDSNOptions = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=on&_synchronous=NORMAL"

// Dialects lists the dialects every conformance test runs against.
var Dialects = []string{dialect.SQLite, dialect.Postgres}

// Each runs fn as a subtest per dialect, with a fresh migrated database.
func Each(t *testing.T, fn func(t *testing.T, db *sql.DB)) {
	t.Helper()
	for _, name := range Dialects {
		t.Run(name, func(t *testing.T) {
			fn(t, Open(t, name))
		})
	}
}

// Open returns a fresh, migrated database of the named dialect.
func Open(t testing.TB, name string) *sql.DB {
	t.Helper()
	db := OpenEmpty(t, name)
	d, err := dialect.ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background(), db, ""); err != nil {
		t.Fatalf("migrate %s: %v", name, err)
	}
	return db
}

// OpenEmpty returns a fresh database with no keel tables.
func OpenEmpty(t testing.TB, name string) *sql.DB {
	t.Helper()
	dsn := DSN(t, name)
	driver := "sqlite3"
	if name == dialect.Postgres {
		driver = "postgres"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("ping %s: %v", name, err)
	}
	return db
}

// DSN returns a data source name for a fresh database of the named dialect:
// a new SQLite file, or a new PostgreSQL schema selected by search_path.
// Other processes (a re-executed test binary) can open the same DSN.
func DSN(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case dialect.SQLite:
		return "file:" + filepath.Join(t.TempDir(), "keel.db") + "?" + SQLiteDSNOptions
	case dialect.Postgres:
		base := PostgresURL(t)
		schema := "keel_test_" + randomHex(6)
		admin, err := sql.Open("postgres", base)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatalf("create schema: %v", err)
		}
		t.Cleanup(func() {
			admin, err := sql.Open("postgres", base)
			if err != nil {
				return
			}
			defer admin.Close()
			_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		})
		return WithSearchPath(base, schema)
	}
	t.Fatalf("unknown dialect %q", name)
	return ""
}

// PostgresURL returns KEEL_TEST_POSTGRES, skipping the test when it is
// unset, or failing it when CI is set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgres)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set but CI is: PostgreSQL tests must run in CI", EnvPostgres)
		}
		t.Skipf("PostgreSQL tests skipped: set %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable", EnvPostgres, EnvPostgres)
	}
	return u
}

// WithSearchPath adds a search_path run-time parameter to a PostgreSQL URL.
func WithSearchPath(base, schema string) string {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		sep := " "
		if strings.TrimSpace(base) == "" {
			sep = ""
		}
		return base + sep + "search_path=" + schema
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprint("testdb: ", err))
	}
	return hex.EncodeToString(b)
}
