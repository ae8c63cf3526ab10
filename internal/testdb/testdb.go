// Package testdb opens real databases for keel's tests, through every
// driver keel supports: SQLite files in a temporary directory through
// mattn/go-sqlite3 and modernc.org/sqlite, and PostgreSQL from
// KEEL_TEST_POSTGRES, in a schema of its own dropped when the test ends,
// through lib/pq and through pgx.
//
// Without KEEL_TEST_POSTGRES the PostgreSQL setups skip and say why; when CI
// is set they fail instead, so a CI run can never pass without PostgreSQL.
// Built without cgo, the mattn setup skips.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/mysql"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
	"github.com/keel-go/keel/store/postgres/pqlisten"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/store/storetest"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
	_ "github.com/lib/pq"              // driver "postgres"
	_ "github.com/mattn/go-sqlite3"    // driver "sqlite3"
	_ "modernc.org/sqlite"             // driver "sqlite"
)

// EnvPostgres names the environment variable holding a PostgreSQL URL.
const EnvPostgres = storetest.EnvPostgres

// EnvMySQL names the environment variable holding a MySQL or MariaDB data
// source name in go-sql-driver/mysql's form, such as
// root@tcp(127.0.0.1:3306)/test.
const EnvMySQL = storetest.EnvMySQL

// Setup is one way of reaching a database: a dialect through a driver.
type Setup struct {
	// Name names the setup in subtests: "sqlite-mattn", "sqlite-modernc",
	// "postgres-pq" or "postgres-pgx".
	Name string
	// Dialect is "sqlite" or "postgres".
	Dialect string
	// Driver is the database/sql driver name.
	Driver string
}

// The four setups every conformance test runs on.
var (
	SQLiteMattn   = Setup{"sqlite-mattn", "sqlite", "sqlite3"}
	SQLiteModernc = Setup{"sqlite-modernc", "sqlite", "sqlite"}
	PostgresPQ    = Setup{"postgres-pq", "postgres", "postgres"}
	PostgresPgx   = Setup{"postgres-pgx", "postgres", "pgx"}
	MariaDB       = Setup{"mariadb", "mysql", "mysql"}
	Setups        = []Setup{SQLiteMattn, SQLiteModernc, PostgresPQ, PostgresPgx, MariaDB}
)

// IsPostgres reports whether the setup reaches PostgreSQL.
func (s Setup) IsPostgres() bool { return s.Dialect == "postgres" }

// IsMySQL reports whether the setup reaches MySQL or MariaDB.
func (s Setup) IsMySQL() bool { return s.Dialect == "mysql" }

// StoreDialect returns the keel dialect of the setup.
func (s Setup) StoreDialect() store.Dialect {
	switch s.Dialect {
	case "postgres":
		return postgres.Dialect()
	case "mysql":
		return mysql.Dialect()
	}
	return sqlite.Dialect()
}

// DB is a test database: a handle, the store over it, and how to reach it
// again from another handle or process.
type DB struct {
	*store.Store
	Setup Setup
	// DSN reaches the same database; Open(t, Setup, DSN) opens another
	// handle on it.
	DSN string
}

// SQL returns the database handle.
func (db DB) SQL() *sql.DB { return db.Store.DB() }

// Each runs fn as a subtest per setup, with a fresh migrated database.
func Each(t *testing.T, fn func(t *testing.T, db DB)) {
	t.Helper()
	for _, s := range Setups {
		t.Run(s.Name, func(t *testing.T) { fn(t, Open(t, s)) })
	}
}

// EachSetup runs fn as a subtest per setup, giving it only the setup, for
// tests that open their databases themselves.
func EachSetup(t *testing.T, fn func(t *testing.T, s Setup)) {
	t.Helper()
	for _, s := range Setups {
		t.Run(s.Name, func(t *testing.T) {
			Require(t, s)
			fn(t, s)
		})
	}
}

// Require skips the test when the setup cannot run here (no cgo for mattn,
// no KEEL_TEST_POSTGRES outside CI).
func Require(t testing.TB, s Setup) {
	t.Helper()
	if s == SQLiteMattn && !cgoEnabled {
		t.Skip("mattn/go-sqlite3 needs cgo; this binary was built with CGO_ENABLED=0")
	}
	if s.IsPostgres() {
		PostgresURL(t)
	}
	if s.IsMySQL() {
		MySQLDSN(t)
	}
}

// Open returns a fresh, migrated database of the setup.
func Open(t testing.TB, s Setup, opts ...store.Options) DB {
	t.Helper()
	db := OpenEmpty(t, s, opts...)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", s.Name, err)
	}
	return db
}

// OpenEmpty returns a fresh database of the setup with no keel tables.
func OpenEmpty(t testing.TB, s Setup, opts ...store.Options) DB {
	t.Helper()
	Require(t, s)
	return Reopen(t, s, DSN(t, s), opts...)
}

// Reopen opens another handle on the database at dsn, with a store over
// it. Without options the store logs through Logger and, on PostgreSQL,
// listens through the setup's driver.
func Reopen(t testing.TB, s Setup, dsn string, opts ...store.Options) DB {
	t.Helper()
	Require(t, s)
	sqldb := OpenSQL(t, s, dsn)
	var o store.Options
	if len(opts) > 0 {
		o = opts[0]
	} else {
		o = store.Options{Logger: Logger(), Listener: Listener(s, sqldb, dsn)}
	}
	st, err := store.Open(sqldb, s.StoreDialect(), o)
	if err != nil {
		t.Fatal(err)
	}
	return DB{Store: st, Setup: s, DSN: dsn}
}

// Listener returns the PostgreSQL listener of the setup's driver, or nil on
// SQLite.
func Listener(s Setup, db *sql.DB, dsn string) store.Listener {
	switch s {
	case PostgresPQ:
		l := pqlisten.New(dsn)
		l.Logger = Logger()
		return l
	case PostgresPgx:
		l := pgxlisten.New(db)
		l.Logger = Logger()
		return l
	}
	return nil
}

// OpenSQL opens a database/sql handle on dsn with the setup's driver, and
// closes it when the test ends. The pgx setup goes through a pgxpool, as
// stdlib.OpenDBFromPool users do.
func OpenSQL(t testing.TB, s Setup, dsn string) *sql.DB {
	t.Helper()
	var db *sql.DB
	if s.Driver == "pgx" {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		db = stdlib.OpenDBFromPool(pool)
	} else {
		var err error
		if db, err = sql.Open(s.Driver, dsn); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("ping %s: %v", s.Name, err)
	}
	return db
}

// DSN returns a data source name for a fresh database of the setup: a new
// SQLite file, a new PostgreSQL schema selected by search_path, or a new
// MySQL database, made and dropped as package storetest makes and drops
// them. Other handles and processes can open the same DSN.
func DSN(t testing.TB, s Setup) string {
	t.Helper()
	switch {
	case s.IsMySQL():
		return storetest.MySQLDatabase(t, MySQLDSN(t))
	case s.IsPostgres():
		return storetest.PostgresSchema(t, PostgresURL(t))
	}
	return storetest.SQLiteFile(t)
}

// PostgresURL returns KEEL_TEST_POSTGRES, skipping the test when it is
// unset, or failing it when CI is set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return fromEnv(t, EnvPostgres, "PostgreSQL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// MySQLDSN returns KEEL_TEST_MYSQL, skipping the test when it is unset, or
// failing it when CI is set.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	return fromEnv(t, EnvMySQL, "MariaDB", "'root@tcp(127.0.0.1:3306)/test'")
}

// fromEnv returns the environment variable name, or skips the test (fails
// it when CI is set, so a CI run cannot pass without the database).
func fromEnv(t testing.TB, name, what, example string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set but CI is: %s tests must run in CI", name, what)
		}
		t.Skipf("%s tests skipped: set %s, e.g. %s=%s", what, name, name, example)
	}
	return v
}

// SetupNamed returns the setup called name, for a re-executed test binary
// told which one to use.
func SetupNamed(name string) (Setup, error) {
	for _, s := range Setups {
		if s.Name == name {
			return s, nil
		}
	}
	return Setup{}, fmt.Errorf("testdb: no setup named %q", name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprint("testdb: ", err))
	}
	return hex.EncodeToString(b)
}
