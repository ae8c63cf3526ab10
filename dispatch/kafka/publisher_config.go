package kafka

import (
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
)

// Defaults used by PublisherConfig when a field is left zero.
const (
	DefaultBatchSize     = outbox.DefaultBatchSize
	DefaultBatchBytes    = 1000000
	DefaultBatchTimeout  = time.Millisecond
	DefaultWriteAttempts = 3
	DefaultWriteTimeout  = 5 * time.Second
	DefaultContentType   = "application/json"
)

const (
	maxBatchSize            = 10000
	maxTopicLength          = 249 // Kafka's limit on topic names
	defaultDeadLetterSuffix = ".dlq"
)

// PublisherConfig configures a Publisher. Only Brokers and a topic (Topic or
// TopicFunc) are required; every other field states the default it falls
// back to when left zero.
type PublisherConfig struct {
	// Brokers lists bootstrap brokers as host:port. Required.
	Brokers []string

	// Topic is the topic of messages whose Message.Topic is empty (and for
	// which TopicFunc, if set, returns ""). Topic or TopicFunc is required.
	Topic string
	// TopicFunc, if set, chooses the topic of a message whose Message.Topic
	// is empty, by its AggregateType say. When it returns "", Topic is used.
	// It is called from Publish and must be safe for concurrent use.
	TopicFunc func(m outbox.Message) string

	// Balancer maps a record's key (the message's partition key) to a Kafka
	// partition. If nil, kafka-go's Murmur2Balancer is used: the same
	// partitioner as the Java client's default and librdkafka's
	// "murmur2_random", so keel and other producers writing the same keys
	// agree on their partitions. It must hash keys: a balancer that does not
	// (round robin, least bytes) breaks per-key order.
	Balancer kafkago.Balancer

	// ContentType is the content-type header of messages that carry none in
	// Message.Headers. If empty, DefaultContentType ("application/json"), the
	// encoding aggregate events are stored in.
	ContentType string

	// BatchSize caps the messages sent per produce round; a larger relay
	// batch is written in several rounds, one after the other. Set it to at
	// least RelayConfig.BatchSize. If zero, DefaultBatchSize (1000); at most
	// 10000.
	BatchSize int
	// BatchBytes caps the estimated size of a produce round, and so of one
	// partition's record batch. A single message above it is rejected with
	// an error wrapping outbox.ErrPermanent (the relay parks it). It must
	// stay below the broker's message.max.bytes (the topic's
	// max.message.bytes). If zero, DefaultBatchBytes (1,000,000), just under
	// Kafka's default of 1,048,588.
	BatchBytes int64
	// BatchTimeout is how long kafka-go waits for more messages before it
	// sends a partition's last, partly filled record batch of a round. The
	// relay already hands over whole batches, so it only adds latency. If
	// zero, DefaultBatchTimeout (1ms), not kafka-go's 1s.
	BatchTimeout time.Duration

	// WriteAttempts is how many times kafka-go sends one record batch when
	// the broker answers with a retriable error (a leader election, say) or
	// the connection fails, before the messages are reported failed to the
	// relay, which retries them later with its own backoff. If zero,
	// DefaultWriteAttempts (3).
	WriteAttempts int
	// WriteTimeout bounds one produce request. WriteAttempts × WriteTimeout
	// should stay below RelayConfig.PublishTimeout. If zero,
	// DefaultWriteTimeout (5s).
	WriteTimeout time.Duration

	// Compression is the codec for record batches. The zero value sends
	// them uncompressed.
	Compression kafkago.Compression
	// AllowAutoTopicCreation asks the broker to create missing topics (when
	// its auto.create.topics.enable allows). If false, messages for a
	// missing topic fail, and the relay retries them until the topic exists
	// or they run out of attempts.
	AllowAutoTopicCreation bool

	// Transport carries TLS, SASL and dialing settings. If nil, a
	// *kafka.Transport of the Publisher's own is used, with client id "keel".
	Transport kafkago.RoundTripper
}

// withDefaults returns cfg with zero fields filled in, or an error naming the
// first field that cannot be used.
func (cfg PublisherConfig) withDefaults() (PublisherConfig, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, dialect.Invalid("PublisherConfig.Brokers is empty; list at least one broker as host:port")
	}
	for i, b := range cfg.Brokers {
		if b == "" {
			return cfg, dialect.Invalid("PublisherConfig.Brokers[%d] is empty; give a host:port", i)
		}
	}
	if cfg.Topic == "" && cfg.TopicFunc == nil {
		return cfg, dialect.Invalid("PublisherConfig has neither Topic nor TopicFunc; set a default Topic, or a TopicFunc choosing one per message")
	}
	if cfg.Topic != "" {
		if err := validTopic(cfg.Topic); err != nil {
			return cfg, dialect.Invalid("PublisherConfig.Topic: %v", err)
		}
	}
	if cfg.Balancer == nil {
		cfg.Balancer = kafkago.Murmur2Balancer{}
	}
	if cfg.ContentType == "" {
		cfg.ContentType = DefaultContentType
	}
	switch {
	case cfg.BatchSize < 0 || cfg.BatchSize > maxBatchSize:
		return cfg, dialect.Invalid("PublisherConfig.BatchSize %d is out of range; use 1 to %d, or 0 for %d", cfg.BatchSize, maxBatchSize, DefaultBatchSize)
	case cfg.BatchSize == 0:
		cfg.BatchSize = DefaultBatchSize
	}
	switch {
	case cfg.BatchBytes < 0:
		return cfg, dialect.Invalid("PublisherConfig.BatchBytes %d is negative; leave it 0 for %d", cfg.BatchBytes, DefaultBatchBytes)
	case cfg.BatchBytes == 0:
		cfg.BatchBytes = DefaultBatchBytes
	case cfg.BatchBytes < 1024:
		return cfg, dialect.Invalid("PublisherConfig.BatchBytes %d is below 1024; it must hold at least one message with its headers", cfg.BatchBytes)
	}
	switch {
	case cfg.BatchTimeout < 0:
		return cfg, dialect.Invalid("PublisherConfig.BatchTimeout %v is negative; leave it 0 for %v", cfg.BatchTimeout, DefaultBatchTimeout)
	case cfg.BatchTimeout == 0:
		cfg.BatchTimeout = DefaultBatchTimeout
	}
	switch {
	case cfg.WriteAttempts < 0:
		return cfg, dialect.Invalid("PublisherConfig.WriteAttempts %d is negative; leave it 0 for %d", cfg.WriteAttempts, DefaultWriteAttempts)
	case cfg.WriteAttempts == 0:
		cfg.WriteAttempts = DefaultWriteAttempts
	}
	switch {
	case cfg.WriteTimeout < 0:
		return cfg, dialect.Invalid("PublisherConfig.WriteTimeout %v is negative; leave it 0 for %v", cfg.WriteTimeout, DefaultWriteTimeout)
	case cfg.WriteTimeout == 0:
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return cfg, nil
}

// validTopic applies Kafka's rules for topic names.
func validTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty topic name")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > maxTopicLength:
		return fmt.Errorf("topic name %.40q... is %d characters long; Kafka allows %d", name, len(name), maxTopicLength)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q has %q; Kafka allows only ASCII letters, digits, '.', '_' and '-'", name, c)
		}
	}
	return nil
}
