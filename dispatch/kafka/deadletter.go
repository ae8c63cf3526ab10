package kafka

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/metric"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
)

// maxErrorHeader bounds the error text stored in HeaderError.
const maxErrorHeader = 4000

// deadLetterTopic returns where messages from topic are dead-lettered.
func (c *Consumer) deadLetterTopic(topic string) string {
	if c.cfg.DeadLetterTopic != "" {
		return c.cfg.DeadLetterTopic
	}
	return topic + defaultDeadLetterSuffix
}

// deadLetter writes km, with the reason, to the dead-letter topic and
// returns once all in-sync replicas have it. It retries until it succeeds:
// the offset is committed only after, so a message is never dropped. It
// returns an error only when ctx is done or the Consumer is closed.
func (c *Consumer) deadLetter(ctx context.Context, km *kafkago.Message, m *outbox.Message, cause error, attempts int) error {
	rec := deadLetterRecord(km, m, c.deadLetterTopic(km.Topic), cause, attempts, time.Now())
	c.log.Error("keel: kafka message dead-lettered", "id", m.ID, "name", m.Name, "topic", km.Topic,
		"partition", km.Partition, "offset", km.Offset, "attempts", attempts, "dlq", rec.Topic, "err", cause)
	for try := 1; ; try++ {
		err := c.dlq.WriteMessages(ctx, rec)
		if err == nil {
			c.tel.DeadLetters.Add(ctx, 1, metric.WithAttributes(telemetry.KeyTopic.String(km.Topic)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		c.log.Error("keel: kafka dead-letter write failed; retrying, partition held", "id", m.ID, "dlq", rec.Topic, "try", try, "err", err)
		if err := backoff.Sleep(ctx, c.retry.Delay(try)); err != nil {
			return err
		}
	}
}

// deadLetterRecord is the original record, key, value and headers
// unchanged, except that its message id header always holds m.ID, the id
// the Consumer delivered it under, and the headers saying why and from
// where. A record with no id header, or an empty one, was delivered under
// DerivedID of its position; a replay from the dead-letter topic lands at
// another position, so only the id written here lets the inbox recognise
// it.
func deadLetterRecord(km *kafkago.Message, m *outbox.Message, topic string, cause error, attempts int, now time.Time) kafkago.Message {
	h := make([]kafkago.Header, 0, len(km.Headers)+7)
	h = append(h, kafkago.Header{Key: HeaderMessageID, Value: []byte(m.ID)})
	for _, x := range km.Headers {
		switch x.Key {
		case HeaderMessageID:
			continue // written above, as delivered
		case HeaderError, HeaderAttempts, HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderDeadLetteredAt:
			continue // from an earlier dead-lettering; replaced below
		}
		h = append(h, x)
	}
	text := strings.ToValidUTF8(cause.Error(), "\uFFFD")
	if len(text) > maxErrorHeader {
		text = strings.ToValidUTF8(text[:maxErrorHeader], "")
	}
	h = append(h,
		kafkago.Header{Key: HeaderError, Value: []byte(text)},
		kafkago.Header{Key: HeaderAttempts, Value: []byte(strconv.Itoa(attempts))},
		kafkago.Header{Key: HeaderOriginalTopic, Value: []byte(km.Topic)},
		kafkago.Header{Key: HeaderOriginalPartition, Value: []byte(strconv.Itoa(km.Partition))},
		kafkago.Header{Key: HeaderOriginalOffset, Value: []byte(strconv.FormatInt(km.Offset, 10))},
		kafkago.Header{Key: HeaderDeadLetteredAt, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	value := km.Value
	if value == nil {
		value = []byte{}
	}
	return kafkago.Message{Topic: topic, Key: km.Key, Value: value, Headers: h, Time: now}
}
