package outbox_test

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// TestRelayRunClosedDB guards Run against a *sql.DB closed under it, which
// no retry can fix. Before, the relay logged the error and retried forever,
// so a program that closed its database before stopping its relay hung, and
// one whose relay ran in a goroutine never learnt that it had stopped
// working. Now Run returns the error and logs it at Error level, and a Run
// started on a closed database returns at once.
func TestRelayRunClosedDB(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		db := testdb.Open(t, s) // on PostgreSQL, with the setup's Listener
		logs := newLogRecorder()
		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{Logger: logs.logger()})
		run := runRelay(t, r)
		holdsAll(t, r)
		if err := newOutbox(t, db.Store).Enqueue(ctx, outbox.Message{Name: "a", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		// Delivered means published and deleted: closing the database
		// between the two would leave the row to the second relay below.
		testdb.Eventually(t, 5*time.Second, "the relay to deliver", func() bool {
			return rec.count() == 1 && testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox") == 0
		})

		if err := db.SQL().Close(); err != nil {
			t.Fatal(err)
		}
		returned, err := run.Wait(15 * time.Second)
		if !returned {
			t.Fatal("Run still running 15s after its database was closed")
		}
		if err == nil || !strings.Contains(err.Error(), "database is closed") {
			t.Fatalf("Run returned %v; want the closed database's error", err)
		}
		if stopped := logs.find(slog.LevelError, "relay stopped"); len(stopped) != 1 || stopped[0].Attrs["err"] != err.Error() {
			t.Fatalf("Run returned %v and logged, at Error level:\n%s", err, logs)
		}

		// Closed mid-batch, by the publisher, as in a crash: the failures
		// cannot be recorded, which is said once, not once per message.
		handle := testdb.Reopen(t, s, db.DSN)
		if err := newOutbox(t, handle.Store).Enqueue(ctx,
			outbox.Message{Name: "a", Key: "k1", Payload: []byte{}}, outbox.Message{Name: "a", Key: "k2", Payload: []byte{}},
			outbox.Message{Name: "a", Key: "k3", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		crashLogs := newLogRecorder()
		var mu sync.Mutex
		var reports []outbox.BatchReport
		crash := outbox.PublisherFunc(func(context.Context, []outbox.Message) error {
			_ = handle.SQL().Close()
			return errCrashed
		})
		crashed := newRelay(t, handle.Store, crash, outbox.RelayConfig{Logger: crashLogs.logger(), Observer: outbox.ObserverFunc(func(b outbox.BatchReport) {
			mu.Lock()
			reports = append(reports, b)
			mu.Unlock()
		})})
		if returned, err := runRelay(t, crashed).Wait(15 * time.Second); !returned || err == nil {
			t.Fatalf("Run of a relay whose database closed mid-batch: returned %v, %v", returned, err)
		}
		if n, m := len(crashLogs.find(slog.LevelError, "could not record failed deliveries")), len(crashLogs.find(slog.LevelError, "cannot record a failed delivery")); n != 1 || m != 0 {
			t.Errorf("%d records for the batch and %d for single messages; want 1 and none:\n%s", n, m, crashLogs)
		}
		mu.Lock()
		if len(reports) != 1 || reports[0].Claimed != 3 || reports[0].Unrecorded != 3 {
			t.Errorf("batch reports %+v; want one batch of 3 unrecorded failures", reports)
		}
		mu.Unlock()

		// Started on a closed database, Run returns at once.
		runCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := r.Run(runCtx); err == nil || runCtx.Err() != nil {
			t.Fatalf("Run on a closed database returned %v after its context ended (%v); want the closed database's error", err, runCtx.Err())
		}
	})
}

// TestRelayListenerStopsWithRun guards the lifetime of the listener, on
// both drivers. Before, only lib/pq could listen (through
// RelayConfig.ListenDSN; a pgx program had no listener at all), and the
// goroutine that started LISTEN was not waited for. Now the store runs its
// Listener while a relay is subscribed and stops it, closing its
// connection and ending its goroutines, when the last one stops. It is not
// parallel: it counts the process's goroutines.
func TestRelayListenerStopsWithRun(t *testing.T) {
	for _, s := range []testdb.Setup{testdb.PostgresPQ, testdb.PostgresPgx} {
		t.Run(s.Name, func(t *testing.T) {
			testdb.Require(t, s)
			// A unique prefix gives the relay a channel of its own.
			prefix := "ls" + randomSuffix() + "_"
			channel := dialect.Channel(prefix)
			admin := testdb.Open(t, s, quietOptions(store.Options{TablePrefix: prefix}))
			relayDB, ready := openListening(t, s, admin.DSN, store.Options{TablePrefix: prefix})
			listening := func() int {
				return testdb.Count(t, admin, `SELECT COUNT(*) FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN %' AND position(? IN query) > 0`, channel)
			}
			if n := listening(); n != 0 {
				t.Fatalf("%d backends listen on %s before any relay runs", n, channel)
			}
			baseline := runtime.NumGoroutine()

			r := newRelay(t, relayDB.Store, &recorder{}, outbox.RelayConfig{})
			run := runRelay(t, r)
			waitReady(t, ready)
			testdb.Eventually(t, 10*time.Second, "a backend to LISTEN on "+channel, func() bool { return listening() == 1 })
			holdsAll(t, r)
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
			testdb.Eventually(t, 10*time.Second, "the LISTEN backend to go once Run returned", func() bool { return listening() == 0 })
			testdb.Eventually(t, 10*time.Second, "goroutines to return to their number before Run", func() bool {
				return runtime.NumGoroutine() <= baseline+2
			})
		})
	}
}
