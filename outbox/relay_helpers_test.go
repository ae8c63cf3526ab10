package outbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// quiet discards logs; set KEEL_TEST_LOG=1 to see them.
var quiet = testdb.Logger()

// relayConfig fills the fields every test wants: no log noise and short
// leases, so takeovers happen within a test's patience.
func relayConfig(cfg outbox.RelayConfig) outbox.RelayConfig {
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 2 * time.Second
	}
	return cfg
}

func newRelay(t testing.TB, db *sql.DB, pub outbox.Publisher, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(db, pub, relayConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openDSN returns a fresh migrated database and the DSN that reaches it, so
// that other handles and processes can open it too.
func openDSN(t testing.TB, dialectName string, cfg outbox.Config) (*sql.DB, string) {
	t.Helper()
	dsn := testdb.DSN(t, dialectName)
	db := openExisting(t, dialectName, dsn)
	if err := outbox.Migrate(context.Background(), db, cfg); err != nil {
		t.Fatal(err)
	}
	return db, dsn
}

func openExisting(t testing.TB, dialectName, dsn string) *sql.DB {
	t.Helper()
	driver := "sqlite3"
	if dialectName == "postgres" {
		driver = "postgres"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func keyName(i int) string { return fmt.Sprintf("key-%03d", i) }

// fill enqueues perKey messages for each of keys keys, interleaved across
// keys, with AggregateVersion counting 1.. within each key. It returns the
// messages with their ids.
func fill(t testing.TB, ob *outbox.Outbox, keys, perKey int) []outbox.Message {
	t.Helper()
	return fillFrom(t, ob, keys, 1, perKey)
}

func fillFrom(t testing.TB, ob *outbox.Outbox, keys, fromVersion, toVersion int) []outbox.Message {
	t.Helper()
	var all []outbox.Message
	var chunk []outbox.Message
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		if err := ob.Enqueue(context.Background(), chunk...); err != nil {
			t.Fatal(err)
		}
		all = append(all, chunk...)
		chunk = chunk[:0]
	}
	for v := fromVersion; v <= toVersion; v++ {
		for k := 0; k < keys; k++ {
			chunk = append(chunk, outbox.Message{
				Name: "test.event", Key: keyName(k), AggregateVersion: int64(v),
				Payload: []byte(fmt.Sprintf(`{"v":%d}`, v)),
			})
			if len(chunk) == 1000 {
				flush()
			}
		}
	}
	flush()
	return all
}

func newOutbox(t testing.TB, db *sql.DB, cfg outbox.Config) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// recorder is a Publisher that keeps what it was given, in arrival order.
// fail, when set, decides per message; like a well-behaved publisher, it
// stops a key at its first failure within a batch.
type recorder struct {
	mu   sync.Mutex
	got  []outbox.Message
	fail func(m outbox.Message) error
}

var errEarlierFailed = errors.New("not attempted: an earlier message of the key failed")

func (rc *recorder) Publish(_ context.Context, batch []outbox.Message) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var errs []error
	var stopped map[string]bool
	for i, m := range batch {
		var err error
		if stopped[m.Key] {
			err = errEarlierFailed
		} else if rc.fail != nil {
			err = rc.fail(m)
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(batch))
				stopped = map[string]bool{}
			}
			errs[i] = err
			stopped[m.Key] = true
			continue
		}
		rc.got = append(rc.got, m)
	}
	if errs != nil {
		return &outbox.BatchError{Errs: errs}
	}
	return nil
}

func (rc *recorder) setFail(f func(outbox.Message) error) {
	rc.mu.Lock()
	rc.fail = f
	rc.mu.Unlock()
}

func (rc *recorder) messages() []outbox.Message {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]outbox.Message(nil), rc.got...)
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// checkOrder fails t unless, for every key, the versions in first-arrival
// order are increasing. It returns how many arrivals were duplicates.
func checkOrder(t testing.TB, got []outbox.Message) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, m := range got {
		if seen[m.ID] {
			dups++
			continue
		}
		seen[m.ID] = true
		if m.AggregateVersion <= last[m.Key] {
			t.Errorf("key %s: version %d arrived after %d", m.Key, m.AggregateVersion, last[m.Key])
		}
		last[m.Key] = m.AggregateVersion
	}
	return dups
}

// countRows runs a COUNT(*) query.
func countRows(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runRelay runs r in the background until the test ends or stop is called;
// stop waits for Run to return and reports its error.
func runRelay(t testing.TB, r *outbox.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// newPQListener listens on channel over its own connection and sends the
// channel name of every notification to got.
func newPQListener(t testing.TB, dsn, channel string, got chan<- string) (stop func()) {
	t.Helper()
	l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, nil)
	if err := l.Listen(channel); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case n := <-l.Notify:
				if n != nil {
					got <- n.Channel
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); l.Close() }
}
