package aggregate

import (
	"errors"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/aggstate"
)

// ErrEmptyID is returned when an aggregate or event is used without an id.
var ErrEmptyID = errors.New("keel: aggregate id is empty")

// ErrEmptyType is returned when an aggregate is used without a type name.
var ErrEmptyType = errors.New("keel: aggregate type is empty")

// Aggregate is implemented by every struct that embeds Root. The unexported
// method means the only way to satisfy it is to embed Root.
type Aggregate interface {
	// ID returns the aggregate's identity.
	ID() string
	// Type returns the aggregate's type name, such as "account".
	Type() string
	// Version returns the version the aggregate was loaded (or last saved) at.
	Version() int64
	// HasChanges reports whether events were recorded since the aggregate
	// was loaded or last committed.
	HasChanges() bool

	root() *Root
}

// Root is the embeddable base of an aggregate. Its fields are unexported so
// that encoding the enclosing struct as JSON stores only domain state.
//
// The zero Root is a new aggregate with no identity; call Init before
// recording events or saving it.
type Root struct {
	typ     string
	id      string
	version int64
	pending []Envelope
	now     func() time.Time
}

// Init sets the aggregate's type name and id. Call it once, in the
// aggregate's constructor. Repositories set both when they load an aggregate.
func (r *Root) Init(typ, id string) {
	r.typ = typ
	r.id = id
}

// ID returns the aggregate's identity.
func (r *Root) ID() string { return r.id }

// Type returns the aggregate's type name.
func (r *Root) Type() string { return r.typ }

// Version returns the version the aggregate was loaded or last saved at.
// A new aggregate has version 0; each successful save adds one.
func (r *Root) Version() int64 { return r.version }

// IsNew reports whether the aggregate has never been saved.
func (r *Root) IsNew() bool { return r.version == 0 }

// Record appends a domain event produced by a behaviour method. The event is
// stamped with a new message id, the aggregate's identity and the version the
// pending change will produce. Record does not publish anything.
func (r *Root) Record(e Event) {
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	r.pending = append(r.pending, Envelope{
		ID:               NewMessageID(),
		Name:             e.EventName(),
		SchemaVersion:    VersionOf(e),
		AggregateType:    r.typ,
		AggregateID:      r.id,
		AggregateVersion: r.version + 1,
		OccurredAt:       now().UTC(),
		Event:            e,
	})
}

// RecordWith is Record with explicit metadata: correlation and causation ids
// and headers that override whatever the unit of work would add from context.
func (r *Root) RecordWith(e Event, md Metadata) {
	r.Record(e)
	env := &r.pending[len(r.pending)-1]
	env.CorrelationID = md.CorrelationID
	env.CausationID = md.CausationID
	if len(md.Headers) > 0 {
		env.Headers = make(map[string]string, len(md.Headers))
		for k, v := range md.Headers {
			env.Headers[k] = v
		}
	}
}

// Events returns a copy of the events recorded since the aggregate was
// loaded or last committed.
func (r *Root) Events() []Envelope {
	out := make([]Envelope, len(r.pending))
	copy(out, r.pending)
	return out
}

// HasChanges reports whether events are pending.
func (r *Root) HasChanges() bool { return len(r.pending) > 0 }

func (r *Root) root() *Root { return r }

// SetClock replaces the clock used to stamp OccurredAt, for tests.
func SetClock(a Aggregate, now func() time.Time) { a.root().now = now }

// Validate checks that a has a type and an id.
func Validate(a Aggregate) error {
	if a == nil {
		return fmt.Errorf("%w: aggregate is nil", ErrEmptyID)
	}
	r := a.root()
	if r == nil {
		return fmt.Errorf("%w: aggregate is nil", ErrEmptyID)
	}
	if r.typ == "" {
		return fmt.Errorf("%w: call Init(type, id) in the aggregate's constructor", ErrEmptyType)
	}
	if r.id == "" {
		return fmt.Errorf("%w (type %q): call Init(type, id) with a non-empty id", ErrEmptyID, r.typ)
	}
	return nil
}

// The unit of work and the repositories reach an aggregate's bookkeeping
// through package aggstate, which applications cannot import: an
// application never sets a version, restores an aggregate or edits its
// pending events by accident.
func init() {
	aggstate.Restore = func(a any, typ, id string, version int64) {
		r := a.(Aggregate).root()
		r.typ, r.id, r.version = typ, id, version
		r.pending = nil
	}
	aggstate.SetVersion = func(a any, v int64) { a.(Aggregate).root().version = v }
	aggstate.Pending = func(a any) any { return a.(Aggregate).root().pending }
	aggstate.Stamp = func(a any, from int, md any) int {
		pending := a.(Aggregate).root().pending
		m := md.(Metadata)
		for i := from; i < len(pending); i++ {
			pending[i].ApplyMetadata(m)
		}
		return len(pending)
	}
	aggstate.MarkCommitted = func(a any) { a.(Aggregate).root().pending = nil }
}
