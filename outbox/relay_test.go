package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

func TestRelayDeliversInOrder(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msgs := fill(t, ob, 50, 40)
		special := outbox.Message{
			Name: "invoice.paid", Topic: "billing", Key: "special", AggregateType: "Invoice", AggregateID: "inv-1",
			AggregateVersion: 1, Payload: []byte(`{"amount":5}`), Headers: map[string]string{"traceparent": "00-abc"},
			CorrelationID: "corr", CausationID: "cause", OccurredAt: time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC),
		}
		one := []outbox.Message{special}
		if err := ob.Enqueue(ctx, one...); err != nil {
			t.Fatal(err)
		}
		special.ID = one[0].ID
		var mu sync.Mutex
		var reports []outbox.BatchReport
		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{BatchSize: 300, Observer: outbox.ObserverFunc(func(b outbox.BatchReport) {
			mu.Lock()
			reports = append(reports, b)
			mu.Unlock()
		})})
		n, err := r.Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := len(msgs) + 1
		if n != want || rec.count() != want {
			t.Fatalf("Drain delivered %d, publisher got %d; want %d", n, rec.count(), want)
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Fatalf("%d duplicates in normal operation", dups)
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); left != 0 {
			t.Fatalf("%d rows left after delivery without retention", left)
		}
		// Batches are bounded by BatchSize, and the observer saw them all.
		delivered := 0
		for _, b := range reports {
			if b.Claimed > 300 || b.Delivered != b.Claimed || b.Failed+b.Parked+b.Held+b.Unrecorded != 0 {
				t.Errorf("batch report %+v", b)
			}
			delivered += b.Delivered
		}
		if delivered != want || len(reports) < want/300 {
			t.Fatalf("observer saw %d messages in %d batches", delivered, len(reports))
		}
		// Every field survives the round trip.
		var got outbox.Message
		for _, m := range rec.messages() {
			if m.Key == "special" {
				got = m
			}
		}
		if diff := cmp.Diff(special, got, cmpopts.IgnoreFields(outbox.Message{}, "Seq", "EnqueuedAt")); diff != "" {
			t.Errorf("round trip (-enqueued +delivered):\n%s", diff)
		}
		if got.Seq == 0 || time.Since(got.EnqueuedAt) > time.Minute {
			t.Errorf("relay-set fields: Seq %d, EnqueuedAt %v", got.Seq, got.EnqueuedAt)
		}
		// The relay handed its leases back.
		if held := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner <> ''"); held != 0 {
			t.Fatalf("%d leases still held after Drain", held)
		}
	})
}

func TestRelayRetentionAndCleanup(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		fill(t, ob, 10, 250)
		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{Retention: time.Hour})
		if n, err := r.Drain(ctx); err != nil || n != 2500 {
			t.Fatalf("Drain = %d, %v", n, err)
		}
		if kept := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE state = 1 AND delivered_at IS NOT NULL"); kept != 2500 {
			t.Fatalf("%d delivered rows kept, want 2500", kept)
		}
		// Nothing is old enough yet.
		if n, err := ob.Cleanup(ctx, time.Hour, 300); err != nil || n != 0 {
			t.Fatalf("Cleanup = %d, %v; want 0", n, err)
		}
		// Age 1,700 of them past the retention: only those go, over several
		// bounded statements. The 1,700th seq is read first: MySQL refuses
		// both LIMIT in an IN subquery and an UPDATE reading its own table.
		var last int64
		if err := db.SQL().QueryRow("SELECT seq FROM keel_outbox ORDER BY seq LIMIT 1 OFFSET 1699").Scan(&last); err != nil {
			t.Fatal(err)
		}
		res, err := db.SQL().Exec(db.Dialect().Rebind("UPDATE keel_outbox SET delivered_at = ? WHERE seq <= ?"),
			db.Dialect().Time(time.Now().Add(-2*time.Hour)), last)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1700 {
			t.Fatalf("aged %d rows", n)
		}
		if n, err := ob.Cleanup(ctx, time.Hour, 300); err != nil || n != 1700 {
			t.Fatalf("Cleanup = %d, %v; want 1700", n, err)
		}
		if kept := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); kept != 800 {
			t.Fatalf("%d rows left, want 800", kept)
		}
		// A running relay cleans up by itself.
		r2 := newRelay(t, db.Store, rec, outbox.RelayConfig{Retention: 20 * time.Millisecond, CleanupInterval: 20 * time.Millisecond})
		runRelay(t, r2)
		testdb.Eventually(t, 10*time.Second, "the cleaner to empty the table", func() bool {
			return testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox") == 0
		})
	})
}

func TestRelayStats(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{MaxAttempts: 5, RetryBackoff: time.Hour})
		if r.Outbox() == nil || r.Outbox().Store() != db.Store {
			t.Fatal("Relay.Outbox is not the outbox of the relay's store")
		}
		s, err := r.Outbox().Stats(ctx)
		if err != nil || s != (outbox.Stats{}) {
			t.Fatalf("empty Stats = %+v, %v", s, err)
		}
		fill(t, ob, 4, 3)
		time.Sleep(20 * time.Millisecond) // let the rows age
		s, err = ob.Stats(ctx)
		if err != nil || s.Pending != 12 || s.Retrying != 0 || s.Parked != 0 || s.OldestPending < 20*time.Millisecond || s.OldestPending > time.Minute {
			t.Fatalf("Stats = %+v, %v; want 12 pending, aged at least 20ms", s, err)
		}
		// key-000 fails for good, key-001 fails once and waits an hour to retry.
		rec.setFail(func(m outbox.Message) error {
			switch m.Key {
			case keyName(0):
				return outbox.ErrPermanent
			case keyName(1):
				return errors.New("broker busy")
			}
			return nil
		})
		if n, err := r.Drain(ctx); err != nil || n != 6 {
			t.Fatalf("Drain = %d, %v; want 6", n, err)
		}
		s, err = ob.Stats(ctx)
		// Pending: key-000 v2,v3 (held) and key-001 v1..v3; one of them retrying.
		if err != nil || s.Pending != 5 || s.Retrying != 1 || s.Parked != 1 || s.OldestPending == 0 {
			t.Fatalf("Stats = %+v, %v; want 5 pending, 1 retrying, 1 parked", s, err)
		}
		// While running, the only relay holds every partition.
		if n := r.Partitions(); n != 0 {
			t.Fatalf("a relay that is not running holds %d partitions", n)
		}
		runRelay(t, r)
		holdsAll(t, r)
	})
}

// TestRelayNotifyWakesIdleRelay checks that Store.Notify wakes an idle
// relay of the store at once, and that Outbox.Enqueue notifies by itself.
func TestRelayNotifyWakesIdleRelay(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		// No Listener and no notification with the INSERT: only this
		// process's wake-ups reach the relay.
		db := testdb.Open(t, s, quietOptions(store.Options{DisableNotify: true}))
		ob := newOutbox(t, db.Store)
		rec := &recorder{}
		// Polling so slow that only a wake-up can explain a prompt delivery.
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{MinPollInterval: time.Hour, MaxPollInterval: time.Hour})
		// A message waiting when the relay starts goes out with its first
		// polls; after them, the relay sleeps.
		if err := ob.Enqueue(ctx, outbox.Message{Name: "first", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		runRelay(t, r)
		testdb.Eventually(t, 5*time.Second, "the waiting message to be delivered", func() bool { return rec.count() == 1 })
		time.Sleep(500 * time.Millisecond) // let the polls of the start pass, on a loaded machine too
		// Written in a transaction of the test's own: nothing wakes the relay.
		tx, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.EnqueueTx(ctx, tx, outbox.Message{Name: "a", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := rec.count(); n != 1 {
			t.Fatalf("delivered %d without a wake-up; the poll interval should have kept the relay asleep", n-1)
		}
		start := time.Now()
		db.Notify()
		testdb.Eventually(t, 2*time.Second, "delivery after Notify", func() bool { return rec.count() == 2 })
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Notify took %v to deliver", d)
		}
		// Enqueue wakes the relay by itself.
		if err := ob.Enqueue(ctx, outbox.Message{Name: "b", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 2*time.Second, "delivery after Enqueue", func() bool { return rec.count() == 3 })
	})
}

// TestRelayListenNotifyAcrossConnections checks that a commit through
// another handle, as another process would make, wakes a relay whose store
// has a Listener, and that DisableNotify leaves it asleep.
func TestRelayListenNotifyAcrossConnections(t *testing.T) {
	eachPostgres(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		prefix := "ln" + randomSuffix() + "_"
		other := testdb.Open(t, s, quietOptions(store.Options{TablePrefix: prefix}))
		relayDB, ready := openListening(t, s, other.DSN, store.Options{TablePrefix: prefix})
		rec := &recorder{}
		r := newRelay(t, relayDB.Store, rec, outbox.RelayConfig{MinPollInterval: time.Hour, MaxPollInterval: time.Hour})
		runRelay(t, r)
		waitReady(t, ready)
		holdsAll(t, r)
		time.Sleep(50 * time.Millisecond) // let the first polls pass
		// Only the notification can wake the relay: Enqueue through the
		// other handle wakes that store's relays, of which there are none.
		ob := newOutbox(t, other.Store)
		start := time.Now()
		if err := ob.Enqueue(ctx, outbox.Message{Name: "a", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 5*time.Second, "delivery woken by NOTIFY", func() bool { return rec.count() == 1 })
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("NOTIFY took %v to deliver", d)
		}
		// With notifications disabled the relay stays asleep.
		silent, err := store.Open(other.SQL(), other.Dialect(), quietOptions(store.Options{TablePrefix: prefix, DisableNotify: true}))
		if err != nil {
			t.Fatal(err)
		}
		if err := newOutbox(t, silent).Enqueue(ctx, outbox.Message{Name: "b", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if n := rec.count(); n != 1 {
			t.Fatalf("delivered %d; a relay not notified should not have polled yet", n)
		}
	})
}

func TestEnqueueNotifiesOncePerCall(t *testing.T) {
	eachPostgres(t, func(t *testing.T, s testdb.Setup) {
		prefix := "nt" + randomSuffix() + "_"
		db := testdb.Open(t, s, quietOptions(store.Options{TablePrefix: prefix}))
		// The setup's own Listener, on a handle of its own, counts the
		// notifications; its first call says it is listening.
		l := &readyListener{Listener: testdb.Listener(s, testdb.OpenSQL(t, s, db.DSN), db.DSN), ready: make(chan struct{})}
		got := make(chan struct{}, 100)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			_ = l.Listen(ctx, dialect.Channel(prefix), func() { got <- struct{}{} })
		}()
		defer func() { cancel(); <-stopped }()
		waitReady(t, l.ready)
		<-got // the call that said it was listening
		ob := newOutbox(t, db.Store)
		// 2,500 messages in one call: three INSERT statements, one notification.
		msgs := make([]outbox.Message, 2500)
		for i := range msgs {
			msgs[i] = outbox.Message{Name: "a", Key: keyName(i % 7), Payload: []byte{}}
		}
		tx, err := db.SQL().Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.EnqueueTx(context.Background(), tx, msgs...); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			t.Fatal("notification delivered before commit")
		case <-time.After(100 * time.Millisecond):
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("no notification after commit")
		}
		select {
		case <-got:
			t.Fatal("second notification for one EnqueueTx call")
		case <-time.After(300 * time.Millisecond):
		}
	})
}

func TestRelayLateCommit(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		if !s.IsPostgres() && !s.IsMySQL() {
			t.Skip("SQLite has one writer at a time: a transaction holding a lower seq blocks later writers until it commits, so rows cannot commit out of seq order")
		}
		ctx := context.Background()
		db := testdb.Open(t, s)
		ob := newOutbox(t, db.Store)
		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{})

		txA, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = txA.Rollback() }()
		if err := ob.EnqueueTx(ctx, txA, outbox.Message{Name: "late", Key: "a", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		if err := ob.Enqueue(ctx, outbox.Message{Name: "early", Key: "b", Payload: []byte{}}, outbox.Message{Name: "early2", Key: "c", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Drain(ctx); err != nil || n != 2 {
			t.Fatalf("first Drain = %d, %v; want B's 2 rows", n, err)
		}
		if err := txA.Commit(); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Drain(ctx); err != nil || n != 1 {
			t.Fatalf("second Drain = %d, %v; want A's row", n, err)
		}
		got := rec.messages()
		if len(got) != 3 || got[2].Name != "late" || got[2].Seq >= got[0].Seq {
			t.Fatalf("got %v; want the late row, with the lowest seq, delivered last", got)
		}
	})
}

// TestRelaySettlesBesideOpenTransactions checks that a transaction holding
// an uncommitted outbox row keeps no relay from settling other rows: it
// deletes delivered rows, marks them delivered for retention and records
// failures at once. Before, on MariaDB, each of these statements scanned a
// small outbox and waited on the uncommitted row until the settle timeout
// ran out, and the batch was published again.
func TestRelaySettlesBesideOpenTransactions(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		if !s.IsPostgres() && !s.IsMySQL() {
			t.Skip("SQLite has one writer at a time: an open write transaction blocks every other writer, the relay's too")
		}
		ctx := context.Background()
		db := testdb.Open(t, s)
		ob := newOutbox(t, db.Store)
		open, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = open.Rollback() }()
		if err := ob.EnqueueTx(ctx, open, outbox.Message{Name: "open", Key: "open", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			cfg     outbox.RelayConfig
			fail    bool
			settled string // counts the batch's rows in their settled state
			want    int
		}{
			{"delete", outbox.RelayConfig{}, false, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'delete'", 0},
			{"retain", outbox.RelayConfig{Retention: time.Hour}, false, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'retain' AND state = 1", 2},
			{"fail", outbox.RelayConfig{RetryBackoff: time.Hour}, true, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'fail' AND state = 0 AND attempts = 1", 2},
		} {
			if err := ob.Enqueue(ctx, outbox.Message{Name: tc.name, Key: "a", Payload: []byte{}}, outbox.Message{Name: tc.name, Key: "b", Payload: []byte{}}); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			if tc.fail {
				rec.setFail(func(outbox.Message) error { return errBroker })
			}
			r := newRelay(t, db.Store, rec, tc.cfg)
			start := time.Now()
			n, err := r.Drain(ctx)
			if took := time.Since(start); err != nil || took > 3*time.Second {
				t.Fatalf("%s: Drain = %d, %v after %v; want it to settle at once beside the open transaction", tc.name, n, err, took)
			}
			if got := testdb.Count(t, db, tc.settled); got != tc.want {
				t.Fatalf("%s: %s = %d, want %d", tc.name, tc.settled, got, tc.want)
			}
		}
		if err := open.Commit(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRelayConfigErrors(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t, testdb.SQLiteModernc)
	pub := &recorder{}
	for _, tc := range []struct {
		cfg   outbox.RelayConfig
		field string
	}{
		{outbox.RelayConfig{BatchSize: -1}, "BatchSize"},
		{outbox.RelayConfig{BatchSize: 100000}, "BatchSize"},
		{outbox.RelayConfig{Retention: -time.Second}, "Retention"},
		{outbox.RelayConfig{LeaseDuration: time.Millisecond}, "LeaseDuration"},
		{outbox.RelayConfig{LeaseDuration: 3 * time.Second, PublishTimeout: 2 * time.Second}, "PublishTimeout"},
		{outbox.RelayConfig{MaxAttempts: -1}, "MaxAttempts"},
		{outbox.RelayConfig{RetryBackoff: time.Minute, MaxRetryBackoff: time.Second}, "MaxRetryBackoff"},
		{outbox.RelayConfig{Policy: outbox.FailurePolicy(7)}, "Policy"},
		{outbox.RelayConfig{MinPollInterval: time.Second, MaxPollInterval: time.Millisecond}, "MaxPollInterval"},
		{outbox.RelayConfig{CleanupBatch: -5}, "CleanupBatch"},
		{outbox.RelayConfig{MaxInFlight: -1}, "MaxInFlight"},
		{outbox.RelayConfig{MaxInFlight: 17}, "MaxInFlight"},
	} {
		_, err := outbox.NewRelay(db.Store, pub, tc.cfg)
		if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: err = %v; want ErrInvalidConfig naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := outbox.NewRelay(nil, pub, outbox.RelayConfig{}); !errors.Is(err, store.ErrInvalidConfig) {
		t.Errorf("nil store: %v", err)
	}
	if _, err := outbox.NewRelay(db.Store, nil, outbox.RelayConfig{}); !errors.Is(err, store.ErrInvalidConfig) {
		t.Errorf("nil publisher: %v", err)
	}
	// The table prefix is the store's, checked once where it is set.
	if _, err := store.Open(db.SQL(), db.Dialect(), store.Options{TablePrefix: "bad-prefix"}); !errors.Is(err, store.ErrBadIdentifier) {
		t.Errorf("bad prefix: %v", err)
	}
	if _, err := outbox.NewRelay(db.Store, pub, outbox.RelayConfig{}); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

// TestRelayNotMigrated checks that every operation on a database without
// keel's tables fails with store.ErrNotMigrated, and that Run says so in
// its log as well as in its error.
func TestRelayNotMigrated(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s)
		logs := newLogRecorder()
		r := newRelay(t, db.Store, &recorder{}, outbox.RelayConfig{Logger: logs.logger()})
		if _, err := r.Drain(ctx); !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Drain: %v", err)
		}
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := r.Run(runCtx)
		if !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Run: %v", err)
		}
		if stopped := logs.find(slog.LevelError, "relay stopped"); len(stopped) != 1 || err == nil || stopped[0].Attrs["err"] != err.Error() {
			t.Errorf("Run returned %v and logged, at Error level:\n%s", err, logs)
		}
		ob := r.Outbox()
		if _, err := ob.Stats(ctx); !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Stats: %v", err)
		}
		if _, err := ob.Parked(ctx, outbox.ParkedQuery{}); !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Parked: %v", err)
		}
		if _, err := ob.Cleanup(ctx, time.Hour, 0); !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Cleanup: %v", err)
		}
	})
}

func TestRelayRunTwice(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t, testdb.SQLiteModernc)
	r := newRelay(t, db.Store, &recorder{}, outbox.RelayConfig{})
	run := runRelay(t, r)
	testdb.Eventually(t, 5*time.Second, "Run to start", func() bool { return r.Partitions() > 0 })
	if _, err := r.Drain(context.Background()); err == nil {
		t.Fatal("Drain ran alongside Run")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("a second Run ran alongside the first")
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("Run returned %v after cancel; want nil", err)
	}
	if held := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner <> ''"); held != 0 {
		t.Fatalf("%d leases held after Run returned", held)
	}
	if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_relays"); n != 0 {
		t.Fatalf("%d relays registered after Run returned", n)
	}
}

// TestRelayWithoutListenerSaysItPolls checks that a PostgreSQL relay whose
// store has no Listener says, once, that commits in other processes reach
// it only by polling and how to fix that; with a Listener it says nothing
// of the kind.
func TestRelayWithoutListenerSaysItPolls(t *testing.T) {
	eachPostgres(t, func(t *testing.T, s testdb.Setup) {
		for _, listen := range []bool{false, true} {
			opts := quietOptions(store.Options{})
			db := testdb.Open(t, s, opts)
			if listen {
				db = testdb.Reopen(t, s, db.DSN) // the default: with the setup's Listener
			}
			logs := newLogRecorder()
			r := newRelay(t, db.Store, &recorder{}, outbox.RelayConfig{Logger: logs.logger()})
			run := runRelay(t, r)
			testdb.Eventually(t, 5*time.Second, "the relay to start", func() bool { return r.Partitions() > 0 })
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
			polls := logs.find(slog.LevelInfo, "polls")
			if len(logs.find(slog.LevelInfo, "acquired partition leases")) == 0 {
				t.Fatalf("listener %v: logs do not mention the leases:\n%s", listen, logs)
			}
			switch {
			case !listen && (len(polls) != 1 || !strings.Contains(polls[0].Message, "store.Options.Listener")):
				t.Fatalf("without a Listener, logs do not point to store.Options.Listener once:\n%s", logs)
			case listen && len(polls) != 0:
				t.Fatalf("with a Listener, logs say the relay polls:\n%s", logs)
			}
		}
	})
}
