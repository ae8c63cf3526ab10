package dispatch_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// startRelay runs a relay delivering the outbox of b's store to a Bus over
// b.router until the test ends. Nothing wires the two together: the units
// of work of b.runner wake the relay through the store when they commit.
func startRelay(t *testing.T, b bundle) *outbox.Relay {
	t.Helper()
	bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(b.db.Store, bus, outbox.RelayConfig{
		Logger:          quiet,
		LeaseDuration:   2 * time.Second,
		RetryBackoff:    10 * time.Millisecond,
		MaxRetryBackoff: 50 * time.Millisecond,
		MaxPollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return relay
}

// TestEndToEnd: a command commits and its unit of work wakes the relay, the
// bus runs the handler, whose own event travels the same way to a second
// handler. One handler fails once on the way; the relay's retry runs only
// it, and every effect happens exactly once.
func TestEndToEnd(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		ctx := context.Background()
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return b.cards.Save(ctx, tx, NewCard("cust-1"))
		}); err != nil {
			t.Fatal(err)
		}

		var awardRuns, receiptRuns atomic.Int32
		dispatch.Handle(b.router, "loyalty.award", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			awardRuns.Add(1)
			card, err := b.cards.Get(ctx, tx, e.Customer)
			if err != nil {
				return err
			}
			card.Award(e.Amount / 100)
			return b.cards.Save(ctx, tx, card)
		})
		dispatch.Handle(b.router, "mail.receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			if receiptRuns.Add(1) == 1 {
				return errFlaky
			}
			return b.effect(ctx, tx, "mail.receipt", e.Order)
		})
		var (
			mu      sync.Mutex
			awarded outbox.Message
		)
		dispatch.Handle(b.router, "mail.points", func(ctx context.Context, tx *uow.Tx, e PointsAwarded) error {
			mu.Lock()
			awarded, _ = dispatch.MessageFrom(ctx)
			mu.Unlock()
			return b.effect(ctx, tx, "mail.points", "")
		})
		var paidID atomic.Value // written by the command's own commit, below
		b.runner.AfterCommit(func(_ context.Context, msgs []outbox.Message) {
			for _, m := range msgs {
				if m.Name == "order.paid" {
					paidID.Store(m.ID)
				}
			}
		})
		startRelay(t, b)

		cmd := aggregate.WithMetadata(ctx, aggregate.Metadata{CorrelationID: "req-42"})
		start := time.Now()
		if err := b.runner.Do(cmd, func(ctx context.Context, tx *uow.Tx) error {
			o := PlaceOrder("o-1", "cust-1")
			o.Pay(2500)
			return b.orders.Save(ctx, tx, o)
		}); err != nil {
			t.Fatal(err)
		}

		testdb.Eventually(t, 10*time.Second, "both hops delivered", func() bool {
			return b.effects(t, "mail.points", "") == 1 && b.effects(t, "mail.receipt", "") == 1
		})
		t.Logf("two hops and a retry in %v", time.Since(start))
		// Once the outbox is empty no delivery is left to come, so the
		// counts below are final.
		testdb.Eventually(t, 10*time.Second, "the outbox drained", func() bool {
			s, err := b.runner.Outbox().Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return s.Pending == 0 && s.Parked == 0
		})

		var points int64
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			c, err := b.cards.Get(ctx, tx, "cust-1")
			points = c.Points
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if points != 25 {
			t.Errorf("points = %d, want 25 (awarded exactly once)", points)
		}
		if n := awardRuns.Load(); n != 1 {
			t.Errorf("loyalty.award ran %d times, want 1: the retry must run only the failed handler", n)
		}
		if n := receiptRuns.Load(); n != 2 {
			t.Errorf("mail.receipt ran %d times, want 2 (fail, then succeed)", n)
		}
		if got := b.effects(t, "mail.receipt", ""); got != 1 {
			t.Errorf("receipt effects = %d, want 1", got)
		}
		mu.Lock()
		defer mu.Unlock()
		id, _ := paidID.Load().(string)
		if awarded.CorrelationID != "req-42" || awarded.CausationID != id || id == "" {
			t.Errorf("points message correlation %q causation %q; want req-42 and the order.paid id %q",
				awarded.CorrelationID, awarded.CausationID, id)
		}
	})
}

// TestParkedAndRequeued: a permanent handler failure parks the message at
// once; after the fix, a requeue runs only the handler that had failed.
func TestParkedAndRequeued(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var fixed atomic.Bool
		var receiptRuns atomic.Int32
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			receiptRuns.Add(1)
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		dispatch.Handle(b.router, "ledger", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			if !fixed.Load() {
				return errors.Join(errors.New("no ledger account for customer"), outbox.ErrPermanent)
			}
			return b.effect(ctx, tx, "ledger", e.Order)
		})
		ob := startRelay(t, b).Outbox()
		ctx := context.Background()
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			o := PlaceOrder("o-1", "cust-1")
			o.Pay(100)
			return b.orders.Save(ctx, tx, o)
		}); err != nil {
			t.Fatal(err)
		}

		var parked []outbox.ParkedMessage
		testdb.Eventually(t, 10*time.Second, "the message to be parked", func() bool {
			var err error
			parked, err = ob.Parked(ctx, outbox.ParkedQuery{})
			if err != nil {
				t.Fatal(err)
			}
			return len(parked) == 1
		})
		if parked[0].Attempts != 1 {
			t.Errorf("parked after %d attempts, want 1: permanent errors park at once", parked[0].Attempts)
		}
		if got := b.effects(t, "receipt", ""); got != 1 {
			t.Errorf("receipt effects while parked = %d, want 1", got)
		}

		fixed.Store(true)
		if err := ob.Requeue(ctx, parked[0].ID); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 10*time.Second, "the ledger effect", func() bool { return b.effects(t, "ledger", "") == 1 })
		if got := b.effects(t, "receipt", ""); got != 1 {
			t.Errorf("receipt effects after requeue = %d, want 1", got)
		}
		if n := receiptRuns.Load(); n != 1 {
			t.Errorf("receipt ran %d times, want 1", n)
		}
	})
}
