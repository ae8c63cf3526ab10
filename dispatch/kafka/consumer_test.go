package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// newConsumer returns a Consumer with short backoffs and fetch waits, so
// tests move quickly; cfg's own values win.
func newConsumer(t testing.TB, cfg kafka.ConsumerConfig, h kafka.Handler) *kafka.Consumer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 10 * time.Millisecond
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = 50 * time.Millisecond
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 100 * time.Millisecond
	}
	c, err := kafka.NewConsumer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// position is where a record sits in its topic.
type position struct {
	partition int
	offset    int64
}

func positions(recs []kafkago.Message) map[string]position {
	out := map[string]position{}
	for _, r := range recs {
		id, _ := header(r, kafka.HeaderMessageID)
		out[id] = position{r.Partition, r.Offset}
	}
	return out
}

// TestConsumerCommitsAfterDelivery consumes 30 messages of 10 keys from
// three partitions into a unit of work with an inbox. Each message is
// delivered once, in order per key, and when Deliver is called its offset
// is not yet committed; afterwards the group's offsets are at the end. A
// new consumer in the group resumes there, delivering only what is new.
func TestConsumerCommitsAfterDelivery(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(3, "events", "events.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		var batch []outbox.Message
		for v := 1; v <= 3; v++ {
			for k := range 10 {
				batch = append(batch, msg(fmt.Sprintf("k%d", k), int64(v)))
			}
		}
		if err := pub.Publish(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		pos := positions(readTopic(t, addr, "events"))

		h := newEffectHandler(t, db)
		var mu sync.Mutex
		var early []string
		check := kafka.HandlerFunc(func(ctx context.Context, m outbox.Message) error {
			p := pos[m.ID]
			if c := committed(t, addr, "g1", "events", 3)[p.partition]; c > p.offset {
				mu.Lock()
				early = append(early, fmt.Sprintf("%s at offset %d: committed %d before delivery", m.ID, p.offset, c))
				mu.Unlock()
			}
			return h.Deliver(ctx, m)
		})
		stop := runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g1", Topics: []string{"events"}}, check))
		testdb.Eventually(t, 30*time.Second, "30 effects", func() bool { return len(effects(t, db)) == 30 })
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

		mu.Lock()
		if len(early) > 0 {
			t.Errorf("offsets committed before delivery: %v", early)
		}
		mu.Unlock()
		for id, n := range effects(t, db) {
			if n != 1 {
				t.Errorf("message %s had %d effects", id, n)
			}
		}
		if n := h.callCount(); n != 30 {
			t.Errorf("%d deliveries, want 30", n)
		}
		last := map[string]int64{}
		for _, m := range h.delivered() {
			if m.AggregateVersion != last[m.Key]+1 {
				t.Errorf("key %s: version %d delivered after %d", m.Key, m.AggregateVersion, last[m.Key])
			}
			last[m.Key] = m.AggregateVersion
		}

		// A restarted consumer resumes at the committed offsets.
		h2 := &effectHandler{runner: h.runner, name: h.name, attempts: map[string]int{}}
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g1", Topics: []string{"events"}}, h2))
		if err := pub.Publish(context.Background(), []outbox.Message{msg("k0", 4)}); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 30*time.Second, "the new message", func() bool { return h2.callCount() == 1 })
		time.Sleep(200 * time.Millisecond)
		if n := h2.callCount(); n != 1 {
			t.Errorf("restarted consumer made %d deliveries, want only the new message", n)
		}
	})
}

// TestConsumerRetries fails a message's first two deliveries after its
// effect was written; the unit of work rolls back each time, and the third
// delivery leaves exactly one effect and nothing in the dead-letter topic.
func TestConsumerRetries(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "events", "events.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1), msg("a", 2)}); err != nil {
			t.Fatal(err)
		}
		h := newEffectHandler(t, db)
		h.fail = func(m outbox.Message, attempt int) error {
			if m.ID == "a-v1" && attempt <= 2 {
				return fmt.Errorf("flaky dependency, attempt %d", attempt)
			}
			return nil
		}
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}}, h))
		// The handler notes a delivery once its unit has committed, a moment
		// after the effect becomes visible; wait for both.
		testdb.Eventually(t, 30*time.Second, "both effects", func() bool { return len(effects(t, db)) == 2 && h.callCount() == 2 })
		if diff := cmp.Diff(map[string]int{"a-v1": 1, "a-v2": 1}, effects(t, db)); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}
		if n := h.attemptsOf("a-v1"); n != 3 {
			t.Errorf("a-v1 delivered %d times, want 3", n)
		}
		if d := h.delivered(); d[len(d)-1].ID != "a-v2" {
			t.Error("a-v2 was delivered before a-v1 succeeded")
		}
		if n := len(readTopic(t, addr, "events.dlq")); n != 0 {
			t.Errorf("%d dead letters, want none", n)
		}
	})
}

// TestConsumerDeadLetters sends a message that always fails and one that
// fails permanently to the dead-letter topic, with the error, attempts and
// origin in headers and the original headers kept; their offsets are
// committed and the messages after them are delivered.
func TestConsumerDeadLetters(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "events", "events.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		poison, perm := msg("a", 2), msg("b", 1)
		poison.Headers = map[string]string{"traceparent": traceparent}
		batch := []outbox.Message{msg("a", 1), poison, msg("a", 3), perm, msg("b", 2)}
		if err := pub.Publish(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		pos := positions(readTopic(t, addr, "events"))
		h := newEffectHandler(t, db)
		h.fail = func(m outbox.Message, attempt int) error {
			switch m.ID {
			case poison.ID:
				return fmt.Errorf("boom %d", attempt)
			case perm.ID:
				return fmt.Errorf("cannot parse payload: %w", outbox.ErrPermanent)
			}
			return nil
		}
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}, MaxAttempts: 3}, h))
		testdb.Eventually(t, 30*time.Second, "offsets at the end", func() bool { return committed(t, addr, "g", "events", 1)[0] == 5 })
		if diff := cmp.Diff(map[string]int{"a-v1": 1, "a-v3": 1, "b-v2": 1}, effects(t, db)); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}
		if n := h.attemptsOf(poison.ID); n != 3 {
			t.Errorf("poison message tried %d times, want MaxAttempts = 3", n)
		}
		if n := h.attemptsOf(perm.ID); n != 1 {
			t.Errorf("permanently failing message tried %d times, want 1", n)
		}

		dead := readTopic(t, addr, "events.dlq")
		if len(dead) != 2 {
			t.Fatalf("%d dead letters, want 2", len(dead))
		}
		for i, c := range []struct {
			m        outbox.Message
			attempts string
			err      string
		}{{poison, "3", "boom 3"}, {perm, "1", "cannot parse payload"}} {
			d := dead[i]
			hm := headerMap(d)
			if hm[kafka.HeaderMessageID] != c.m.ID || string(d.Key) != c.m.Key || string(d.Value) != string(c.m.Payload) {
				t.Errorf("dead letter %d: id %q key %q value %q, want the original %s", i, hm[kafka.HeaderMessageID], d.Key, d.Value, c.m.ID)
			}
			if !strings.Contains(hm[kafka.HeaderError], c.err) {
				t.Errorf("dead letter %d: %s = %q, want it to mention %q", i, kafka.HeaderError, hm[kafka.HeaderError], c.err)
			}
			p := pos[c.m.ID]
			want := map[string]string{
				kafka.HeaderAttempts:          c.attempts,
				kafka.HeaderOriginalTopic:     "events",
				kafka.HeaderOriginalPartition: fmt.Sprint(p.partition),
				kafka.HeaderOriginalOffset:    fmt.Sprint(p.offset),
				kafka.HeaderName:              "test.event",
				kafka.HeaderAggregateVersion:  fmt.Sprint(c.m.AggregateVersion),
			}
			for k, v := range want {
				if hm[k] != v {
					t.Errorf("dead letter %d: %s = %q, want %q", i, k, hm[k], v)
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, hm[kafka.HeaderDeadLetteredAt]); err != nil {
				t.Errorf("dead letter %d: %s: %v", i, kafka.HeaderDeadLetteredAt, err)
			}
		}
		if tp := headerMap(dead[0])[kafka.HeaderTraceparent]; tp != traceparent {
			t.Errorf("dead letter lost its traceparent: %q", tp)
		}
	})
}

// TestConsumerDuplicates delivers one message twice (published twice, as a
// relay does after a lost acknowledgement), then replays the whole topic to
// the same handler as a consumer does after a crash between its
// transaction and its offset commit: the inbox lets each message take
// effect once.
func TestConsumerDuplicates(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(2, "events", "events.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
		for range 2 {
			if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Publish(context.Background(), []outbox.Message{msg("b", 1)}); err != nil {
			t.Fatal(err)
		}
		h := newEffectHandler(t, db)
		stop := runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g1", Topics: []string{"events"}}, h))
		testdb.Eventually(t, 30*time.Second, "three deliveries", func() bool { return h.callCount() == 3 })
		stop()
		if diff := cmp.Diff(map[string]int{"a-v1": 1, "b-v1": 1}, effects(t, db)); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}

		// Another group reads everything again, into the same handler.
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g2", Topics: []string{"events"}}, h))
		testdb.Eventually(t, 30*time.Second, "three more deliveries", func() bool { return h.callCount() == 6 })
		if diff := cmp.Diff(map[string]int{"a-v1": 1, "b-v1": 1}, effects(t, db)); diff != "" {
			t.Errorf("effects after replay (-want +got):\n%s", diff)
		}
	})
}

// TestConsumerForeignRecords consumes records written by a plain producer,
// without keel headers: each gets the id derived from its position, the
// same on redelivery, so the inbox still deduplicates.
func TestConsumerForeignRecords(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "ext", "ext.dlq"))
		w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: "ext", RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
		defer w.Close()
		if err := w.WriteMessages(context.Background(),
			kafkago.Message{Key: []byte("k"), Value: []byte("one"), Headers: []kafkago.Header{{Key: "traceparent", Value: []byte(traceparent)}}},
			kafkago.Message{Value: []byte("two")},
		); err != nil {
			t.Fatal(err)
		}
		h := newEffectHandler(t, db)
		stop := runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g1", Topics: []string{"ext"}}, h))
		testdb.Eventually(t, 30*time.Second, "two deliveries", func() bool { return h.callCount() == 2 })
		stop()
		want := []outbox.Message{
			{ID: "kafka:ext:0:0", Topic: "ext", Key: "k", Payload: []byte("one"), Headers: map[string]string{"traceparent": traceparent}},
			{ID: "kafka:ext:0:1", Topic: "ext", Payload: []byte("two")},
		}
		if diff := cmp.Diff(want, h.delivered()); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g2", Topics: []string{"ext"}}, h))
		testdb.Eventually(t, 30*time.Second, "redelivery", func() bool { return h.callCount() == 4 })
		if diff := cmp.Diff(map[string]int{"kafka:ext:0:0": 1, "kafka:ext:0:1": 1}, effects(t, db)); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}
	})
}

// TestConsumerClose checks that Close ends a Run that is waiting for
// records, and that a message whose handling Close cut short is not
// committed.
func TestConsumerClose(t *testing.T) {
	t.Parallel()
	_, addr := cluster(t, kfake.SeedTopics(1, "events", "events.dlq"))
	pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
	if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1)}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	h := kafka.HandlerFunc(func(ctx context.Context, m outbox.Message) error {
		once.Do(func() { close(started) })
		<-ctx.Done() // a slow handler
		return ctx.Err()
	})
	c := newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}}, h)
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("message not delivered")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after Close, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if off := committed(t, addr, "g", "events", 1)[0]; off > 0 {
		t.Fatalf("committed offset %d for a message whose handling was cut short", off)
	}
	if n := len(readTopic(t, addr, "events.dlq")); n != 0 {
		t.Fatalf("%d dead letters after Close, want none", n)
	}
}

func TestConsumerConfig(t *testing.T) {
	t.Parallel()
	h := kafka.HandlerFunc(func(context.Context, outbox.Message) error { return nil })
	ok := kafka.ConsumerConfig{Brokers: []string{"b:9092"}, GroupID: "g", Topics: []string{"t"}}
	for _, c := range []struct {
		name string
		edit func(*kafka.ConsumerConfig)
		want string
	}{
		{"no brokers", func(c *kafka.ConsumerConfig) { c.Brokers = nil }, "Brokers is empty"},
		{"no group", func(c *kafka.ConsumerConfig) { c.GroupID = "" }, "GroupID is empty"},
		{"no topics", func(c *kafka.ConsumerConfig) { c.Topics = nil }, "Topics is empty"},
		{"bad topic", func(c *kafka.ConsumerConfig) { c.Topics = []string{"a b"} }, "Topics"},
		{"long topic", func(c *kafka.ConsumerConfig) { c.Topics = []string{strings.Repeat("x", 249)} }, "DeadLetterTopic"},
		{"bad dlq", func(c *kafka.ConsumerConfig) { c.DeadLetterTopic = ".." }, "DeadLetterTopic"},
		{"attempts", func(c *kafka.ConsumerConfig) { c.MaxAttempts = -1 }, "MaxAttempts"},
		{"backoff", func(c *kafka.ConsumerConfig) { c.RetryBackoff, c.MaxRetryBackoff = time.Second, time.Millisecond }, "MaxRetryBackoff"},
		{"offset", func(c *kafka.ConsumerConfig) { c.StartOffset = 42 }, "StartOffset"},
		{"session", func(c *kafka.ConsumerConfig) { c.SessionTimeout = -time.Second }, "SessionTimeout"},
		{"join backoff", func(c *kafka.ConsumerConfig) { c.JoinGroupBackoff = -time.Second }, "JoinGroupBackoff"},
		{"heartbeat", func(c *kafka.ConsumerConfig) { c.HeartbeatInterval = 3 * time.Second }, "more than a third of SessionTimeout"},
		{"rebalance", func(c *kafka.ConsumerConfig) { c.RebalanceTimeout = 700 * time.Millisecond }, "RebalanceTimeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.edit(&cfg)
			_, err := kafka.NewConsumer(cfg, h)
			if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewConsumer = %v, want ErrInvalidConfig mentioning %q", err, c.want)
			}
		})
	}
	if _, err := kafka.NewConsumer(ok, nil); !errors.Is(err, store.ErrInvalidConfig) {
		t.Fatalf("nil handler: %v", err)
	}
}

// TestFromRecord checks the conversion of odd records: a keel header that
// does not parse is kept in Headers, and a null value becomes an empty
// payload.
func TestFromRecord(t *testing.T) {
	t.Parallel()
	got := kafka.FromRecord(kafkago.Message{
		Topic: "t", Partition: 2, Offset: 9,
		Headers: []kafkago.Header{
			{Key: kafka.HeaderAggregateVersion, Value: []byte("seven")},
			{Key: kafka.HeaderOccurredAt, Value: []byte("yesterday")},
			{Key: kafka.HeaderName, Value: []byte("n")},
		},
	})
	want := outbox.Message{ID: "kafka:t:2:9", Name: "n", Topic: "t", Payload: []byte{},
		Headers: map[string]string{kafka.HeaderAggregateVersion: "seven", kafka.HeaderOccurredAt: "yesterday"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromRecord (-want +got):\n%s", diff)
	}
}
