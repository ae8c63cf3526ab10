package kafka

import (
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/dialect"
)

// Defaults used by ConsumerConfig when a field is left zero.
const (
	DefaultMaxAttempts     = 5
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 10 * time.Second
	DefaultMaxWait         = 500 * time.Millisecond

	DefaultSessionTimeout    = 6 * time.Second
	DefaultHeartbeatInterval = 250 * time.Millisecond
	DefaultRebalanceTimeout  = 3 * time.Second
	DefaultJoinGroupBackoff  = 250 * time.Millisecond
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
	// BatchSize is how many records, at most, the Consumer hands over at
	// once to a Handler that has a DeliverBatch method (a dispatch.Router
	// does): the records already fetched, up to BatchSize, are delivered in
	// one transaction with their inbox rows, and their offsets are
	// committed after it. A record that fails in the batch goes again alone,
	// with MaxAttempts further attempts and dead-lettering, before the
	// offsets are committed. If zero or one, records are handed over one at
	// a time, each through Deliver.
	BatchSize int
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
	// MaxWait bounds how long a fetch waits at the broker for new records.
	// An idle member takes up to this long to stop fetching, when it
	// closes or rejoins a rebalance; a shorter wait costs more fetch
	// requests while idle. If zero, DefaultMaxWait (500ms), not kafka-go's
	// 10s.
	MaxWait time.Duration
	// SessionTimeout is how long the group coordinator waits for a member's
	// heartbeat before it declares the member dead and hands its partitions
	// to the others. It bounds how long the partitions of a process that died
	// without calling Close (a crash, SIGKILL, a lost machine) go unread.
	// Shorter recovers sooner; too short evicts members whose heartbeats a
	// network or broker hiccup delayed, costing a rebalance and redeliveries
	// (which the inbox absorbs). Brokers accept only values between their
	// group.min.session.timeout.ms and group.max.session.timeout.ms, 6s and
	// 30 minutes unless configured otherwise, and Run returns an error
	// matching store.ErrInvalidConfig when they refuse it. If zero,
	// DefaultSessionTimeout (6s, the least a default broker accepts;
	// kafka-go's own is 30s).
	SessionTimeout time.Duration
	// HeartbeatInterval is how often a member tells the coordinator it is
	// alive. The answer to a heartbeat is also how a member learns that a
	// rebalance started, because another member joined, left or died, so a
	// member stops and rejoins at most one interval after a rebalance began,
	// and the whole group waits for the slowest. Shorter makes every
	// rebalance quicker at the cost of one small request per interval per
	// member. It must be well below SessionTimeout (Kafka advises a third
	// at most). If zero, DefaultHeartbeatInterval (250ms; kafka-go's is 3s).
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits, once a rebalance
	// began, for every member to rejoin, and then for every member to
	// collect its assignment; a member that has not is dropped and the group
	// goes on without it. A member that died without leaving therefore
	// holds up a rebalance that another member's arrival or departure began
	// for this long at most, instead of until its session expires, and Close
	// can take this long when it comes during such a rebalance. A member of
	// this package rejoins within about HeartbeatInterval plus MaxWait plus
	// two connection setups, whatever its handler is doing (kafka-go
	// rejoins from a goroutine of its own, unlike clients that rejoin only
	// between batches), so the default leaves room for slow networks and
	// TLS. A member that is late is dropped and joins again, costing one
	// more rebalance; below a member's rejoin time, that repeats for ever.
	// It must exceed HeartbeatInterval plus MaxWait. If zero,
	// DefaultRebalanceTimeout (3s; kafka-go's is 30s).
	RebalanceTimeout time.Duration
	// JoinGroupBackoff is how long a member waits after a failed attempt to
	// join the group (the coordinator moved or restarted, or dropped the
	// member as late) before it tries again. Shorter rejoins sooner; each
	// failed attempt costs a connection and a Warn log line, so during a
	// broker outage a short backoff logs more. If zero,
	// DefaultJoinGroupBackoff (250ms; kafka-go's is 5s).
	JoinGroupBackoff time.Duration
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

	// TracerProvider records a span for each record the consumer hands to
	// its Handler, continuing the trace the record's traceparent header
	// carries (written with the outbox row it was published from), so
	// that the handlers' spans join it. If nil, OpenTelemetry's global
	// provider is used. Set it to the store's when the store has its own.
	TracerProvider trace.TracerProvider
	// MeterProvider records the consumer's lag and its dead letters. If
	// nil, OpenTelemetry's global provider is used.
	MeterProvider metric.MeterProvider
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
	if cfg.BatchSize < 0 {
		return cfg, dialect.Invalid("ConsumerConfig.BatchSize %d is negative; leave it 0 to hand records over one at a time", cfg.BatchSize)
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
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"SessionTimeout", &cfg.SessionTimeout, DefaultSessionTimeout},
		{"HeartbeatInterval", &cfg.HeartbeatInterval, DefaultHeartbeatInterval},
		{"RebalanceTimeout", &cfg.RebalanceTimeout, DefaultRebalanceTimeout},
		{"JoinGroupBackoff", &cfg.JoinGroupBackoff, DefaultJoinGroupBackoff},
	} {
		switch {
		case *d.v < 0:
			return cfg, dialect.Invalid("ConsumerConfig.%s %v is negative; leave it 0 for %v", d.name, *d.v, d.def)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if cfg.HeartbeatInterval*3 > cfg.SessionTimeout {
		return cfg, dialect.Invalid("ConsumerConfig.HeartbeatInterval %v is more than a third of SessionTimeout %v: a member could miss its session over a lost heartbeat or two; lower HeartbeatInterval or raise SessionTimeout",
			cfg.HeartbeatInterval, cfg.SessionTimeout)
	}
	if cfg.RebalanceTimeout <= cfg.HeartbeatInterval+cfg.MaxWait {
		return cfg, dialect.Invalid("ConsumerConfig.RebalanceTimeout %v is not above HeartbeatInterval %v plus MaxWait %v, the time a member may need to notice a rebalance and stop fetching: members would be dropped from every rebalance; raise RebalanceTimeout",
			cfg.RebalanceTimeout, cfg.HeartbeatInterval, cfg.MaxWait)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
