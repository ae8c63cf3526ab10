package outbox_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// TestRelayLegacyLongKey guards the relay against a failure it cannot
// record. Rows written before keys were limited to 512 bytes may hold
// longer keys; on PostgreSQL, recording such a row's failed delivery puts
// its key into outbox_blocked_idx, whose entries hold at most 2,704 bytes,
// so the UPDATE fails. Before, that failure took the batch's whole
// settlement with it: the healthy messages of the batch were published
// again and again, in a tight loop. Now the delivered rows are settled on
// their own, the failure is reported at Error level and in
// BatchReport.Unrecorded, and the row waits, pending, for its retry time,
// while the relay keeps running.
func TestRelayLegacyLongKey(t *testing.T) {
	eachPostgres(t, func(t *testing.T, s testdb.Setup) {
		for _, size := range []int{3000, 10000} {
			t.Run(fmt.Sprintf("%d-byte key", size), func(t *testing.T) {
				legacyLongKey(t, s, size)
			})
		}
	})
}

func legacyLongKey(t *testing.T, s testdb.Setup, size int) {
	db := testdb.Open(t, s)
	ob := newOutbox(t, db.Store)
	// Random letters, so that TOAST compression cannot shrink the key to
	// fit the index.
	long := make([]byte, size)
	for i := range long {
		long[i] = byte('a' + rand.N(26))
	}
	key := string(long)
	healthy := fill(t, ob, 9, 55) // 495 messages
	// Written straight in SQL, as rows written before this version were.
	legacyID := "legacy-" + randomSuffix()
	if _, err := db.SQL().Exec(db.Dialect().Rebind(`INSERT INTO keel_outbox (id, partition_key, partition_no, name, payload, occurred_at)
VALUES (?, ?, ?, 'legacy.event', ?, ?)`), legacyID, key, outbox.PartitionOf(key), []byte(`{}`), db.Dialect().Time(time.Now())); err != nil {
		t.Fatal(err)
	}
	healthy = append(healthy, fillFrom(t, ob, 9, 56, 111)...) // and 504 more
	if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 1000 {
		t.Fatalf("%d rows, want 999 healthy and the legacy one", n)
	}

	var mu sync.Mutex
	var legacyPublishes []time.Time
	rec := &recorder{}
	rec.setFail(func(m outbox.Message) error {
		if m.ID != legacyID {
			return nil
		}
		mu.Lock()
		legacyPublishes = append(legacyPublishes, time.Now())
		mu.Unlock()
		return errBroker
	})
	publishes := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(legacyPublishes)
	}
	var unrecorded int
	logs := newLogRecorder()
	r := newRelay(t, db.Store, rec, outbox.RelayConfig{
		RetryBackoff: 500 * time.Millisecond, Logger: logs.logger(),
		Observer: outbox.ObserverFunc(func(b outbox.BatchReport) {
			mu.Lock()
			unrecorded += b.Unrecorded
			mu.Unlock()
		}),
	})
	run := runRelay(t, r)
	testdb.Eventually(t, 30*time.Second, "the 999 healthy messages to be delivered", func() bool { return rec.count() >= len(healthy) })
	testdb.Eventually(t, 10*time.Second, "the unrecorded failure to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return unrecorded > 0
	})
	errs := logs.find(slog.LevelError, "cannot record a failed delivery")
	if len(errs) == 0 || errs[0].Attrs["id"] != legacyID {
		t.Fatalf("no Error-level record naming the message whose failure went unrecorded:\n%s", logs)
	}

	// Over the next 2 seconds the message is retried a handful of times,
	// every RetryBackoff (250-500ms with jitter) at most, not in a loop.
	before := publishes()
	time.Sleep(2 * time.Second)
	n := publishes() - before
	t.Logf("published %d times in 2s; unrecorded: %s", n, errs[0].Attrs["err"])
	if n < 1 || n > 10 {
		t.Fatalf("the legacy message was published %d times in 2s with a 500ms RetryBackoff; want a handful", n)
	}
	if run.Returned() {
		t.Fatalf("Run returned (%v); the relay should keep running", run.err)
	}

	// The healthy messages were delivered exactly once, in order per key.
	got := rec.messages()
	if dups := checkOrder(t, got); dups != 0 || len(got) != len(healthy) {
		t.Fatalf("%d deliveries with %d duplicates; want %d healthy messages, once each", len(got), dups, len(healthy))
	}
	// The legacy row is still pending, its attempts unrecorded.
	var state, attempts int
	if err := db.SQL().QueryRow(db.Dialect().Rebind("SELECT state, attempts FROM keel_outbox WHERE id = ?"), legacyID).Scan(&state, &attempts); err != nil {
		t.Fatal(err)
	}
	if state != 0 || attempts != 0 {
		t.Fatalf("legacy row: state %d, attempts %d; want it pending as it was", state, attempts)
	}
	if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 1 {
		t.Fatalf("%d rows left; want only the legacy one", n)
	}
}
