package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// exclusive wraps a Publisher and checks the pipelining rule that makes
// concurrent batches safe: no partition key is ever in two Publish calls
// at once. It also counts how many calls ran at once, at most.
type exclusive struct {
	t    testing.TB
	next outbox.Publisher

	mu        sync.Mutex
	active    map[string]int // key -> calls publishing it now
	calls     int            // calls running now
	maxCalls  int
	violation bool
}

func newExclusive(t testing.TB, next outbox.Publisher) *exclusive {
	return &exclusive{t: t, next: next, active: map[string]int{}}
}

func (e *exclusive) Publish(ctx context.Context, batch []outbox.Message) error {
	keys := map[string]bool{}
	for i := range batch {
		keys[batch[i].PartitionKey()] = true
	}
	e.mu.Lock()
	for k := range keys {
		if e.active[k] > 0 && !e.violation {
			e.violation = true
			e.t.Errorf("key %s handed to Publish while another call still publishes it", k)
		}
		e.active[k]++
	}
	e.calls++
	e.maxCalls = max(e.maxCalls, e.calls)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		for k := range keys {
			e.active[k]--
		}
		e.calls--
		e.mu.Unlock()
	}()
	return e.next.Publish(ctx, batch)
}

func (e *exclusive) concurrent() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxCalls
}

// TestRelaySlowKeyDoesNotStallOthers publishes a key whose publish blocks
// and checks that other keys' messages, committed while it blocks, are
// delivered before it is released: a slow key holds up its own batch, not
// the relay.
func TestRelaySlowKeyDoesNotStallOthers(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		rec := &recorder{}
		blocked := make(chan struct{}) // closed once the slow key's publish blocks
		release := make(chan struct{})
		var once sync.Once
		var timedOut bool
		var mu sync.Mutex
		pub := newExclusive(t, outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			for i := range batch {
				if batch[i].Key == "slow" {
					once.Do(func() { close(blocked) })
					select {
					case <-release:
					case <-ctx.Done():
						mu.Lock()
						timedOut = true
						mu.Unlock()
						return ctx.Err()
					}
				}
			}
			return rec.Publish(ctx, batch)
		}))
		// A long lease gives the blocked publish a PublishTimeout (10s) far
		// beyond what the test needs.
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{LeaseDuration: 30 * time.Second, MaxInFlight: 2})
		run := runRelay(t, r)
		holdsAll(t, r)
		if err := ob.Enqueue(ctx, outbox.Message{Name: "slow.event", Key: "slow", AggregateVersion: 1, Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-blocked:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow key was never published")
		}
		others := fill(t, ob, 40, 5)
		// The slow key's second message is claimable only after its first.
		if err := ob.Enqueue(ctx, outbox.Message{Name: "slow.event", Key: "slow", AggregateVersion: 2, Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 10*time.Second, "other keys to flow while the slow key blocks", func() bool {
			return rec.count() == len(others)
		})
		mu.Lock()
		expired := timedOut
		mu.Unlock()
		if expired {
			t.Fatal("the slow key's publish ran into PublishTimeout before the other keys were delivered")
		}
		for _, m := range rec.messages() {
			if m.Key == "slow" {
				t.Fatalf("slow key message %d delivered while its first was blocked", m.AggregateVersion)
			}
		}
		close(release)
		testdb.Eventually(t, 10*time.Second, "the slow key to be delivered", func() bool {
			return rec.count() == len(others)+2
		})
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Errorf("%d duplicates in normal operation", dups)
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); left != 0 {
			t.Errorf("%d rows left", left)
		}
		if pub.concurrent() < 2 {
			t.Errorf("at most %d Publish calls ran at once; want the slow batch and others", pub.concurrent())
		}
	})
}

// rendezvous is a Publisher whose first call waits until a second call has
// started, so that two batches are certainly in flight together.
type rendezvous struct {
	next   outbox.Publisher
	mu     sync.Mutex
	calls  int
	second chan struct{}
}

func newRendezvous(next outbox.Publisher) *rendezvous {
	return &rendezvous{next: next, second: make(chan struct{})}
}

func (p *rendezvous) Publish(ctx context.Context, batch []outbox.Message) error {
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.mu.Unlock()
	switch n {
	case 1:
		select {
		case <-p.second:
		case <-ctx.Done():
			return fmt.Errorf("no second batch came: %w", errors.Join(outbox.ErrNotAttempted, ctx.Err()))
		}
	case 2:
		close(p.second)
	}
	return p.next.Publish(ctx, batch)
}

// TestRelayPipelineKeepsKeyOrder drains many keys in small batches, with
// batches in flight together, and checks that every key's messages arrive
// in order, once each, and that no key is in two batches at once.
func TestRelayPipelineKeepsKeyOrder(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msgs := fill(t, ob, 30, 8)
		rec := &recorder{}
		pub := newExclusive(t, newRendezvous(rec))
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{BatchSize: 10, MaxInFlight: 4})
		n, err := r.Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(msgs) || rec.count() != len(msgs) {
			t.Fatalf("Drain delivered %d, publisher got %d; want %d", n, rec.count(), len(msgs))
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Errorf("%d duplicates in normal operation", dups)
		}
		if pub.concurrent() < 2 {
			t.Errorf("at most %d Publish calls ran at once", pub.concurrent())
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); left != 0 {
			t.Errorf("%d rows left", left)
		}
	})
}

// TestRelayPipelineFailureHoldsKey fails a key's message in a batch while
// a later batch is in flight and checks that the key's next message is in
// neither that batch nor any other until the failed one is delivered.
func TestRelayPipelineFailureHoldsKey(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		// Batches of two: the first is k:1 and x:1; k:2 is next in seq
		// order, so the batch claimed beside the first would hold it but for
		// the pipeline leaving k out.
		var enq []outbox.Message
		for _, km := range []struct {
			key string
			v   int64
		}{{"k", 1}, {"x", 1}, {"k", 2}, {"y", 1}, {"y", 2}, {"k", 3}, {"z", 1}} {
			enq = append(enq, outbox.Message{Name: "e", Key: km.key, AggregateVersion: km.v, Payload: []byte{}})
		}
		if err := ob.Enqueue(ctx, enq...); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		var mu sync.Mutex
		failedOnce := false
		var batches [][]string // what each Publish call was given, as key:version
		rec.setFail(func(m outbox.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if m.Key == "k" && m.AggregateVersion == 1 && !failedOnce {
				failedOnce = true
				return errBroker
			}
			return nil
		})
		// Calls are logged as they start; the rendezvous then holds the
		// first until the second has started.
		order := newRendezvous(rec)
		log := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			var got []string
			for _, m := range batch {
				got = append(got, fmt.Sprintf("%s:%d", m.Key, m.AggregateVersion))
			}
			mu.Lock()
			batches = append(batches, got)
			mu.Unlock()
			return order.Publish(ctx, batch)
		})
		pub := newExclusive(t, log)
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{BatchSize: 2, RetryBackoff: 50 * time.Millisecond, MaxInFlight: 2})
		run := runRelay(t, r)
		testdb.Eventually(t, 20*time.Second, "every message to be delivered", func() bool { return rec.count() == len(enq) })
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !failedOnce {
			t.Fatal("k:1 never failed")
		}
		// The batches are in the order their Publish calls started. k:1
		// first went out with x:1 (the first claim), and k:2 and k:3 only
		// after k:1's retry.
		attempts := 0
		for _, b := range batches {
			for _, m := range b {
				switch {
				case m == "k:1":
					if attempts++; attempts == 1 && strings.Join(b, " ") != "k:1 x:1" {
						t.Errorf("k:1 first published in batch %v; want k:1 x:1", b)
					}
				case (m == "k:2" || m == "k:3") && attempts < 2:
					t.Errorf("%s published before k:1 was retried; batches %v", m, batches)
				}
			}
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Errorf("%d duplicates", dups)
		}
		if pub.concurrent() < 2 {
			t.Errorf("at most %d Publish calls ran at once", pub.concurrent())
		}
	})
}

// TestRelayStopWithBatchesInFlight stops a relay while two batches are in
// flight, one partly delivered, and checks that the stop settles both:
// delivered rows are gone, the rest are pending with no attempt counted,
// the leases are back, and a second relay delivers exactly the rest.
func TestRelayStopWithBatchesInFlight(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msgs := fill(t, ob, 20, 3)
		first := &recorder{}
		var mu sync.Mutex
		calls := 0
		both := make(chan struct{})
		// Each call delivers the first half of its batch, then waits for the
		// stop and reports the rest not attempted.
		pub := newExclusive(t, outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
			half := len(batch) / 2
			if err := first.Publish(ctx, batch[:half]); err != nil {
				return err
			}
			mu.Lock()
			if calls++; calls == 2 {
				close(both)
			}
			mu.Unlock()
			<-ctx.Done()
			errs := make([]error, len(batch))
			for i := half; i < len(batch); i++ {
				errs[i] = fmt.Errorf("stopping: %w", errors.Join(outbox.ErrNotAttempted, ctx.Err()))
			}
			return &outbox.BatchError{Errs: errs}
		}))
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{BatchSize: 10, LeaseDuration: 30 * time.Second, MaxInFlight: 2})
		run := runRelay(t, r)
		select {
		case <-both:
		case <-time.After(10 * time.Second):
			t.Fatal("two batches never were in flight together")
		}
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		delivered := first.count()
		if delivered != 10 {
			t.Fatalf("first relay delivered %d; want half of two batches of 10", delivered)
		}
		if left := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE state = 0 AND attempts = 0"); left != len(msgs)-delivered {
			t.Fatalf("%d rows pending without attempts after the stop; want %d", left, len(msgs)-delivered)
		}
		if held := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner <> ''"); held != 0 {
			t.Fatalf("%d leases still held after Run returned", held)
		}
		second := &recorder{}
		n, err := newRelay(t, db.Store, second, outbox.RelayConfig{}).Drain(ctx)
		if err != nil || n != len(msgs)-delivered {
			t.Fatalf("second relay: Drain = %d, %v; want %d", n, err, len(msgs)-delivered)
		}
		all := append(first.messages(), second.messages()...)
		if dups := checkOrder(t, all); dups != 0 {
			t.Errorf("%d messages delivered twice", dups)
		}
		if len(all) != len(msgs) {
			t.Errorf("%d messages delivered in all; want %d", len(all), len(msgs))
		}
	})
}

// TestRelayOneBatchAtATime checks the two knobs that turn this package's
// speed-ups off: MaxInFlight 1 never has two Publish calls running, and
// DisablePrepare runs the statements from their text; delivery is the
// same. It also checks where the relay prepares its statements: everywhere
// but on pgx, whose driver caches prepared statements by itself.
func TestRelayOneBatchAtATime(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		db := testdb.Open(t, s)
		ob := newOutbox(t, db.Store)
		if got, want := outbox.PreparesStatements(newRelay(t, db.Store, nopPublisher, outbox.RelayConfig{})), s != testdb.PostgresPgx; got != want {
			t.Errorf("relay prepares its statements: %v; want %v", got, want)
		}
		msgs := fill(t, ob, 30, 4)
		rec := &recorder{}
		pub := newExclusive(t, rec)
		r := newRelay(t, db.Store, pub, outbox.RelayConfig{BatchSize: 10, MaxInFlight: 1, DisablePrepare: true})
		if outbox.PreparesStatements(r) {
			t.Error("relay prepares its statements despite DisablePrepare")
		}
		n, err := r.Drain(context.Background())
		if err != nil || n != len(msgs) {
			t.Fatalf("Drain = %d, %v; want %d", n, err, len(msgs))
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 || rec.count() != len(msgs) {
			t.Errorf("publisher got %d messages, %d duplicates", rec.count(), dups)
		}
		if c := pub.concurrent(); c != 1 {
			t.Errorf("%d Publish calls ran at once with MaxInFlight 1", c)
		}
	})
}
