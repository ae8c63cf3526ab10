package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
)

var setups = []testdb.Setup{testdb.PostgresPQ, testdb.PostgresPgx}

func each(t *testing.T, fn func(t *testing.T, db testdb.DB)) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) { fn(t, testdb.Open(t, s)) })
	}
}

// TestClassify provokes each kind of error keel handles, through each
// driver, and checks the dialect names it without importing either.
func TestClassify(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		d, sqldb := db.Dialect(), db.SQL()
		exec := func(q string, args ...any) error {
			_, err := sqldb.ExecContext(ctx, d.Rebind(q), args...)
			return err
		}
		for _, q := range []string{
			"CREATE TABLE parents (id TEXT PRIMARY KEY)",
			"CREATE TABLE kids (id TEXT PRIMARY KEY, parent TEXT REFERENCES parents (id), ssn TEXT CONSTRAINT kids_ssn_key UNIQUE)",
			"INSERT INTO parents VALUES ('p1')",
			"INSERT INTO kids VALUES ('k1', 'p1', '123')",
		} {
			if err := exec(q); err != nil {
				t.Fatal(err)
			}
		}
		unique := exec("INSERT INTO kids VALUES ('k2', 'p1', '123')")
		fk := exec("INSERT INTO kids VALUES ('k3', 'nobody', '456')")
		missing := exec("INSERT INTO nowhere VALUES (1)")
		for _, tc := range []struct {
			name       string
			err        error
			want       dialect.Class
			constraint string
		}{
			{"unique", unique, dialect.Unique, "kids_ssn_key"},
			{"foreign key", fk, dialect.ForeignKey, "kids_parent_fkey"},
			{"missing table", missing, dialect.MissingTable, ""},
			{"other", errors.New("boom"), dialect.Other, ""},
		} {
			if got := d.Classify(tc.err); got != tc.want {
				t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
			}
			if got := d.ConstraintName(tc.err); got != tc.constraint {
				t.Errorf("%s: ConstraintName = %q, want %q", tc.name, got, tc.constraint)
			}
		}
		if got := d.Classify(serializationFailure(t, sqldb)); got != dialect.Transient {
			t.Errorf("serialization failure classified %v, want Transient", got)
		}
	})
}

// serializationFailure makes two SERIALIZABLE transactions write skew and
// returns the error of the one that loses.
func serializationFailure(t *testing.T, db *sql.DB) error {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE ledger (id INT PRIMARY KEY, n INT); INSERT INTO ledger VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
	a, err := db.BeginTx(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback()
	b, err := db.BeginTx(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	var sum int
	for _, tx := range []*sql.Tx{a, b} {
		if err := tx.QueryRowContext(ctx, "SELECT SUM(n) FROM ledger").Scan(&sum); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ExecContext(ctx, "UPDATE ledger SET n = n + 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(ctx, "UPDATE ledger SET n = n + 1 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	t.Fatal("write skew committed under SERIALIZABLE")
	return nil
}

// TestListParameters round-trips the list encodings through the server,
// with the characters an array literal must escape.
func TestListParameters(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		d := db.Dialect()
		texts := []string{"", "plain", `quote " here`, `back\slash`, "comma, brace {x}", "NULL", "ünïcødé ✓", " spaced "}
		var got []string
		rows, err := db.SQL().Query(d.Rebind("SELECT unnest(?::text[])"), d.Strings(texts))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		rows.Close()
		if diff := cmp.Diff(texts, got); diff != "" {
			t.Errorf("text list round trip (-want +got):\n%s", diff)
		}
		var sum int64
		if err := db.SQL().QueryRow(d.Rebind("SELECT SUM(x) FROM unnest(?::bigint[]) AS x"), d.Int64s([]int64{1, -2, 1 << 40})).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if sum != 1-2+1<<40 {
			t.Errorf("number list sums to %d", sum)
		}
	})
}

// TestListenerReconnects kills the listening connection's backend, as a
// database restart or a network cut would, and expects the listener to
// come back and keep waking subscribers.
func TestListenerReconnects(t *testing.T) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Open(t, s)
			prefix := "re" + strings.ReplaceAll(s.Name, "-", "_") + "_"
			var mu sync.Mutex
			connects := 0
			inner := testdb.Listener(s, db.SQL(), db.DSN)
			st, err := store.Open(db.SQL(), postgres.Dialect(), store.Options{TablePrefix: prefix, Logger: testdb.Logger(),
				Listener: listenerFunc(func(ctx context.Context, ch string, notify func()) error {
					return inner.Listen(ctx, ch, func() {
						mu.Lock()
						connects++
						mu.Unlock()
						notify()
					})
				})})
			if err != nil {
				t.Fatal(err)
			}
			wake, cancel := st.Subscribe()
			defer cancel()
			channel := prefix + "outbox"
			listener := func() int {
				return testdb.Count(t, db, "SELECT COUNT(*) FROM pg_stat_activity WHERE query = ?", `LISTEN "`+channel+`"`) +
					testdb.Count(t, db, "SELECT COUNT(*) FROM pg_stat_activity WHERE query = ?", "LISTEN "+channel)
			}
			testdb.Eventually(t, 10*time.Second, "a backend LISTENing", func() bool { return listener() == 1 })
			notifyAndWait := func(what string) {
				t.Helper()
				testdb.Eventually(t, 10*time.Second, what, func() bool {
					for len(wake) > 0 {
						<-wake
					}
					if _, err := db.SQL().ExecContext(ctx, db.Dialect().Rebind("SELECT pg_notify(?, '')"), channel); err != nil {
						t.Fatal(err)
					}
					return woken(wake, 200*time.Millisecond)
				})
			}
			notifyAndWait("a notification before the cut")
			if _, err := db.SQL().ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query IN ($1, $2)",
				`LISTEN "`+channel+`"`, "LISTEN "+channel); err != nil {
				t.Fatal(err)
			}
			testdb.Eventually(t, 15*time.Second, "the listener to reconnect", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return connects >= 2
			})
			notifyAndWait("a notification after the reconnect")
			cancel()
			testdb.Eventually(t, 10*time.Second, "the LISTEN backend to go away", func() bool { return listener() == 0 })
		})
	}
}

// TestPgxListenerRefusesOtherDrivers gives pgxlisten a lib/pq handle.
func TestPgxListenerRefusesOtherDrivers(t *testing.T) {
	db := testdb.Open(t, testdb.PostgresPQ)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pgxlisten.New(db.SQL()).Listen(ctx, "keel_outbox", func() {})
	if err == nil || !strings.Contains(err.Error(), "pqlisten") {
		t.Fatalf("Listen on a lib/pq handle = %v; want an error pointing to pqlisten", err)
	}
}

type listenerFunc func(ctx context.Context, channel string, notify func()) error

func (f listenerFunc) Listen(ctx context.Context, channel string, notify func()) error {
	return f(ctx, channel, notify)
}

func woken(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}
