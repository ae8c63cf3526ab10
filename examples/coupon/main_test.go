package main

import (
	"testing"

	"github.com/keel-go/keel/examples/internal/demotest"
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

func TestRun(t *testing.T) { demotest.Output(t, run, want) }
