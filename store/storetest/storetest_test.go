package storetest_test

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
)

// migrated reports whether st's outbox table exists and is empty.
func migrated(t *testing.T, st *store.Store) {
	t.Helper()
	var n int
	if err := st.DB().QueryRow("SELECT COUNT(*) FROM " + st.Table("outbox")).Scan(&n); err != nil {
		t.Fatalf("the outbox table is not there: %v", err)
	}
	if n != 0 {
		t.Fatalf("a fresh database holds %d outbox rows", n)
	}
}

func TestOpenFollowsTheEnvironment(t *testing.T) {
	st := storetest.Open(t)
	want := storetest.SQLite
	switch {
	case os.Getenv(storetest.EnvPostgres) != "":
		want = storetest.Postgres
	case os.Getenv(storetest.EnvMySQL) != "":
		want = storetest.MySQL
	}
	if got := st.Dialect().Name(); got != want {
		t.Fatalf("dialect %q, want %q", got, want)
	}
	migrated(t, st)
}

func TestEach(t *testing.T) {
	var ran []string
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		migrated(t, st)
		ran = append(ran, st.Dialect().Name())
	})
	if got, want := strings.Join(ran, ","), strings.Join(storetest.Available(), ","); got != want {
		t.Fatalf("ran on %s, want %s", got, want)
	}
}

func TestSQLiteIsAFileWithTheRecommendedOptions(t *testing.T) {
	db := storetest.New(t, storetest.Config{Dialect: storetest.SQLite})
	if !strings.HasPrefix(db.DSN, "file:") || !strings.Contains(db.DSN, "_journal_mode=WAL") || !strings.Contains(db.DSN, "_txlock=immediate") {
		t.Fatalf("DSN %q is not a file with keel's recommended options", db.DSN)
	}
	var mode string
	if err := db.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode %q, want wal", mode)
	}
}

func TestUnmigrated(t *testing.T) {
	db := storetest.New(t, storetest.Config{Dialect: storetest.SQLite, Unmigrated: true})
	if err := db.CheckSchema(context.Background()); err == nil {
		t.Fatal("CheckSchema passed on a database that was not to be migrated")
	}
}

func TestUnknownDialect(t *testing.T) {
	ft := &fatalT{TB: t}
	func() {
		defer func() { _ = recover() }()
		storetest.New(ft, storetest.Config{Dialect: "oracle"})
	}()
	if !strings.Contains(ft.msg, `Config.Dialect is "oracle"`) || !strings.Contains(ft.msg, "storetest.Postgres") {
		t.Fatalf("message %q does not name the field and the choices", ft.msg)
	}
}

// fatalT records the message of Fatal instead of ending the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Fatal(args ...any) {
	f.msg = strings.TrimSpace(strings.Join(strings.Fields(strings.TrimSpace(sprint(args...))), " "))
	panic("fatal")
}

func sprint(args ...any) string {
	var b strings.Builder
	for _, a := range args {
		if err, ok := a.(error); ok {
			b.WriteString(err.Error())
		} else if s, ok := a.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func TestPostgresSchemaIsDroppedAtCleanup(t *testing.T) {
	base := os.Getenv(storetest.EnvPostgres)
	var dsn string
	t.Run("test", func(t *testing.T) {
		db := storetest.New(t, storetest.Config{Dialect: storetest.Postgres})
		migrated(t, db.Store)
		dsn = db.DSN
	})
	if base == "" {
		t.Skip("set " + storetest.EnvPostgres)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path")
	if !strings.HasPrefix(schema, "keel_test_") {
		t.Fatalf("search_path %q is not a test schema", schema)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s outlived its test", schema)
	}
}

func TestMySQLDatabaseIsDroppedAtCleanup(t *testing.T) {
	base := os.Getenv(storetest.EnvMySQL)
	var dsn string
	t.Run("test", func(t *testing.T) {
		db := storetest.New(t, storetest.Config{Dialect: storetest.MySQL})
		migrated(t, db.Store)
		dsn = db.DSN
	})
	if base == "" {
		t.Skip("set " + storetest.EnvMySQL)
	}
	cfg, err := mysqldriver.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.DBName, "keel_test_") {
		t.Fatalf("database %q is not a test database", cfg.DBName)
	}
	admin, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", cfg.DBName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s outlived its test", cfg.DBName)
	}
}

func TestLoggerWritesToTheTestLog(t *testing.T) {
	rec := &logT{TB: t}
	log := storetest.Logger(rec)
	log.With("relay", "r1").Warn("lease lost", "n", 3)
	log.Info("hidden")
	if len(rec.lines) != 1 || rec.lines[0] != "level=WARN msg=\"lease lost\" relay=r1 n=3" {
		t.Fatalf("logged %q", rec.lines)
	}
}

type logT struct {
	testing.TB
	lines []string
}

func (l *logT) Log(args ...any) { l.lines = append(l.lines, sprint(args...)) }
