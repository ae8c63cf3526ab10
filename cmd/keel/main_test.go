package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
)

// The tests run keel as a subprocess: the test binary re-executes itself
// with envChild set, and then runs main with the arguments it was given.
const envChild = "KEEL_CLI_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// result is what one run of keel did.
type result struct {
	stdout, stderr string
	code           int
}

// keel runs the command with args and waits for it, at most a minute.
func keel(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := keelCmd(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("keel %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errOut.String(), code}
}

// keelCmd returns the command running keel with args.
func keelCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"=1", "KEEL_DSN=")
	return cmd
}

// ok runs keel and fails the test unless it exits 0.
func ok(t testing.TB, args ...string) string {
	t.Helper()
	r := keel(t, args...)
	if r.code != 0 {
		t.Fatalf("keel %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs keel, wants exit status code and one line on standard error
// containing every one of want.
func fails(t testing.TB, code int, want []string, args ...string) {
	t.Helper()
	r := keel(t, args...)
	if r.code != code {
		t.Errorf("keel %s: exit %d, want %d\nstderr: %s", strings.Join(args, " "), r.code, code, r.stderr)
	}
	first, _, _ := strings.Cut(r.stderr, "\n")
	for _, w := range want {
		if !strings.Contains(first, w) {
			t.Errorf("keel %s: stderr %q does not say %q", strings.Join(args, " "), r.stderr, w)
		}
	}
}

// decode runs keel with --json added and decodes its output into v.
func decode(t testing.TB, v any, args ...string) {
	t.Helper()
	out := ok(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("keel %s --json printed %q: %v", strings.Join(args, " "), out, err)
	}
}

// setups are the driver setups the command runs against: SQLite files
// (the command always uses the pure-Go driver), PostgreSQL and MariaDB.
var setups = []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPgx, testdb.MariaDB}

// database is a fresh, empty database for the command, with the DSN the
// command takes and a store the test uses to check on it.
type database struct {
	dsn string // in the command's form
	st  *store.Store
	db  testdb.DB
}

func freshDatabase(t *testing.T, s testdb.Setup) database { return openDatabase(t, s) }

func openDatabase(t testing.TB, s testdb.Setup) database {
	t.Helper()
	db := testdb.OpenEmpty(t, s)
	return database{dsn: cliDSN(t, s, db.DSN), st: db.Store, db: db}
}

// cliDSN turns a test DSN into the form the command takes.
func cliDSN(t testing.TB, s testdb.Setup, native string) string {
	t.Helper()
	switch {
	case s.IsMySQL():
		cfg, err := gomysql.ParseDSN(native)
		if err != nil {
			t.Fatal(err)
		}
		u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
		if cfg.Passwd != "" {
			u.User = url.UserPassword(cfg.User, cfg.Passwd)
		} else {
			u.User = url.User(cfg.User)
		}
		return u.String()
	case s.IsPostgres():
		return native
	}
	path, _, _ := strings.Cut(strings.TrimPrefix(native, "file:"), "?")
	return "sqlite:" + path
}
