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
//	relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{})
//
// Each message becomes one record keyed by its partition key, with its
// fields in headers (see HeaderMessageID and the other Header constants).
// Publish returns once every record is acknowledged by all in-sync
// replicas. Publish calls are serialised, which per-key order needs (see
// Publish); a process running several relays that should publish in
// parallel gives each its own Publisher. A Publisher keeps the contract of
// outbox.Publisher, which package outbox/publishertest checks.
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
// one partition, in batch order. The batch is written in rounds, one after
// the other, each holding at most BatchSize messages and BatchBytes bytes
// per topic, in one WriteMessages call per topic (topics are written in
// parallel). Each partition therefore receives at most one record batch
// per round, and kafka-go sends it with one request in flight per
// partition: its retries cannot overtake one another. A round never holds
// messages of one key for two topics, so a key's messages go out one round
// after another. Once a message fails, the later messages of its key are
// not sent, whatever their topic (they fail with outbox.ErrHeldBack, which
// the relay treats as not attempted), so a retry never lands behind a
// newer message of its key. A topic whose write fails as a whole (it does
// not exist, the broker is down) is not tried again in the batch: its
// later messages are reported as outbox.ErrNotAttempted.
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
	var hold outbox.HoldBack
	dead := map[string]error{} // topics not to try again in this batch, and why
	now := time.Now()
	for next := 0; next < len(batch); {
		var rd round
		next = p.fill(&rd, batch, next, &hold, dead, errs, now)
		if len(rd.topics) == 0 {
			continue
		}
		if ctx.Err() != nil {
			// Neither this round nor any later one is sent.
			stop := notSent("the publish context ended: " + ctx.Err().Error())
			for _, t := range rd.topics {
				for _, i := range rd.at[t] {
					errs[i] = stop
					hold.Fail(&batch[i])
				}
			}
			for ; next < len(batch); next++ {
				if errs[next] = hold.Check(&batch[next]); errs[next] == nil {
					errs[next] = stop
					hold.Fail(&batch[next])
				}
			}
			break
		}
		p.write(ctx, &rd, errs)
		for _, t := range rd.topics {
			failed := 0
			for _, i := range rd.at[t] {
				if errs[i] != nil {
					failed++
					hold.Fail(&batch[i])
				}
			}
			if failed == len(rd.at[t]) {
				// The topic failed as a whole (no connection, unknown
				// topic); so would the rest of its messages.
				dead[t] = errs[rd.at[t][0]]
			}
		}
	}
	return result(errs)
}

// round is what one round writes: per topic, the records and the indexes
// of their messages in the batch.
type round struct {
	topics []string // in order of first appearance
	recs   map[string][]kafkago.Message
	at     map[string][]int
	bytes  map[string]int64
}

// fill adds to rd the messages of batch from next on, in order, until a
// topic's share would exceed BatchSize or BatchBytes, or a message's key
// already has a message for another topic in the round (it must wait for
// that one's outcome). Messages it cannot send (held back behind a failed
// message of their key, for a dead topic, or invalid) get their error in
// errs instead. It returns where the next round starts.
func (p *Publisher) fill(rd *round, batch []outbox.Message, next int, hold *outbox.HoldBack, dead map[string]error, errs []error, now time.Time) int {
	rd.recs, rd.at, rd.bytes = map[string][]kafkago.Message{}, map[string][]int{}, map[string]int64{}
	keyTopic := map[string]string{}
	for ; next < len(batch); next++ {
		m := &batch[next]
		if err := hold.Check(m); err != nil {
			errs[next] = err
			continue
		}
		topic, rec, size, err := p.record(m, now)
		if err == nil && dead[topic] != nil {
			err = notSent("an earlier round failed: " + dead[topic].Error())
		}
		if err != nil {
			errs[next] = err
			hold.Fail(m)
			continue
		}
		key := m.PartitionKey()
		if t, ok := keyTopic[key]; ok && t != topic {
			break
		}
		if n := len(rd.at[topic]); n == p.cfg.BatchSize || n > 0 && rd.bytes[topic]+size > p.cfg.BatchBytes {
			break
		}
		if _, ok := rd.at[topic]; !ok {
			rd.topics = append(rd.topics, topic)
		}
		keyTopic[key] = topic
		rd.recs[topic] = append(rd.recs[topic], rec)
		rd.at[topic] = append(rd.at[topic], next)
		rd.bytes[topic] += size
	}
	return next
}

// record returns m's topic and record with its estimated size, or an error
// wrapping outbox.ErrPermanent when m cannot be sent at all.
func (p *Publisher) record(m *outbox.Message, now time.Time) (string, kafkago.Message, int64, error) {
	topic, err := p.topic(m)
	if err != nil {
		return "", kafkago.Message{}, 0, err
	}
	rec := toKafka(m, topic, p.cfg.ContentType, now)
	size := recordSize(&rec)
	if size > p.cfg.BatchBytes {
		return "", kafkago.Message{}, 0, permanent(fmt.Errorf("keel: kafka: message %s is about %d bytes with key and headers, over BatchBytes (%d)", m.ID, size, p.cfg.BatchBytes))
	}
	return topic, rec, size, nil
}

// write writes each topic's share of rd with one WriteMessages call, the
// topics in parallel, and sets errs for the messages that failed. The
// goroutines touch disjoint elements of errs.
func (p *Publisher) write(ctx context.Context, rd *round, errs []error) {
	if len(rd.topics) == 1 {
		p.writeTopic(ctx, rd.topics[0], rd.recs[rd.topics[0]], rd.at[rd.topics[0]], errs)
		return
	}
	var wg sync.WaitGroup
	for _, t := range rd.topics {
		wg.Go(func() { p.writeTopic(ctx, t, rd.recs[t], rd.at[t], errs) })
	}
	wg.Wait()
}

// writeTopic writes recs, all for topic, with one WriteMessages call, and
// sets errs at each failed record's index in at.
func (p *Publisher) writeTopic(ctx context.Context, topic string, recs []kafkago.Message, at []int, errs []error) {
	err := p.w.WriteMessages(ctx, recs...)
	if err == nil {
		return
	}
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(recs) {
		// The call failed as a whole: no connection, unknown topic, ctx done.
		err = wrapTopic(topic, err)
		for _, i := range at {
			errs[i] = err
		}
		return
	}
	for j, werr := range werrs {
		if werr != nil {
			errs[at[j]] = wrapTopic(topic, werr)
		}
	}
}

// notSent is the error of a message not sent because of why: the relay
// leaves it pending without counting an attempt.
func notSent(why string) error {
	return fmt.Errorf("keel: kafka: not sent: %s (%w)", why, outbox.ErrNotAttempted)
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
