package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

var errFlaky = errors.New("flaky downstream")

// testEvent is the event of msg's records.
type testEvent struct {
	V int64 `json:"v"`
}

func (testEvent) EventName() string { return "test.event" }

// TestConsumerBatches: with BatchSize, a Router takes the records the
// reader holds many at a time, in few transactions. A record that fails in
// its batch goes again alone before the offsets are committed; every
// effect happens once, each key's records reach the handler in order, and
// the offsets end past every record.
func TestConsumerBatches(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(3, "events", "events.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		const keys, versions = 10, 30
		var batch []outbox.Message
		for v := 1; v <= versions; v++ {
			for k := range keys {
				batch = append(batch, msg(fmt.Sprintf("k%d", k), int64(v)))
			}
		}
		if err := pub.Publish(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		pos := positions(readTopic(t, addr, "events"))

		runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var commits atomic.Int32
		runner.AfterCommit(func(context.Context, []outbox.Message) { commits.Add(1) })
		router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(testEvent{}), dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().Exec("CREATE TABLE effects (message_id TEXT NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string][]int64{}
		failedOnce := false
		dispatch.Handle(router, "record", func(ctx context.Context, tx *uow.Tx, e testEvent) error {
			m, _ := dispatch.MessageFrom(ctx)
			if _, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind("INSERT INTO effects (message_id) VALUES (?)"), m.ID); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if m.ID == "k3-v5" && !failedOnce {
				failedOnce = true
				return errFlaky // after the effect: the savepoint must undo it
			}
			seen[m.Key] = append(seen[m.Key], e.V)
			return nil
		})
		count := func() int { return testdb.Count(t, db, "SELECT COUNT(*) FROM effects") }
		stop := runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g1", Topics: []string{"events"}, BatchSize: 100}, router))
		testdb.Eventually(t, 30*time.Second, "every effect", func() bool { return count() == keys*versions })
		testdb.Eventually(t, 10*time.Second, "offsets at the end", func() bool {
			c := committed(t, addr, "g1", "events", 3)
			for _, p := range pos {
				if c[p.partition] <= p.offset {
					return false
				}
			}
			return true
		})
		stop()

		if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT message_id) FROM effects"); n != keys*versions || count() != keys*versions {
			t.Errorf("%d effects of %d messages, want %d of %d", count(), n, keys*versions, keys*versions)
		}
		mu.Lock()
		defer mu.Unlock()
		if !failedOnce {
			t.Error("the failing record was never delivered")
		}
		for k, vs := range seen {
			for i, v := range vs {
				if v != int64(i+1) {
					t.Fatalf("key %s: versions %v, want 1..%d in order", k, vs, versions)
				}
			}
		}
		// Batches, not one transaction per record.
		if n := commits.Load(); n >= keys*versions/4 {
			t.Errorf("%d transactions committed for %d records; want batches", n, keys*versions)
		}
		t.Logf("%d transactions for %d records", commits.Load(), keys*versions)
	})
}
