package kafka

import (
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/outbox"
)

// permanentCodes are broker errors that sending the same record again
// cannot fix. Everything else (leader changes, timeouts, an unknown topic
// that may yet be created, a denied topic that may yet be granted, a broker
// that is down) is left for the relay to retry.
var permanentCodes = map[kafkago.Error]bool{
	kafkago.MessageSizeTooLarge:         true,
	kafkago.RecordListTooLarge:          true,
	kafkago.InvalidTopic:                true,
	kafkago.InvalidRecord:               true,
	kafkago.UnsupportedForMessageFormat: true,
}

// classify wraps err with outbox.ErrPermanent when retrying cannot help.
func classify(err error) error {
	var ke kafkago.Error
	if errors.As(err, &ke) && permanentCodes[ke] {
		return permanent(err)
	}
	var tl kafkago.MessageTooLargeError
	if errors.As(err, &tl) {
		return permanent(err)
	}
	return err
}

// permanent marks err so that errors.Is matches both outbox.ErrPermanent and
// whatever err already matched.
func permanent(err error) error {
	if errors.Is(err, outbox.ErrPermanent) {
		return err
	}
	return fmt.Errorf("%w: %w", outbox.ErrPermanent, err)
}
