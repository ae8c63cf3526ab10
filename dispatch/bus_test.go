package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// TestBusOrderPerKey: with several workers, every key's messages reach the
// handler in batch order, and all of them arrive once.
func TestBusOrderPerKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
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

		// Every key delivered, each message once and in order.
		want := map[string][]int{}
		for k := range keys {
			for s := range perKey {
				key := fmt.Sprintf("k%02d", k)
				want[key] = append(want[key], s)
			}
		}
		mu.Lock()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("sequences delivered per key (-want +got):\n%s", diff)
		}
		mu.Unlock()
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM effects"); n != keys*perKey {
			t.Errorf("effects = %d, want %d", n, keys*perKey)
		}
		// SQLite's writers take turns at BEGIN, so only PostgreSQL shows
		// handlers of different keys running at once.
		if p := peak.Load(); db.Setup.IsPostgres() && p < 2 {
			t.Errorf("at most %d handler ran at once with Concurrency 4", p)
		}
		t.Logf("peak handlers in flight: %d", peak.Load())
	})
}

// busOutcome is what became of one message of a batch a Bus published.
type busOutcome struct {
	Name          string
	Failed        bool // its BatchError entry is not nil
	DeliveryError bool // the entry is the router's *DeliveryError
	Flaky         bool // the entry carries the handler's error
	HeldBack      bool // the entry wraps outbox.ErrHeldBack
	NotAttempted  bool // the entry wraps outbox.ErrNotAttempted
	NamesA2       bool // the entry names A2's id
	Effects       int  // effect rows of the message
}

// TestBusHoldsBackFailedKey: a failure holds back the later messages of its
// key in the batch, which do not run at all, and no other key.
func TestBusHoldsBackFailedKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		for _, conc := range []int{1, 3} {
			t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
				// A fresh effects table and router per run.
				if _, err := db.SQL().Exec("DROP TABLE IF EXISTS effects"); err != nil {
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
				var got, want []busOutcome
				for i, n := range names {
					e := be.Errs[i]
					var de *dispatch.DeliveryError
					got = append(got, busOutcome{
						Name:          n,
						Failed:        e != nil,
						DeliveryError: errors.As(e, &de),
						Flaky:         errors.Is(e, errFlaky),
						HeldBack:      errors.Is(e, outbox.ErrHeldBack),
						NotAttempted:  errors.Is(e, outbox.ErrNotAttempted),
						NamesA2:       e != nil && strings.Contains(e.Error(), batch[2].ID),
						Effects:       b.effects(t, "record", batch[i].ID),
					})
					switch n {
					case "A2": // the handler's own failure
						want = append(want, busOutcome{Name: n, Failed: true, DeliveryError: true, Flaky: true, NamesA2: true})
					case "A3", "A4": // held back, not run, without A2's cause
						want = append(want, busOutcome{Name: n, Failed: true, HeldBack: true, NotAttempted: true, NamesA2: true})
					default:
						want = append(want, busOutcome{Name: n, Effects: 1})
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("outcome per message (-want +got):\n%s", diff)
				}
				if !errors.Is(err, errFlaky) || !strings.Contains(err.Error(), "3 of 8 messages not delivered") {
					t.Errorf("summary %q", err)
				}

				// The relay sends the failed message and the held ones again.
				failing.Store(false)
				if err := bus.Publish(context.Background(), []outbox.Message{batch[2], batch[4], batch[7]}); err != nil {
					t.Fatal(err)
				}
				if n := testdb.Count(t, db, "SELECT COUNT(*) FROM effects"); n != len(batch) {
					t.Errorf("effects = %d, want %d", n, len(batch))
				}
			})
		}
	})
}

// TestBusCancelled: a cancelled context delivers nothing and reports every
// message as not attempted, the first of each key with the context's error.
func TestBusCancelled(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
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
		type entry struct{ Failed, NotAttempted, Canceled, HeldBack bool }
		var got []entry
		for i := range batch {
			e := be.Errs[i]
			got = append(got, entry{be.Failed(i), errors.Is(e, outbox.ErrNotAttempted), errors.Is(e, context.Canceled), errors.Is(e, outbox.ErrHeldBack)})
		}
		want := []entry{
			{Failed: true, NotAttempted: true, Canceled: true}, // A1
			{Failed: true, NotAttempted: true, Canceled: true}, // B1
			{Failed: true, NotAttempted: true, HeldBack: true}, // A2, behind A1
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM effects"); n != 0 {
			t.Errorf("effects = %d, want 0", n)
		}
	})
}

// TestBusEmptyBatch: nothing to deliver is success.
func TestBusEmptyBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.Open(t, testdb.SQLiteModernc))
	bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
