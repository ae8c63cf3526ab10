package outbox

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// Partitions is the fixed number of hash partitions that partition keys are
// spread over. Relays lease whole partitions, so all messages of one key are
// relayed by one relay at a time, in order. It is part of the stored schema
// and never changes.
const Partitions = dialect.Partitions

// Message is one outbox row: a message waiting to be delivered.
type Message struct {
	// ID is the message id, unique across the outbox. Enqueue assigns a
	// UUIDv7 when it is empty. Consumers deduplicate on it.
	ID string
	// Name is the message or event name, such as "invoice.paid". Required.
	Name string
	// Topic optionally names the destination (a Kafka topic, say). Empty
	// means the publisher's default.
	Topic string
	// Key is the partition key: messages with the same key are delivered in
	// the order they were enqueued. Empty means AggregateID; if that is empty
	// too, the message id, which imposes no order.
	Key string
	// AggregateType, AggregateID and AggregateVersion identify the change
	// that produced the message, when it came from an aggregate.
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	// Payload is the encoded body, JSON for events recorded by aggregates.
	Payload []byte
	// Headers are free-form string metadata, such as a W3C traceparent.
	Headers map[string]string
	// CorrelationID and CausationID trace a message back to its request.
	CorrelationID string
	CausationID   string
	// OccurredAt is when the event happened; Enqueue uses the current time
	// when it is zero.
	OccurredAt time.Time
	// NotBefore, when later than the time of the enqueue, schedules the
	// message: it is not delivered before that time. Until then it waits
	// outside the outbox, holding back none of its key's other messages;
	// when it falls due a relay moves it into the outbox, behind the
	// messages its key already has pending there, and delivers it in order
	// with them. Outbox.CancelTx cancels it until then. The zero time, or
	// a time already past, delivers at once. Relays read it back as zero.
	NotBefore time.Time

	// Seq is the row's position in the outbox, set when a relay reads it.
	Seq int64
	// Attempts is how many deliveries were tried before this one; set by the relay.
	Attempts int
	// EnqueuedAt is when the row was written; set by the relay.
	EnqueuedAt time.Time
}

// PartitionKey returns the key that orders m: Key, else AggregateID, else ID.
func (m *Message) PartitionKey() string {
	switch {
	case m.Key != "":
		return m.Key
	case m.AggregateID != "":
		return m.AggregateID
	}
	return m.ID
}

// PartitionOf returns the hash partition, in [0, Partitions), of a partition key.
func PartitionOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % Partitions)
}

// FromEnvelope converts a recorded domain event into an outbox message,
// encoding the event as JSON. The partition key is the aggregate id. The
// message's headers are the envelope's, and aggregate.HeaderSchemaVersion
// with the event's schema version (1 when the envelope has none).
func FromEnvelope(env aggregate.Envelope) (Message, error) {
	if env.Event == nil {
		return Message{}, fmt.Errorf("keel: envelope %s has no event", env.ID)
	}
	payload, err := aggregate.Encode(env.Event)
	if err != nil {
		return Message{}, err
	}
	return Message{
		ID:               env.ID,
		Name:             env.Name,
		Key:              env.AggregateID,
		AggregateType:    env.AggregateType,
		AggregateID:      env.AggregateID,
		AggregateVersion: env.AggregateVersion,
		Payload:          payload,
		Headers:          withVersion(env.Headers, env.SchemaVersion),
		CorrelationID:    env.CorrelationID,
		CausationID:      env.CausationID,
		OccurredAt:       env.OccurredAt,
	}, nil
}

// withVersion returns a copy of h with the schema version header; the
// envelope's map is never changed.
func withVersion(h map[string]string, v int) map[string]string {
	if v < 1 {
		v = 1
	}
	out := make(map[string]string, len(h)+1)
	for k, val := range h {
		out[k] = val
	}
	out[aggregate.HeaderSchemaVersion] = strconv.Itoa(v)
	return out
}

// Decode decodes m's payload with the event registry reg, at the schema
// version its aggregate.HeaderSchemaVersion header names (1 without one),
// so an old payload goes through reg's upcasters, and an old name of a
// renamed event decodes as the new one (see Registry.DecodeVersion).
func (m *Message) Decode(reg *aggregate.Registry) (aggregate.Event, error) {
	v, err := aggregate.ParseVersion(m.Headers)
	if err != nil {
		return nil, fmt.Errorf("keel: decode %q: %w", m.Name, err)
	}
	return reg.DecodeVersion(m.Name, v, m.Payload)
}

// validate checks a message about to be enqueued as the i-th of its call.
// Ids and keys are bounded by the indexes that hold them, every text field
// must be valid UTF-8 without NUL bytes, and headers valid UTF-8: keel
// stores them as given or not at all.
func (m *Message) validate(i int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: message %d (%s): "+format, append([]any{ErrInvalidMessage, i, dialect.Quote(m.Name)}, args...)...)
	}
	if m.Name == "" {
		return bad("Name is empty; give every message a name such as \"invoice.paid\"")
	}
	if m.Payload == nil {
		return bad("Payload is nil; use an empty slice for no body")
	}
	for _, f := range []struct {
		what  string
		v     string
		limit int
	}{
		{"ID", m.ID, dialect.MaxIDBytes},
		{"Name", m.Name, 0},
		{"Topic", m.Topic, 0},
		{"partition key", m.PartitionKey(), dialect.MaxKeyBytes},
		{"AggregateType", m.AggregateType, 0},
		{"AggregateID", m.AggregateID, 0},
		{"CorrelationID", m.CorrelationID, 0},
		{"CausationID", m.CausationID, 0},
	} {
		if err := dialect.CheckText(f.what, f.v, f.limit); err != nil {
			return bad("%v", err)
		}
	}
	for k, v := range m.Headers {
		if err := dialect.CheckUTF8("header name", k); err != nil {
			return bad("%v", err)
		}
		if err := dialect.CheckUTF8("header "+dialect.Quote(k), v); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// encodeHeaders stores headers as JSON text; no headers is the empty
// string. validate has checked that every name and value is valid UTF-8, so
// encoding/json keeps them byte for byte.
func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

// DecodeHeaders parses the stored form written by Enqueue.
func DecodeHeaders(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("keel: corrupt outbox headers %s: %w", dialect.Quote(s), err)
	}
	return h, nil
}
