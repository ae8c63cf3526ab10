package storetest

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

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/mysql"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
	"github.com/keel-go/keel/store/sqlite"
)

// EnvPostgres names the environment variable holding the URL of a
// PostgreSQL database in which tests create their schemas.
const EnvPostgres = "KEEL_TEST_POSTGRES"

// EnvMySQL names the environment variable holding the data source name of
// a MySQL or MariaDB server on which tests create their databases, in
// go-sql-driver/mysql's form such as root@tcp(127.0.0.1:3306)/test.
const EnvMySQL = "KEEL_TEST_MYSQL"

// The dialect names Config.Dialect accepts, as store.Dialect's Name returns
// them.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	MySQL    = "mysql"
)

// Config says which database New opens and how. The zero value opens the
// dialect the environment chooses, migrated, with a store logging to the
// test's log.
type Config struct {
	// Dialect is SQLite, Postgres or MySQL. If empty, it is Postgres when
	// KEEL_TEST_POSTGRES is set, else MySQL when KEEL_TEST_MYSQL is set,
	// else SQLite. Naming Postgres or MySQL while its variable is unset
	// skips the test.
	Dialect string
	// Options are passed to store.Open. If Options.Logger is nil, the
	// store logs to the test's log (t.Log) at Warn level and above, until
	// the test ends; if Options.Listener is nil on PostgreSQL, a pgxlisten
	// listener wakes the relays.
	Options store.Options
	// Unmigrated leaves the database without keel's tables, for tests of
	// migrations themselves.
	Unmigrated bool
}

// DB is a fresh test database and keel's store over it.
type DB struct {
	*store.Store
	// Driver and DSN reach the same database from another handle or
	// process: sql.Open(Driver, DSN). On PostgreSQL, Driver is "pgx"
	// (registered by pgx's stdlib package) and DSN a URL whose search_path
	// selects the test's schema.
	Driver string
	DSN    string
}

// Open returns a store over a fresh database with keel's tables, in the
// dialect the environment chooses (see Config.Dialect). The database and
// its handle go away when the test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	return New(t, Config{}).Store
}

// New returns a fresh database as cfg describes. It fails the test if the
// database cannot be created, opened or migrated.
func New(t testing.TB, cfg Config) DB {
	t.Helper()
	dialectName, err := pick(cfg.Dialect)
	if err != nil {
		t.Fatal(err)
	}
	var (
		d      store.Dialect
		driver string
		dsn    string
	)
	switch dialectName {
	case Postgres:
		d, driver, dsn = postgres.Dialect(), "pgx", PostgresSchema(t, require(t, EnvPostgres))
	case MySQL:
		d, driver, dsn = mysql.Dialect(), "mysql", MySQLDatabase(t, require(t, EnvMySQL))
	default:
		d, driver, dsn = sqlite.Dialect(), SQLiteDriver, SQLiteFile(t)
	}
	db := openSQL(t, driver, dsn)
	opts := cfg.Options
	if opts.Logger == nil {
		opts.Logger = Logger(t)
	}
	if opts.Listener == nil && dialectName == Postgres {
		l := pgxlisten.New(db)
		l.Logger = opts.Logger
		opts.Listener = l
	}
	st, err := store.Open(db, d, opts)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	if !cfg.Unmigrated {
		if err := st.Migrate(context.Background()); err != nil {
			t.Fatalf("storetest: migrate the %s test database: %v", dialectName, err)
		}
	}
	return DB{Store: st, Driver: driver, DSN: dsn}
}

// Each runs fn as a subtest, named after the dialect, on a fresh migrated
// database of every dialect the environment offers: SQLite always,
// PostgreSQL when KEEL_TEST_POSTGRES is set and MySQL when KEEL_TEST_MYSQL
// is.
func Each(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Helper()
	for _, name := range Available() {
		t.Run(name, func(t *testing.T) { fn(t, New(t, Config{Dialect: name}).Store) })
	}
}

// Available returns the dialects the environment offers, SQLite first.
func Available() []string {
	names := []string{SQLite}
	if os.Getenv(EnvPostgres) != "" {
		names = append(names, Postgres)
	}
	if os.Getenv(EnvMySQL) != "" {
		names = append(names, MySQL)
	}
	return names
}

func pick(name string) (string, error) {
	switch name {
	case SQLite, Postgres, MySQL:
		return name, nil
	case "":
		if os.Getenv(EnvPostgres) != "" {
			return Postgres, nil
		}
		if os.Getenv(EnvMySQL) != "" {
			return MySQL, nil
		}
		return SQLite, nil
	}
	return "", fmt.Errorf("storetest: Config.Dialect is %q; use storetest.SQLite, storetest.Postgres, storetest.MySQL, or empty to follow the environment", name)
}

// require returns the environment variable name, or skips the test.
func require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("storetest: %s is not set; set it to run this test on that database", name)
	}
	return v
}

// SQLiteFile returns the data source name of a new SQLite file in the
// test's temporary directory, with sqlite.DSNOptions.
func SQLiteFile(t testing.TB) string {
	t.Helper()
	return sqlite.FileDSN(filepath.Join(t.TempDir(), "keel.db"))
}

// PostgresSchema creates a schema of its own for the test in the
// PostgreSQL database at baseURL (a URL or key=value string), drops it with
// everything in it when the test ends, and returns baseURL with a
// search_path selecting it.
func PostgresSchema(t testing.TB, baseURL string) string {
	t.Helper()
	schema := "keel_test_" + randomHex(t, 6)
	exec(t, "pgx", baseURL, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { cleanupExec(t, "pgx", baseURL, "DROP SCHEMA "+schema+" CASCADE") })
	return withSearchPath(baseURL, schema)
}

// MySQLDatabase creates a database of its own for the test on the MySQL or
// MariaDB server at baseDSN (its database name, if any, is ignored), with
// the utf8mb4 character set and binary collation, drops it when the test
// ends, and returns its data source name with mysql.DSNOptions.
func MySQLDatabase(t testing.TB, baseDSN string) string {
	t.Helper()
	cfg, err := mysqldriver.ParseDSN(baseDSN)
	if err != nil {
		t.Fatalf("storetest: %s: %v", EnvMySQL, err)
	}
	cfg.DBName = ""
	server := cfg.FormatDSN()
	name := "keel_test_" + randomHex(t, 6)
	exec(t, "mysql", server, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
	t.Cleanup(func() { cleanupExec(t, "mysql", server, "DROP DATABASE "+name) })
	cfg.DBName = name
	dsn := cfg.FormatDSN()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + mysql.DSNOptions
}

// openSQL opens a handle closed when the test ends. PostgreSQL goes
// through a pgxpool, as stdlib.OpenDBFromPool users do.
func openSQL(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	var db *sql.DB
	if driver == "pgx" {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatalf("storetest: %v", err)
		}
		t.Cleanup(pool.Close)
		db = stdlib.OpenDBFromPool(pool)
	} else {
		var err error
		if db, err = sql.Open(driver, dsn); err != nil {
			t.Fatalf("storetest: %v", err)
		}
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("storetest: reach the test database: %v", err)
	}
	return db
}

// exec runs one statement on a handle of its own.
func exec(t testing.TB, driver, dsn, stmt string) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err == nil {
		defer db.Close()
		_, err = db.Exec(stmt)
	}
	if err != nil {
		t.Fatalf("storetest: %s: %v", stmt, err)
	}
}

// cleanupExec is exec for cleanups, which report rather than stop.
func cleanupExec(t testing.TB, driver, dsn, stmt string) {
	db, err := sql.Open(driver, dsn)
	if err == nil {
		defer db.Close()
		_, err = db.Exec(stmt)
	}
	if err != nil {
		t.Errorf("storetest: clean up: %s: %v", stmt, err)
	}
}

// withSearchPath adds a search_path run-time parameter to a PostgreSQL URL
// or key=value string.
func withSearchPath(base, schema string) string {
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

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return hex.EncodeToString(b)
}
