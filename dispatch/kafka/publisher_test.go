package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestPublisherRecords publishes a batch to a three-broker cluster and reads
// the topic back: one record per message, keyed by the partition key, on
// the partition Java's murmur2 partitioner picks, in batch order per key,
// with every field in its header and traceparent passed through.
func TestPublisherRecords(t *testing.T) {
	t.Parallel()
	_, addr := cluster(t, kfake.NumBrokers(3), kfake.SeedTopics(8, "orders"))
	pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "orders"})

	occurred := time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC)
	full := outbox.Message{
		ID: "m-full", Name: "order.placed", Key: "order-1",
		AggregateType: "order", AggregateID: "order-1", AggregateVersion: 7,
		Payload:       []byte(`{"total":42}`),
		Headers:       map[string]string{"traceparent": traceparent, "tracestate": "vendor=x", "tenant": "acme"},
		CorrelationID: "corr-1", CausationID: "cause-1", OccurredAt: occurred,
	}
	noKey := outbox.Message{ID: "m-nokey", Name: "ping", Payload: []byte{}}
	byAggregate := outbox.Message{ID: "m-agg", Name: "order.shipped", AggregateType: "order", AggregateID: "order-2", AggregateVersion: 1, Payload: []byte("{}"),
		Headers: map[string]string{"content-type": "application/vnd.acme+json"}}
	batch := []outbox.Message{full, noKey, byAggregate}
	for k := range 20 {
		for v := 1; v <= 5; v++ {
			batch = append(batch, msg(fmt.Sprintf("acct-%02d", k), int64(v)))
		}
	}
	if err := pub.Publish(context.Background(), batch); err != nil {
		t.Fatal(err)
	}

	recs := readTopic(t, addr, "orders")
	if len(recs) != len(batch) {
		t.Fatalf("topic has %d records, published %d", len(recs), len(batch))
	}
	byID := map[string]kafkago.Message{}
	for _, r := range recs {
		id, _ := header(r, kafka.HeaderMessageID)
		byID[id] = r
	}

	t.Run("headers", func(t *testing.T) {
		r := byID["m-full"]
		want := map[string]string{
			kafka.HeaderMessageID:        "m-full",
			kafka.HeaderName:             "order.placed",
			kafka.HeaderAggregateType:    "order",
			kafka.HeaderAggregateID:      "order-1",
			kafka.HeaderAggregateVersion: "7",
			kafka.HeaderCorrelationID:    "corr-1",
			kafka.HeaderCausationID:      "cause-1",
			kafka.HeaderOccurredAt:       "2025-03-04T05:06:07.891011Z",
			kafka.HeaderContentType:      "application/json",
			kafka.HeaderTraceparent:      traceparent,
			"tracestate":                 "vendor=x",
			"tenant":                     "acme",
		}
		if diff := cmp.Diff(want, headerMap(r)); diff != "" {
			t.Errorf("headers (-want +got):\n%s", diff)
		}
		if len(r.Headers) != len(want) {
			t.Errorf("%d headers, want %d (no duplicates)", len(r.Headers), len(want))
		}
		if string(r.Key) != "order-1" || string(r.Value) != `{"total":42}` {
			t.Errorf("key %q value %q", r.Key, r.Value)
		}
		// Empty fields are left out, and the message's own content-type wins.
		if diff := cmp.Diff(map[string]string{kafka.HeaderMessageID: "m-nokey", kafka.HeaderName: "ping", kafka.HeaderContentType: "application/json"},
			headerMap(byID["m-nokey"])); diff != "" {
			t.Errorf("minimal headers (-want +got):\n%s", diff)
		}
		if ct, _ := header(byID["m-agg"], kafka.HeaderContentType); ct != "application/vnd.acme+json" {
			t.Errorf("content-type = %q, want the message's own", ct)
		}
	})

	t.Run("keys", func(t *testing.T) {
		if k := string(byID["m-nokey"].Key); k != "m-nokey" {
			t.Errorf("message without key or aggregate: key %q, want its id", k)
		}
		if k := string(byID["m-agg"].Key); k != "order-2" {
			t.Errorf("message without key: key %q, want its aggregate id", k)
		}
		// Same partition as the Java client would choose for the key.
		for _, r := range recs {
			want := kafkago.Murmur2Balancer{}.Balance(kafkago.Message{Key: r.Key}, 0, 1, 2, 3, 4, 5, 6, 7)
			if r.Partition != want {
				t.Errorf("key %q on partition %d, murmur2 says %d", r.Key, r.Partition, want)
			}
		}
	})

	t.Run("order per key", func(t *testing.T) {
		last := map[string]int64{}
		partition := map[string]int{}
		for _, r := range recs { // partition by partition, in offset order
			k := string(r.Key)
			if !strings.HasPrefix(k, "acct-") {
				continue
			}
			if p, ok := partition[k]; ok && p != r.Partition {
				t.Fatalf("key %s on partitions %d and %d", k, p, r.Partition)
			}
			partition[k] = r.Partition
			v, _ := header(r, kafka.HeaderAggregateVersion)
			var n int64
			fmt.Sscan(v, &n)
			if n != last[k]+1 {
				t.Fatalf("key %s: version %d after %d", k, n, last[k])
			}
			last[k] = n
		}
		if len(last) != 20 {
			t.Fatalf("%d keys, want 20", len(last))
		}
	})

	t.Run("round trip", func(t *testing.T) {
		// What a Consumer hands its Handler is the message that was
		// published, plus Topic, Key and the content-type header.
		got := kafka.FromRecord(byID["m-full"])
		want := full
		want.Topic = "orders"
		want.Headers = map[string]string{"traceparent": traceparent, "tracestate": "vendor=x", "tenant": "acme", "content-type": "application/json"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

// TestPublisherAcks checks on the wire that every produce request asks for
// acknowledgement by all in-sync replicas, and that Publish waits for it.
func TestPublisherAcks(t *testing.T) {
	t.Parallel()
	c, addr := cluster(t, kfake.SeedTopics(4, "t"))
	var mu sync.Mutex
	var acks []int16
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		acks = append(acks, req.(*kmsg.ProduceRequest).Acks)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // a slow acknowledgement
		return nil, nil, false
	})
	pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t"})
	var batch []outbox.Message
	for k := range 8 {
		batch = append(batch, msg(fmt.Sprintf("k%d", k), 1))
	}
	start := time.Now()
	if err := pub.Publish(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Publish returned after %v, before the broker acknowledged", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) == 0 {
		t.Fatal("no produce request seen")
	}
	for _, a := range acks {
		if a != -1 {
			t.Fatalf("produce acks = %d, want -1 (all in-sync replicas)", a)
		}
	}
	if n := len(readTopic(t, addr, "t")); n != len(batch) {
		t.Fatalf("%d records, want %d", n, len(batch))
	}
}

// TestPublisherTopics checks how a message's topic is chosen: its own Topic,
// else TopicFunc, else the default; and that a message with no valid topic
// fails permanently without holding up the others.
func TestPublisherTopics(t *testing.T) {
	t.Parallel()
	_, addr := cluster(t, kfake.SeedTopics(2, "default", "own", "order-events", "invoice-events"))
	pub := newPublisher(t, kafka.PublisherConfig{
		Brokers: []string{addr},
		Topic:   "default",
		TopicFunc: func(m outbox.Message) string {
			switch m.AggregateType {
			case "order", "invoice":
				return m.AggregateType + "-events"
			case "bad":
				return "no spaces allowed"
			}
			return ""
		},
	})
	batch := []outbox.Message{
		{ID: "1", Name: "x", Topic: "own", AggregateType: "order", Payload: []byte{}},
		{ID: "2", Name: "x", AggregateType: "order", Payload: []byte{}},
		{ID: "3", Name: "x", AggregateType: "invoice", Payload: []byte{}},
		{ID: "4", Name: "x", AggregateType: "customer", Payload: []byte{}},
		{ID: "5", Name: "x", AggregateType: "bad", Payload: []byte{}},
	}
	err := pub.Publish(context.Background(), batch)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
	}
	for i := range 4 {
		if be.Errs[i] != nil {
			t.Errorf("message %d: %v", i, be.Errs[i])
		}
	}
	if !errors.Is(be.Errs[4], outbox.ErrPermanent) {
		t.Errorf("invalid topic: %v, want ErrPermanent", be.Errs[4])
	}
	for topic, id := range map[string]string{"own": "1", "order-events": "2", "invoice-events": "3", "default": "4"} {
		recs := readTopic(t, addr, topic)
		if len(recs) != 1 {
			t.Fatalf("topic %s has %d records", topic, len(recs))
		}
		if got, _ := header(recs[0], kafka.HeaderMessageID); got != id {
			t.Errorf("topic %s has message %s, want %s", topic, got, id)
		}
	}
}

// TestPublisherPartialFailure provokes failures of some messages of a
// batch and checks that Publish reports exactly those (and the later
// messages of their keys, which it holds back), and that the rest reached
// the topic.
func TestPublisherPartialFailure(t *testing.T) {
	t.Parallel()
	t.Run("missing topic", func(t *testing.T) {
		// Auto-creation is off: the broker answers UNKNOWN_TOPIC_OR_PARTITION
		// for "missing" only.
		_, addr := cluster(t, kfake.SeedTopics(2, "present"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "present"})
		batch := []outbox.Message{msg("a", 1), msg("b", 1), msg("c", 1), msg("a", 2)}
		batch[1].Topic = "missing"
		err := pub.Publish(context.Background(), batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
		}
		if be.Failed(0) || !be.Failed(1) || be.Failed(2) || be.Failed(3) {
			t.Fatalf("failed: %v", be.Errs)
		}
		if !errors.Is(be.Errs[1], kafkago.UnknownTopicOrPartition) {
			t.Errorf("error %v, want UnknownTopicOrPartition", be.Errs[1])
		}
		if errors.Is(be.Errs[1], outbox.ErrPermanent) {
			t.Errorf("a missing topic may yet be created; want a retriable error, got %v", be.Errs[1])
		}
		if n := len(readTopic(t, addr, "present")); n != 3 {
			t.Errorf("present has %d records, want 3", n)
		}
	})

	t.Run("key across topics", func(t *testing.T) {
		// A key's messages may go to several topics. Once one fails, the
		// key's later messages are held back whatever their topic, and a
		// key's messages for two topics never share a round.
		_, addr := cluster(t, kfake.SeedTopics(2, "t1", "t2"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t1"})
		batch := []outbox.Message{msg("a", 1), msg("a", 2), msg("a", 3), msg("b", 1), msg("b", 2), msg("b", 3), msg("c", 1)}
		batch[1].Topic = "t2"      // a: t1, t2, t1, all delivered in order
		batch[4].Topic = "missing" // b: t1, missing, t1: b-v3 held back
		err := pub.Publish(context.Background(), batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
		}
		type entry struct{ Failed, HeldBack bool }
		var got []entry
		for i := range batch {
			got = append(got, entry{be.Failed(i), errors.Is(be.Errs[i], outbox.ErrHeldBack)})
		}
		want := []entry{{}, {}, {}, {}, {Failed: true}, {Failed: true, HeldBack: true}, {}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries (-want +got):\n%s\n%v", diff, be.Errs)
		}
		var ids []string
		for _, topic := range []string{"t1", "t2"} {
			for _, r := range readTopic(t, addr, topic) {
				id, _ := header(r, kafka.HeaderMessageID)
				ids = append(ids, topic+":"+id)
			}
		}
		slices.Sort(ids)
		if diff := cmp.Diff([]string{"t1:a-v1", "t1:a-v3", "t1:b-v1", "t1:c-v1", "t2:a-v2"}, ids); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
	})

	t.Run("broker rejects a partition", func(t *testing.T) {
		// The broker fails every produce to partition 0 with
		// MESSAGE_TOO_LARGE; rounds of two messages show that a key whose
		// message failed sends nothing more.
		c, addr := cluster(t, kfake.SeedTopics(2, "t"))
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			pr := req.(*kmsg.ProduceRequest)
			resp := pr.ResponseKind().(*kmsg.ProduceResponse)
			reject := false
			for _, tp := range pr.Topics {
				rt := kmsg.NewProduceResponseTopic()
				rt.Topic = tp.Topic
				for _, p := range tp.Partitions {
					if p.Partition == 0 {
						reject = true
					}
					rp := kmsg.NewProduceResponseTopicPartition()
					rp.Partition = p.Partition
					rp.ErrorCode = 10 // MESSAGE_TOO_LARGE
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			if !reject {
				return nil, nil, false // let the cluster store it
			}
			return resp, nil, true
		})
		part := func(key string) int {
			return kafkago.Murmur2Balancer{}.Balance(kafkago.Message{Key: []byte(key)}, 0, 1)
		}
		var on0, on1 string
		for i := 0; on0 == "" || on1 == ""; i++ {
			k := fmt.Sprintf("key-%d", i)
			if part(k) == 0 && on0 == "" {
				on0 = k
			} else if part(k) == 1 && on1 == "" {
				on1 = k
			}
		}
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t", BatchSize: 2})
		batch := []outbox.Message{msg(on0, 1), msg(on1, 1), msg(on0, 2), msg(on1, 2), msg(on1, 3)}
		err := pub.Publish(context.Background(), batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
		}
		if !be.Failed(0) || be.Failed(1) || !be.Failed(2) || be.Failed(3) || be.Failed(4) {
			t.Fatalf("failed: %v", be.Errs)
		}
		if !errors.Is(be.Errs[0], outbox.ErrPermanent) || !errors.Is(be.Errs[0], kafkago.MessageSizeTooLarge) {
			t.Errorf("rejected message: %v, want ErrPermanent and MessageSizeTooLarge", be.Errs[0])
		}
		if errors.Is(be.Errs[2], outbox.ErrPermanent) || !errors.Is(be.Errs[2], outbox.ErrNotAttempted) {
			t.Errorf("held message: %v, want ErrNotAttempted", be.Errs[2])
		}
		recs := readTopic(t, addr, "t")
		if len(recs) != 3 {
			t.Fatalf("topic has %d records, want the 3 of %s", len(recs), on1)
		}
		for _, r := range recs {
			if string(r.Key) != on1 {
				t.Errorf("record of %s reached the topic", r.Key)
			}
		}
	})

	t.Run("message too large", func(t *testing.T) {
		_, addr := cluster(t, kfake.SeedTopics(1, "t"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t", BatchBytes: 4096})
		big := msg("a", 1)
		big.Payload = make([]byte, 5000)
		batch := []outbox.Message{big, msg("b", 1), msg("a", 2)}
		err := pub.Publish(context.Background(), batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
		}
		if !errors.Is(be.Errs[0], outbox.ErrPermanent) {
			t.Errorf("oversized message: %v, want ErrPermanent", be.Errs[0])
		}
		if be.Failed(1) || !errors.Is(be.Errs[2], outbox.ErrNotAttempted) {
			t.Errorf("errors %v: want b delivered and a's next message held", be.Errs)
		}
		if n := len(readTopic(t, addr, "t")); n != 1 {
			t.Errorf("topic has %d records, want 1", n)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		// Nothing is sent once ctx is done, and the relay is told so: it
		// leaves the messages pending without counting an attempt.
		_, addr := cluster(t, kfake.SeedTopics(1, "t"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t"})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := pub.Publish(ctx, []outbox.Message{msg("a", 1), msg("b", 1)})
		if !errors.Is(err, outbox.ErrNotAttempted) || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Publish with a cancelled context = %v, want ErrNotAttempted", err)
		}
		if n := len(readTopic(t, addr, "t")); n != 0 {
			t.Fatalf("%d records written after cancel", n)
		}
	})

	t.Run("broker down", func(t *testing.T) {
		c, addr := cluster(t, kfake.SeedTopics(1, "t"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t", WriteAttempts: 1})
		if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1)}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := pub.Publish(ctx, []outbox.Message{msg("a", 2), msg("b", 1)})
		var be *outbox.BatchError
		if err == nil || errors.As(err, &be) || errors.Is(err, outbox.ErrPermanent) || errors.Is(err, outbox.ErrNotAttempted) {
			t.Fatalf("Publish with the broker down = %v, want one retriable error for the whole batch", err)
		}

		// In rounds of one, the first fails and the rest are not tried.
		small := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "t", WriteAttempts: 1, BatchSize: 1})
		err = small.Publish(ctx, []outbox.Message{msg("a", 2), msg("b", 1), msg("c", 1)})
		if !errors.As(err, &be) {
			t.Fatalf("Publish = %v, want a *outbox.BatchError", err)
		}
		if be.Errs[0] == nil || errors.Is(be.Errs[0], outbox.ErrNotAttempted) ||
			!errors.Is(be.Errs[1], outbox.ErrNotAttempted) || !errors.Is(be.Errs[2], outbox.ErrNotAttempted) {
			t.Fatalf("errors %v: want the first failed and the others not attempted", be.Errs)
		}
	})
}

func TestPublisherConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  kafka.PublisherConfig
		want string
	}{
		{"no brokers", kafka.PublisherConfig{Topic: "t"}, "Brokers is empty"},
		{"empty broker", kafka.PublisherConfig{Brokers: []string{""}, Topic: "t"}, "Brokers[0] is empty"},
		{"no topic", kafka.PublisherConfig{Brokers: []string{"b:9092"}}, "neither Topic nor TopicFunc"},
		{"bad topic", kafka.PublisherConfig{Brokers: []string{"b:9092"}, Topic: "a/b"}, "only ASCII letters"},
		{"batch size", kafka.PublisherConfig{Brokers: []string{"b:9092"}, Topic: "t", BatchSize: 20000}, "BatchSize 20000"},
		{"batch bytes", kafka.PublisherConfig{Brokers: []string{"b:9092"}, Topic: "t", BatchBytes: 10}, "BatchBytes 10"},
		{"timeout", kafka.PublisherConfig{Brokers: []string{"b:9092"}, Topic: "t", WriteTimeout: -1}, "WriteTimeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := kafka.NewPublisher(c.cfg)
			if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewPublisher = %v, want ErrInvalidConfig mentioning %q", err, c.want)
			}
		})
	}
	p, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{"b:9092"}, TopicFunc: func(outbox.Message) string { return "x" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), []outbox.Message{msg("a", 1)}); !errors.Is(err, kafka.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}
