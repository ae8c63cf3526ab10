package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// quiet discards logs; set KEEL_TEST_LOG=1 to see them.
var quiet = testdb.Logger()

// each runs fn as a parallel subtest per setup, each with a fresh migrated
// database of its own, and lets the test itself run beside other parallel
// tests.
func each(t *testing.T, fn func(t *testing.T, db testdb.DB)) {
	t.Helper()
	eachSetup(t, func(t *testing.T, s testdb.Setup) { fn(t, testdb.Open(t, s)) })
}

// eachSetup is each for tests that open their databases themselves.
func eachSetup(t *testing.T, fn func(t *testing.T, s testdb.Setup)) {
	t.Helper()
	t.Parallel()
	eachSetupAlone(t, fn)
}

// eachSetupAlone is eachSetup for the heavy tests whose relays' leases are
// short: the test runs before the parallel tests, so that its setups share
// the machine only with each other, and a relay starved of CPU does not
// lose its leases mid-batch.
func eachSetupAlone(t *testing.T, fn func(t *testing.T, s testdb.Setup)) {
	t.Helper()
	for _, s := range testdb.Setups {
		t.Run(s.Name, func(t *testing.T) {
			testdb.Require(t, s)
			t.Parallel()
			fn(t, s)
		})
	}
}

// eachPostgres is eachSetup over the PostgreSQL setups only.
func eachPostgres(t *testing.T, fn func(t *testing.T, s testdb.Setup)) {
	t.Helper()
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		if !s.IsPostgres() {
			t.Skip("PostgreSQL only")
		}
		fn(t, s)
	})
}

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

func newRelay(t testing.TB, st *store.Store, pub outbox.Publisher, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(st, pub, relayConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newOutbox(t testing.TB, st *store.Store) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.New(st)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// quietOptions are store options with the quiet logger and nothing else:
// no Listener, so only this process's commits wake its relays.
func quietOptions(o store.Options) store.Options {
	if o.Logger == nil {
		o.Logger = quiet
	}
	return o
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

// recorder is a Publisher that keeps what it was given, in arrival order.
// fail, when set, decides per message; like a well-behaved publisher, it
// holds back a key's later messages after its first failure in a batch.
type recorder struct {
	mu   sync.Mutex
	got  []outbox.Message
	fail func(m outbox.Message) error
}

func (rc *recorder) Publish(_ context.Context, batch []outbox.Message) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var errs []error
	var hold outbox.HoldBack
	for i := range batch {
		m := &batch[i]
		err := hold.Check(m)
		if err == nil && rc.fail != nil {
			err = rc.fail(*m)
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(batch))
			}
			errs[i] = err
			hold.Fail(m)
			continue
		}
		rc.got = append(rc.got, *m)
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

// running is a relay's Run in a goroutine of its own.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// runRelay runs r in the background until the test ends or Stop is called.
func runRelay(t testing.TB, r *outbox.Relay) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = r.Run(ctx)
	}()
	t.Cleanup(func() { _ = h.Stop() })
	return h
}

// Stop cancels Run, waits for it to return and returns its error.
func (h *running) Stop() error {
	h.cancel()
	<-h.done
	return h.err
}

// Wait waits up to timeout for Run to return by itself, and reports
// whether it returned, with its error.
func (h *running) Wait(timeout time.Duration) (returned bool, err error) {
	select {
	case <-h.done:
		return true, h.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Returned reports whether Run has returned.
func (h *running) Returned() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// holdsAll waits until r leases every partition: Run has started and taken
// its first leases.
func holdsAll(t testing.TB, r *outbox.Relay) {
	t.Helper()
	testdb.Eventually(t, 10*time.Second, "the relay to hold every partition", func() bool {
		return r.Partitions() == outbox.Partitions
	})
}

// readyListener wraps a store Listener and closes ready at its first call
// of notify, which a Listener makes once it is listening.
type readyListener struct {
	store.Listener
	once  sync.Once
	ready chan struct{}
}

func (l *readyListener) Listen(ctx context.Context, channel string, notify func()) error {
	return l.Listener.Listen(ctx, channel, func() {
		l.once.Do(func() { close(l.ready) })
		notify()
	})
}

// openListening opens another handle on the database at dsn, with a store
// whose Listener (the setup's own) reports when it is listening.
func openListening(t testing.TB, s testdb.Setup, dsn string, opts store.Options) (testdb.DB, <-chan struct{}) {
	t.Helper()
	sqldb := testdb.OpenSQL(t, s, dsn)
	l := &readyListener{Listener: testdb.Listener(s, sqldb, dsn), ready: make(chan struct{})}
	opts.Listener = l
	st, err := store.Open(sqldb, s.StoreDialect(), quietOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	return testdb.DB{Store: st, Setup: s, DSN: dsn}, l.ready
}

// waitReady waits for a readyListener to be listening.
func waitReady(t testing.TB, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener never started listening")
	}
}

// logRecorder is a slog.Handler that keeps every record, for tests that
// check what was logged and at which level.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]logged
	attrs   []slog.Attr
}

// logged is one log record, its attributes rendered as text.
type logged struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), records: new([]logged)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logged{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.records = append(*h.records, rec)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

func (h *logRecorder) logger() *slog.Logger { return slog.New(h) }

// find returns the records at level or above whose message contains msg.
func (h *logRecorder) find(level slog.Level, msg string) []logged {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logged
	for _, r := range *h.records {
		if r.Level >= level && strings.Contains(r.Message, msg) {
			out = append(out, r)
		}
	}
	return out
}

// String renders every record, for failure messages.
func (h *logRecorder) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range *h.records {
		fmt.Fprintf(&b, "%v %s %v\n", r.Level, r.Message, r.Attrs)
	}
	return b.String()
}

// errBroker is a publish failure for tests.
var errBroker = errors.New("broker unreachable")
