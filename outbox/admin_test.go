package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// park marks the rows with the given ids parked, as a relay does after
// their last attempt, with last_error "boom" and 3 attempts.
func park(t testing.TB, db testdb.DB, parkedAt time.Time, ids ...string) {
	t.Helper()
	parkWith(t, db, parkedAt, "boom", ids...)
}

// parkWith is park with the given last error.
func parkWith(t testing.TB, db testdb.DB, parkedAt time.Time, lastErr string, ids ...string) {
	t.Helper()
	args := []any{lastErr, db.Dialect().Time(parkedAt)}
	for _, id := range ids {
		args = append(args, id)
	}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
	res, err := db.SQL().Exec(db.Dialect().Rebind("UPDATE keel_outbox SET state = 2, attempts = 3, last_error = ?, next_attempt_at = ? WHERE id IN ("+in+")"), args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != int64(len(ids)) {
		t.Fatalf("parked %d rows, want %d", n, len(ids))
	}
}

// TestOutboxAdminWithoutRelay checks that administration needs only the
// store: Stats, Parked (by key and page by page), Requeue, RequeueKey and
// Cleanup through outbox.New, with no relay and no Publisher anywhere.
// Before, they were methods of the Relay, which needs a Publisher, so an
// operator's tool had to invent one.
func TestOutboxAdminWithoutRelay(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msg := func(id, key string) outbox.Message {
			return outbox.Message{ID: id, Name: "e", Key: key, Payload: []byte(id)}
		}
		if err := ob.Enqueue(ctx, msg("a1", "a"), msg("a2", "a"), msg("a3", "a"), msg("b1", "b"), msg("b2", "b"),
			msg("c1", "c"), msg("d1", "d"), msg("d2", "d")); err != nil {
			t.Fatal(err)
		}
		d := db.Dialect()
		parkedAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		park(t, db, parkedAt, "a1", "a2", "b1")
		// c1 failed once and waits for its retry; d1 and d2 were delivered
		// and are kept for retention, d1 for two hours already.
		exec := func(query string, args ...any) {
			t.Helper()
			if _, err := db.SQL().Exec(d.Rebind(query), args...); err != nil {
				t.Fatal(err)
			}
		}
		exec("UPDATE keel_outbox SET attempts = 1, next_attempt_at = ? WHERE id = 'c1'", d.Time(time.Now().Add(time.Hour)))
		exec("UPDATE keel_outbox SET state = 1, delivered_at = ? WHERE id = 'd1'", d.Time(time.Now().Add(-2*time.Hour)))
		exec("UPDATE keel_outbox SET state = 1, delivered_at = ? WHERE id = 'd2'", d.Time(time.Now()))

		stats := func() outbox.Stats {
			t.Helper()
			s, err := ob.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.OldestPending <= 0 || s.OldestPending > time.Minute {
				t.Errorf("OldestPending = %v", s.OldestPending)
			}
			s.OldestPending = 0
			return s
		}
		if diff := cmp.Diff(outbox.Stats{Pending: 3, Retrying: 1, Parked: 3}, stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}

		// Parked, page by page, then by key.
		ids := func(ps []outbox.ParkedMessage, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, p := range ps {
				out = append(out, p.ID)
			}
			return out
		}
		page1, err := ob.Parked(ctx, outbox.ParkedQuery{Limit: 2})
		if diff := cmp.Diff([]string{"a1", "a2"}, ids(page1, err)); diff != "" {
			t.Fatalf("first page (-want +got):\n%s", diff)
		}
		p := page1[0]
		if p.LastError != "boom" || p.Attempts != 3 || !p.ParkedAt.Equal(parkedAt) || p.Key != "a" || string(p.Payload) != "a1" {
			t.Errorf("parked row %+v; want its last error, attempts, parking time and message", p)
		}
		page2, err := ob.Parked(ctx, outbox.ParkedQuery{Limit: 2, AfterSeq: page1[1].Seq})
		if diff := cmp.Diff([]string{"b1"}, ids(page2, err)); diff != "" {
			t.Fatalf("second page (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{}, ids(ob.Parked(ctx, outbox.ParkedQuery{Limit: 2, AfterSeq: page2[0].Seq}))); diff != "" {
			t.Fatalf("third page (-want +got):\n%s", diff)
		}
		for key, want := range map[string][]string{"a": {"a1", "a2"}, "b": {"b1"}, "c": {}, "nobody": {}} {
			if diff := cmp.Diff(want, ids(ob.Parked(ctx, outbox.ParkedQuery{Key: key}))); diff != "" {
				t.Errorf("Parked of key %s (-want +got):\n%s", key, diff)
			}
		}

		// Requeue one message, then the rest of a key.
		if err := ob.Requeue(ctx, "a1"); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a1", "a3", "nobody"} {
			if err := ob.Requeue(ctx, id); !errors.Is(err, outbox.ErrNotParked) {
				t.Errorf("Requeue(%s) = %v; want ErrNotParked", id, err)
			}
		}
		if n, err := ob.RequeueKey(ctx, "a"); err != nil || n != 1 {
			t.Fatalf("RequeueKey(a) = %d, %v; want 1", n, err)
		}
		if n, err := ob.RequeueKey(ctx, "a"); err != nil || n != 0 {
			t.Fatalf("second RequeueKey(a) = %d, %v; want 0", n, err)
		}
		if diff := cmp.Diff(outbox.Stats{Pending: 5, Retrying: 1, Parked: 1}, stats()); diff != "" {
			t.Errorf("Stats after requeue (-want +got):\n%s", diff)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE id IN ('a1', 'a2') AND state = 0 AND attempts = 0 AND next_attempt_at IS NULL"); n != 2 {
			t.Fatalf("%d of the requeued rows are pending with fresh attempts, want 2", n)
		}

		// Cleanup deletes delivered rows older than asked, in batches.
		if n, err := ob.Cleanup(ctx, time.Hour, 1); err != nil || n != 1 {
			t.Fatalf("Cleanup(1h) = %d, %v; want d1", n, err)
		}
		if n, err := ob.Cleanup(ctx, 0, 0); err != nil || n != 1 {
			t.Fatalf("Cleanup(0) = %d, %v; want d2", n, err)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 6 {
			t.Fatalf("%d rows left, want the 6 not delivered", n)
		}
		if _, err := ob.Cleanup(ctx, -time.Second, 0); !errors.Is(err, store.ErrInvalidConfig) {
			t.Errorf("Cleanup with a negative age: %v", err)
		}
		if _, err := ob.Cleanup(ctx, time.Hour, -1); !errors.Is(err, store.ErrInvalidConfig) {
			t.Errorf("Cleanup with a negative batch: %v", err)
		}
	})
}

// idleRelay runs a relay on st that polls only hourly, and returns once it
// has made the polls of its start, so that only a wake-up can make it
// deliver again soon.
func idleRelay(t *testing.T, st *store.Store, ready <-chan struct{}) *recorder {
	t.Helper()
	rec := &recorder{}
	r := newRelay(t, st, rec, outbox.RelayConfig{MinPollInterval: time.Hour, MaxPollInterval: time.Hour})
	runRelay(t, r)
	if ready != nil {
		waitReady(t, ready)
	}
	holdsAll(t, r)
	time.Sleep(100 * time.Millisecond) // let the polls of the start pass
	return rec
}

// TestRequeueWakesRelays checks that Requeue and RequeueKey wake the relays
// at once: in this process through the store, and, on PostgreSQL, relays on
// another handle through a notification, since a requeue usually comes
// from an operator's tool in another process. Before, Requeue woke only the
// relay it was called on, and a relay in another process found the message
// at its next poll.
func TestRequeueWakesRelays(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		requeueBoth := func(t *testing.T, relay *recorder, ob *outbox.Outbox) {
			ctx := context.Background()
			if err := ob.Requeue(ctx, "p1"); err != nil {
				t.Fatal(err)
			}
			testdb.Eventually(t, 5*time.Second, "delivery after Requeue", func() bool { return relay.count() == 1 })
			time.Sleep(100 * time.Millisecond) // let the polls of that wake-up pass
			if n, err := ob.RequeueKey(ctx, "k2"); err != nil || n != 1 {
				t.Fatalf("RequeueKey = %d, %v", n, err)
			}
			testdb.Eventually(t, 5*time.Second, "delivery after RequeueKey", func() bool { return relay.count() == 2 })
		}
		// The rows are written before any relay runs.
		seed := func(t *testing.T, db testdb.DB) {
			if err := newOutbox(t, db.Store).Enqueue(context.Background(),
				outbox.Message{ID: "p1", Name: "e", Key: "k1", Payload: []byte{}},
				outbox.Message{ID: "p2", Name: "e", Key: "k2", Payload: []byte{}}); err != nil {
				t.Fatal(err)
			}
			park(t, db, time.Now(), "p1", "p2")
		}
		t.Run("same store", func(t *testing.T) {
			// No Listener, no notification: only the store's in-process wake-up.
			db := testdb.Open(t, s, quietOptions(store.Options{DisableNotify: true}))
			seed(t, db)
			rec := idleRelay(t, db.Store, nil)
			requeueBoth(t, rec, newOutbox(t, db.Store))
		})
		if !s.IsPostgres() {
			return
		}
		t.Run("other handle", func(t *testing.T) {
			db := testdb.Open(t, s, quietOptions(store.Options{})) // no Listener
			seed(t, db)
			relayDB, ready := openListening(t, s, db.DSN, store.Options{})
			rec := idleRelay(t, relayDB.Store, ready)
			requeueBoth(t, rec, newOutbox(t, db.Store))
		})
	})
}
