package dispatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrNotMigrated is returned when the inbox table is missing; run
// outbox.Migrate. It is the same value as uow.ErrNotMigrated and
// outbox.ErrNotMigrated.
var ErrNotMigrated = dialect.ErrNotMigrated

// ErrInvalidConfig is wrapped by NewRouter and NewBus for an argument or
// configuration field they cannot use; the message names it and the fix.
var ErrInvalidConfig = errors.New("keel: invalid dispatch configuration")

// ErrHeldBack is wrapped by the error a Bus reports for a message it did not
// deliver because an earlier message of the same partition key in the batch
// failed. Delivering it would have broken the key's order; the relay sends
// it again after the failed message.
var ErrHeldBack = errors.New("keel: message held back behind a failed message of its key")

// HandlerError is the failure of one asynchronous handler for one message.
// Its transaction rolled back, so neither its effects nor its inbox row were
// kept, and it runs again when the message is redelivered.
type HandlerError struct {
	// Handler is the name the handler was registered with.
	Handler string
	// Event is the message's name.
	Event string
	// MessageID is the message's id.
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

// DeliveryError reports the handlers that failed on a message that Deliver
// passed to several. Handlers not listed took effect, now or on an earlier
// delivery, and will not run again for this message.
type DeliveryError struct {
	// MessageID is the message's id.
	MessageID string
	// Event is the message's name.
	Event string
	// Failed lists the failed handlers in registration order.
	Failed []*HandlerError
}

// Error names every failed handler with its error.
func (e *DeliveryError) Error() string {
	if len(e.Failed) == 1 {
		return e.Failed[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "keel: %d handlers failed on %s (%s)", len(e.Failed), e.Event, e.MessageID)
	for i, f := range e.Failed {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%q: %v", sep, f.Handler, f.Err)
	}
	return b.String()
}

// Handlers returns the names of the failed handlers, in registration order.
func (e *DeliveryError) Handlers() []string {
	names := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		names[i] = f.Handler
	}
	return names
}

// Unwrap returns each handler's *HandlerError, so that errors.Is and
// errors.As see every cause: a delivery is permanent (errors.Is(err,
// outbox.ErrPermanent)) as soon as one failed handler's error is.
func (e *DeliveryError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}
