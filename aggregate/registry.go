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
type Registry struct {
	mu    sync.RWMutex
	types map[string]reflect.Type // name -> struct or pointer type as registered
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{types: make(map[string]reflect.Type)}
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
		r.types[name] = t
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

// Decode returns the event called name, decoded from its JSON payload. An
// unregistered name returns an error wrapping ErrUnknownEvent.
func (r *Registry) Decode(name string, payload []byte) (Event, error) {
	r.mu.RLock()
	t, ok := r.types[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q: register its type with Registry.Register", ErrUnknownEvent, name)
	}
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
