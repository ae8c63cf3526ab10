package aggregatetest_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/aggregate/aggregatetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var errInsufficient = errors.New("insufficient funds")

type Account struct {
	aggregate.Root
	Balance int64 `json:"balance"`
	Owner   string
	holds   int // unexported state is state too
}

type Deposited struct {
	Amount int64 `json:"amount"`
}

func (Deposited) EventName() string { return "account.deposited" }

type Withdrawn struct {
	Amount int64  `json:"amount"`
	Memo   string `json:"memo"`
}

func (*Withdrawn) EventName() string { return "account.withdrawn" }

func NewAccount(id string) *Account {
	a := &Account{}
	a.Init("account", id)
	return a
}

func (a *Account) Deposit(n int64) error {
	if n <= 0 {
		return errors.New("deposit must be positive")
	}
	a.Balance += n
	a.Record(Deposited{Amount: n})
	return nil
}

func (a *Account) Withdraw(n int64, memo string) error {
	if n > a.Balance {
		return fmt.Errorf("withdraw %d from %d: %w", n, a.Balance, errInsufficient)
	}
	a.Balance -= n
	a.holds++
	a.Record(&Withdrawn{Amount: n, Memo: memo})
	return nil
}

func deposit(n int64) func(*Account) error { return func(a *Account) error { return a.Deposit(n) } }

func withdraw(n int64, memo string) func(*Account) error {
	return func(a *Account) error { return a.Withdraw(n, memo) }
}

func TestPassingScenarios(t *testing.T) {
	t.Run("then events", func(t *testing.T) {
		r := aggregatetest.Given(t, NewAccount("acc-1"), deposit(100), deposit(20)).
			When(withdraw(30, "rent")).
			Then(&Withdrawn{Amount: 30, Memo: "rent"}).
			ThenState(&Account{Balance: 90, holds: 1})
		envs := r.Envelopes()
		if len(envs) != 1 || envs[0].AggregateVersion != 2 || envs[0].AggregateID != "acc-1" {
			t.Fatalf("the behaviour's event should be stamped for version 2 of acc-1 (the history counts as saved at version 1): %+v", envs)
		}
	})
	t.Run("then error", func(t *testing.T) {
		aggregatetest.Given(t, NewAccount("acc-1"), deposit(10)).
			When(withdraw(30, "rent")).
			ThenError(errInsufficient).
			ThenErrorContains("withdraw 30 from 10")
	})
	t.Run("then nothing", func(t *testing.T) {
		aggregatetest.Given(t, NewAccount("acc-1")).
			When(func(*Account) error { return nil }).
			ThenNothing()
	})
}

// recorder is a testing.TB that keeps the failures it is told of.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(r)
}

// failures runs scenario against a recorder and returns what it reported.
func failures(scenario func(t testing.TB)) (out string) {
	rec := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != rec {
			panic(p)
		}
		out = strings.Join(rec.msgs, "\n---\n") + "\n"
	}()
	scenario(rec)
	return
}

// golden compares got with testdata/name.golden. go-cmp varies the spaces
// of its diffs from run to run (to keep callers from parsing them), so they
// are normalised first.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, "\u00a0", " ")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("the failure reads differently from %s:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func TestFailuresReadAsSentencesWithADiff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scenario func(t testing.TB)
	}{
		{"wrong-events", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1"), deposit(100)).
				When(withdraw(30, "rent")).
				Then(&Withdrawn{Amount: 40, Memo: "rent"})
		}},
		{"missing-event", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1"), deposit(100)).
				When(withdraw(30, "rent")).
				Then(&Withdrawn{Amount: 30, Memo: "rent"}, Deposited{Amount: 5})
		}},
		{"unexpected-error", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1")).
				When(withdraw(30, "rent")).
				Then(&Withdrawn{Amount: 30, Memo: "rent"})
		}},
		{"expected-error-but-succeeded", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1"), deposit(100)).
				When(withdraw(30, "rent")).
				ThenError(errInsufficient)
		}},
		{"other-error", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1")).
				When(deposit(-1)).
				ThenError(errInsufficient)
		}},
		{"wrong-state", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1"), deposit(100)).
				When(withdraw(30, "rent")).
				ThenState(&Account{Balance: 60, Owner: "ann", holds: 1})
		}},
		{"failing-history", func(t testing.TB) {
			aggregatetest.Given(t, NewAccount("acc-1"), deposit(100), withdraw(500, "car"))
		}},
		{"no-id", func(t testing.TB) {
			aggregatetest.Given(t, &Account{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, failures(tc.scenario)) })
	}
}

func TestWhenRunsOnce(t *testing.T) {
	got := failures(func(t testing.TB) {
		fx := aggregatetest.Given(t, NewAccount("acc-1"), deposit(100))
		fx.When(withdraw(1, "")).Then(&Withdrawn{Amount: 1})
		fx.When(withdraw(1, ""))
	})
	if !strings.Contains(got, "When was already called") {
		t.Fatalf("a second When was not refused: %q", got)
	}
}

func TestPanickingBehaviourFailsTheTest(t *testing.T) {
	got := failures(func(t testing.TB) {
		aggregatetest.Given(t, NewAccount("acc-1")).When(func(*Account) error { panic("boom") })
	})
	if !strings.Contains(got, "panicked: boom") {
		t.Fatalf("a panic was not reported: %q", got)
	}
}

// Wallet is written in the apply style: behaviour records an event and
// applies it, and Apply alone rebuilds state from history.
type Wallet struct {
	aggregate.Root
	Coins int
}

type CoinsAdded struct{ N int }

func (CoinsAdded) EventName() string { return "wallet.coins_added" }

type CoinsSpent struct{ N int }

func (CoinsSpent) EventName() string { return "wallet.coins_spent" }

func (w *Wallet) Apply(e aggregate.Event) error {
	switch e := e.(type) {
	case CoinsAdded:
		w.Coins += e.N
	case CoinsSpent:
		w.Coins -= e.N
	default:
		return fmt.Errorf("wallet cannot apply %T", e)
	}
	return nil
}

func (w *Wallet) Spend(n int) error {
	if n > w.Coins {
		return errInsufficient
	}
	e := CoinsSpent{N: n}
	w.Record(e)
	return w.Apply(e)
}

func newWallet() *Wallet {
	w := &Wallet{}
	w.Init("wallet", "w-1")
	return w
}

func TestGivenEvents(t *testing.T) {
	aggregatetest.GivenEvents(t, newWallet(), CoinsAdded{5}, CoinsAdded{3}, CoinsSpent{2}).
		When(func(w *Wallet) error { return w.Spend(6) }).
		Then(CoinsSpent{6}).
		ThenState(&Wallet{Coins: 0})
	aggregatetest.GivenEvents(t, newWallet(), CoinsAdded{1}).
		When(func(w *Wallet) error { return w.Spend(2) }).
		ThenError(errInsufficient)

	got := failures(func(t testing.TB) { aggregatetest.GivenEvents(t, newWallet(), Deposited{Amount: 1}) })
	if !strings.Contains(got, "step 1 of the history failed") || !strings.Contains(got, "apply account.deposited: wallet cannot apply") {
		t.Fatalf("an event that does not apply: %q", got)
	}
}
