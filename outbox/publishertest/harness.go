package publishertest

import (
	"context"

	"github.com/keel-go/keel/outbox"
)

// EventName is the Name of every message the suite publishes.
const EventName = "publishertest.event"

// Event is the event every message of the suite carries, JSON-encoded in
// its Payload, so that a destination that decodes payloads (a
// dispatch.Router, through an aggregate.Registry) can subscribe to it.
type Event struct {
	// Key is the message's partition key.
	Key string `json:"key"`
	// Seq numbers the key's messages from 0, in the order they are
	// published.
	Seq int `json:"seq"`
}

// EventName returns EventName, the name Event is registered under.
func (Event) EventName() string { return EventName }

// Harness connects the suite to a Publisher and to the destination it
// delivers to.
type Harness interface {
	// Publisher returns the Publisher under test. The suite calls its
	// Publish one call at a time.
	Publisher() outbox.Publisher

	// Delivered returns every copy of every message that has reached the
	// destination, in the order they arrived, at least among the messages
	// of one partition key: a destination that orders only within a
	// partition, such as Kafka, may interleave keys as it likes. Each needs
	// its ID, its partition key (in Key), Name and Payload as published.
	// Messages the suite did not publish are ignored.
	Delivered(ctx context.Context) ([]outbox.Message, error)

	// FailPermanently returns m changed so that the destination rejects it
	// for good: publishing it must fail with an error wrapping
	// outbox.ErrPermanent. It may change m's Topic, Headers or Payload, and
	// must keep its ID, Key and Name. It is not called when
	// Features.NoPermanentFailure is set.
	FailPermanently(m outbox.Message) outbox.Message

	// FailTransiently returns m changed so that publishing it fails for now
	// (the destination is unavailable, a handler errs), with an error that
	// wraps neither outbox.ErrPermanent nor outbox.ErrNotAttempted, while
	// publishing m itself, unchanged, succeeds: that is how the suite
	// retries it. Messages made to fail this way must fail each on its own
	// account, so that a Publisher that stops trying a destination once it
	// failed (reporting the rest as not attempted) still attempts each of
	// them. It may change m's Topic, Headers or Payload, and must keep its
	// ID, Key and Name. It is not called when Features.NoTransientFailure
	// is set.
	FailTransiently(m outbox.Message) outbox.Message
}

// Features declares what a destination cannot do, so that the suite skips
// or relaxes the checks that need it. The zero value claims everything.
type Features struct {
	// NoPermanentFailure says the harness cannot make the destination
	// reject a message for good; the checks of permanent failures are
	// skipped, and the check of mixed failures uses transient ones only.
	NoPermanentFailure bool

	// NoTransientFailure says the harness cannot make a message fail for
	// now; the checks of transient failures are skipped, and the check of
	// mixed failures uses permanent ones only.
	NoTransientFailure bool

	// LateDuplicates says that a Publish cut short by its context may have
	// handed messages to the destination that it then reports as not
	// delivered, and that arrive anyway: kafka-go's Writer, say, cannot
	// recall records it has written to a connection. Published again, such
	// a message arrives twice, and its second copy may follow later
	// messages of its key. After a cancelled Publish the suite then checks
	// the order of first copies only, which is what a consumer that
	// deduplicates on Message.ID sees.
	LateDuplicates bool
}
