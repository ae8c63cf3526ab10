package aggregatetest_test

import (
	"fmt"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/internal/testdb"
)

// A scenario: an account that received 100 pays 30 of rent. In a test, t
// is the test's *testing.T.
func ExampleGiven() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	aggregatetest.Given(t, NewAccount("acc-1"), func(a *Account) error {
		return a.Deposit(100)
	}).
		When(func(a *Account) error { return a.Withdraw(30, "rent") }).
		Then(&Withdrawn{Amount: 30, Memo: "rent"})

	fmt.Println("passed:", !t.Failed())
	// Output: passed: true
}

// A refusal: the error matches with errors.Is, and nothing is recorded.
func ExampleResult_ThenError() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	r := aggregatetest.Given(t, NewAccount("acc-1"), func(a *Account) error {
		return a.Deposit(10)
	}).
		When(func(a *Account) error { return a.Withdraw(30, "rent") }).
		ThenError(errInsufficient)

	fmt.Println(r.Err())
	// Output: withdraw 30 from 10: insufficient funds
}

// An aggregate in the apply style is given its prior events.
func ExampleGivenEvents() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	r := aggregatetest.GivenEvents(t, newWallet(), CoinsAdded{5}, CoinsSpent{2}).
		When(func(w *Wallet) error { return w.Spend(3) }).
		Then(CoinsSpent{3})

	fmt.Println("coins left:", r.Aggregate().Coins)
	// Output: coins left: 0
}
