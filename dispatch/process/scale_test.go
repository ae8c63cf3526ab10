package process_test

import (
	"fmt"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/internal/testdb"
)

// TestTenThousandProcesses runs 10,000 processes at once, each with a
// timer, to completion: each ships once, every timer is cancelled, and
// every process is completed. Under the race detector it runs 2,000, which
// still spans two pages of List and several relay batches; CI's run
// without it (CGO_ENABLED=0) takes the full 10,000.
func TestTenThousandProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 processes")
	}
	n := 10000
	if testdb.Race {
		n = 2000
	}
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		for start := 0; start < n; start += 1000 {
			b.emitEach(t, 1000, func(i int) (string, []aggregate.Event) {
				id := fmt.Sprintf("o%05d", start+i)
				return id, []aggregate.Event{Placed{id}, Reserved{id}, Paid{id}}
			})
		}
		b.session.Settle()
		b.session.RequireNoErrors()
		b.session.RequireNothingParked()
		if got := testdb.Count(t, b.db, "SELECT COUNT(DISTINCT order_id) FROM effects WHERE effect = 'ship'"); got != n {
			t.Fatalf("%d orders shipped; want %d", got, n)
		}
		if got := testdb.Count(t, b.db, "SELECT COUNT(*) FROM effects"); got != n {
			t.Fatalf("%d effects; want one per order, %d", got, n)
		}
		if got := testdb.Count(t, b.db, "SELECT COUNT(*) FROM "+b.db.Table("scheduled")); got != 0 {
			t.Fatalf("%d timers left; completing a process cancels its timers", got)
		}
		running, err := b.manager.List(t.Context(), process.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		all, err := b.manager.List(t.Context(), process.ListOptions{All: true, Limit: n + 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(running) != 0 || len(all) != n {
			t.Fatalf("%d running of %d processes; want none running of %d", len(running), len(all), n)
		}
	})
}
