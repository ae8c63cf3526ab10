package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/dispatch/dispatchtest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
	"github.com/keel-go/keel/uow"
)

const want = `
Stock: 5 x keel-mug.

1. The customer places o-1 for 3 x keel-mug (30.00).
   The order is saved alone. Its process starts; the warehouse times out on the first try:
   fulfilment:        o-1 started: reserve 3 x keel-mug; wait 2s for 30.00
   warehouse:         failed: warehouse database timed out; the relay will deliver the command again
   warehouse:         reserved 3 x keel-mug for o-1, 2 left
   fulfilment:        o-1: stock reserved
   The customer pays:
   fulfilment:        o-1: paid 30.00; payment timer cancelled
   fulfilment:        o-1: reserved and paid; confirm it; completed
   orders:            order o-1 is now confirmed

2. The customer places o-2 for 1 x keel-mug (10.00), and never pays.
   fulfilment:        o-2 started: reserve 1 x keel-mug; wait 2s for 10.00
   warehouse:         reserved 1 x keel-mug for o-2, 1 left
   fulfilment:        o-2: stock reserved
   Running processes: 1. o-2 waits for its payment timer, due in 2s.
   2s later the payment timer fires:
   fulfilment:        o-2: not paid in time; undo warehouse.release; cancel the order
   warehouse:         released o-2's units of keel-mug, 2 left
   orders:            order o-2 is now cancelled

3. The customer places o-3 for 4 x keel-mug (40.00) and pays at once; only 2 are left.
   fulfilment:        o-3 started: reserve 4 x keel-mug; wait 2s for 40.00
   fulfilment:        o-3: paid 40.00; payment timer cancelled
   warehouse:         only 2 x keel-mug left, o-3 wants 4: reservation refused
   fulfilment:        o-3: out of stock; undo payments.refund; cancel the order
   payments:          refunded 40.00 for o-3
   orders:            order o-3 is now cancelled

Finally:
   o-1: order confirmed; process completed after 3 deliveries.
   o-2: order cancelled (not paid in time); process compensated after 3 deliveries.
   o-3: order cancelled (out of stock); process compensated after 3 deliveries.
   keel-mug: 2 available, 3 reserved; 5 in total, as at the start.
   Running processes: 0.
`

// clock is a store clock the test moves instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// wait moves the clock on by d, as the program sleeps d.
func (c *clock) wait(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return nil
}

// eachWithClock runs fn on a fresh database of every dialect the
// environment offers, with a store whose clock the test moves.
func eachWithClock(t *testing.T, fn func(t *testing.T, st *store.Store, c *clock)) {
	for _, name := range storetest.Available() {
		t.Run(name, func(t *testing.T) {
			c := &clock{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
			fn(t, storetest.New(t, storetest.Config{Dialect: name, Options: store.Options{Now: c.Now}}).Store, c)
		})
	}
}

// TestRun tells the example's story on every database the environment
// offers, each in a fresh one, with the payment window passing on the
// store's clock.
func TestRun(t *testing.T) {
	eachWithClock(t, func(t *testing.T, st *store.Store, c *clock) {
		t.Parallel()
		var out strings.Builder
		if err := tell(t.Context(), &out, st, c.wait); err != nil {
			t.Fatalf("tell: %v\noutput so far:\n%s", err, out.String())
		}
		if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), out.String()); diff != "" {
			t.Errorf("output differs (-want +got):\n%s", diff)
		}
	})
}

// The order's rules, without a database.
func TestOrderRules(t *testing.T) {
	placed := func() *Order {
		o, err := PlaceOrder("o-1", "keel-mug", 3, 3000)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	t.Run("a placed order is confirmed", func(t *testing.T) {
		aggregatetest.Given(t, placed()).
			When(func(o *Order) error { return o.Confirm() }).
			Then(OrderConfirmed{}).
			ThenState(&Order{SKU: "keel-mug", Qty: 3, Amount: 3000, Status: "confirmed"})
	})
	t.Run("confirming twice records nothing", func(t *testing.T) {
		aggregatetest.Given(t, placed(), (*Order).Confirm).
			When((*Order).Confirm).
			ThenNothing()
	})
	t.Run("a cancelled order cannot be confirmed", func(t *testing.T) {
		aggregatetest.Given(t, placed(), func(o *Order) error { return o.Cancel("out of stock") }).
			When((*Order).Confirm).
			ThenErrorContains("was cancelled; it cannot be confirmed")
	})
	t.Run("stock is reserved, or the refusal recorded", func(t *testing.T) {
		aggregatetest.Given(t, NewStock("keel-mug", 5)).
			When(func(s *Stock) error { s.Reserve("o-1", 3); return nil }).
			Then(StockReserved{OrderID: "o-1", Qty: 3})
		aggregatetest.Given(t, NewStock("keel-mug", 2)).
			When(func(s *Stock) error { s.Reserve("o-2", 4); return nil }).
			Then(ReservationRefused{OrderID: "o-2", Qty: 4, Available: 2})
	})
	t.Run("released stock is available again, once", func(t *testing.T) {
		aggregatetest.Given(t, NewStock("keel-mug", 5), func(s *Stock) error { s.Reserve("o-1", 3); return nil }).
			When(func(s *Stock) error { s.Release("o-1"); s.Release("o-1"); return nil }).
			Then(StockReleased{OrderID: "o-1", Qty: 3})
	})
}

// TestUnpaidOrderIsCancelled runs the shop through the test kit: an
// order nobody pays is cancelled when its timer fires, and its stock
// released, and the timer fires once.
func TestUnpaidOrderIsCancelled(t *testing.T) {
	eachWithClock(t, func(t *testing.T, st *store.Store, c *clock) {
		t.Parallel()
		shop, router, err := newShop(st)
		if err != nil {
			t.Fatal(err)
		}
		s := dispatchtest.New(t, shop.runner, router, dispatchtest.Config{})
		if err := s.Do(func(ctx context.Context, tx *uow.Tx) error {
			return shop.stock.Save(ctx, tx, NewStock("keel-mug", 5))
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Do(func(ctx context.Context, tx *uow.Tx) error {
			o, err := PlaceOrder("o-1", "keel-mug", 3, 3000)
			if err != nil {
				return err
			}
			return shop.orders.Save(ctx, tx, o)
		}); err != nil {
			t.Fatal(err)
		}
		s.RequirePublishedNames("order.placed o-1", "warehouse.reserve o-1", "stock.reserved keel-mug")
		_ = c.wait(PaymentWindow - time.Millisecond)
		s.Settle()
		s.RequireNotPublished("fulfilment.payment_overdue")
		_ = c.wait(time.Millisecond)
		s.Settle()
		_ = c.wait(time.Hour)
		s.Settle()
		s.RequirePublished("fulfilment.payment_overdue", "o-1")
		s.RequireHandled("process:fulfilment/fulfilment.payment_overdue", 1)
		s.RequireHandled("warehouse.release", 1)
		s.RequireHandled("orders.cancel", 1)
		s.RequireNoErrors()
		s.RequireNothingParked()
		o, err := shop.orders.Get(t.Context(), st.DB(), "o-1")
		if err != nil || o.Status != "cancelled" || o.Reason != "not paid in time" {
			t.Fatalf("o-1: %+v, %v; want it cancelled as not paid in time", o, err)
		}
		mugs, err := shop.stock.Get(t.Context(), st.DB(), "keel-mug")
		if err != nil || mugs.Available != 5 {
			t.Fatalf("keel-mug: %+v, %v; want all 5 available again", mugs, err)
		}
	})
}
