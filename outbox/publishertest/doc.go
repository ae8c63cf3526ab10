// Package publishertest checks that an outbox.Publisher keeps the contract
// outbox.Publisher documents, the one a relay relies on. A Publisher that
// passes can be given to outbox.NewRelay without surprises; keel's own
// dispatch.Bus and kafka.Publisher pass it.
//
// # The contract
//
// Publish is given a batch of messages in outbox order. The suite checks
// that a Publisher
//
//   - delivers the messages of one partition key in the order given, across
//     many keys in one batch and across consecutive batches, each once;
//   - returns nil for an empty batch, and delivers nothing;
//   - returns nil only when every message arrived, and otherwise either a
//     *outbox.BatchError with exactly one entry per message (nil for a
//     delivered one), or another error that claims no message delivered;
//   - reports a message the destination rejects for good with an error
//     wrapping outbox.ErrPermanent, so that the relay parks it at once;
//   - reports a message that failed for now with an error that wraps
//     neither outbox.ErrPermanent nor outbox.ErrNotAttempted, so that the
//     relay counts the attempt and retries it;
//   - once a message of a key fails, does not attempt the key's later
//     messages of the batch, reporting them with outbox.ErrHeldBack (which
//     matches outbox.ErrNotAttempted), while other keys are delivered;
//   - when its context ends, returns without reporting as delivered a
//     message that did not arrive, reports the messages it never tried with
//     outbox.ErrNotAttempted, and, once the relay sends the rest again,
//     delivers every message, in order, none twice out of order.
//
// # Running the suite
//
// Implement a Harness over the Publisher and its destination, then call
// Run from a test:
//
//	func TestConformance(t *testing.T) {
//		publishertest.Run(t, publishertest.Features{}, func(t *testing.T) publishertest.Harness {
//			return newHarness(t) // a Publisher, and a way to read the destination back
//		})
//	}
//
// Each check publishes messages named EventName whose payload is an Event
// in JSON, with fresh ids and keys, so harnesses may share one destination
// between checks. Features declares what a destination cannot do; the
// checks that need it are skipped or relaxed, and say so. Checks returns
// the same checks for running outside go test.
package publishertest
