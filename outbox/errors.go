package outbox

import (
	"errors"
	"fmt"
)

// ErrInvalidMessage is returned by Enqueue and EnqueueTx for a message they
// cannot store: a required field missing, a value too long for the index
// that holds it, or text that is not valid UTF-8. Nothing of the call is
// written.
var ErrInvalidMessage = errors.New("keel: invalid outbox message")

// ErrNotParked is returned by Requeue for a message id that is not parked.
var ErrNotParked = errors.New("keel: outbox message is not parked")

// ErrPermanent marks a publish error that retrying cannot fix (a message the
// destination rejects as malformed, say). Wrap it, and the relay parks the
// message at once instead of using up its attempts.
var ErrPermanent = errors.New("keel: permanent delivery failure")

// ErrNotAttempted marks a BatchError entry for a message the publisher never
// tried, for instance because its context ended first. The relay leaves such
// a message pending without using up one of its attempts, and holds back
// its key's later messages in the batch as it does after a failure.
var ErrNotAttempted = errors.New("keel: message not attempted")

// ErrHeldBack marks a BatchError entry for a message a publisher did not
// attempt because an earlier message of its partition key in the batch
// failed: delivering it would break the key's order. It matches
// ErrNotAttempted too, so the message keeps its attempts; the relay sends
// it again after the failed one.
var ErrHeldBack = fmt.Errorf("keel: message held back behind a failed message of its key (%w)", ErrNotAttempted)
