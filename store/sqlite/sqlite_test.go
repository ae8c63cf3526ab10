package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store/sqlite"
)

// TestClassify provokes each kind of error keel handles, through each
// driver, and checks the dialect names it without importing either.
func TestClassify(t *testing.T) {
	for _, s := range []testdb.Setup{testdb.SQLiteMattn, testdb.SQLiteModernc} {
		t.Run(s.Name, func(t *testing.T) {
			db := testdb.Open(t, s)
			d, sqldb := db.Dialect(), db.SQL()
			exec := func(q string) error {
				_, err := sqldb.Exec(q)
				return err
			}
			for _, q := range []string{
				"CREATE TABLE parents (id TEXT PRIMARY KEY)",
				"CREATE TABLE kids (id TEXT PRIMARY KEY, parent TEXT REFERENCES parents (id), ssn TEXT UNIQUE)",
				"INSERT INTO parents VALUES ('p1')",
				"INSERT INTO kids VALUES ('k1', 'p1', '123')",
			} {
				if err := exec(q); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				name       string
				err        error
				want       dialect.Class
				constraint string
			}{
				{"unique", exec("INSERT INTO kids VALUES ('k2', 'p1', '123')"), dialect.Unique, "kids.ssn"},
				{"primary key", exec("INSERT INTO kids VALUES ('k1', 'p1', '999')"), dialect.Unique, "kids.id"},
				{"foreign key", exec("INSERT INTO kids VALUES ('k3', 'nobody', '456')"), dialect.ForeignKey, ""},
				{"missing table", exec("INSERT INTO nowhere VALUES (1)"), dialect.MissingTable, ""},
				{"other", errors.New("boom"), dialect.Other, ""},
			} {
				if got := d.Classify(tc.err); got != tc.want {
					t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
				}
				if got := d.ConstraintName(tc.err); got != tc.constraint {
					t.Errorf("%s: ConstraintName(%v) = %q, want %q", tc.name, tc.err, got, tc.constraint)
				}
			}
			if got := d.Classify(busy(t, s)); got != dialect.Transient {
				t.Errorf("a busy database classified %v, want Transient", got)
			}
		})
	}
}

// busy holds the write lock on one connection and returns the error of a
// second writer that will not wait for it.
func busy(t *testing.T, s testdb.Setup) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func(timeout string) *sql.DB {
		db, err := sql.Open(s.Driver, "file:"+path+"?_journal_mode=WAL&_txlock=immediate&_busy_timeout="+timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	holder, waiter := open("10000"), open("0")
	if _, err := holder.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	tx, err := holder.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec("INSERT INTO t VALUES (2)")
	if err == nil {
		t.Fatal("a second writer got in while the first held the lock")
	}
	return err
}

func TestFileDSN(t *testing.T) {
	if got, want := sqlite.FileDSN("/data/app.db"), "file:/data/app.db?"+sqlite.DSNOptions; got != want {
		t.Errorf("FileDSN = %q, want %q", got, want)
	}
}
