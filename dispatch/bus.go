package dispatch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
)

// BusConfig configures a Bus. The zero value is ready to use.
type BusConfig struct {
	// Concurrency is how many partition keys of a batch are delivered at
	// once; the messages of one key are always delivered one after another.
	// If zero, runtime.GOMAXPROCS(0) is used. On SQLite, whose writers take
	// turns, more than one mostly overlaps handler work with waiting.
	Concurrency int
}

// Bus is an outbox.Publisher that delivers a relay's batches to a Router's
// handlers in this process: the in-process destination. Give it to
// outbox.NewRelay in place of a broker publisher.
//
// Messages that share a partition key are delivered in batch order, one
// after another; different keys are delivered in parallel, up to
// Concurrency at once. When a message fails, the later messages of its key
// in the batch are not delivered at all. Publish then returns an
// *outbox.BatchError whose entry for each of them wraps outbox.ErrHeldBack,
// and the relay sends them again after the failed one.
//
// A relay bounds each Publish by its PublishTimeout. When that ends, the
// messages in progress fail, using up one of their attempts, and those not
// started are reported with outbox.ErrNotAttempted and keep theirs; all of
// them wait for the next batch. Keep the relay's BatchSize small enough for
// a batch to finish well within the timeout: at most about PublishTimeout ×
// Concurrency over the time one message's handlers take.
//
// A Bus keeps the contract of outbox.Publisher, which package
// outbox/publishertest checks.
//
// A Bus is safe for concurrent use.
type Bus struct {
	router *Router
	n      int
}

// NewBus returns a Bus delivering to router.
func NewBus(router *Router, cfg BusConfig) (*Bus, error) {
	if router == nil {
		return nil, dialect.Invalid("dispatch.NewBus: nil *Router; pass the router from NewRouter")
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, dialect.Invalid("BusConfig.Concurrency is %d; use a positive number, or 0 for GOMAXPROCS", cfg.Concurrency)
	case cfg.Concurrency == 0:
		cfg.Concurrency = runtime.GOMAXPROCS(0)
	}
	return &Bus{router: router, n: cfg.Concurrency}, nil
}

// Publish delivers batch through the router's Deliver. It returns nil when
// every message was delivered, and otherwise an *outbox.BatchError with one
// entry per message: nil for a delivered one, the cause for one that was
// not (the router's error, outbox.ErrHeldBack, or outbox.ErrNotAttempted
// for messages not started before ctx was done). It returns when every
// started delivery has finished.
func (b *Bus) Publish(ctx context.Context, batch []outbox.Message) error {
	keys := groupByKey(batch)
	errs := make([]error, len(batch))
	workers := min(b.n, len(keys))
	if workers <= 1 {
		for _, idx := range keys {
			b.deliverKey(ctx, batch, idx, errs)
		}
	} else {
		work := make(chan []int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for idx := range work {
					b.deliverKey(ctx, batch, idx, errs)
				}
			})
		}
		for _, idx := range keys {
			work <- idx
		}
		close(work)
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil {
			return &outbox.BatchError{Errs: errs}
		}
	}
	return nil
}

// deliverKey delivers the messages at idx, all of one key, in order,
// holding back the rest once one fails. Each call writes only its own
// entries of errs.
func (b *Bus) deliverKey(ctx context.Context, batch []outbox.Message, idx []int, errs []error) {
	var hold outbox.HoldBack
	for _, i := range idx {
		m := &batch[i]
		err := hold.Check(m)
		switch {
		case err != nil:
		case ctx.Err() != nil:
			err = fmt.Errorf("keel: bus stopped before delivering %s: %w", m.ID, errors.Join(outbox.ErrNotAttempted, ctx.Err()))
		default:
			err = b.router.Deliver(ctx, *m)
		}
		if err != nil {
			errs[i] = err
			hold.Fail(m)
		}
	}
}

// groupByKey returns the batch's indexes grouped by partition key, keys in
// order of first appearance and indexes in batch order.
func groupByKey(batch []outbox.Message) [][]int {
	pos := make(map[string]int, len(batch))
	var keys [][]int
	for i := range batch {
		k := batch[i].PartitionKey()
		p, ok := pos[k]
		if !ok {
			p = len(keys)
			pos[k] = p
			keys = append(keys, nil)
		}
		keys[p] = append(keys[p], i)
	}
	return keys
}

var _ outbox.Publisher = (*Bus)(nil)
