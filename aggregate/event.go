package aggregate

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Event is a domain event. EventName returns a stable name, such as
// "account.deposited", that identifies the event's type in storage and on the
// wire; it must not change once events have been stored.
type Event interface {
	EventName() string
}

// Envelope is a recorded event together with its metadata.
type Envelope struct {
	// ID is a UUIDv7 message id: unique, and ordered by creation time.
	ID string
	// Name is the event's EventName.
	Name string
	// SchemaVersion is the version of the event's payload shape: the
	// event's SchemaVersion when it implements Versioned, else 1. The
	// outbox message made from the envelope carries it in the
	// HeaderSchemaVersion header, so that a decoder can bring an old
	// payload to the current shape.
	SchemaVersion int
	// AggregateType and AggregateID identify the aggregate that recorded the event.
	AggregateType string
	AggregateID   string
	// AggregateVersion is the aggregate version the change produced.
	AggregateVersion int64
	// OccurredAt is when the event was recorded, in UTC.
	OccurredAt time.Time
	// CorrelationID ties together every message caused by one request.
	CorrelationID string
	// CausationID is the id of the message or command that caused this one.
	CausationID string
	// Headers are free-form string metadata, such as a W3C traceparent.
	Headers map[string]string
	// Event is the domain event itself.
	Event Event
}

// NewMessageID returns a new UUIDv7 string. It panics only if the system's
// random source fails, as crypto/rand does.
func NewMessageID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Metadata is the correlation, causation and header data attached to events.
type Metadata struct {
	CorrelationID string
	CausationID   string
	Headers       map[string]string
}

type metadataKey struct{}

// WithMetadata returns a context carrying md. The unit of work copies it
// onto every event that does not set its own, so a request handler can set
// the correlation id (and a traceparent header) once.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// MetadataFrom returns the metadata stored in ctx by WithMetadata.
func MetadataFrom(ctx context.Context) (Metadata, bool) {
	md, ok := ctx.Value(metadataKey{}).(Metadata)
	return md, ok
}

// ApplyMetadata fills the empty correlation and causation ids of env from
// md, and adds md's headers that env does not already have.
func (env *Envelope) ApplyMetadata(md Metadata) {
	if env.CorrelationID == "" {
		env.CorrelationID = md.CorrelationID
	}
	if env.CausationID == "" {
		env.CausationID = md.CausationID
	}
	if len(md.Headers) > 0 {
		if env.Headers == nil {
			env.Headers = make(map[string]string, len(md.Headers))
		}
		for k, v := range md.Headers {
			if _, ok := env.Headers[k]; !ok {
				env.Headers[k] = v
			}
		}
	}
}
