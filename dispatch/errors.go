package dispatch

import (
	"fmt"
	"strings"

	"github.com/keel-go/keel/uow"
)

// DeliveryError reports the handlers that failed on a message that Deliver
// passed to several. Handlers not listed took effect, now or on an earlier
// delivery, and will not run again for this message.
type DeliveryError struct {
	// MessageID is the message's id.
	MessageID string
	// Event is the message's name.
	Event string
	// Failed lists the failed handlers in registration order.
	Failed []*uow.HandlerError
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
