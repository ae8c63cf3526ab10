package kafka_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/publishertest"
)

// kafkaHarness is a Publisher writing to a kfake cluster over the wire,
// with the topic read back as the destination.
type kafkaHarness struct {
	addr string
	pub  *kafka.Publisher
}

const (
	conformanceTopic = "conformance"
	// conformanceBatchBytes is the Publisher's BatchBytes; a message above
	// it is refused for good.
	conformanceBatchBytes = 64 << 10
	// conformanceBatchSize is the Publisher's BatchSize: small, so that
	// the suite's batches go out in many rounds, and a cancelled Publish
	// stops between them.
	conformanceBatchSize = 16
)

func newKafkaHarness(t *testing.T) *kafkaHarness {
	_, addr := cluster(t, kfake.SeedTopics(4, conformanceTopic))
	return &kafkaHarness{addr: addr, pub: newPublisher(t, kafka.PublisherConfig{
		Brokers: []string{addr}, Topic: conformanceTopic, BatchBytes: conformanceBatchBytes, BatchSize: conformanceBatchSize,
	})}
}

func (h *kafkaHarness) Publisher() outbox.Publisher { return h.pub }

// Delivered reads the topic back partition by partition: arrival order
// within each key, which is all Kafka orders.
func (h *kafkaHarness) Delivered(ctx context.Context) ([]outbox.Message, error) {
	recs, err := readRecords(ctx, h.addr, conformanceTopic)
	if err != nil {
		return nil, err
	}
	out := make([]outbox.Message, len(recs))
	for i, r := range recs {
		out[i] = kafka.FromRecord(r)
	}
	return out, nil
}

// FailPermanently makes m larger than the Publisher's BatchBytes, which no
// retry fixes.
func (h *kafkaHarness) FailPermanently(m outbox.Message) outbox.Message {
	m.Payload = make([]byte, conformanceBatchBytes+1)
	return m
}

// FailTransiently sends m to a topic of its own that does not exist, and
// the cluster creates no topic on demand: the broker answers
// UNKNOWN_TOPIC_OR_PARTITION, which creating the topic would fix, so the
// failure is transient. One topic per message keeps failures independent:
// the Publisher does not try again, in the same batch, a topic that failed
// as a whole, and reports its later messages as not attempted.
func (h *kafkaHarness) FailTransiently(m outbox.Message) outbox.Message {
	m.Topic = "missing-" + m.ID
	return m
}

// TestPublisherConformance runs the outbox.Publisher conformance suite
// against the Publisher and a kfake cluster. Records handed to kafka-go
// before a Publish is cancelled may still be written, so the suite allows
// late duplicates.
func TestPublisherConformance(t *testing.T) {
	t.Parallel()
	h := newKafkaHarness(t)
	publishertest.Run(t, publishertest.Features{LateDuplicates: true}, func(*testing.T) publishertest.Harness { return h })
}
