package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// timed records when each message was published.
type timed struct {
	recorder
	mu sync.Mutex
	at map[string]time.Time
}

func (tr *timed) Publish(ctx context.Context, batch []outbox.Message) error {
	err := tr.recorder.Publish(ctx, batch)
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.at == nil {
		tr.at = map[string]time.Time{}
	}
	for _, m := range tr.recorder.messages() {
		if _, ok := tr.at[m.ID]; !ok {
			tr.at[m.ID] = now
		}
	}
	return err
}

func (tr *timed) when(id string) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at, ok := tr.at[id]
	return at, ok
}

func ids(msgs []outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func msg(id, key string) outbox.Message {
	return outbox.Message{ID: id, Name: "e", Key: key, Payload: []byte(id)}
}

// TestScheduledMessage schedules a message between two others of its key:
// they are delivered at once, without waiting for it; it is delivered at
// its time, not before, and appears nowhere in the outbox until then.
func TestScheduledMessage(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		due := time.Now().Add(400 * time.Millisecond)
		timer := msg("timer", "k")
		timer.NotBefore = due
		if err := ob.Enqueue(ctx, msg("m1", "k"), timer, msg("m2", "k")); err != nil {
			t.Fatal(err)
		}
		s, err := ob.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pending != 2 || s.Scheduled != 1 {
			t.Errorf("Stats = %+v, want 2 pending and 1 scheduled", s)
		}
		if _, err := ob.Lookup(ctx, "timer"); !errors.Is(err, outbox.ErrUnknownMessage) {
			t.Errorf("the scheduled message is in the outbox before its time: %v", err)
		}

		pub := &timed{}
		runRelay(t, newRelay(t, db.Store, pub, outbox.RelayConfig{}))
		testdb.Eventually(t, 10*time.Second, "the timer to fire", func() bool { return pub.count() == 3 })
		if diff := cmp.Diff([]string{"m1", "m2", "timer"}, ids(pub.messages())); diff != "" {
			t.Errorf("delivery order (-want +got):\n%s", diff)
		}
		at, _ := pub.when("timer")
		if at.Before(due) {
			t.Errorf("the timer fired %v before its time", due.Sub(at))
		}
		m2, _ := pub.when("m2")
		if !m2.Before(due) {
			t.Errorf("m2 waited for the timer of its key: published %v after it fell due", m2.Sub(due))
		}
		if got := pub.messages()[2]; !got.NotBefore.IsZero() || got.Key != "k" || string(got.Payload) != "timer" {
			t.Errorf("delivered timer = %+v", got)
		}
	})
}

// TestScheduledJoinsItsKeyWhenDue checks the order rule at the due time: a
// message that falls due while its key is held back by a parked message
// waits behind it, and is delivered after it once the key is requeued.
func TestScheduledJoinsItsKeyWhenDue(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		pub := &recorder{}
		pub.setFail(func(m outbox.Message) error {
			if m.ID == "poison" {
				return fmt.Errorf("refused: %w", outbox.ErrPermanent)
			}
			return nil
		})
		runRelay(t, newRelay(t, db.Store, pub, outbox.RelayConfig{}))
		timer := msg("timer", "k")
		timer.NotBefore = time.Now().Add(300 * time.Millisecond)
		if err := ob.Enqueue(ctx, msg("poison", "k"), timer, msg("other", "j")); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 10*time.Second, "the poison message to park and the timer to fall due", func() bool {
			s, err := ob.Stats(ctx)
			return err == nil && s.Parked == 1 && s.Scheduled == 0 && s.Pending == 1
		})
		time.Sleep(100 * time.Millisecond) // a relay that ignored the hold would publish the timer now
		if diff := cmp.Diff([]string{"other"}, ids(pub.messages())); diff != "" {
			t.Errorf("published while key k is parked (-want +got):\n%s", diff)
		}
		r, err := ob.Lookup(ctx, "timer")
		if err != nil || r.State != outbox.StatePending {
			t.Errorf("the due timer: %+v, %v", r, err)
		}
		pub.setFail(nil)
		if n, err := ob.RequeueKey(ctx, "k"); err != nil || n != 1 {
			t.Fatalf("RequeueKey = %d, %v", n, err)
		}
		testdb.Eventually(t, 10*time.Second, "key k delivered", func() bool { return pub.count() == 3 })
		if diff := cmp.Diff([]string{"other", "poison", "timer"}, ids(pub.messages())); diff != "" {
			t.Errorf("delivery order (-want +got):\n%s", diff)
		}
	})
}

// TestCancelScheduled cancels one timer before its time, which then never
// fires, and tries to cancel one that already fired and one unknown.
func TestCancelScheduled(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		soon, later := msg("soon", "a"), msg("cancelled", "b")
		soon.NotBefore = time.Now().Add(100 * time.Millisecond)
		later.NotBefore = time.Now().Add(300 * time.Millisecond)
		if err := ob.Enqueue(ctx, soon, later); err != nil {
			t.Fatal(err)
		}
		// Cancelled in a transaction that rolls back: still scheduled.
		cancelIn := func(commit bool, id string) error {
			tx, err := db.SQL().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }()
			if err := ob.CancelTx(ctx, tx, id); err != nil {
				return err
			}
			if commit {
				return tx.Commit()
			}
			return nil
		}
		if err := cancelIn(false, "cancelled"); err != nil {
			t.Fatal(err)
		}
		if err := cancelIn(true, "cancelled"); err != nil {
			t.Fatalf("cancel after the rolled-back cancel: %v", err)
		}
		pub := &recorder{}
		runRelay(t, newRelay(t, db.Store, pub, outbox.RelayConfig{Retention: time.Hour}))
		testdb.Eventually(t, 10*time.Second, "the other timer to fire", func() bool { return pub.count() == 1 })
		time.Sleep(500 * time.Millisecond) // past the cancelled one's time
		if diff := cmp.Diff([]string{"soon"}, ids(pub.messages())); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
		err := cancelIn(true, "soon")
		if !errors.Is(err, outbox.ErrNotScheduled) || !strings.Contains(err.Error(), "delivered") {
			t.Errorf("cancelling a fired timer: %v, want ErrNotScheduled saying it was delivered", err)
		}
		err = cancelIn(true, "cancelled")
		if !errors.Is(err, outbox.ErrNotScheduled) || !strings.Contains(err.Error(), "already cancelled") {
			t.Errorf("cancelling twice: %v, want ErrNotScheduled", err)
		}
		s, err := ob.Stats(ctx)
		if err != nil || s.Scheduled != 0 || s.Pending != 0 {
			t.Errorf("Stats = %+v, %v", s, err)
		}
	})
}

// TestScheduledAcrossRelays schedules 300 messages due at once with three
// relays running: each is moved and published exactly once.
func TestScheduledAcrossRelays(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		pub := &recorder{}
		for i := range 3 {
			runRelay(t, newRelay(t, db.Store, pub, outbox.RelayConfig{ID: fmt.Sprint("relay-", i)}))
		}
		due := time.Now().Add(300 * time.Millisecond)
		var msgs []outbox.Message
		for i := range 300 {
			m := msg(fmt.Sprint("t-", i), fmt.Sprint("key-", i%30))
			m.AggregateVersion = int64(i/30 + 1) // checkOrder's per-key order
			m.NotBefore = due
			msgs = append(msgs, m)
		}
		if err := ob.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 20*time.Second, "every timer to fire", func() bool {
			s, err := ob.Stats(ctx)
			return err == nil && s.Scheduled == 0 && s.Pending == 0 && pub.count() >= 300
		})
		seen := map[string]int{}
		for _, m := range pub.messages() {
			seen[m.ID]++
		}
		for _, m := range msgs {
			if seen[m.ID] != 1 {
				t.Errorf("%s published %d times", m.ID, seen[m.ID])
			}
		}
		if dups := checkOrder(t, pub.messages()); dups != 0 {
			t.Errorf("%d duplicates", dups)
		}
	})
}

// TestScheduledRollsBack checks that a scheduled message is written in the
// caller's transaction: rolled back with it, and kept when it commits.
func TestScheduledRollsBack(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		m := msg("t1", "k")
		m.NotBefore = time.Now().Add(time.Hour)
		for _, commit := range []bool{false, true} {
			tx, err := db.SQL().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ob.EnqueueTx(ctx, tx, m); err != nil {
				t.Fatal(err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := ob.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int64{false: 0, true: 1}[commit]; s.Scheduled != want {
				t.Errorf("commit %v: %d scheduled, want %d", commit, s.Scheduled, want)
			}
		}
		// The same id again is a duplicate, as in the outbox.
		if err := ob.Enqueue(ctx, m); !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Errorf("scheduling an id twice: %v, want ErrInvalidMessage", err)
		}
	})
}

// TestCancelFallenDueOnOneConnection cancels, in a transaction holding
// the pool's only connection, a message that already fell due: CancelTx
// says where it is by reading through that transaction, not by waiting
// for a second connection. The store's clock makes it fall due at once.
func TestCancelFallenDueOnOneConnection(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := t.Context()
		var mu sync.Mutex
		now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		db := testdb.Open(t, s, store.Options{Logger: testdb.Logger(), Now: clock})
		ob := newOutbox(t, db.Store)
		m := msg("due", "a")
		m.NotBefore = now.Add(time.Hour)
		if err := ob.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		if st, err := ob.Stats(ctx); err != nil || st.Scheduled != 1 {
			t.Fatalf("Stats = %+v, %v; want the message scheduled by the store's clock", st, err)
		}
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		if _, err := newRelay(t, db.Store, &recorder{fail: func(outbox.Message) error { return errors.New("down") }}, outbox.RelayConfig{}).Drain(ctx); err != nil {
			t.Fatal(err)
		}
		db.SQL().SetMaxOpenConns(1)
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tx, err := db.SQL().BeginTx(tctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		err = ob.CancelTx(tctx, tx, "due")
		if !errors.Is(err, outbox.ErrNotScheduled) || !strings.Contains(err.Error(), "pending") {
			t.Fatalf("CancelTx = %v; want ErrNotScheduled saying the message is pending", err)
		}
	})
}
