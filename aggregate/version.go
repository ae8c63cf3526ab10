package aggregate

import (
	"errors"
	"fmt"
	"strconv"
)

// HeaderSchemaVersion is the header that carries an event's schema version
// (see Versioned) in decimal, beside the event's payload: in an outbox
// message's Headers, and so in every Kafka record keel publishes. A message
// without it was written before its event had versions, and is version 1.
const HeaderSchemaVersion = "keel-schema-version"

// Versioned is implemented by an event whose payload has changed shape
// since it was first stored. SchemaVersion returns the version of the shape
// the type encodes to: 1 for the first, and one more for each change that
// needs an upcaster (a field renamed, split, or given a new meaning). An
// event that does not implement Versioned is at version 1.
//
// Adding an optional field is not a new version: an old payload decodes
// into the new type with the field's zero value, which is what an upcaster
// would write anyway.
type Versioned interface {
	Event
	SchemaVersion() int
}

// VersionOf returns e's schema version: e.SchemaVersion() when e is
// Versioned, else 1.
func VersionOf(e Event) int {
	if v, ok := e.(Versioned); ok {
		return v.SchemaVersion()
	}
	return 1
}

// ParseVersion reads the schema version of a message from its headers: the
// value of HeaderSchemaVersion, or 1 when there is none.
func ParseVersion(headers map[string]string) (int, error) {
	s, ok := headers[HeaderSchemaVersion]
	if !ok {
		return 1, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("keel: header %s is %q; it must be a schema version, a whole number from 1", HeaderSchemaVersion, s)
	}
	return v, nil
}

// ErrNoUpcaster is matched (errors.Is) by the *VersionError of an event
// stored at an older schema version than its type's, when no upcaster
// leads from that version to the next.
var ErrNoUpcaster = errors.New("keel: no upcaster")

// ErrNewerVersion is matched (errors.Is) by the *VersionError of an event
// stored at a newer schema version than its type's: it was written by a
// newer release of the application than the one decoding it.
var ErrNewerVersion = errors.New("keel: event version is newer than its type")

// VersionError reports an event that cannot be brought to its type's
// schema version. It is permanent: retrying the same decode cannot help,
// so relays park such messages; requeue them once the upcaster (or the
// newer release) is deployed.
type VersionError struct {
	// Event is the event's current name (after any rename).
	Event string
	// Found is the version the payload was stored at.
	Found int
	// Expected is the version of the registered type.
	Expected int
	// Missing is the version no upcaster leads from, when Err is
	// ErrNoUpcaster.
	Missing int
	// Err is ErrNoUpcaster or ErrNewerVersion.
	Err error
}

// Error says which version was found, which was expected, and what to do.
func (e *VersionError) Error() string {
	if errors.Is(e.Err, ErrNewerVersion) {
		return fmt.Sprintf("keel: event %q was stored at version %d, but this release knows it up to version %d: deploy the release that knows version %d before decoding it",
			e.Event, e.Found, e.Expected, e.Found)
	}
	return fmt.Sprintf("keel: event %q was stored at version %d, but its type is at version %d and no upcaster from version %d to %d is registered: register one with Registry.UpcastJSON or aggregate.Upcast",
		e.Event, e.Found, e.Expected, e.Missing, e.Missing+1)
}

// Unwrap returns Err.
func (e *VersionError) Unwrap() error { return e.Err }
