package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/outbox"
)

// Publisher writes outbox messages to Kafka. It implements outbox.Publisher,
// so a relay can deliver to it:
//
//	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers, Topic: "orders"})
//	relay, err := outbox.NewRelay(db, pub, outbox.RelayConfig{})
//
// Each message becomes one record keyed by its partition key, with its
// fields in headers (see HeaderMessageID and the other Header constants).
// Publish returns once every record is acknowledged by all in-sync
// replicas. Publish calls are serialised, which per-key order needs (see
// Publish); a process running several relays that should publish in
// parallel gives each its own Publisher.
type Publisher struct {
	cfg       PublisherConfig
	w         *kafkago.Writer
	transport *kafkago.Transport // ours to close; nil when the caller passed one

	mu     sync.Mutex
	closed bool
}

// NewPublisher returns a Publisher for cfg. It validates cfg but does not
// connect; the first Publish does.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg}
	rt := cfg.Transport
	if rt == nil {
		p.transport = &kafkago.Transport{ClientID: "keel"}
		rt = p.transport
	}
	p.w = &kafkago.Writer{
		Addr:     kafkago.TCP(cfg.Brokers...),
		Balancer: cfg.Balancer,
		// A round never holds more than BatchSize messages or BatchBytes
		// bytes, so each partition's share of it is one record batch: one
		// produce request that succeeds or fails as a whole.
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		MaxAttempts:            cfg.WriteAttempts,
		WriteTimeout:           cfg.WriteTimeout,
		ReadTimeout:            cfg.WriteTimeout,
		RequiredAcks:           kafkago.RequireAll,
		Async:                  false,
		Compression:            cfg.Compression,
		AllowAutoTopicCreation: cfg.AllowAutoTopicCreation,
		Transport:              rt,
	}
	return p, nil
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("keel: kafka publisher is closed")

// Publish writes batch to Kafka and returns when every record is
// acknowledged by all in-sync replicas (acks=all), or has failed.
//
// Records are keyed by Message.PartitionKey, so a key's messages land on
// one partition, in batch order. The batch is written in rounds of at most
// BatchSize messages and BatchBytes bytes, each in one WriteMessages call,
// so each partition receives at most one record batch per round and
// kafka-go sends it with one request in flight per partition: its retries
// cannot overtake one another. Once a message fails, the later messages of
// its key are not sent (they fail with an error the relay treats as held),
// so a retry never lands behind a newer message of its key.
//
// It returns nil when every message was written; a *outbox.BatchError when
// only some were; otherwise the error that failed them all. Errors a retry
// cannot fix (a message over BatchBytes, no topic, a topic name Kafka
// rejects, MESSAGE_TOO_LARGE from the broker) wrap outbox.ErrPermanent, so
// the relay parks those messages at once. A cancelled ctx returns early,
// but records already handed to kafka-go may still be written: the relay
// retries them, and consumers see them twice (they deduplicate on the
// message id).
func (p *Publisher) Publish(ctx context.Context, batch []outbox.Message) error {
	if len(batch) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}

	errs := make([]error, len(batch))
	recs := make([]kafkago.Message, len(batch))
	sizes := make([]int64, len(batch))
	var hold outbox.HoldBack
	groups := map[string][]int{}
	var topics []string
	now := time.Now()
	for i := range batch {
		m := &batch[i]
		if err := hold.Check(m); err != nil {
			errs[i] = err
			continue
		}
		topic, err := p.topic(m)
		if err == nil {
			recs[i] = toKafka(m, topic, p.cfg.ContentType, now)
			sizes[i] = recordSize(&recs[i])
			if sizes[i] > p.cfg.BatchBytes {
				err = permanent(fmt.Errorf("keel: kafka: message %s is about %d bytes with key and headers, over BatchBytes (%d)", m.ID, sizes[i], p.cfg.BatchBytes))
			}
		}
		if err != nil {
			errs[i] = err
			hold.Fail(m)
			continue
		}
		if _, ok := groups[topic]; !ok {
			topics = append(topics, topic)
		}
		groups[topic] = append(groups[topic], i)
	}

	// Topics are independent: a missing topic fails its own messages only.
	if len(topics) == 1 {
		p.writeTopic(ctx, topics[0], groups[topics[0]], batch, recs, sizes, errs)
	} else {
		var wg sync.WaitGroup
		for _, t := range topics {
			wg.Go(func() { p.writeTopic(ctx, t, groups[t], batch, recs, sizes, errs) })
		}
		wg.Wait()
	}
	return result(errs)
}

// writeTopic writes the messages at idx, all for topic, in rounds, setting
// errs for the ones that fail. Goroutines for different topics touch
// disjoint elements of the shared slices.
func (p *Publisher) writeTopic(ctx context.Context, topic string, idx []int, batch []outbox.Message, recs []kafkago.Message, sizes []int64, errs []error) {
	var hold outbox.HoldBack
	round := make([]kafkago.Message, 0, min(len(idx), p.cfg.BatchSize))
	at := make([]int, 0, cap(round))
	for next := 0; next < len(idx); {
		round, at = round[:0], at[:0]
		var bytes int64
		for ; next < len(idx); next++ {
			i := idx[next]
			if err := hold.Check(&batch[i]); err != nil {
				errs[i] = err
				continue
			}
			if len(round) == p.cfg.BatchSize || bytes+sizes[i] > p.cfg.BatchBytes {
				break
			}
			round = append(round, recs[i])
			at = append(at, i)
			bytes += sizes[i]
		}
		if len(round) == 0 {
			continue
		}
		if ctx.Err() != nil {
			why := "the publish context ended: " + ctx.Err().Error()
			p.skipRest(at, why, errs)
			p.skipRest(idx[next:], why, errs)
			return
		}
		err := p.w.WriteMessages(ctx, round...)
		if err == nil {
			continue
		}
		var werrs kafkago.WriteErrors
		if !errors.As(err, &werrs) || len(werrs) != len(round) {
			// The call failed as a whole (no connection, unknown topic, ctx
			// done); so would the rest of the topic's rounds.
			err = wrapTopic(topic, err)
			for _, i := range at {
				errs[i] = err
			}
			p.skipRest(idx[next:], "an earlier round failed: "+err.Error(), errs)
			return
		}
		var last error
		for j, werr := range werrs {
			if werr == nil {
				continue
			}
			i := at[j]
			errs[i] = wrapTopic(topic, werr)
			last = errs[i]
			hold.Fail(&batch[i])
		}
		if werrs.Count() == len(round) {
			p.skipRest(idx[next:], "an earlier round failed: "+last.Error(), errs)
			return
		}
	}
}

// skipRest marks the messages at rest that have no outcome yet as not
// attempted, saying why: an earlier round failed as a whole (so they would
// most likely fail too), or ctx ended. The relay leaves them pending
// without counting an attempt.
func (p *Publisher) skipRest(rest []int, why string, errs []error) {
	err := fmt.Errorf("keel: kafka: not sent: %s (%w)", why, outbox.ErrNotAttempted)
	for _, i := range rest {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

func wrapTopic(topic string, err error) error {
	return classify(fmt.Errorf("keel: kafka topic %s: %w", topic, err))
}

// result turns per-message errors into Publish's return value: nil, the
// one error that failed every message (the broker is down, say), or a
// *outbox.BatchError.
func result(errs []error) error {
	failed := 0
	var first error
	same := true
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		switch {
		case first == nil:
			first = err
		case errors.Is(err, outbox.ErrHeldBack):
			same = false // the relay must not count a held message as failed
		case err != first && err.Error() != first.Error():
			same = false
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(errs) && same:
		return first
	}
	return &outbox.BatchError{Errs: errs}
}

// topic returns the topic for m, or an error wrapping outbox.ErrPermanent.
func (p *Publisher) topic(m *outbox.Message) (string, error) {
	topic := m.Topic
	if topic == "" && p.cfg.TopicFunc != nil {
		topic = p.cfg.TopicFunc(*m)
	}
	if topic == "" {
		topic = p.cfg.Topic
	}
	if topic == "" {
		return "", permanent(fmt.Errorf("keel: kafka: message %s (%s) has no topic: set Message.Topic, or make TopicFunc return one, or set PublisherConfig.Topic", m.ID, m.Name))
	}
	if err := validTopic(topic); err != nil {
		return "", permanent(fmt.Errorf("keel: kafka: message %s (%s): %v", m.ID, m.Name, err))
	}
	return topic, nil
}

// recordSize is an upper bound of the size kafka-go accounts a record at
// when it fills batches (its Message.totalSize), so that rounds kept under
// BatchBytes by this measure are never split by kafka-go.
func recordSize(m *kafkago.Message) int64 {
	n := 6 + 4 + len(m.Key) + 4 + len(m.Value) + 8 + 5
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// Stats returns kafka-go's writer statistics since the previous call, for
// metrics.
func (p *Publisher) Stats() kafkago.WriterStats { return p.w.Stats() }

// Close waits for writes in flight, then releases the Publisher's
// connections. Publish fails with ErrClosed afterwards.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.w.Close()
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
	return err
}
