package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate/aggregatetest"
	"github.com/keel-go/keel/internal/testdb"
)

// runMain makes the test binary run the program itself when it is
// re-executed by TestQuickstart.
const runMain = "KEEL_QUICKSTART_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMain) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuickstart runs the program twice as a process of its own, in an
// empty directory: the first run creates the account, the second loads and
// changes it.
func TestQuickstart(t *testing.T) {
	testdb.Require(t, testdb.SQLiteMattn) // the program imports mattn/go-sqlite3
	dir := t.TempDir()
	var got []string
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), runMain+"=1")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("quickstart: %v\noutput: %s", err, out)
		}
		got = append(got, string(out))
	}
	want := []string{
		"acc-1: balance 100, version 1; outbox messages waiting for a relay: 1\n",
		"acc-1: balance 200, version 2; outbox messages waiting for a relay: 2\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output differs (-want +got):\n%s", diff)
	}
}

// TestDeposit checks the account's behaviour without a database.
func TestDeposit(t *testing.T) {
	aggregatetest.Given(t, OpenAccount("acc-1"), func(a *Account) error { a.Deposit(100); return nil }).
		When(func(a *Account) error { a.Deposit(50); return nil }).
		Then(Deposited{Amount: 50}).
		ThenState(&Account{Balance: 150})
}
