package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// drainUntil calls Drain until cond holds, for up to 10 seconds; retries
// wait a few milliseconds.
func drainUntil(t *testing.T, r *outbox.Relay, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up draining until %s", what)
		}
		if _, err := r.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func TestRelayPoisonMessage(t *testing.T) {
	t.Parallel()
	for _, policy := range []outbox.FailurePolicy{outbox.ParkKey, outbox.SkipMessage} {
		t.Run(policy.String(), func(t *testing.T) {
			each(t, func(t *testing.T, db testdb.DB) {
				ctx := context.Background()
				ob := newOutbox(t, db.Store)
				// The poison key comes first, with a backlog six times the batch
				// size: it must not crowd the other keys out of any batch.
				var poison []outbox.Message
				for v := 1; v <= 60; v++ {
					poison = append(poison, outbox.Message{Name: "p", Key: "poison", AggregateVersion: int64(v), Payload: []byte{}})
				}
				if err := ob.Enqueue(ctx, poison...); err != nil {
					t.Fatal(err)
				}
				fill(t, ob, 10, 5)
				pill := poison[1].ID
				rec := &recorder{}
				rec.setFail(func(m outbox.Message) error {
					if m.ID == pill {
						return errors.New("poison pill")
					}
					return nil
				})
				r := newRelay(t, db.Store, rec, outbox.RelayConfig{
					BatchSize: 10, MaxAttempts: 3, RetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond, Policy: policy,
				})
				if _, err := r.Drain(ctx); err != nil {
					t.Fatal(err)
				}
				others := 0
				for _, m := range rec.messages() {
					if m.Key != "poison" {
						others++
					}
				}
				if others != 50 {
					t.Fatalf("%d of 50 messages of healthy keys delivered by the first Drain", others)
				}
				drainUntil(t, r, "the pill is parked", func() bool {
					s, err := ob.Stats(ctx)
					return err == nil && s.Parked == 1 && s.Retrying == 0
				})
				parked, err := ob.Parked(ctx, outbox.ParkedQuery{})
				if err != nil || len(parked) != 1 {
					t.Fatalf("Parked = %v, %v", parked, err)
				}
				p := parked[0]
				if p.ID != pill || p.Attempts != 3 || !strings.Contains(p.LastError, "poison pill") || time.Since(p.ParkedAt) > time.Minute || p.AggregateVersion != 2 {
					t.Fatalf("parked row %+v", p)
				}
				if byKey, _ := ob.Parked(ctx, outbox.ParkedQuery{Key: "poison"}); len(byKey) != 1 {
					t.Fatalf("Parked by key = %d rows", len(byKey))
				}
				if byKey, _ := ob.Parked(ctx, outbox.ParkedQuery{Key: keyName(1)}); len(byKey) != 0 {
					t.Fatalf("Parked for a healthy key = %d rows", len(byKey))
				}
				if _, err := r.Drain(ctx); err != nil {
					t.Fatal(err)
				}
				s, _ := ob.Stats(ctx)
				delivered := rec.count()
				switch policy {
				case outbox.ParkKey:
					// v1 went out; v3..v60 wait behind the parked v2.
					if delivered != 51 || s.Pending != 58 {
						t.Fatalf("ParkKey: delivered %d (want 51), pending %d (want 58)", delivered, s.Pending)
					}
				case outbox.SkipMessage:
					if delivered != 109 || s.Pending != 0 {
						t.Fatalf("SkipMessage: delivered %d (want 109), pending %d (want 0)", delivered, s.Pending)
					}
				}
				// Heal, requeue the pill: everything arrives, once.
				rec.setFail(nil)
				if err := ob.Requeue(ctx, pill); err != nil {
					t.Fatal(err)
				}
				if err := ob.Requeue(ctx, pill); !errors.Is(err, outbox.ErrNotParked) {
					t.Fatalf("second Requeue: %v", err)
				}
				if _, err := r.Drain(ctx); err != nil {
					t.Fatal(err)
				}
				got := rec.messages()
				if len(got) != 110 {
					t.Fatalf("%d messages delivered after requeue, want 110", len(got))
				}
				if policy == outbox.ParkKey {
					if dups := checkOrder(t, got); dups != 0 {
						t.Fatalf("%d duplicates", dups)
					}
				} else if last := got[len(got)-1]; last.ID != pill {
					t.Fatalf("SkipMessage: requeued pill should arrive last, got %s v%d", last.Key, last.AggregateVersion)
				}
				if s, _ := ob.Stats(ctx); s.Pending != 0 || s.Parked != 0 {
					t.Fatalf("Stats after requeue: %+v", s)
				}
			})
		})
	}
}

func TestRelayPermanentErrorAndRequeueKey(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msgs := []outbox.Message{
			{Name: "a", Key: "perm", AggregateVersion: 1, Payload: []byte{}},
			{Name: "a", Key: "perm", AggregateVersion: 2, Payload: []byte{}},
			{Name: "a", Key: "perm", AggregateVersion: 3, Payload: []byte{}},
			{Name: "a", Key: "fine", AggregateVersion: 1, Payload: []byte{}},
		}
		if err := ob.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		rec.setFail(func(m outbox.Message) error {
			if m.Key == "perm" && m.AggregateVersion == 3 {
				return fmt.Errorf("schema rejected: %w", outbox.ErrPermanent)
			}
			return nil
		})
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{MaxAttempts: 50})
		if n, err := r.Drain(ctx); err != nil || n != 3 {
			t.Fatalf("Drain = %d, %v; want 3", n, err)
		}
		parked, err := ob.Parked(ctx, outbox.ParkedQuery{Key: "perm"})
		if err != nil || len(parked) != 1 || parked[0].Attempts != 1 || parked[0].AggregateVersion != 3 {
			t.Fatalf("a permanent error parks at the first attempt: %+v, %v", parked, err)
		}
		if n, err := ob.RequeueKey(ctx, "nobody"); err != nil || n != 0 {
			t.Fatalf("RequeueKey of a healthy key = %d, %v", n, err)
		}
		rec.setFail(nil)
		if n, err := ob.RequeueKey(ctx, "perm"); err != nil || n != 1 {
			t.Fatalf("RequeueKey = %d, %v; want 1", n, err)
		}
		if n, err := r.Drain(ctx); err != nil || n != 1 {
			t.Fatalf("Drain after RequeueKey = %d, %v; want 1", n, err)
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Fatalf("%d duplicates", dups)
		}
	})
}

func TestRelayWholeBatchFailure(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		fill(t, ob, 5, 3)
		var down atomic.Bool
		down.Store(true)
		var calls atomic.Int32 // batches may publish concurrently
		pub := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			calls.Add(1)
			if down.Load() {
				return errBroker
			}
			return nil
		})
		var reports []outbox.BatchReport
		// The retry comes due 1-2s after the failure, well after the first
		// Drain's next claim even when a loaded machine makes a batch take
		// hundreds of milliseconds.
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{
			RetryBackoff: 2 * time.Second, MaxRetryBackoff: 2 * time.Second,
			Observer: outbox.ObserverFunc(func(b outbox.BatchReport) { reports = append(reports, b) }),
		})
		if n, err := r.Drain(ctx); err != nil || n != 0 {
			t.Fatalf("Drain against a dead broker = %d, %v", n, err)
		}
		// Each key's first message took the attempt; the rest wait, untouched.
		s, _ := ob.Stats(ctx)
		if s.Pending != 15 || s.Retrying != 5 || s.Parked != 0 {
			t.Fatalf("Stats = %+v; want 15 pending, 5 retrying", s)
		}
		if len(reports) != 1 || reports[0].Failed != 5 || reports[0].Held != 10 || calls.Load() != 1 {
			t.Fatalf("reports %+v after %d publish calls; want one batch with 5 failed, 10 held", reports, calls.Load())
		}
		down.Store(false)
		var delivered int
		drainUntil(t, r, "everything is delivered", func() bool {
			s, err := ob.Stats(ctx)
			return err == nil && s.Pending == 0
		})
		for _, b := range reports {
			delivered += b.Delivered
		}
		if delivered != 15 {
			t.Fatalf("delivered %d, want 15", delivered)
		}
	})
}

// A message the publisher never tried (its context ran out first) keeps its
// attempts and its place: it is neither delayed nor parked.
func TestRelayNotAttempted(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		fill(t, ob, 2, 2)
		var tried atomic.Bool // batches may publish concurrently
		pub := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			if tried.Swap(true) {
				return nil
			}
			errs := make([]error, len(batch))
			for i := range batch {
				errs[i] = fmt.Errorf("stopped: %w", errors.Join(outbox.ErrNotAttempted, context.DeadlineExceeded))
			}
			return &outbox.BatchError{Errs: errs}
		})
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{MaxAttempts: 1})
		// With MaxAttempts 1, a counted attempt would park each key's first
		// message and hold the rest; instead Drain retries at once.
		if n, err := r.Drain(ctx); err != nil || n != 4 || !tried.Load() {
			t.Fatalf("Drain = %d, %v; want all 4 delivered after the untried batch", n, err)
		}
		s, err := ob.Stats(ctx)
		if err != nil || s.Pending != 0 || s.Retrying != 0 || s.Parked != 0 {
			t.Fatalf("Stats = %+v, %v; want nothing left", s, err)
		}
	})
}
