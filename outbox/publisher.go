package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Publisher delivers outbox messages to their destination.
//
// Publish is given a batch in outbox order. It must deliver messages that
// share a partition key in the order given, and return only once each
// message is durably handed over (acknowledged by the broker, or handled).
// It returns nil when every message was delivered. When some were and some
// were not, it returns a *BatchError saying which; any other error means no
// message of the batch may be assumed delivered. Delivery is at least once:
// a message may be published again after a crash, so consumers deduplicate
// on Message.ID.
//
// Once a message of a key fails, a Publisher should not attempt the key's
// later messages in the batch (report them failed too): the Relay keeps
// them pending behind the failed one in any case, to preserve the key's
// order, and will publish them again after it.
type Publisher interface {
	Publish(ctx context.Context, batch []Message) error
}

// PublisherFunc adapts a function to the Publisher interface.
type PublisherFunc func(ctx context.Context, batch []Message) error

// Publish calls f(ctx, batch).
func (f PublisherFunc) Publish(ctx context.Context, batch []Message) error { return f(ctx, batch) }

// BatchError reports a partly delivered batch. Errs has one entry per
// message of the batch, in order: nil for a delivered message, the cause for
// one that was not.
type BatchError struct {
	Errs []error
}

// Error summarises the failures.
func (e *BatchError) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "keel: %d of %d messages not delivered", n, len(e.Errs))
	if first != nil {
		fmt.Fprintf(&b, "; first: %v", first)
	}
	return b.String()
}

// Unwrap returns the individual errors, so errors.Is and errors.As see them.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Failed reports whether message i of the batch was not delivered.
func (e *BatchError) Failed(i int) bool { return i < len(e.Errs) && e.Errs[i] != nil }

// ErrPermanent marks a publish error that retrying cannot fix (a message the
// destination rejects as malformed, say). Wrap it, and the relay parks the
// message at once instead of using up its attempts.
var ErrPermanent = errors.New("keel: permanent delivery failure")

// ErrNotAttempted marks a BatchError entry for a message the publisher never
// tried, for instance because its context ended first. The relay leaves such
// a message pending without using up one of its attempts, and holds back
// its key's later messages in the batch as it does after a failure.
var ErrNotAttempted = errors.New("keel: message not attempted")
