package outbox

import (
	"context"
	"fmt"
	"strings"

	"github.com/keel-go/keel/internal/dialect"
)

// Publisher delivers outbox messages to their destination. Package
// outbox/publishertest checks an implementation against this contract.
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
// Once a message of a key fails, a Publisher must not attempt the key's
// later messages in the batch: it reports them with an error wrapping
// ErrHeldBack (HoldBack does the bookkeeping). Messages it never tried,
// because ctx ended first, say, are reported with an error wrapping
// ErrNotAttempted; the relay then leaves them pending without counting an
// attempt. An error wrapping ErrPermanent makes the relay park the message
// at once.
//
// A relay publishes up to RelayConfig.MaxInFlight batches at once (two by
// default), so Publish is called from several goroutines at a time, with
// batches that never share a partition key. A Publisher must allow that,
// or serialise its calls itself. Per-key order needs nothing more from it:
// the relay claims a key's later messages only once the call holding its
// earlier ones has returned and its outcome is recorded.
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

// HoldBack applies the per-key rule of a batch: once a message of a
// partition key fails, the key's later messages in the batch are held back,
// not attempted. The relay settles batches with it, and publishers use it
// to decide what not to send. The zero value is ready to use; a HoldBack is
// for one batch and one goroutine.
type HoldBack struct {
	failed map[string]string // partition key -> id of the message that failed
}

// Check returns nil when m may be attempted, or an error wrapping
// ErrHeldBack when an earlier message of its key failed.
func (h *HoldBack) Check(m *Message) error {
	if h.failed == nil {
		return nil
	}
	key := m.PartitionKey()
	if id, ok := h.failed[key]; ok {
		return fmt.Errorf("%w: message %s of key %s failed before %s", ErrHeldBack, id, dialect.Quote(key), m.ID)
	}
	return nil
}

// Fail records that m failed (or was not attempted), holding back its
// key's later messages.
func (h *HoldBack) Fail(m *Message) {
	if h.failed == nil {
		h.failed = map[string]string{}
	}
	key := m.PartitionKey()
	if _, ok := h.failed[key]; !ok {
		h.failed[key] = m.ID
	}
}
