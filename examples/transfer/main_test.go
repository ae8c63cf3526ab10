package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
)

// want is the narrative on every dialect. run itself fails if the
// balances and the money in transit ever stop adding up to 150.00.
const want = `
Accounts: alice 100.00, bob 50.00, carol 0.00, dave 0.00 (total 150.00).
carol's account is closed; dave's is frozen for review.

(a) One unit of work changes both accounts.
  t-1: alice pays bob 30.00.
     Committed: alice 70.00, bob 80.00, carol 0.00, dave 0.00 (total 150.00).
  t-2: alice pays carol 20.00.
     Refused (account is closed: carol). alice's debit rolled back with the unit:
     alice 70.00, bob 80.00, carol 0.00, dave 0.00 (total 150.00).

(b) Eventual consistency: each unit changes one account.
  t-3: alice pays bob 20.00.
     Debit committed: alice 50.00, bob 80.00, carol 0.00, dave 0.00; 20.00 in transit in the outbox (total 150.00).
     The relay delivers account.transfer_sent to the transfer process, and what follows:
     transfer:  t-3 started: alice debited; credit bob 20.00; wait 2s for the answer
     accounts:  bob credited 20.00
     transfer:  t-3: bob credited; completed
     Settled: alice 50.00, bob 100.00, carol 0.00, dave 0.00 (total 150.00).
  t-4: alice pays carol 25.00.
     Debit committed; the relay delivers, and carol's refusal leads to a refund:
     transfer:  t-4 started: alice debited; credit carol 25.00; wait 2s for the answer
     accounts:  carol is closed; it refuses the 25.00
     transfer:  t-4: credit refused (account closed); compensate: refund alice
     accounts:  alice refunded 25.00
     Settled: alice 50.00, bob 100.00, carol 0.00, dave 0.00 (total 150.00).
  t-5: alice pays dave 10.00.
     Debit committed; the relay delivers:
     transfer:  t-5 started: alice debited; credit dave 10.00; wait 2s for the answer
     accounts:  dave is frozen for review; the 10.00 is held, no answer yet
     Waiting: alice 40.00, bob 100.00, carol 0.00, dave 0.00; 10.00 in transit, held by 1 running transfer process (total 150.00).
     2s later the transfer's timer fires:
     transfer:  t-5: no answer in 2s; ask dave's account to expire the credit
     accounts:  dave refuses the 10.00 it held (timed out)
     transfer:  t-5: credit refused (timed out); compensate: refund alice
     accounts:  alice refunded 10.00
     Settled: alice 50.00, bob 100.00, carol 0.00, dave 0.00 (total 150.00).

Every step added up to 150.00: money was in an account, in a committed event on its way, or held by a transfer process.
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

// TestRun tells the example's story on every database the environment
// offers, each in a fresh one.
func TestRun(t *testing.T) {
	for _, name := range storetest.Available() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := &clock{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
			st := storetest.New(t, storetest.Config{Dialect: name, Options: store.Options{Now: c.Now}}).Store
			var out strings.Builder
			if err := tell(t.Context(), &out, st, c.wait); err != nil {
				t.Fatalf("tell: %v\noutput so far:\n%s", err, out.String())
			}
			if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), out.String()); diff != "" {
				t.Errorf("output differs (-want +got):\n%s", diff)
			}
		})
	}
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
			When(func(a *Account) error { return a.Receive("t-1", "alice", 2500) }).
			ThenError(ErrAccountClosed)
	})
	t.Run("a closed account refuses a transfer's credit", func(t *testing.T) {
		aggregatetest.Given(t, OpenAccount("carol", 0), func(a *Account) error { a.Close(); return nil }).
			When(func(a *Account) error { _ = a.Credit("t-1", "alice", 2500); return nil }).
			Then(CreditRefused{TransferID: "t-1", From: "alice", Amount: 2500, Reason: "account closed"})
	})
	t.Run("a frozen account holds a credit, and refuses it once expired", func(t *testing.T) {
		frozen := func(a *Account) error { a.Freeze(); return nil }
		aggregatetest.Given(t, OpenAccount("dave", 0), frozen).
			When(func(a *Account) error { return a.Credit("t-1", "alice", 1000) }).
			Then(CreditHeld{TransferID: "t-1", Amount: 1000})
		aggregatetest.Given(t, OpenAccount("dave", 0), frozen, func(a *Account) error { return a.Credit("t-1", "alice", 1000) }).
			When(func(a *Account) error {
				a.Expire("t-1", "alice", 1000)
				a.Expire("t-1", "alice", 1000)
				return a.Credit("t-1", "alice", 1000)
			}).
			Then(CreditRefused{TransferID: "t-1", From: "alice", Amount: 1000, Reason: "timed out"})
	})
	t.Run("a credit made stands when it expires", func(t *testing.T) {
		aggregatetest.Given(t, OpenAccount("bob", 0), func(a *Account) error { return a.Credit("t-1", "alice", 1000) }).
			When(func(a *Account) error { a.Expire("t-1", "alice", 1000); return nil }).
			ThenNothing()
	})
}
