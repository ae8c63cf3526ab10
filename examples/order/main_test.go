package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/dispatch/dispatchtest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
	"github.com/keel-go/keel/uow"
)

const want = `
Stock: 5 x keel-mug.

1. The customer places o-1 for 3 x keel-mug.
   The unit saved the order alone: status placed, version 1.
   The relay delivers order.placed; the warehouse times out on the first try:
   mail.order-received:     we have your order o-1 for 3 x keel-mug
   inventory.reserve-stock: failed: warehouse database timed out; the relay will deliver the message again
   inventory.reserve-stock: reserved 3 x keel-mug for o-1, 2 left
   orders.confirm:          order o-1 is now confirmed
   Handler runs for order.placed: mail.order-received 1, inventory.reserve-stock 2.
   The redelivery ran only the handler that had failed; the mail went out once.

2. The customer places o-2 for 4 x keel-mug; only 2 are left.
   Accepted: the order cannot see the stock: status placed, version 1.
   The relay delivers order.placed; the shortage is an outcome, not an error:
   mail.order-received:     we have your order o-2 for 4 x keel-mug
   inventory.reserve-stock: only 2 x keel-mug left, o-2 wants 4: reservation refused
   orders.reject:           order o-2 is now rejected
   mail.order-rejected:     sorry, order o-2 was cancelled (out of stock); you were not charged

Finally:
   o-1: status confirmed, version 2.
   o-2: status rejected (out of stock), version 2.
   keel-mug: 2 available, 3 reserved; 5 in total, as at the start.
`

// TestRun tells the example's story on every database the environment
// offers, each in a fresh one.
func TestRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		t.Parallel()
		var out strings.Builder
		if err := tell(t.Context(), &out, st); err != nil {
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
		o, err := PlaceOrder("o-1", "keel-mug", 3)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	t.Run("a placed order is confirmed", func(t *testing.T) {
		aggregatetest.Given(t, placed()).
			When(func(o *Order) error { return o.Confirm() }).
			Then(OrderConfirmed{}).
			ThenState(&Order{SKU: "keel-mug", Qty: 3, Status: "confirmed"})
	})
	t.Run("confirming twice records nothing", func(t *testing.T) {
		aggregatetest.Given(t, placed(), (*Order).Confirm).
			When((*Order).Confirm).
			ThenNothing()
	})
	t.Run("a rejected order cannot be confirmed", func(t *testing.T) {
		aggregatetest.Given(t, placed(), func(o *Order) error { return o.Reject("out of stock") }).
			When((*Order).Confirm).
			ThenErrorContains("was rejected; it cannot be confirmed")
	})
	t.Run("stock is reserved, or the refusal recorded", func(t *testing.T) {
		aggregatetest.Given(t, NewStock("keel-mug", 5)).
			When(func(s *Stock) error { s.Reserve("o-1", 3); return nil }).
			Then(StockReserved{OrderID: "o-1", Qty: 3})
		aggregatetest.Given(t, NewStock("keel-mug", 2)).
			When(func(s *Stock) error { s.Reserve("o-2", 4); return nil }).
			Then(ReservationRefused{OrderID: "o-2", Qty: 4, Available: 2})
	})
}

// TestPlacingAnOrderConfirmsIt runs the customer's command and everything
// it causes through the shop's own router, then reads what happened.
func TestPlacingAnOrderConfirmsIt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
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
		shop.failNextReservation.Store(true)
		if err := s.Do(func(ctx context.Context, tx *uow.Tx) error {
			o, err := PlaceOrder("o-1", "keel-mug", 3)
			if err != nil {
				return err
			}
			return shop.orders.Save(ctx, tx, o)
		}); err != nil {
			t.Fatal(err)
		}
		s.RequirePublishedNames("order.placed o-1", "stock.reserved keel-mug", "order.confirmed o-1")
		s.RequireHandled("mail.order-received", 1)
		s.RequireHandled("inventory.reserve-stock", 1)
		s.RequireError("order.placed", errWarehouseTimeout)
		s.RequireNotPublished("order.rejected")
		s.RequireNothingParked()

		o, err := shop.orders.Get(t.Context(), st.DB(), "o-1")
		if err != nil || o.Status != "confirmed" {
			t.Fatalf("o-1: %+v, %v; want it confirmed", o, err)
		}
	})
}
