package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
)

// Handler takes delivery of consumed messages. dispatch.Router satisfies
// it: it runs each registered handler in a unit of work that records the
// message id in the inbox, so a redelivered message has no second effect.
//
// Deliver returns nil only once the message's effects are durable (the
// transaction committed); the Consumer then commits the message's offset.
// An error makes the Consumer retry; an error wrapping outbox.ErrPermanent
// sends the message to the dead-letter topic at once. Since a message may
// be delivered more than once (after a crash or a rebalance between Deliver
// and the offset commit, or when a producer retried), Deliver must
// deduplicate on Message.ID.
type Handler interface {
	Deliver(ctx context.Context, m outbox.Message) error
}

// BatchHandler is a Handler that can also take many messages at once.
// dispatch.Router satisfies it. DeliverBatch returns nil when every message
// took effect, and otherwise an *outbox.BatchError with one entry per
// message; it must deduplicate as Deliver does.
type BatchHandler interface {
	Handler
	DeliverBatch(ctx context.Context, msgs []outbox.Message) error
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, m outbox.Message) error

// Deliver calls f(ctx, m).
func (f HandlerFunc) Deliver(ctx context.Context, m outbox.Message) error { return f(ctx, m) }

// Consumer reads topics through a consumer group and hands each message to
// a Handler, one at a time, committing its offset only after the Handler
// succeeded or the message was dead-lettered. Messages of one partition are
// handled in offset order; a failing message holds its partition back while
// it is retried. For more parallelism, run more Consumers with the same
// GroupID (up to one per partition).
type Consumer struct {
	cfg       ConsumerConfig
	retry     backoff.Policy
	h         Handler
	r         *kafkago.Reader
	dlq       *kafkago.Writer
	transport *kafkago.Transport // ours to close; nil when the caller passed one
	log       *slog.Logger
	tel       *telemetry.Telemetry

	running   atomic.Bool
	closed    atomic.Bool
	mu        sync.Mutex
	stop      context.CancelFunc // cancels Run's context; set while Run runs
	closeOnce sync.Once
	closeErr  error
}

// NewConsumer returns a Consumer handing the messages of cfg.Topics to h.
// It validates cfg but does not connect; Run does.
func NewConsumer(cfg ConsumerConfig, h Handler) (*Consumer, error) {
	if h == nil {
		return nil, dialect.Invalid("nil Handler; pass one, such as a dispatch.Router or a HandlerFunc")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg, h: h, log: cfg.Logger, retry: backoff.Policy{Base: cfg.RetryBackoff, Max: cfg.MaxRetryBackoff},
		tel: telemetry.For(cfg.TracerProvider, cfg.MeterProvider)}
	c.r = kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.GroupID,
		GroupTopics: cfg.Topics,
		Dialer:      cfg.Dialer,
		StartOffset: cfg.StartOffset,
		MaxWait:     cfg.MaxWait,
		// Zero: CommitMessages commits synchronously, so an offset is
		// stored before the next message is taken.
		CommitInterval:    0,
		SessionTimeout:    cfg.SessionTimeout,
		HeartbeatInterval: cfg.HeartbeatInterval,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		JoinGroupBackoff:  cfg.JoinGroupBackoff,
		// Partitions added to a topic are otherwise read only after the
		// next rebalance, which a stable group may not have for weeks.
		WatchPartitionChanges: true,
		// The reader's queue holds the records a batch can take at once.
		QueueCapacity: max(100, cfg.BatchSize),
		ErrorLogger:   kafkago.LoggerFunc(func(msg string, args ...any) { c.log.Warn("keel: kafka reader: " + fmt.Sprintf(msg, args...)) }),
	})
	rt := cfg.Transport
	if rt == nil {
		c.transport = &kafkago.Transport{ClientID: "keel"}
		rt = c.transport
	}
	c.dlq = &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Balancer:               kafkago.Murmur2Balancer{},
		BatchSize:              1, // one record at a time: send at once
		RequiredAcks:           kafkago.RequireAll,
		AllowAutoTopicCreation: true,
		Transport:              rt,
	}
	return c, nil
}

var errRunning = errors.New("keel: kafka consumer is already running")

// fetchBackoff spaces out Run's fetches after a failed one. kafka-go paces
// its own retries (joins by JoinGroupBackoff, partition reads by its read
// backoff), so this only keeps a repeated error from spinning; it stays
// short so that Run fetches again as soon as the group has recovered.
var fetchBackoff = backoff.Policy{Base: 20 * time.Millisecond, Max: 500 * time.Millisecond}

// Run consumes until ctx is done or Close is called, then returns nil. It
// fetches a message, hands it to the Handler (retrying failures with
// exponential backoff and jitter, up to MaxAttempts), dead-letters it if it
// still failed, commits its offset, and moves on. A message whose handling
// was cut short by ctx is neither committed nor dead-lettered, so it is
// delivered again after a restart. Errors reading from Kafka (a broker
// outage, a rebalance) are logged and retried with backoff: Run returns an
// error only when the Consumer is already running, or, with an error
// matching store.ErrInvalidConfig, when the brokers refuse
// ConsumerConfig.SessionTimeout, which no retry can fix.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.stop = cancel
	c.mu.Unlock()
	if c.closed.Load() {
		return nil
	}
	defer c.observeLag()()
	failures := 0
	for {
		km, err := c.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || c.closed.Load() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			if errors.Is(err, kafkago.InvalidSessionTimeout) {
				return dialect.Invalid("kafka consumer group %q: the brokers refuse SessionTimeout %v (%v); set ConsumerConfig.SessionTimeout between their group.min.session.timeout.ms and group.max.session.timeout.ms",
					c.cfg.GroupID, c.cfg.SessionTimeout, err)
			}
			failures++
			c.log.Warn("keel: kafka fetch failed; retrying", "group", c.cfg.GroupID, "failures", failures, "err", err)
			if backoff.Sleep(ctx, fetchBackoff.Delay(failures)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		bh, ok := c.h.(BatchHandler)
		if !ok || c.cfg.BatchSize <= 1 {
			if err := c.handle(ctx, &km); err != nil {
				return nil // ctx done or closed
			}
			continue
		}
		if err := c.handleBatch(ctx, bh, c.fetchMore(ctx, km)); err != nil {
			return nil // ctx done or closed
		}
	}
}

// handle delivers one message, dead-letters it if it keeps failing, and
// commits its offset. It returns an error only when ctx ended first.
func (c *Consumer) handle(ctx context.Context, km *kafkago.Message) (err error) {
	m := FromRecord(*km)
	ctx, end := c.traceRecord(ctx, km, &m)
	defer func() { end(err) }()
	for attempt := 1; ; attempt++ {
		err := c.h.Deliver(ctx, m)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.closed.Load() {
			return io.ErrClosedPipe
		}
		if errors.Is(err, outbox.ErrPermanent) || attempt >= c.cfg.MaxAttempts {
			if err := c.deadLetter(ctx, km, &m, err, attempt); err != nil {
				return err
			}
			break
		}
		c.log.Debug("keel: kafka handler failed; retrying", "id", m.ID, "topic", km.Topic,
			"partition", km.Partition, "offset", km.Offset, "attempt", attempt, "err", err)
		if err := backoff.Sleep(ctx, c.retry.Delay(attempt)); err != nil {
			return err
		}
	}
	if err := c.r.CommitMessages(ctx, *km); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.closed.Load() {
			return err
		}
		// A rebalance took the partition away: its new owner reads the
		// message again, and the inbox makes that harmless.
		c.log.Warn("keel: kafka offset commit failed; the message may be delivered again", "id", m.ID,
			"topic", km.Topic, "partition", km.Partition, "offset", km.Offset, "err", err)
	}
	return nil
}

// batchWait is how long fetchMore waits for one more record: records the
// reader already holds come at once, and a batch never waits for records
// still to be produced.
const batchWait = time.Millisecond

// fetchMore returns first and the records fetched after it without
// waiting, up to BatchSize in all.
func (c *Consumer) fetchMore(ctx context.Context, first kafkago.Message) []kafkago.Message {
	batch := []kafkago.Message{first}
	for len(batch) < c.cfg.BatchSize {
		fctx, cancel := context.WithTimeout(ctx, batchWait)
		km, err := c.r.FetchMessage(fctx)
		cancel()
		if err != nil {
			break // none ready; a lasting error shows at the next fetch
		}
		batch = append(batch, km)
	}
	return batch
}

// handleBatch delivers records in one call of DeliverBatch, then each one
// that failed there again alone through handle, in offset order, and
// commits the offsets. It returns an error only when ctx ended first.
func (c *Consumer) handleBatch(ctx context.Context, bh BatchHandler, batch []kafkago.Message) error {
	msgs := make([]outbox.Message, len(batch))
	for i := range batch {
		msgs[i] = FromRecord(batch[i])
	}
	err := bh.DeliverBatch(ctx, msgs)
	var be *outbox.BatchError
	if err != nil && (!errors.As(err, &be) || len(be.Errs) != len(batch)) {
		be = &outbox.BatchError{Errs: make([]error, len(batch))}
		for i := range be.Errs {
			be.Errs[i] = err
		}
	}
	for i := range batch {
		if be == nil || be.Errs[i] == nil {
			continue
		}
		// Failed, or held back behind a failure of its key: it goes alone,
		// with its retries and dead-lettering, before the offsets after it
		// are committed.
		if err := c.handle(ctx, &batch[i]); err != nil {
			return err
		}
	}
	if err := c.r.CommitMessages(ctx, batch...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.closed.Load() {
			return err
		}
		c.log.Warn("keel: kafka offset commit failed; the batch may be delivered again", "records", len(batch), "err", err)
	}
	return nil
}

// Close stops Run, abandoning the message in hand (it is not committed, so
// the group delivers it again), leaves the consumer group and releases the
// Consumer's connections. The group reassigns the member's partitions at
// once: the other members read them within a second, instead of after
// SessionTimeout. Call it when the program is told to stop (SIGTERM), after
// Run returned, as the example shows. Close first waits for the member's
// fetches to end, up to MaxWait; during a rebalance it waits for the
// rebalance to end, up to RebalanceTimeout, before it can leave.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.mu.Lock()
		if c.stop != nil {
			c.stop()
		}
		c.mu.Unlock()
		c.closeErr = errors.Join(c.r.Close(), c.dlq.Close())
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
	})
	return c.closeErr
}
