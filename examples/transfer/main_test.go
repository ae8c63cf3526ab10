package main

import (
	"testing"

	"github.com/keel-go/keel/examples/internal/demotest"
)

// want is the narrative on every dialect. run itself fails if the
// balances and the money in transit ever stop adding up to 150.00.
const want = `
Accounts: alice 100.00, bob 50.00, carol 0.00 (total 150.00).
carol's account is closed.

(a) One unit of work changes both accounts.
  t-1: alice pays bob 30.00.
     Committed: alice 70.00, bob 80.00, carol 0.00 (total 150.00).
  t-2: alice pays carol 20.00.
     Refused (account is closed: carol). alice's debit rolled back with the unit:
     alice 70.00, bob 80.00, carol 0.00 (total 150.00).

(b) Eventual consistency: each unit changes one account.
  t-3: alice pays bob 20.00.
     Debit committed: alice 50.00, bob 80.00, carol 0.00; 20.00 in transit in the outbox (total 150.00).
     The relay delivers account.transfer_sent:
     transfers.credit-payee: bob credited 20.00 (account.credited)
     Settled: alice 50.00, bob 100.00, carol 0.00 (total 150.00).
  t-4: alice pays carol 25.00.
     Debit committed: alice 25.00, bob 100.00, carol 0.00; 25.00 in transit in the outbox (total 150.00).
     The relay delivers account.transfer_sent, then the refusal it leads to:
     transfers.credit-payee: carol is closed; it refuses the 25.00 (account.credit_refused)
     transfers.refund-payer: alice refunded 25.00 (account.refunded)
     Settled: alice 50.00, bob 100.00, carol 0.00 (total 150.00).

Every step added up to 150.00: money was in an account or in a committed event on its way.
`

func TestRun(t *testing.T) { demotest.Output(t, run, want) }
