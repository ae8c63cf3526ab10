package process_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// The kill test runs the process manager's host (a relay delivering to a
// Bus over the router of the fulfilment process) as a child process: this
// test binary, re-run with -test.run=TestProcessHostKillChild. The parent
// SIGKILLs hosts mid-run and starts new ones, then counts the outcomes in
// the test's own effects table.
const (
	envHostSetup = "KEEL_PROCESS_HOST_SETUP"
	envHostDSN   = "KEEL_PROCESS_HOST_DSN"
	killOrders   = 2000
	killWindow   = 2 * time.Second
)

func TestProcessHostKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		db := testdb.Open(t, s)
		createEffects(t, db)
		b := wire(t, db, killWindow)
		// Every order is placed and reserved; the even ones are paid at
		// once, and the odd ones never: their timers must cancel them.
		for start := 0; start < killOrders; start += 500 {
			b.emitEach(t, 500, func(i int) (string, []aggregate.Event) {
				n := start + i
				id := fmt.Sprintf("k%04d", n)
				events := []aggregate.Event{Placed{id}, Reserved{id}}
				if n%2 == 0 {
					events = append(events, Paid{id})
				}
				return id, events
			})
		}

		dir := t.TempDir()
		var hosts []*exec.Cmd
		start := func(name string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestProcessHostKillChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), envHostSetup+"="+s.Name, envHostDSN+"="+db.DSN)
			out, err := os.Create(filepath.Join(dir, name+".out"))
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			hosts = append(hosts, cmd)
			return cmd
		}
		t.Cleanup(func() {
			for _, h := range hosts {
				_ = h.Process.Kill()
				_ = h.Wait()
			}
			if t.Failed() {
				for i := range hosts {
					out, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("host-%d.out", i)))
					t.Logf("host-%d:\n%s", i, out)
				}
			}
		})
		ended := func() int {
			return testdb.Count(t, db, "SELECT COUNT(DISTINCT order_id) FROM effects WHERE effect IN ('ship', 'cancel')")
		}
		// Kill two hosts mid-run, each once it has ended some processes
		// and while timers are pending, then let a third finish.
		for i, progress := range []int{killOrders / 5, killOrders / 2} {
			h := start(fmt.Sprintf("host-%d", i))
			testdb.Eventually(t, 3*time.Minute, fmt.Sprintf("%d processes ended", progress), func() bool { return ended() >= progress })
			if err := h.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = h.Wait()
			t.Logf("killed host-%d with %d of %d processes ended and %d timers pending", i, ended(), killOrders,
				testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("scheduled")))
		}
		start("host-2")
		ob, err := outbox.New(db.Store)
		if err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 5*time.Minute, "every process to end and the outbox to empty", func() bool {
			st, err := ob.Stats(t.Context())
			return err == nil && ended() == killOrders && st.Pending == 0 && st.Scheduled == 0
		})

		// Count the outcomes in the test's own table, not keel's.
		per := map[string][]string{}
		rows, err := db.SQL().Query("SELECT order_id, effect FROM effects")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var o, e string
			if err := rows.Scan(&o, &e); err != nil {
				t.Fatal(err)
			}
			per[o] = append(per[o], e)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		outcomes := map[string]int{}
		for n := range killOrders {
			id := fmt.Sprintf("k%04d", n)
			es := per[id]
			slices.Sort(es)
			got := strings.Join(es, ",")
			switch {
			case got == "cancel,release":
			case got == "ship" && n%2 == 0:
			default:
				t.Fatalf("order %s (paid: %v) has effects %q; want ship once if paid in time, else release and cancel once", id, n%2 == 0, got)
			}
			outcomes[got]++
		}
		t.Logf("outcomes: %v", outcomes)
		if outcomes["cancel,release"] < killOrders/2 {
			t.Fatalf("%d orders cancelled; every unpaid order's timer (%d) must cancel it", outcomes["cancel,release"], killOrders/2)
		}
	})
}

// TestProcessHostKillChild is the host TestProcessHostKill starts: it
// delivers until it is killed.
func TestProcessHostKillChild(t *testing.T) {
	name := os.Getenv(envHostSetup)
	if name == "" {
		t.Skip("run by TestProcessHostKill")
	}
	s, err := testdb.SetupNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	db := testdb.Reopen(t, s, os.Getenv(envHostDSN))
	b := wire(t, db, killWindow)
	bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(db.Store, bus, outbox.RelayConfig{
		BatchSize:       200,
		LeaseDuration:   3 * time.Second, // a killed host's partitions are taken over soon
		PublishTimeout:  1500 * time.Millisecond,
		RetryBackoff:    10 * time.Millisecond,
		MaxRetryBackoff: 100 * time.Millisecond,
		Logger:          quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
}
