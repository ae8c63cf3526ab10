package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// TestRelaysShareAndRebalance runs four relays, each with its own database
// handle as separate processes would have: they split the partitions
// evenly, deliver 20,000 messages exactly once and in order per key while a
// fifth relay joins mid-drain, and take over the partitions of one that
// crashes once its leases expire.
func TestRelaysShareAndRebalance(t *testing.T) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			db, dsn := openDSN(t, d, outbox.Config{})
			ob := newOutbox(t, db, outbox.Config{})
			const lease = 1500 * time.Millisecond

			var mu sync.Mutex
			var all []outbox.Message
			perRelay := make([]int, 5)
			relays := make([]*outbox.Relay, 5)
			stops := make([]func() error, 5)
			start := func(i int) {
				pub := outbox.PublisherFunc(func(_ context.Context, batch []outbox.Message) error {
					mu.Lock()
					all = append(all, batch...)
					perRelay[i] += len(batch)
					mu.Unlock()
					return nil
				})
				relays[i] = newRelay(t, openExisting(t, d, dsn), pub, outbox.RelayConfig{
					ID: fmt.Sprintf("relay-%d", i), LeaseDuration: lease, BatchSize: 200, MaxPollInterval: 50 * time.Millisecond,
				})
				stops[i] = runRelay(t, relays[i])
			}
			held := func(ids ...int) (counts []int, total int) {
				for _, i := range ids {
					s, err := relays[i].Stats(ctx)
					if err != nil {
						t.Fatal(err)
					}
					counts = append(counts, s.Partitions)
					total += s.Partitions
				}
				return counts, total
			}
			for i := range 4 {
				start(i)
			}
			outbox.CrashOnStop(relays[0])
			eventually(t, 20*time.Second, "four relays to hold 16 partitions each", func() bool {
				counts, _ := held(0, 1, 2, 3)
				return counts[0] == 16 && counts[1] == 16 && counts[2] == 16 && counts[3] == 16
			})
			if n := countRows(t, db, "SELECT COUNT(DISTINCT owner) FROM keel_outbox_leases WHERE owner <> ''"); n != 4 {
				t.Fatalf("%d distinct lease owners in the table, want 4", n)
			}

			// Enqueue while they run; a fifth relay joins halfway.
			fill(t, ob, 200, 50)
			start(4)
			fillFrom(t, ob, 200, 51, 100)
			eventually(t, 90*time.Second, "20,000 messages to drain", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(all) >= 20000
			})
			eventually(t, 20*time.Second, "five relays to settle on their shares", func() bool {
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

			// Relay 0 crashes: its leases stay until they expire, then the
			// others take its partitions.
			if err := stops[0](); err != nil {
				t.Fatal(err)
			}
			crashed := time.Now()
			if n := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-0'"); n == 0 {
				t.Fatal("a crashed relay's leases vanished at once")
			}
			eventually(t, 20*time.Second, "the others to take over relay-0's partitions", func() bool {
				counts, total := held(1, 2, 3, 4)
				for _, c := range counts {
					if c != 16 {
						return false
					}
				}
				return total == 64
			})
			if waited := time.Since(crashed); waited < lease/3 {
				t.Fatalf("partitions taken over after %v, before relay-0's leases could expire", waited)
			}
			if n := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-0'"); n != 0 {
				t.Fatalf("relay-0 still owns %d leases", n)
			}
			mu.Lock()
			before0 := perRelay[0]
			mu.Unlock()
			fillFrom(t, ob, 200, 101, 110)
			eventually(t, 30*time.Second, "messages after the crash to drain", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(all) >= 22000
			})
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if dups := checkOrder(t, all); dups != 0 || len(all) != 22000 {
				t.Fatalf("%d deliveries with %d duplicates; want 22,000 and none", len(all), dups)
			}
			if perRelay[0] != before0 {
				t.Fatal("the crashed relay delivered after it stopped")
			}
		})
	}
}

// A relay whose leases are about to lapse does not start a batch another
// relay could take over mid-publish.
func TestRelayNeedsLeaseMarginToPublish(t *testing.T) {
	db := testdb.Open(t, "sqlite")
	ctx := context.Background()
	fill(t, newOutbox(t, db, outbox.Config{}), 3, 2)
	rec := &recorder{}
	r := newRelay(t, db, rec, outbox.RelayConfig{LeaseDuration: 3 * time.Second, PublishTimeout: time.Second})
	claimed, _, err := outbox.DeliverWithLeaseLeft(ctx, r, 900*time.Millisecond)
	if err != nil || claimed != 0 || rec.count() != 0 {
		t.Fatalf("with 900ms of lease left and a 1s publish timeout: claimed %d, published %d, %v; want nothing", claimed, rec.count(), err)
	}
	claimed, delivered, err := outbox.DeliverWithLeaseLeft(ctx, r, 2*time.Second)
	if err != nil || claimed != 6 || delivered != 6 || rec.count() != 6 {
		t.Fatalf("with 2s left: claimed %d, delivered %d, %v", claimed, delivered, err)
	}
}
