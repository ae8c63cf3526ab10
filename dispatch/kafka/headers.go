package kafka

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/outbox"
)

// Kafka header names the Publisher writes and the Consumer reads. Each
// carries one field of outbox.Message as UTF-8 text; a header whose field is
// empty (or zero) is left out.
const (
	// HeaderMessageID carries Message.ID, the id consumers deduplicate on.
	HeaderMessageID = "keel-message-id"
	// HeaderName carries Message.Name, the event name such as "invoice.paid".
	HeaderName = "keel-name"
	// HeaderAggregateType carries Message.AggregateType.
	HeaderAggregateType = "keel-aggregate-type"
	// HeaderAggregateID carries Message.AggregateID.
	HeaderAggregateID = "keel-aggregate-id"
	// HeaderAggregateVersion carries Message.AggregateVersion in decimal.
	HeaderAggregateVersion = "keel-aggregate-version"
	// HeaderCorrelationID carries Message.CorrelationID.
	HeaderCorrelationID = "keel-correlation-id"
	// HeaderCausationID carries Message.CausationID.
	HeaderCausationID = "keel-causation-id"
	// HeaderOccurredAt carries Message.OccurredAt in RFC 3339 with
	// nanoseconds, in UTC.
	HeaderOccurredAt = "keel-occurred-at"
	// HeaderContentType carries the payload's media type: the message's own
	// "content-type" header when it has one, else PublisherConfig.ContentType.
	HeaderContentType = "content-type"
	// HeaderTraceparent is the W3C Trace Context header. It needs no special
	// handling: every entry of Message.Headers becomes a Kafka header of the
	// same name, so a traceparent (and tracestate) recorded with the event
	// reaches consumers as is.
	HeaderTraceparent = "traceparent"
	// HeaderSchemaVersion carries the schema version of the event's
	// payload (see aggregate.Versioned). Like traceparent it travels in
	// Message.Headers, where the unit of work writes it, so it needs no
	// special handling; the Router reads it to upcast old payloads. A record
	// without it, from before versions or from another producer, is
	// version 1.
	HeaderSchemaVersion = aggregate.HeaderSchemaVersion
)

// Kafka header names the Consumer adds to a message it dead-letters, beside
// all of the original message's headers.
const (
	// HeaderError carries the text of the handler's last error.
	HeaderError = "keel-error"
	// HeaderAttempts carries how many deliveries were tried, in decimal.
	HeaderAttempts = "keel-attempts"
	// HeaderOriginalTopic carries the topic the message was consumed from.
	HeaderOriginalTopic = "keel-original-topic"
	// HeaderOriginalPartition carries its partition, in decimal.
	HeaderOriginalPartition = "keel-original-partition"
	// HeaderOriginalOffset carries its offset, in decimal.
	HeaderOriginalOffset = "keel-original-offset"
	// HeaderDeadLetteredAt carries when it was dead-lettered, RFC 3339 in UTC.
	HeaderDeadLetteredAt = "keel-dead-lettered-at"
)

// reserved are the headers the Publisher sets from Message fields; an entry
// of Message.Headers with one of these names is not copied, so that a
// message never carries two values for one field.
var reserved = map[string]bool{
	HeaderMessageID: true, HeaderName: true, HeaderAggregateType: true, HeaderAggregateID: true,
	HeaderAggregateVersion: true, HeaderCorrelationID: true, HeaderCausationID: true, HeaderOccurredAt: true,
}

// toKafka converts an outbox message to a Kafka record for topic.
func toKafka(m *outbox.Message, topic, contentType string, now time.Time) kafkago.Message {
	h := make([]kafkago.Header, 0, 9+len(m.Headers))
	add := func(k, v string) {
		if v != "" {
			h = append(h, kafkago.Header{Key: k, Value: []byte(v)})
		}
	}
	add(HeaderMessageID, m.ID)
	add(HeaderName, m.Name)
	add(HeaderAggregateType, m.AggregateType)
	add(HeaderAggregateID, m.AggregateID)
	if m.AggregateVersion != 0 {
		add(HeaderAggregateVersion, strconv.FormatInt(m.AggregateVersion, 10))
	}
	add(HeaderCorrelationID, m.CorrelationID)
	add(HeaderCausationID, m.CausationID)
	if !m.OccurredAt.IsZero() {
		add(HeaderOccurredAt, m.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	if _, ok := m.Headers[HeaderContentType]; !ok {
		add(HeaderContentType, contentType)
	}
	if len(m.Headers) > 0 {
		// Sorted, so that equal messages encode to equal records.
		keys := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			if !reserved[k] {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			h = append(h, kafkago.Header{Key: k, Value: []byte(m.Headers[k])})
		}
	}
	value := m.Payload
	if value == nil {
		value = []byte{} // a nil value is a tombstone to compacted topics
	}
	return kafkago.Message{
		Topic:   topic,
		Key:     []byte(m.PartitionKey()),
		Value:   value,
		Headers: h,
		Time:    now,
	}
}

// FromRecord converts a record consumed from Kafka back to the
// outbox.Message it was published from, as the Consumer does before calling
// its Handler; it suits applications reading with their own kafka-go
// Reader. The keel headers fill their fields; Topic and Key come from the
// record; every other header, content-type and traceparent included, goes
// to Headers. A record without HeaderMessageID, or with an empty one, gets
// the id DerivedID(topic, partition, offset). A keel header whose value does
// not parse is kept in Headers rather than lost.
func FromRecord(km kafkago.Message) outbox.Message {
	m := outbox.Message{
		Topic:   km.Topic,
		Key:     string(km.Key),
		Payload: km.Value,
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	for _, h := range km.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderMessageID:
			m.ID = v
		case HeaderName:
			m.Name = v
		case HeaderAggregateType:
			m.AggregateType = v
		case HeaderAggregateID:
			m.AggregateID = v
		case HeaderCorrelationID:
			m.CorrelationID = v
		case HeaderCausationID:
			m.CausationID = v
		case HeaderAggregateVersion:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.AggregateVersion = n
			} else {
				setHeader(&m, h.Key, v)
			}
		case HeaderOccurredAt:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				m.OccurredAt = t
			} else {
				setHeader(&m, h.Key, v)
			}
		default:
			setHeader(&m, h.Key, v)
		}
	}
	if m.ID == "" {
		m.ID = DerivedID(km.Topic, km.Partition, km.Offset)
	}
	return m
}

func setHeader(m *outbox.Message, k, v string) {
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	m.Headers[k] = v
}

// DerivedID returns the message id the Consumer gives a record whose
// HeaderMessageID header is missing or empty (one written by a producer
// other than keel's): "kafka:<topic>:<partition>:<offset>". It names the
// record's position in the log, so a redelivery of the same record gets the
// same id and the inbox still deduplicates it; two producers' copies of one
// event at different offsets do not. A dead letter carries the derived id in
// its HeaderMessageID, so a replay of it keeps the id.
func DerivedID(topic string, partition int, offset int64) string {
	return fmt.Sprintf("kafka:%s:%d:%d", topic, partition, offset)
}
