package kafka

import (
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/internal/dialect"
)

// Defaults used by ConsumerConfig when a field is left zero.
const (
	DefaultMaxAttempts     = 5
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 10 * time.Second
	DefaultMaxWait         = 500 * time.Millisecond
)

// ConsumerConfig configures a Consumer. Brokers, GroupID and Topics are
// required; every other field states the default it falls back to when left
// zero.
type ConsumerConfig struct {
	// Brokers lists bootstrap brokers as host:port. Required.
	Brokers []string
	// GroupID is the consumer group. Consumers sharing it split the topics'
	// partitions between them, and its committed offsets say where a
	// restarted consumer resumes. Required.
	GroupID string
	// Topics are the topics to consume. Required.
	Topics []string

	// MaxAttempts is how many times a message is handed to the Handler
	// before it is dead-lettered. Errors wrapping outbox.ErrPermanent are
	// dead-lettered after the first attempt. If zero, DefaultMaxAttempts (5);
	// one means no retry.
	MaxAttempts int
	// RetryBackoff is the delay after a message's first failed attempt; it
	// doubles with each further failure, with jitter, up to MaxRetryBackoff.
	// A partition's later messages wait meanwhile, so keep the total short
	// and leave long outages to the dead-letter topic. If zero,
	// DefaultRetryBackoff (100ms) and DefaultMaxRetryBackoff (10s).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	// DeadLetterTopic receives messages that failed MaxAttempts times or
	// permanently. If empty, each topic has its own: "<topic>.dlq". The
	// topic must exist, or the brokers must create topics on demand.
	DeadLetterTopic string

	// StartOffset is where a group with no committed offset for a partition
	// starts: kafka.FirstOffset (the oldest retained record) or
	// kafka.LastOffset (only records produced from now on). If zero,
	// kafka.FirstOffset, so nothing published before the first start is
	// skipped.
	StartOffset int64
	// MaxWait bounds how long a fetch waits at the broker for new records;
	// it is also about how long Close takes. If zero, DefaultMaxWait
	// (500ms), not kafka-go's 10s.
	MaxWait time.Duration
	// SessionTimeout, HeartbeatInterval and RebalanceTimeout tune group
	// membership. If zero, kafka-go's defaults are used: 30s, 3s and 30s.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration

	// Dialer carries the reader's TLS, SASL and dialing settings. If nil,
	// kafka-go's default dialer is used.
	Dialer *kafkago.Dialer
	// Transport carries the dead-letter writer's TLS, SASL and dialing
	// settings. If nil, a *kafka.Transport of the Consumer's own is used.
	Transport kafkago.RoundTripper

	// Logger receives dead-lettered messages and commit failures at Error
	// and Warn, retries at Debug, and kafka-go's own error logs at Warn. If
	// nil, slog.Default() is used; pass slog.New(slog.DiscardHandler) for
	// silence.
	Logger *slog.Logger
}

func (cfg ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, dialect.Invalid("ConsumerConfig.Brokers is empty; list at least one broker as host:port")
	}
	for i, b := range cfg.Brokers {
		if b == "" {
			return cfg, dialect.Invalid("ConsumerConfig.Brokers[%d] is empty; give a host:port", i)
		}
	}
	if cfg.GroupID == "" {
		return cfg, dialect.Invalid("ConsumerConfig.GroupID is empty; name the consumer group, which stores the committed offsets")
	}
	if len(cfg.Topics) == 0 {
		return cfg, dialect.Invalid("ConsumerConfig.Topics is empty; list the topics to consume")
	}
	for _, t := range cfg.Topics {
		if err := validTopic(t); err != nil {
			return cfg, dialect.Invalid("ConsumerConfig.Topics: %v", err)
		}
		if cfg.DeadLetterTopic == "" {
			if err := validTopic(t + defaultDeadLetterSuffix); err != nil {
				return cfg, dialect.Invalid("topic %q has no valid dead-letter topic: %v; set ConsumerConfig.DeadLetterTopic", t, err)
			}
		}
	}
	if cfg.DeadLetterTopic != "" {
		if err := validTopic(cfg.DeadLetterTopic); err != nil {
			return cfg, dialect.Invalid("ConsumerConfig.DeadLetterTopic: %v", err)
		}
	}
	switch {
	case cfg.MaxAttempts < 0:
		return cfg, dialect.Invalid("ConsumerConfig.MaxAttempts %d is negative; leave it 0 for %d", cfg.MaxAttempts, DefaultMaxAttempts)
	case cfg.MaxAttempts == 0:
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryBackoff < 0 || cfg.MaxRetryBackoff < 0 {
		return cfg, dialect.Invalid("ConsumerConfig.RetryBackoff %v and MaxRetryBackoff %v must not be negative; leave them 0 for %v and %v",
			cfg.RetryBackoff, cfg.MaxRetryBackoff, DefaultRetryBackoff, DefaultMaxRetryBackoff)
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = max(DefaultMaxRetryBackoff, cfg.RetryBackoff)
	}
	if cfg.MaxRetryBackoff < cfg.RetryBackoff {
		return cfg, dialect.Invalid("ConsumerConfig.MaxRetryBackoff %v is below RetryBackoff %v; raise MaxRetryBackoff", cfg.MaxRetryBackoff, cfg.RetryBackoff)
	}
	switch cfg.StartOffset {
	case 0:
		cfg.StartOffset = kafkago.FirstOffset
	case kafkago.FirstOffset, kafkago.LastOffset:
	default:
		return cfg, dialect.Invalid("ConsumerConfig.StartOffset %d is neither kafka.FirstOffset nor kafka.LastOffset", cfg.StartOffset)
	}
	switch {
	case cfg.MaxWait < 0:
		return cfg, dialect.Invalid("ConsumerConfig.MaxWait %v is negative; leave it 0 for %v", cfg.MaxWait, DefaultMaxWait)
	case cfg.MaxWait == 0:
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.SessionTimeout < 0 || cfg.HeartbeatInterval < 0 || cfg.RebalanceTimeout < 0 {
		return cfg, dialect.Invalid("ConsumerConfig.SessionTimeout, HeartbeatInterval and RebalanceTimeout must not be negative; leave them 0 for kafka-go's defaults")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
