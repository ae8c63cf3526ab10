package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// errCrashed is what the publisher of a crashing relay returns.
var errCrashed = errors.New("relay process crashed")

// TestRelaysShareAndRebalance runs four relays, each with its own database
// handle as separate processes would have: they split the partitions
// evenly, deliver 20,000 messages exactly once and in order per key while a
// fifth relay joins mid-drain, and take over the partitions of one that
// crashes once its leases expire.
//
// The crash is a relay whose database handle closes under it mid-batch: it
// can neither record the batch, renew nor release its leases, so they stay
// in the table until they expire, as a killed process's would.
func TestRelaysShareAndRebalance(t *testing.T) {
	eachSetupAlone(t, func(t *testing.T, s testdb.Setup) {
		db := testdb.Open(t, s)
		ob := newOutbox(t, db.Store)
		// Short leases make takeovers quick. The pure-Go SQLite runs an
		// order of magnitude slower under the race detector, and a relay
		// whose renewal or settlement waits past its lease loses it
		// mid-batch, publishing the batch twice, as after any database stall
		// longer than LeaseDuration. With two batches in flight per relay,
		// ten settles and five renewals queue for SQLite's one write lock.
		lease := 1500 * time.Millisecond
		if s == testdb.SQLiteModernc {
			lease = 8 * time.Second
		}

		var mu sync.Mutex
		var all []outbox.Message
		perRelay := make([]int, 5)
		relays := make([]*outbox.Relay, 5)
		runs := make([]*running, 5)
		crash := false        // relay 0 crashes at its next batch
		var crashed time.Time // when it did
		start := func(i int) {
			handle := testdb.Reopen(t, s, db.DSN)
			pub := outbox.PublisherFunc(func(_ context.Context, batch []outbox.Message) error {
				mu.Lock()
				defer mu.Unlock()
				if i == 0 && crash {
					if crashed.IsZero() {
						crashed = time.Now()
						_ = handle.SQL().Close()
					}
					return errCrashed
				}
				all = append(all, batch...)
				perRelay[i] += len(batch)
				return nil
			})
			relays[i] = newRelay(t, handle.Store, pub, outbox.RelayConfig{
				ID: fmt.Sprintf("relay-%d", i), LeaseDuration: lease, BatchSize: 200, MaxPollInterval: 50 * time.Millisecond,
			})
			runs[i] = runRelay(t, relays[i])
		}
		held := func(ids ...int) (counts []int, total int) {
			for _, i := range ids {
				n := relays[i].Partitions()
				counts = append(counts, n)
				total += n
			}
			return counts, total
		}
		for i := range 4 {
			start(i)
		}
		testdb.Eventually(t, 20*time.Second, "four relays to hold 16 partitions each", func() bool {
			counts, _ := held(0, 1, 2, 3)
			return counts[0] == 16 && counts[1] == 16 && counts[2] == 16 && counts[3] == 16
		})
		if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT owner) FROM keel_outbox_leases WHERE owner <> ''"); n != 4 {
			t.Fatalf("%d distinct lease owners in the table, want 4", n)
		}

		// Enqueue while they run; a fifth relay joins halfway.
		paced(t, ob, 1, 50)
		start(4)
		paced(t, ob, 51, 100)
		testdb.Eventually(t, 90*time.Second, "20,000 messages to drain", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(all) >= 20000
		})
		testdb.Eventually(t, 20*time.Second, "five relays to settle on their shares", func() bool {
			counts, total := held(0, 1, 2, 3, 4)
			for _, c := range counts {
				if c < 12 || c > 13 {
					return false
				}
			}
			return total == 64
		})
		mu.Lock()
		got := append([]outbox.Message(nil), all...)
		counts := append([]int(nil), perRelay...)
		mu.Unlock()
		if dups := checkOrder(t, got); dups != 0 || len(got) != 20000 {
			t.Fatalf("%d deliveries with %d duplicates; want 20,000 and none in normal operation", len(got), dups)
		}
		for i, n := range counts[:4] {
			if n == 0 {
				t.Errorf("relay %d delivered nothing; the work was not shared (%v)", i, counts)
			}
		}

		// Relay 0 crashes at its next batch, among the messages enqueued
		// now: its leases stay until they expire, then the others take its
		// partitions and deliver what it could not.
		mu.Lock()
		crash = true
		before0 := perRelay[0]
		mu.Unlock()
		paced(t, ob, 101, 110)
		returned, err := runs[0].Wait(30 * time.Second)
		if !returned {
			t.Fatal("Run of the relay whose database closed did not return")
		}
		if err == nil || !strings.Contains(err.Error(), "database is closed") {
			t.Fatalf("Run of the crashed relay returned %v; want the closed database's error", err)
		}
		// Its leases are still there, unless the machine was so slow that
		// they could have expired before this check; the takeover's wait
		// below tells the same from the other side.
		mu.Lock()
		sinceCrash := time.Since(crashed)
		mu.Unlock()
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-0'"); n == 0 && sinceCrash < lease/2 {
			t.Fatalf("a crashed relay's leases vanished %v after the crash, before they could expire", sinceCrash)
		}
		testdb.Eventually(t, 20*time.Second, "the others to take over relay-0's partitions", func() bool {
			counts, total := held(1, 2, 3, 4)
			for _, c := range counts {
				if c != 16 {
					return false
				}
			}
			return total == 64
		})
		mu.Lock()
		waited := time.Since(crashed)
		mu.Unlock()
		if waited < lease/3 {
			t.Fatalf("partitions taken over %v after the crash, before relay-0's leases could expire", waited)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-0'"); n != 0 {
			t.Fatalf("relay-0 still owns %d leases", n)
		}
		testdb.Eventually(t, 30*time.Second, "messages after the crash to drain", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(all) >= 22000
		})
		time.Sleep(100 * time.Millisecond) // room for a duplicate to show up
		mu.Lock()
		defer mu.Unlock()
		if dups := checkOrder(t, all); dups != 0 || len(all) != 22000 {
			t.Fatalf("%d deliveries with %d duplicates; want 22,000 and none", len(all), dups)
		}
		if perRelay[0] != before0 {
			t.Fatal("the crashed relay delivered after it crashed")
		}
	})
}

// paced enqueues versions from to to of 200 keys, as fillFrom does, one
// transaction of 1,000 messages at a time, and after each waits as long as
// it took, as an application's writes come, rather than back to back. On
// SQLite, a connection writing in a tight loop can keep others from the
// write lock for seconds: relays could then neither renew their leases nor
// settle their batches in time.
func paced(t *testing.T, ob *outbox.Outbox, from, to int) {
	t.Helper()
	for v := from; v <= to; v += 5 {
		start := time.Now()
		fillFrom(t, ob, 200, v, min(v+4, to))
		time.Sleep(time.Since(start))
	}
}

// A relay whose leases are about to lapse does not start a batch another
// relay could take over mid-publish.
func TestRelayNeedsLeaseMarginToPublish(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t, testdb.SQLiteModernc)
	ctx := context.Background()
	fill(t, newOutbox(t, db.Store), 3, 2)
	rec := &recorder{}
	r := newRelay(t, db.Store, rec, outbox.RelayConfig{LeaseDuration: 3 * time.Second, PublishTimeout: time.Second})
	claimed, _, err := outbox.DeliverWithLeaseLeft(ctx, r, 900*time.Millisecond)
	if err != nil || claimed != 0 || rec.count() != 0 {
		t.Fatalf("with 900ms of lease left and a 1s publish timeout: claimed %d, published %d, %v; want nothing", claimed, rec.count(), err)
	}
	claimed, delivered, err := outbox.DeliverWithLeaseLeft(ctx, r, 2*time.Second)
	if err != nil || claimed != 6 || delivered != 6 || rec.count() != 6 {
		t.Fatalf("with 2s left: claimed %d, delivered %d, %v", claimed, delivered, err)
	}
}
