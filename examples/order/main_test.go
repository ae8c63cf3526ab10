package main

import (
	"testing"

	"github.com/keel-go/keel/examples/internal/demotest"
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

func TestRun(t *testing.T) { demotest.Output(t, run, want) }
