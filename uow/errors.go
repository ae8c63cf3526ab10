package uow

import (
	"errors"
	"fmt"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrMultipleAggregates is returned, under RefuseMultiple, by a unit that
// changed more than one aggregate.
var ErrMultipleAggregates = errors.New("keel: unit of work changed more than one aggregate")

// ErrDuplicate is matched by the *DuplicateError that DoIdempotent returns
// when its key was already applied.
var ErrDuplicate = errors.New("keel: command already applied")

// DuplicateError reports that a command with the same idempotency key was
// already applied. Nothing was changed by this call.
type DuplicateError struct {
	// Key is the idempotency key.
	Key string
	// Result is what the first run stored with Tx.SetResult, or nil.
	Result []byte
}

// Error describes the duplicate.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("keel: command with idempotency key %s already applied", dialect.Quote(e.Key))
}

// Is reports whether target is ErrDuplicate.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// ErrHandlerDepth is returned when in-transaction handlers keep recording
// events past Config.MaxHandlerDepth rounds, which usually means a cycle.
var ErrHandlerDepth = errors.New("keel: in-transaction handlers recursed too deep")

// HandlerError is the failure of one event handler on one message: an
// in-transaction handler (Handle), whose error rolls back its unit, or an
// asynchronous one (dispatch.Handle), whose unit rolled back alone and which
// runs again when the message is redelivered.
type HandlerError struct {
	// Handler is the name the handler was registered with.
	Handler string
	// Event is the name of the event it was handling.
	Event string
	// MessageID is the event's message id.
	MessageID string
	// Err is what the handler (or its unit of work) returned.
	Err error
}

// Error describes the failure.
func (e *HandlerError) Error() string {
	return fmt.Sprintf("keel: handler %q failed on %s (%s): %v", e.Handler, e.Event, e.MessageID, e.Err)
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }
