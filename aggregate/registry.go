package aggregate

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// ErrUnknownEvent is returned when decoding an event name that was never
// registered.
var ErrUnknownEvent = errors.New("keel: unknown event name")

// Registry maps event names to Go types so that stored payloads decode back
// into the types they were recorded as. It is safe for concurrent use.
//
// A Registry also knows each event's schema version (see Versioned), the
// upcasters that bring payloads stored at older versions to the current
// one, and the old names of renamed events; Decode and DecodeVersion apply
// them, so every path that decodes an event (relay delivery, a requeued
// parked message, an inbox redelivery, a Kafka consumer) sees the current
// type.
type Registry struct {
	mu        sync.RWMutex
	types     map[string]reflect.Type // name -> struct or pointer type as registered
	versions  map[string]int          // name -> the registered type's schema version
	upcasters map[string]map[int]upcaster
	renamed   map[string]string // old name -> newer name
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{
		types:     make(map[string]reflect.Type),
		versions:  make(map[string]int),
		upcasters: make(map[string]map[int]upcaster),
		renamed:   make(map[string]string),
	}
}

// Register adds event types, each given as a zero value (Deposited{} or
// &Deposited{}). Decode returns values of the same form. Registering a name
// twice with different types is an error; with the same type it is a no-op.
func (r *Registry) Register(events ...Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range events {
		if e == nil {
			return errors.New("keel: cannot register a nil event")
		}
		t := reflect.TypeOf(e)
		if t.Kind() == reflect.Pointer && reflect.ValueOf(e).IsNil() {
			// A typed nil pointer still names its type, but calling EventName
			// on it may panic; use a fresh value instead.
			e = reflect.New(t.Elem()).Interface().(Event)
		}
		name := e.EventName()
		if name == "" {
			return fmt.Errorf("keel: event type %s has an empty EventName", t)
		}
		if prev, ok := r.types[name]; ok && prev != t {
			return fmt.Errorf("keel: event name %q is already registered to %s; cannot register %s", name, prev, t)
		}
		if to, ok := r.renamed[name]; ok {
			return fmt.Errorf("keel: event name %q was renamed to %q; register the type under its new name", name, to)
		}
		v := VersionOf(e)
		if v < 1 {
			return fmt.Errorf("keel: event type %s has SchemaVersion %d; versions start at 1", t, v)
		}
		r.types[name] = t
		r.versions[name] = v
	}
	return nil
}

// MustRegister is Register that panics on error, for package initialisation.
func (r *Registry) MustRegister(events ...Event) *Registry {
	if err := r.Register(events...); err != nil {
		panic(err)
	}
	return r
}

// Names returns the registered event names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Type returns the type registered for an event name, in the form it was
// registered (struct or pointer), and whether the name is registered.
func (r *Registry) Type(name string) (reflect.Type, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.types[name]
	return t, ok
}

// Encode returns the JSON payload of e.
func (r *Registry) Encode(e Event) ([]byte, error) {
	return Encode(e)
}

// Encode returns the JSON payload of e.
func Encode(e Event) ([]byte, error) {
	if e == nil {
		return nil, errors.New("keel: cannot encode a nil event")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("keel: encode event %q: %w", e.EventName(), err)
	}
	return b, nil
}

// Decode returns the event called name, decoded from a JSON payload in
// the shape of its registered type's current schema version. A renamed
// event's old name decodes as the new one. An unregistered name returns an
// error wrapping ErrUnknownEvent. Use DecodeVersion for payloads stored at
// a known version, such as a message's (Message.Decode in package outbox).
func (r *Registry) Decode(name string, payload []byte) (Event, error) {
	return r.DecodeVersion(name, 0, payload)
}

// DecodeVersion returns the event called name, decoded from a JSON payload
// stored at schema version version (0 means the current one). A payload of
// an older version goes through the chain of upcasters registered for the
// name, one version at a time, up to the version of the registered type.
// A renamed event's old name decodes as the new one.
//
// A version with no upcaster to the next, or newer than the registered
// type's, is an error wrapping a *VersionError (ErrNoUpcaster or
// ErrNewerVersion); an upcaster's error is returned wrapped. A payload is
// never decoded into a type of another version, where missing fields would
// silently become zero values.
func (r *Registry) DecodeVersion(name string, version int, payload []byte) (Event, error) {
	r.mu.RLock()
	name = r.resolve(name)
	t, ok := r.types[name]
	current := r.versions[name]
	var chain map[int]upcaster
	if ok && version > 0 && version < current {
		chain = r.upcasters[name]
	}
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q: register its type with Registry.Register", ErrUnknownEvent, name)
	}
	if version <= 0 || version == current {
		return decodeInto(name, t, payload)
	}
	if version > current {
		return nil, &VersionError{Event: name, Found: version, Expected: current, Err: ErrNewerVersion}
	}
	return upcast(name, t, version, current, chain, payload)
}

// decodeInto decodes payload into a new value of t, in t's form.
func decodeInto(name string, t reflect.Type, payload []byte) (Event, error) {
	ptr := t.Kind() == reflect.Pointer
	base := t
	if ptr {
		base = t.Elem()
	}
	v := reflect.New(base)
	if err := json.Unmarshal(payload, v.Interface()); err != nil {
		return nil, fmt.Errorf("keel: decode event %q into %s: %w", name, t, err)
	}
	if ptr {
		return v.Interface().(Event), nil
	}
	return v.Elem().Interface().(Event), nil
}

// NameOf returns the event name of type E without needing a value. E may be
// a struct type or a pointer to one.
func NameOf[E Event]() string {
	var zero E
	t := reflect.TypeOf(&zero).Elem()
	if t.Kind() == reflect.Pointer {
		return reflect.New(t.Elem()).Interface().(Event).EventName()
	}
	return zero.EventName()
}
