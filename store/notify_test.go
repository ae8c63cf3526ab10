package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// woken reports whether ch receives within d.
func woken(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestNotifyWakesEverySubscriber(t *testing.T) {
	st := memoryStore(t, store.Options{})
	a, cancelA := st.Subscribe()
	b, cancelB := st.Subscribe()
	defer cancelB()
	st.Notify()
	st.Notify() // coalesced with the first
	if !woken(a, time.Second) || !woken(b, time.Second) {
		t.Fatal("Notify did not wake both subscribers")
	}
	if woken(a, 20*time.Millisecond) {
		t.Error("two Notify calls before a read left two signals; they should coalesce")
	}
	cancelA()
	cancelA() // ending twice is harmless
	st.Notify()
	if woken(a, 20*time.Millisecond) {
		t.Error("a subscription was woken after it ended")
	}
	if !woken(b, time.Second) {
		t.Error("the remaining subscriber was not woken")
	}
}

// countingListener is a Listener that records how many of its Listen calls
// are running, and can be told to fail.
type countingListener struct {
	running, started atomic.Int32
	fail             atomic.Bool
}

func (l *countingListener) Listen(ctx context.Context, channel string, notify func()) error {
	l.running.Add(1)
	l.started.Add(1)
	defer l.running.Add(-1)
	notify()
	if l.fail.Load() {
		return errors.New("listener broke")
	}
	<-ctx.Done()
	return nil
}

// TestListenerRunsWhileSubscribed checks the listener's owner: it starts
// with the first subscription, runs once however many there are, and has
// stopped by the time the last subscription's cancel returns.
func TestListenerRunsWhileSubscribed(t *testing.T) {
	l := &countingListener{}
	st := memoryStore(t, store.Options{Listener: l})
	if l.started.Load() != 0 {
		t.Fatal("the listener started before anything subscribed")
	}
	a, cancelA := st.Subscribe()
	_, cancelB := st.Subscribe()
	if !woken(a, time.Second) {
		t.Fatal("the listener's first notify did not reach the subscriber")
	}
	if n := l.started.Load(); n != 1 {
		t.Fatalf("listener started %d times for two subscriptions, want once", n)
	}
	cancelA()
	if l.running.Load() != 1 {
		t.Fatal("the listener stopped while a subscription remained")
	}
	cancelB()
	if n := l.running.Load(); n != 0 {
		t.Fatalf("%d Listen calls still running after the last subscription ended", n)
	}
	_, cancelC := st.Subscribe()
	defer cancelC()
	testdb.Eventually(t, time.Second, "the listener to start again", func() bool { return l.started.Load() == 2 })
}

// TestListenerFailureIsLoggedAndRetried makes the listener give up and
// expects the store to log it at Error level and start it again.
func TestListenerFailureIsLoggedAndRetried(t *testing.T) {
	l := &countingListener{}
	l.fail.Store(true)
	var buf safeBuffer
	st := memoryStore(t, store.Options{Listener: l, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	_, cancel := st.Subscribe()
	testdb.Eventually(t, 5*time.Second, "a second start", func() bool { return l.started.Load() >= 2 })
	l.fail.Store(false)
	cancel()
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "listener broke") {
		t.Errorf("log does not report the failure at Error level:\n%s", out)
	}
}

// TestPostgresListenerWakes commits through a second handle, which has no
// listener (as another process would), and expects the first store's
// subscriber to wake from the notification, through each driver's listener.
func TestPostgresListenerWakes(t *testing.T) {
	for _, s := range []testdb.Setup{testdb.PostgresPQ, testdb.PostgresPgx} {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Open(t, s)
			ready := make(chan struct{})
			var once sync.Once
			l := testdb.Listener(s, db.SQL(), db.DSN)
			listening := testdb.Reopen(t, s, db.DSN, store.Options{Listener: listenerFunc(func(ctx context.Context, ch string, notify func()) error {
				return l.Listen(ctx, ch, func() { once.Do(func() { close(ready) }); notify() })
			})})
			wake, cancel := listening.Subscribe()
			defer cancel()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("the listener never reported that it listens")
			}
			for len(wake) > 0 {
				<-wake
			}
			other := testdb.Reopen(t, s, db.DSN, store.Options{})
			if _, err := other.SQL().ExecContext(ctx, other.Dialect().Rebind("SELECT pg_notify(?, '')"), "keel_outbox"); err != nil {
				t.Fatal(err)
			}
			if !woken(wake, 5*time.Second) {
				t.Fatal("a notification from another handle did not wake the subscriber")
			}
		})
	}
}

type listenerFunc func(ctx context.Context, channel string, notify func()) error

func (f listenerFunc) Listen(ctx context.Context, channel string, notify func()) error {
	return f(ctx, channel, notify)
}

func memoryStore(t *testing.T, opts store.Options) *store.Store {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.Open(db, sqlite.Dialect(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// safeBuffer is a bytes.Buffer safe for a logger writing from a goroutine.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
