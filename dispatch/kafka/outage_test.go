package kafka_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// TestBrokerOutage runs a relay draining 2,000 rows of 20 keys into Kafka
// through the Publisher, shuts the broker down mid-drain and, after a
// while, starts a new one on the same address over the same data
// directory (a broker restart). While the broker is down rows wait:
// some stay pending, none is parked or deleted. After it is back the relay
// finishes on its own; every row reached the topic at least once, and the
// first copy of each key's messages is in enqueue order.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		const keys, perKey = 20, 100
		dir := t.TempDir()
		var produced atomic.Int64
		slow := func(c *kfake.Cluster) {
			// A little latency per produce request, so the drain is still
			// going when the broker goes down.
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				produced.Add(1)
				time.Sleep(5 * time.Millisecond)
				return nil, nil, false
			})
		}
		first, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SeedTopics(4, "events"))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		slow(first)
		addr := first.ListenAddrs()[0]
		_, portText, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portText)

		ob, err := outbox.New(db.Store)
		if err != nil {
			t.Fatal(err)
		}
		var all []outbox.Message
		for v := 1; v <= perKey; v++ {
			for k := range keys {
				all = append(all, msg(fmt.Sprintf("key-%02d", k), int64(v)))
			}
		}
		if err := ob.Enqueue(context.Background(), all...); err != nil {
			t.Fatal(err)
		}

		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events", BatchSize: 50})
		relay, err := outbox.NewRelay(db.Store, pub, outbox.RelayConfig{
			Logger: quiet, BatchSize: 50, LeaseDuration: 3 * time.Second,
			RetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 400 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		}()
		stats := func() outbox.Stats {
			s, err := relay.Outbox().Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}

		testdb.Eventually(t, 30*time.Second, "a few batches delivered", func() bool { return produced.Load() >= 5 })
		first.Close()
		// The batch in flight when the broker went down settles: the
		// partitions acknowledged before it went are done, the rest fail.
		testdb.Eventually(t, 30*time.Second, "a failed publish recorded", func() bool { return stats().Retrying > 0 })

		during := stats()
		if during.Pending == 0 || during.Pending == int64(len(all)) {
			t.Fatalf("pending = %d during the outage; want the drain cut short", during.Pending)
		}
		time.Sleep(1500 * time.Millisecond)
		later := stats()
		t.Logf("outage: %d of %d rows pending, %d of them retrying", later.Pending, len(all), later.Retrying)
		if later.Pending != during.Pending {
			t.Errorf("pending went from %d to %d with the broker down: rows were deleted or marked delivered", during.Pending, later.Pending)
		}
		if later.Parked != 0 {
			t.Errorf("%d rows parked during the outage", later.Parked)
		}

		second, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("restart on port %d: %v", port, err)
		}
		defer second.Close()
		testdb.Eventually(t, 60*time.Second, "the outbox drained after the restart", func() bool { return stats().Pending == 0 })
		if s := stats(); s.Parked != 0 {
			t.Fatalf("%d rows parked", s.Parked)
		}

		recs := readTopic(t, addr, "events")
		seen := map[string]bool{}
		next := map[string]int64{}
		dups := 0
		for _, r := range recs { // each key's records are on one partition, in offset order
			id, _ := header(r, kafka.HeaderMessageID)
			if seen[id] {
				dups++
				continue
			}
			seen[id] = true
			k := string(r.Key)
			v, _ := strconv.ParseInt(headerMap(r)[kafka.HeaderAggregateVersion], 10, 64)
			if v != next[k]+1 {
				t.Fatalf("key %s: first copy of version %d follows version %d", k, v, next[k])
			}
			next[k] = v
		}
		for _, m := range all {
			if !seen[m.ID] {
				t.Errorf("message %s never reached Kafka", m.ID)
			}
		}
		t.Logf("%d records for %d messages (%d duplicates)", len(recs), len(all), dups)
	})
}

// TestConsumerBrokerOutage stops the broker under a running Consumer and
// restarts it on the same address and data: the Consumer keeps running,
// rejoins its group, and handles what is published after the restart,
// each message taking effect once.
func TestConsumerBrokerOutage(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		dir := t.TempDir()
		first, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SeedTopics(2, "events", "events.dlq"))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		addr := first.ListenAddrs()[0]
		_, portText, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portText)

		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		publish := func(msgs ...outbox.Message) {
			t.Helper()
			testdb.Eventually(t, 30*time.Second, "publish", func() bool { return pub.Publish(context.Background(), msgs) == nil })
		}
		publish(msg("a", 1), msg("b", 1))
		h := newEffectHandler(t, db)
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}}, h))
		testdb.Eventually(t, 30*time.Second, "two effects", func() bool { return len(effects(t, db)) == 2 })

		first.Close()
		time.Sleep(time.Second)
		second, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("restart on port %d: %v", port, err)
		}
		defer second.Close()
		publish(msg("a", 2), msg("b", 2))
		testdb.Eventually(t, 60*time.Second, "four effects", func() bool { return len(effects(t, db)) == 4 })
		for id, n := range effects(t, db) {
			if n != 1 {
				t.Errorf("message %s had %d effects", id, n)
			}
		}
	})
}
