package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
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

// The account's rules, without a database.
func TestAccountRules(t *testing.T) {
	t.Run("a transfer takes the money out and sends it on its way", func(t *testing.T) {
		aggregatetest.Given(t, OpenAccount("alice", 10000)).
			When(func(a *Account) error { return a.Send("t-1", "bob", 2500) }).
			Then(TransferSent{TransferID: "t-1", To: "bob", Amount: 2500}).
			ThenState(&Account{Balance: 7500})
	})
	t.Run("no more than the balance", func(t *testing.T) {
		aggregatetest.Given(t, OpenAccount("alice", 1000)).
			When(func(a *Account) error { return a.Debit("t-1", "bob", 2500) }).
			ThenError(ErrInsufficientFunds)
	})
	t.Run("a closed account takes no credit", func(t *testing.T) {
		aggregatetest.Given(t, OpenAccount("carol", 0), func(a *Account) error { a.Close(); return nil }).
			When(func(a *Account) error { return a.Credit("t-1", "alice", 2500) }).
			ThenError(ErrAccountClosed)
	})
}
