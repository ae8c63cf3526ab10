// Package aggregatetest tests an aggregate's behaviour methods in the
// given/when/then form, with no database:
//
//	func TestWithdrawMoreThanTheBalance(t *testing.T) {
//		aggregatetest.Given(t, NewAccount("acc-1"), func(a *Account) error {
//			return a.Deposit(100)
//		}).
//			When(func(a *Account) error { return a.Withdraw(150) }).
//			ThenError(ErrInsufficientFunds)
//	}
//
// Given takes the aggregate as its constructor returns it and the
// behaviour that brought it to the state under test: keel stores an
// aggregate's state, not its events, so its history is the behaviour it went
// through. The events that history recorded count as saved: When sees the
// aggregate as a repository would load it, at version 1 with nothing
// pending, and Then compares only what When recorded. An aggregate written
// in the apply style (see Applier) can be given its prior events instead,
// with GivenEvents.
//
// Then asserts the events, ThenError the error (with errors.Is),
// ThenNothing that nothing was recorded and nothing failed, and ThenState
// the aggregate's state. A failed assertion reports, in sentences, what was
// expected and a go-cmp diff (-want +got) of what happened, so a test reads
// like the rule it checks and fails like a review comment.
//
// The name follows net/http/httptest: the package that tests code built on
// package aggregate sits beside it, and applications import it only from
// their _test.go files.
package aggregatetest
