package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

func TestRelayDeliversInOrder(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db, outbox.Config{})
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
		r := newRelay(t, db, rec, outbox.RelayConfig{BatchSize: 300, Observer: outbox.ObserverFunc(func(b outbox.BatchReport) {
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
		if left := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox"); left != 0 {
			t.Fatalf("%d rows left after delivery without retention", left)
		}
		// Batches are bounded by BatchSize, and the observer saw them all.
		delivered := 0
		for _, b := range reports {
			if b.Claimed > 300 || b.Delivered != b.Claimed || b.Failed+b.Parked+b.Held != 0 {
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
		if got.ID != special.ID || got.Name != special.Name || got.Topic != "billing" || got.AggregateType != "Invoice" ||
			got.AggregateID != "inv-1" || got.AggregateVersion != 1 || string(got.Payload) != `{"amount":5}` ||
			got.Headers["traceparent"] != "00-abc" || got.CorrelationID != "corr" || got.CausationID != "cause" ||
			!got.OccurredAt.Equal(special.OccurredAt) || got.Seq == 0 || got.Attempts != 0 ||
			time.Since(got.EnqueuedAt) > time.Minute {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, special)
		}
		// The relay handed its leases back.
		if held := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner <> ''"); held != 0 {
			t.Fatalf("%d leases still held after Drain", held)
		}
	})
}

func TestRelayRetentionAndCleanup(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db, outbox.Config{})
		fill(t, ob, 10, 250)
		rec := &recorder{}
		r := newRelay(t, db, rec, outbox.RelayConfig{Retention: time.Hour, CleanupBatch: 300})
		if n, err := r.Drain(ctx); err != nil || n != 2500 {
			t.Fatalf("Drain = %d, %v", n, err)
		}
		if kept := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE state = 1 AND delivered_at IS NOT NULL"); kept != 2500 {
			t.Fatalf("%d delivered rows kept, want 2500", kept)
		}
		// Nothing is old enough yet.
		if n, err := r.Cleanup(ctx); err != nil || n != 0 {
			t.Fatalf("Cleanup = %d, %v; want 0", n, err)
		}
		// Age 1,700 of them past the retention: only those go, over several bounded statements.
		old := time.Now().Add(-2 * time.Hour)
		oldArg := any(old.UnixMicro())
		if strings.Contains(ob.Dialect(), "postgres") {
			oldArg = old
		}
		res, err := db.Exec(rebind(ob, "UPDATE keel_outbox SET delivered_at = ? WHERE seq IN (SELECT seq FROM keel_outbox ORDER BY seq LIMIT 1700)"), oldArg)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1700 {
			t.Fatalf("aged %d rows", n)
		}
		if n, err := r.Cleanup(ctx); err != nil || n != 1700 {
			t.Fatalf("Cleanup = %d, %v; want 1700", n, err)
		}
		if kept := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox"); kept != 800 {
			t.Fatalf("%d rows left, want 800", kept)
		}
		// A running relay cleans up by itself.
		r2 := newRelay(t, db, rec, outbox.RelayConfig{Retention: 20 * time.Millisecond, CleanupInterval: 20 * time.Millisecond})
		runRelay(t, r2)
		eventually(t, 10*time.Second, "the cleaner to empty the table", func() bool {
			return countRows(t, db, "SELECT COUNT(*) FROM keel_outbox") == 0
		})
	})
}

func rebind(ob *outbox.Outbox, q string) string {
	if ob.Dialect() != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + string(rune('0'+n)))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func TestRelayStats(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db, outbox.Config{})
		rec := &recorder{}
		r := newRelay(t, db, rec, outbox.RelayConfig{MaxAttempts: 5, RetryBackoff: time.Hour})
		s, err := r.Stats(ctx)
		if err != nil || s != (outbox.Stats{}) {
			t.Fatalf("empty Stats = %+v, %v", s, err)
		}
		fill(t, ob, 4, 3)
		time.Sleep(20 * time.Millisecond)
		s, err = r.Stats(ctx)
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
		s, err = r.Stats(ctx)
		// Pending: key-000 v2,v3 (held) and key-001 v1..v3; one of them retrying.
		if err != nil || s.Pending != 5 || s.Retrying != 1 || s.Parked != 1 || s.OldestPending == 0 {
			t.Fatalf("Stats = %+v, %v; want 5 pending, 1 retrying, 1 parked", s, err)
		}
		// While running, the only relay holds every partition.
		runRelay(t, r)
		eventually(t, 5*time.Second, "the relay to hold all partitions", func() bool {
			s, err := r.Stats(ctx)
			return err == nil && s.Partitions == outbox.Partitions
		})
	})
}

func TestRelayNotifyWakesIdleRelay(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db, outbox.Config{DisableNotify: true})
		rec := &recorder{}
		// Polling so slow that only a wake-up can explain a prompt delivery.
		r := newRelay(t, db, rec, outbox.RelayConfig{MinPollInterval: time.Hour, MaxPollInterval: time.Hour})
		runRelay(t, r)
		eventually(t, 5*time.Second, "the relay to hold its partitions", func() bool {
			s, _ := r.Stats(ctx)
			return s.Partitions == outbox.Partitions
		})
		time.Sleep(50 * time.Millisecond) // let the first poll pass
		if err := ob.Enqueue(ctx, outbox.Message{Name: "a", Key: "k", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := rec.count(); n != 0 {
			t.Fatalf("delivered %d without a wake-up; the poll interval should have kept the relay asleep", n)
		}
		start := time.Now()
		r.Notify()
		eventually(t, 2*time.Second, "delivery after Notify", func() bool { return rec.count() == 1 })
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Notify took %v to deliver", d)
		}
	})
}

func TestRelayListenNotifyAcrossConnections(t *testing.T) {
	prefix := "ln" + randomSuffix() + "_"
	db, dsn := openDSN(t, "postgres", outbox.Config{TablePrefix: prefix})
	ctx := context.Background()
	rec := &recorder{}
	r := newRelay(t, db, rec, outbox.RelayConfig{
		TablePrefix: prefix, ListenDSN: dsn, MinPollInterval: time.Hour, MaxPollInterval: time.Hour,
	})
	runRelay(t, r)
	select {
	case <-outbox.Listening(r):
	case <-time.After(10 * time.Second):
		t.Fatal("listener never started")
	}
	time.Sleep(50 * time.Millisecond) // let the first poll pass
	// Another handle, as another process would have: only NOTIFY can wake the relay.
	other := openExisting(t, "postgres", dsn)
	ob := newOutbox(t, other, outbox.Config{TablePrefix: prefix})
	start := time.Now()
	if err := ob.Enqueue(ctx, outbox.Message{Name: "a", Key: "k", Payload: []byte{}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "delivery woken by NOTIFY", func() bool { return rec.count() == 1 })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NOTIFY took %v to deliver", d)
	}
	// With notifications disabled the relay stays asleep.
	quietOb := newOutbox(t, other, outbox.Config{TablePrefix: prefix, DisableNotify: true})
	if err := quietOb.Enqueue(ctx, outbox.Message{Name: "b", Key: "k", Payload: []byte{}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := rec.count(); n != 1 {
		t.Fatalf("delivered %d; a relay not notified should not have polled yet", n)
	}
}

func TestEnqueueNotifiesOncePerCall(t *testing.T) {
	prefix := "nt" + randomSuffix() + "_"
	db, dsn := openDSN(t, "postgres", outbox.Config{TablePrefix: prefix})
	got := make(chan string, 100)
	l := newPQListener(t, dsn, prefix+"outbox", got)
	defer l()
	ob := newOutbox(t, db, outbox.Config{TablePrefix: prefix})
	// 2,500 messages in one call: three INSERT statements, one notification.
	msgs := make([]outbox.Message, 2500)
	for i := range msgs {
		msgs[i] = outbox.Message{Name: "a", Key: keyName(i % 7), Payload: []byte{}}
	}
	tx, err := db.Begin()
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
	case ch := <-got:
		t.Fatalf("second notification on %s for one EnqueueTx call", ch)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestRelayLateCommit(t *testing.T) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			if d == "sqlite" {
				t.Skip("SQLite has one writer at a time: a transaction holding a lower seq blocks later writers until it commits, so rows cannot commit out of seq order")
			}
			ctx := context.Background()
			db := testdb.Open(t, d)
			ob := newOutbox(t, db, outbox.Config{})
			rec := &recorder{}
			r := newRelay(t, db, rec, outbox.RelayConfig{})

			txA, err := db.BeginTx(ctx, nil)
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
}

func TestRelayConfigErrors(t *testing.T) {
	db := testdb.Open(t, "sqlite")
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
	} {
		_, err := outbox.NewRelay(db, pub, tc.cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: err = %v; want ErrInvalidConfig naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := outbox.NewRelay(nil, pub, outbox.RelayConfig{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil db: %v", err)
	}
	if _, err := outbox.NewRelay(db, nil, outbox.RelayConfig{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil publisher: %v", err)
	}
	if _, err := outbox.NewRelay(db, pub, outbox.RelayConfig{TablePrefix: "bad-prefix"}); !errors.Is(err, outbox.ErrBadIdentifier) {
		t.Errorf("bad prefix: %v", err)
	}
	if _, err := outbox.NewRelay(db, pub, outbox.RelayConfig{}); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func TestRelayNotMigrated(t *testing.T) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.OpenEmpty(t, d)
			r := newRelay(t, db, &recorder{}, outbox.RelayConfig{})
			if _, err := r.Drain(ctx); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Errorf("Drain: %v", err)
			}
			runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := r.Run(runCtx); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Errorf("Run: %v", err)
			}
			if _, err := r.Stats(ctx); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Errorf("Stats: %v", err)
			}
			if _, err := r.Parked(ctx, outbox.ParkedQuery{}); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Errorf("Parked: %v", err)
			}
			if _, err := r.Cleanup(ctx); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Errorf("Cleanup: %v", err)
			}
		})
	}
}

func TestRelayRunTwice(t *testing.T) {
	db := testdb.Open(t, "sqlite")
	r := newRelay(t, db, &recorder{}, outbox.RelayConfig{})
	stop := runRelay(t, r)
	eventually(t, 5*time.Second, "Run to start", func() bool {
		s, _ := r.Stats(context.Background())
		return s.Partitions > 0
	})
	if _, err := r.Drain(context.Background()); err == nil {
		t.Fatal("Drain ran alongside Run")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel; want nil", err)
	}
	if held := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner <> ''"); held != 0 {
		t.Fatalf("%d leases held after Run returned", held)
	}
	if n := countRows(t, db, "SELECT COUNT(*) FROM keel_outbox_relays"); n != 0 {
		t.Fatalf("%d relays registered after Run returned", n)
	}
}

// logBuffer is an io.Writer safe for the relay's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRelayWithoutListenDSNSaysItPolls(t *testing.T) {
	db := testdb.Open(t, "postgres")
	var logs logBuffer
	r := newRelay(t, db, &recorder{}, outbox.RelayConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stop := runRelay(t, r)
	eventually(t, 5*time.Second, "the relay to start", func() bool {
		s, _ := r.Stats(context.Background())
		return s.Partitions > 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "ListenDSN") || !strings.Contains(logs.String(), "acquired partition leases") {
		t.Fatalf("logs do not mention the polling fallback and the leases:\n%s", logs.String())
	}
}
