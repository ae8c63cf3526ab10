package dispatch_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// TestBusOrderPerKey: with several workers, every key's messages reach the
// handler in batch order, and all of them arrive once.
func TestBusOrderPerKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		b := setup(t, db)
		const keys, perKey = 20, 25
		var (
			mu       sync.Mutex
			got      = map[string][]int{}
			inflight atomic.Int32
			peak     atomic.Int32
		)
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			var key string
			var seq int
			if _, err := fmt.Sscanf(e.Order, "%3s/%d", &key, &seq); err != nil {
				return err
			}
			if err := b.effect(ctx, tx, "record", e.Order); err != nil {
				return err
			}
			time.Sleep(time.Millisecond) // long enough for keys to overlap
			mu.Lock()
			got[key] = append(got[key], seq)
			mu.Unlock()
			return nil
		})
		bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: 4})
		if err != nil {
			t.Fatal(err)
		}

		// Interleave the keys at random, keeping each key's own order.
		next := make([]int, keys)
		var batch []outbox.Message
		rng := rand.New(rand.NewPCG(1, 2))
		for len(batch) < keys*perKey {
			k := rng.IntN(keys)
			if next[k] == perKey {
				continue
			}
			key := fmt.Sprintf("k%02d", k)
			batch = append(batch, paid(t, fmt.Sprintf("%s/%d", key, next[k]), key))
			next[k]++
		}
		if err := bus.Publish(context.Background(), batch); err != nil {
			t.Fatal(err)
		}

		if len(got) != keys {
			t.Fatalf("%d keys delivered, want %d", len(got), keys)
		}
		for key, seqs := range got {
			if len(seqs) != perKey {
				t.Errorf("key %s: %d messages delivered, want %d", key, len(seqs), perKey)
			}
			for i, s := range seqs {
				if s != i {
					t.Errorf("key %s out of order: %v", key, seqs)
					break
				}
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM effects"); n != keys*perKey {
			t.Errorf("effects = %d, want %d", n, keys*perKey)
		}
		// SQLite's writers take turns at BEGIN, so only PostgreSQL shows
		// handlers of different keys running at once.
		if p := peak.Load(); b.ph(1) != "?" && p < 2 {
			t.Errorf("at most %d handler ran at once with Concurrency 4", p)
		}
		t.Logf("peak handlers in flight: %d", peak.Load())
	})
}

// TestBusHoldsBackFailedKey: a failure holds back the later messages of its
// key in the batch, which do not run at all, and no other key.
func TestBusHoldsBackFailedKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		for _, conc := range []int{1, 3} {
			t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
				// A fresh effects table and router per run.
				if _, err := db.Exec("DROP TABLE IF EXISTS effects"); err != nil {
					t.Fatal(err)
				}
				b := setup(t, db)
				failing := atomic.Bool{}
				failing.Store(true)
				dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
					if e.Order == "A2" && failing.Load() {
						return errFlaky
					}
					return b.effect(ctx, tx, "record", e.Order)
				})
				bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: conc})
				if err != nil {
					t.Fatal(err)
				}
				names := []string{"A1", "B1", "A2", "B2", "A3", "C1", "B3", "A4"}
				batch := make([]outbox.Message, len(names))
				for i, n := range names {
					batch[i] = paid(t, n, n[:1])
				}

				err = bus.Publish(context.Background(), batch)
				var be *outbox.BatchError
				if !errors.As(err, &be) {
					t.Fatalf("got %v, want an *outbox.BatchError", err)
				}
				if len(be.Errs) != len(batch) {
					t.Fatalf("BatchError has %d entries for %d messages", len(be.Errs), len(batch))
				}
				for i, n := range names {
					e := be.Errs[i]
					switch n {
					case "A2":
						var de *dispatch.DeliveryError
						if !errors.As(e, &de) || !errors.Is(e, errFlaky) || errors.Is(e, dispatch.ErrHeldBack) {
							t.Errorf("%s: %v, want the handler's DeliveryError", n, e)
						}
					case "A3", "A4":
						if !errors.Is(e, dispatch.ErrHeldBack) || !strings.Contains(e.Error(), batch[2].ID) {
							t.Errorf("%s: %v, want ErrHeldBack naming A2's id", n, e)
						}
						if errors.Is(e, errFlaky) {
							t.Errorf("%s: a held-back message must not carry A2's cause: %v", n, e)
						}
						if got := b.effects(t, "record", batch[i].ID); got != 0 {
							t.Errorf("%s ran although held back", n)
						}
					default:
						if e != nil {
							t.Errorf("%s: %v, want delivered", n, e)
						}
						if got := b.effects(t, "record", batch[i].ID); got != 1 {
							t.Errorf("%s: %d effects, want 1", n, got)
						}
					}
				}
				if !errors.Is(err, errFlaky) || !strings.Contains(err.Error(), "3 of 8 messages not delivered") {
					t.Errorf("summary %q", err)
				}

				// The relay sends the failed message and the held ones again.
				failing.Store(false)
				if err := bus.Publish(context.Background(), []outbox.Message{batch[2], batch[4], batch[7]}); err != nil {
					t.Fatal(err)
				}
				if n := count(t, db, "SELECT COUNT(*) FROM effects"); n != len(batch) {
					t.Errorf("effects = %d, want %d", n, len(batch))
				}
			})
		}
	})
}

// TestBusCancelled: a cancelled context delivers nothing and reports every
// message.
func TestBusCancelled(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		b := setup(t, db)
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "record", e.Order)
		})
		bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		batch := []outbox.Message{paid(t, "A1", "A"), paid(t, "B1", "B"), paid(t, "A2", "A")}
		err = bus.Publish(ctx, batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("got %v, want an *outbox.BatchError", err)
		}
		for i := range batch {
			if !be.Failed(i) {
				t.Errorf("message %d reported delivered", i)
			}
		}
		if !errors.Is(be.Errs[0], context.Canceled) || !errors.Is(be.Errs[2], dispatch.ErrHeldBack) {
			t.Errorf("errors %v", be.Errs)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM effects"); n != 0 {
			t.Errorf("effects = %d, want 0", n)
		}
	})
}

// TestBusEmptyBatch: nothing to deliver is success.
func TestBusEmptyBatch(t *testing.T) {
	db := testdb.Open(t, "sqlite")
	b := setup(t, db)
	bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
