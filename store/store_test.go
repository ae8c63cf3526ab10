package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

func TestOpenChecksItsArguments(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name string
		db   *sql.DB
		d    store.Dialect
		opts store.Options
		want error
		says string
	}{
		{"nil db", nil, sqlite.Dialect(), store.Options{}, store.ErrInvalidConfig, "nil *sql.DB"},
		{"nil dialect", db, nil, store.Options{}, store.ErrInvalidConfig, "sqlite.Dialect()"},
		{"injected prefix", db, sqlite.Dialect(), store.Options{TablePrefix: "x; DROP TABLE y; --"}, store.ErrBadIdentifier, "TablePrefix"},
		{"prefix with a dot", db, sqlite.Dialect(), store.Options{TablePrefix: "app.keel_"}, store.ErrBadIdentifier, "TablePrefix"},
		{"long prefix", db, sqlite.Dialect(), store.Options{TablePrefix: strings.Repeat("p", 41)}, store.ErrBadIdentifier, "at most 40"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Open(tc.db, tc.d, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Open = %v, %v; want an error matching %v that says %q", st, err, tc.want, tc.says)
			}
		})
	}
	st, err := store.Open(db, sqlite.Dialect(), store.Options{TablePrefix: "app_"})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Table("outbox"); got != "app_outbox" {
		t.Errorf("Table(outbox) = %q, want app_outbox", got)
	}
	if st.Logger() == nil || st.DB() != db || st.Dialect().Name() != "sqlite" {
		t.Errorf("store accessors: logger %v, db %v, dialect %v", st.Logger(), st.DB(), st.Dialect())
	}
}

// TestMigrate checks that migrating is idempotent, safe from several
// handles at once, and leaves a schema CheckSchema accepts.
func TestMigrate(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s)
		if err := db.CheckSchema(ctx); !errors.Is(err, store.ErrNotMigrated) {
			t.Fatalf("CheckSchema before Migrate = %v, want ErrNotMigrated", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			other := testdb.Reopen(t, s, db.DSN)
			wg.Go(func() { errs <- other.Migrate(ctx) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Migrate: %v", err)
			}
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if err := db.CheckSchema(ctx); err != nil {
			t.Fatalf("CheckSchema after Migrate: %v", err)
		}
		ms, err := db.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("migrations")); n != len(ms) {
			t.Errorf("%d versions recorded, want %d (one per migration, however many migrators ran)", n, len(ms))
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("outbox_leases")); n != 64 {
			t.Errorf("%d lease rows, want 64", n)
		}
	})
}

// TestCheckSchemaNamesWhatIsMissing removes parts of a migrated schema and
// expects CheckSchema to say which.
func TestCheckSchemaNamesWhatIsMissing(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		for _, tc := range []struct {
			name, sql, says string
		}{
			{"missing table", "DROP TABLE keel_inbox", "keel_inbox"},
			{"missing column", "ALTER TABLE keel_outbox DROP COLUMN causation_id", "keel_outbox"},
			{"unrecorded migration", "DELETE FROM keel_migrations WHERE version = 2", "0002_"},
			{"missing lease rows", "DELETE FROM keel_outbox_leases WHERE partition_no > 9", "one per partition"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				db := testdb.Open(t, s)
				if _, err := db.SQL().Exec(tc.sql); err != nil {
					t.Fatal(err)
				}
				err := db.CheckSchema(ctx)
				if !errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("CheckSchema = %v; want ErrNotMigrated naming %q", err, tc.says)
				}
				if tc.name != "missing column" {
					// Migrate repairs what a migration creates idempotently.
					if _, err := db.SQL().Exec("DELETE FROM keel_migrations"); err != nil {
						t.Fatal(err)
					}
					if err := db.Migrate(ctx); err != nil {
						t.Fatal(err)
					}
					if err := db.CheckSchema(ctx); err != nil {
						t.Fatalf("CheckSchema after re-running every migration: %v", err)
					}
				}
			})
		}
	})
}

// TestMigrationsWithGoose applies the exported migrations with goose, as a
// team that owns its migrations would, then checks that keel accepts the
// schema and that its own Migrate has nothing left to do.
func TestMigrationsWithGoose(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s, store.Options{TablePrefix: "app_", Logger: testdb.Logger()})
		fsys, err := db.MigrationFS(store.Goose)
		if err != nil {
			t.Fatal(err)
		}
		dialect := goose.DialectSQLite3
		switch {
		case s.IsPostgres():
			dialect = goose.DialectPostgres
		case s.IsMySQL():
			dialect = goose.DialectMySQL
		}
		p, err := goose.NewProvider(dialect, db.SQL(), fsys)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Up(ctx)
		if err != nil {
			t.Fatalf("goose up: %v", err)
		}
		ms, err := db.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != len(ms) {
			t.Fatalf("goose applied %d migrations, keel ships %d", len(res), len(ms))
		}
		if err := db.CheckSchema(ctx); err != nil {
			t.Fatalf("CheckSchema after goose: %v", err)
		}
		before := testdb.Count(t, db, "SELECT COUNT(*) FROM app_migrations")
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate after goose: %v", err)
		}
		if after := testdb.Count(t, db, "SELECT COUNT(*) FROM app_migrations"); after != before {
			t.Errorf("Migrate after goose recorded %d more versions; it should find them all applied", after-before)
		}
	})
}

// TestMigrationFSLayouts checks the file names and content of each layout.
func TestMigrationFSLayouts(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(db, sqlite.Dialect(), store.Options{TablePrefix: "app_"})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := st.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		format store.MigrationFormat
		suffix string
		head   string
	}{
		{store.Plain, ".sql", "CREATE TABLE IF NOT EXISTS app_migrations"},
		{store.Goose, ".sql", "-- +goose Up\n"},
		{store.GolangMigrate, ".up.sql", "CREATE TABLE IF NOT EXISTS app_migrations"},
	} {
		fsys, err := st.MigrationFS(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range ms {
			name := m.Name + tc.suffix
			names = append(names, name)
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Fatalf("format %d: %v", tc.format, err)
			}
			text := string(b)
			if !strings.HasPrefix(text, tc.head) || !strings.Contains(text, strings.TrimSpace(m.SQL)) ||
				!strings.Contains(text, "INSERT INTO app_migrations") || strings.Contains(text, "{{p}}") || strings.Contains(text, "{p}") {
				t.Errorf("format %d, %s:\n%s", tc.format, name, text)
			}
		}
		entries, err := fs.ReadDir(fsys, ".")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if diff := cmp.Diff(names, got); diff != "" {
			t.Errorf("format %d files (-want +got):\n%s", tc.format, diff)
		}
	}
	if _, err := st.MigrationFS(store.MigrationFormat(9)); !errors.Is(err, store.ErrInvalidConfig) {
		t.Errorf("unknown format: %v", err)
	}
}
