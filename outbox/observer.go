package outbox

import "time"

// Observer is told about every batch a Relay publishes, for metrics. It is
// called from the relay's delivery loop, so it must return quickly.
type Observer interface {
	ObserveBatch(BatchReport)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(BatchReport)

// ObserveBatch calls f(r).
func (f ObserverFunc) ObserveBatch(r BatchReport) { f(r) }

// BatchReport describes one published batch. New fields may be added.
type BatchReport struct {
	// Claimed is the number of messages handed to the publisher.
	Claimed int
	// Delivered messages were published and marked done.
	Delivered int
	// Failed messages will be retried after a backoff.
	Failed int
	// Parked messages used up their attempts or failed permanently.
	Parked int
	// Held messages came after a failed message of the same key in the
	// batch; they stay pending, untouched, to keep the key's order.
	Held int
	// Unrecorded failures could not be written to the database; the relay
	// logged them at Error level and leaves their keys out of its claims
	// until their retry time. Alert on it.
	Unrecorded int
	// Duration is the time from claiming the batch to marking it done.
	Duration time.Duration
	// Lag is the age of the oldest message in the batch when it was
	// published, measured from its enqueue.
	Lag time.Duration
}

type nopObserver struct{}

func (nopObserver) ObserveBatch(BatchReport) {}
