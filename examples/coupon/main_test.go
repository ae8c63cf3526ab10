package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
)

// want is the narrative on every dialect: the race in step 3 has one
// outcome whichever order wins it.
const want = `
Issued gift coupons GC-10 (10.00), GC-25 (25.00), GC-50 (50.00), GC-5 (5.00).
Placed orders o-1 (35.00), o-2 (60.00), o-3 (40.00), o-4 (40.00).

1. Pay o-1 with GC-10 and GC-25.
   o-1: paid, due 0.00 (version 2)
   GC-10: redeemed by o-1 (version 2)
   GC-25: redeemed by o-1 (version 2)
   Outbox: 5 new events in the same commit (1 order.paid, 2 coupon.redeemed, 2 order.paid_with_coupon).

2. Pay o-2 with GC-50 and GC-10 (GC-10 was spent on o-1).
   Refused: coupon already redeemed: GC-10 was spent on order o-1.
   The unit rolled back, including GC-50, which the order had already redeemed in memory:
   o-2: unpaid, due 60.00 (version 1)
   GC-50: unredeemed (version 1)
   Outbox: no new events.

3. o-3 and o-4 both try to pay with GC-50, at the same moment.
   Exactly one order paid with GC-50; the other was refused with ErrCouponRedeemed.
   GC-50 was saved once (version 2). If both units read GC-50 before either committed
   (PostgreSQL runs them side by side), the loser's save hit a version conflict, Do ran it
   again, and the rerun found the coupon spent. SQLite queues the two units at BEGIN, so
   the second one reads the spent coupon straight away.
   Outbox: 3 new events in the same commit (1 coupon.redeemed, 1 order.paid, 1 order.paid_with_coupon).

4. The version check, step by step: two requests load GC-5, then both try to spend it.
   Both copies were loaded at version 1.
   The first saves: GC-5 is now at version 2.
   The second fails: keel: version conflict: gift_coupon "GC-5" was loaded at version 1 but version 2 is stored
   (errors.Is(err, repository.ErrConflict) = true; expected version 1, stored 2).
   Inside runner.Do the same error re-runs the unit with fresh loads.
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

// The coupon and order rules, without a database.
func TestCouponRules(t *testing.T) {
	t.Run("coupons pay an order, the last one whole", func(t *testing.T) {
		gc10, gc50 := IssueCoupon("GC-10", 1000), IssueCoupon("GC-50", 5000)
		aggregatetest.Given(t, PlaceOrder("o-1", 3500)).
			When(func(o *Order) error { return o.PayWithCoupons([]*GiftCoupon{gc10, gc50}) }).
			Then(PaidWithCoupon{CouponID: "GC-10", Amount: 1000}, PaidWithCoupon{CouponID: "GC-50", Amount: 2500}, OrderPaid{})
	})
	t.Run("a coupon is spent once", func(t *testing.T) {
		aggregatetest.Given(t, IssueCoupon("GC-10", 1000), func(c *GiftCoupon) error { return c.RedeemFor("o-1") }).
			When(func(c *GiftCoupon) error { return c.RedeemFor("o-2") }).
			ThenError(ErrCouponRedeemed).
			ThenErrorContains("was spent on order o-1")
	})
}
