package aggregate

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// upcaster turns a payload of one schema version into the next. It is
// either raw, working on JSON, or typed, working on Go values; a chain of
// typed upcasters passes values from one to the next without encoding them
// in between.
type upcaster struct {
	raw func(payload []byte) ([]byte, error)

	in     reflect.Type                      // typed: the input type
	decode func(payload []byte) (any, error) // typed: a payload into an in
	fn     func(v any) (any, error)          // typed: an in into the next version's value
}

// UpcastJSON registers fn to turn a JSON payload of the event called name,
// stored at schema version from, into the payload of version from+1. It
// suits small changes to the document (a renamed field, say) and old
// versions whose Go types are gone. Registering two upcasters for one name
// and version is an error.
//
// Upcasters may be registered before or after the event's type. The chain
// from an old version to the current one must be complete: a gap is
// reported, when a payload meets it, as an error matching ErrNoUpcaster.
func (r *Registry) UpcastJSON(name string, from int, fn func(payload []byte) ([]byte, error)) error {
	if fn == nil {
		return fmt.Errorf("keel: UpcastJSON %q from version %d: nil function", name, from)
	}
	return r.addUpcaster(name, from, upcaster{raw: fn})
}

// Upcast registers fn to turn the event called name, stored at schema
// version from as the JSON encoding of From, into the value of version
// from+1, To, whose JSON encoding is the payload of that version (To is
// usually the next version's old type, or the event's current type). Both
// are Go types the application keeps for the purpose, such as
// OrderPlacedV1.
//
// Typed upcasters chain without encoding in between: when fn's To is the
// next upcaster's From, its result is passed on as a value, and when it is
// the registered event type, it is the decoded event. A chain of typed
// upcasters therefore decodes JSON once, as a plain decode does.
func Upcast[From, To any](r *Registry, name string, from int, fn func(From) (To, error)) error {
	if fn == nil {
		return fmt.Errorf("keel: Upcast %q from version %d: nil function", name, from)
	}
	return r.addUpcaster(name, from, upcaster{
		in: reflect.TypeFor[From](),
		decode: func(payload []byte) (any, error) {
			var v From
			err := json.Unmarshal(payload, &v)
			return v, err
		},
		fn: func(v any) (any, error) { return fn(v.(From)) },
	})
}

// MustUpcast is Upcast that panics on error, for package initialisation.
func MustUpcast[From, To any](r *Registry, name string, from int, fn func(From) (To, error)) {
	if err := Upcast(r, name, from, fn); err != nil {
		panic(err)
	}
}

func (r *Registry) addUpcaster(name string, from int, u upcaster) error {
	if name == "" {
		return fmt.Errorf("keel: upcaster with an empty event name")
	}
	if from < 1 {
		return fmt.Errorf("keel: upcaster of %q from version %d: versions start at 1", name, from)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if to, ok := r.renamed[name]; ok {
		return fmt.Errorf("keel: upcaster of %q: the event was renamed to %q; register upcasters under the new name, whose versions continue the old name's", name, to)
	}
	m := r.upcasters[name]
	if m == nil {
		m = make(map[int]upcaster)
		r.upcasters[name] = m
	}
	if _, ok := m[from]; ok {
		return fmt.Errorf("keel: an upcaster of %q from version %d is already registered", name, from)
	}
	m[from] = u
	return nil
}

// Rename records that the event now called name was called old before:
// messages stored under old decode as name, and reach name's handlers.
// A rename keeps the version numbers: old's versions are name's, so an old
// payload goes through name's upcasters from its stored version. Chains of
// renames (a to b, then b to c) resolve to the newest name. Renaming to a
// name that leads back to old is an error.
func (r *Registry) Rename(old, name string) error {
	if old == "" || name == "" || old == name {
		return fmt.Errorf("keel: Rename(%q, %q): give the old name and the new one, different and non-empty", old, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.types[old]; ok {
		return fmt.Errorf("keel: Rename(%q, %q): a type is registered under %q; an old name cannot keep a type of its own", old, name, old)
	}
	if prev, ok := r.renamed[old]; ok && prev != name {
		return fmt.Errorf("keel: Rename(%q, %q): %q was already renamed to %q", old, name, old, prev)
	}
	if r.resolve(name) == old {
		return fmt.Errorf("keel: Rename(%q, %q): %q already leads to %q, which would make a loop", old, name, name, old)
	}
	r.renamed[old] = name
	return nil
}

// Resolve returns the current name of an event: name itself, or the newest
// name of a renamed event.
func (r *Registry) Resolve(name string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.resolve(name)
}

func (r *Registry) resolve(name string) string {
	for range len(r.renamed) { // bounded: Rename refuses loops
		to, ok := r.renamed[name]
		if !ok {
			break
		}
		name = to
	}
	return name
}

// Version returns the schema version of the type registered for an event
// name (or its newer name), and whether one is registered.
func (r *Registry) Version(name string) (int, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.versions[r.resolve(name)]
	return v, ok
}

// upcast brings payload, stored at version from, to version to and decodes
// it into t. The state is either JSON (val == nil) or a value produced by a
// typed upcaster; it is encoded only when the next step needs JSON.
func upcast(name string, t reflect.Type, from, to int, chain map[int]upcaster, payload []byte) (Event, error) {
	var val any
	hasVal := false
	for v := from; v < to; v++ {
		u, ok := chain[v]
		if !ok {
			return nil, &VersionError{Event: name, Found: from, Expected: to, Missing: v, Err: ErrNoUpcaster}
		}
		var err error
		if u.raw != nil {
			if hasVal {
				if payload, err = json.Marshal(val); err != nil {
					return nil, upcastErr(name, v, err)
				}
				val, hasVal = nil, false
			}
			if payload, err = u.raw(payload); err != nil {
				return nil, upcastErr(name, v, err)
			}
			continue
		}
		in := val
		if !hasVal || reflect.TypeOf(val) != u.in {
			if hasVal {
				if payload, err = json.Marshal(val); err != nil {
					return nil, upcastErr(name, v, err)
				}
			}
			if in, err = u.decode(payload); err != nil {
				return nil, fmt.Errorf("keel: decode event %q at version %d into %s: %w", name, v, u.in, err)
			}
		}
		if val, err = u.fn(in); err != nil {
			return nil, upcastErr(name, v, err)
		}
		hasVal = true
	}
	if hasVal {
		if e, ok := asType(val, t); ok {
			return e, nil
		}
		var err error
		if payload, err = json.Marshal(val); err != nil {
			return nil, upcastErr(name, to-1, err)
		}
	}
	return decodeInto(name, t, payload)
}

// asType returns v as an Event of type t when v is of t or of the other
// form (struct for pointer, or the reverse). Pointers are copied, so that
// the result never aliases an upcaster's value.
func asType(v any, t reflect.Type) (Event, bool) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, false
	}
	base := t
	if t.Kind() == reflect.Pointer {
		base = t.Elem()
	}
	switch {
	case rv.Type() == base:
	case rv.Type() == reflect.PointerTo(base) && !rv.IsNil():
		rv = rv.Elem()
	default:
		return nil, false
	}
	if t.Kind() != reflect.Pointer {
		e, ok := rv.Interface().(Event)
		return e, ok
	}
	p := reflect.New(base)
	p.Elem().Set(rv)
	e, ok := p.Interface().(Event)
	return e, ok
}

func upcastErr(name string, from int, err error) error {
	return fmt.Errorf("keel: upcast event %q from version %d to %d: %w", name, from, from+1, err)
}
