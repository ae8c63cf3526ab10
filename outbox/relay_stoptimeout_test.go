package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// TestRelayStopTimeout stops relays while a batch is publishing. With a
// StopTimeout the batch finishes and is settled, so the next relay sends
// none of it again; a publisher still busy when StopTimeout ends is
// cancelled, and its messages are left, unattempted, for the next relay.
func TestRelayStopTimeout(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ob := newOutbox(t, db.Store)
		fill(t, ob, 10, 2)
		got := &recorder{}
		started := make(chan struct{}, 1)
		slow := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			select {
			case started <- struct{}{}:
			default:
			}
			select {
			case <-time.After(300 * time.Millisecond): // a slow broker
			case <-ctx.Done():
				return fmt.Errorf("cut short: %w", errors.Join(outbox.ErrNotAttempted, ctx.Err()))
			}
			return got.Publish(ctx, batch)
		})
		r := newRelay(t, db.Store, slow, outbox.RelayConfig{LeaseDuration: 9 * time.Second, StopTimeout: 3 * time.Second})
		run := runRelay(t, r)
		<-started
		stopped := time.Now()
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(stopped); took > 3*time.Second {
			t.Errorf("Run took %v to stop; the batch needed 300ms", took)
		}
		if got.count() != 20 {
			t.Fatalf("the batch in flight published %d of 20", got.count())
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); left != 0 {
			t.Errorf("%d rows left after the finished batch; the next relay would send them again", left)
		}

		// A publisher that outlasts StopTimeout is cancelled.
		fill(t, ob, 5, 1)
		stuck := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return fmt.Errorf("cut short: %w", errors.Join(outbox.ErrNotAttempted, ctx.Err()))
		})
		r = newRelay(t, db.Store, stuck, outbox.RelayConfig{LeaseDuration: 9 * time.Second, StopTimeout: 200 * time.Millisecond})
		run = runRelay(t, r)
		<-started
		stopped = time.Now()
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(stopped); took < 200*time.Millisecond {
			t.Errorf("Run stopped after %v, before StopTimeout", took)
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE state = 0 AND attempts = 0"); left != 5 {
			t.Errorf("%d rows pending unattempted after the cut, want 5", left)
		}
		if _, err := outbox.NewRelay(db.Store, stuck, outbox.RelayConfig{PublishTimeout: time.Second, StopTimeout: 2 * time.Second}); !errors.Is(err, store.ErrInvalidConfig) {
			t.Errorf("StopTimeout above PublishTimeout: %v, want ErrInvalidConfig", err)
		}
	})
}
