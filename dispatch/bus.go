package dispatch

import (
	"context"
	"slices"
	"sync"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
)

// DefaultGroupSize is the most messages a Bus delivers in one transaction
// when BusConfig.GroupSize is zero.
const DefaultGroupSize = 500

// BusConfig configures a Bus. The zero value is ready to use.
type BusConfig struct {
	// Concurrency is how many transactions deliver a batch's messages at
	// once. Each takes whole partition keys, and delivers the messages of a
	// key one after another. Delivery waits on commits more than on CPU, so
	// the default suits the database: the dialect's Writers, 1 on SQLite
	// (whose writers take turns) and 4 on PostgreSQL and MySQL.
	Concurrency int
	// GroupSize bounds how many messages one transaction delivers; a
	// worker's share of a batch larger than that takes several, one after
	// another. Larger groups spend fewer commits per message but hold their
	// locks longer, and a failure of the transaction as a whole (a lost
	// connection) makes every message of the group go again, one by one.
	// If zero, DefaultGroupSize is used.
	GroupSize int
}

// Bus is an outbox.Publisher that delivers a relay's batches to a Router's
// handlers in this process: the in-process destination. Give it to
// outbox.NewRelay in place of a broker publisher.
//
// A Bus splits a batch among up to Concurrency workers, each taking whole
// partition keys, and each worker delivers its messages through the
// router's DeliverBatch, in groups of up to GroupSize messages per
// transaction: every (handler, message) unit keeps its own inbox row and
// its own savepoint, so a failure undoes that unit alone, while the group
// shares one commit. Messages that share a partition key are delivered in
// batch order, one after another. When a message fails, the later
// messages of its key in the batch are not delivered at all. Publish then
// returns an *outbox.BatchError whose entry for each of them wraps
// outbox.ErrHeldBack, and the relay sends them again after the failed one.
//
// A relay bounds each Publish by its PublishTimeout. When that ends, the
// messages in progress fail, using up one of their attempts; those not
// started, and those whose group was rolled back with them, are reported
// with outbox.ErrNotAttempted and keep theirs; all of them wait for the
// next batch. Keep the relay's BatchSize small enough for a batch to finish
// well within the timeout.
//
// A Bus keeps the contract of outbox.Publisher, which package
// outbox/publishertest checks.
//
// A Bus is safe for concurrent use.
type Bus struct {
	router *Router
	n      int
	group  int
}

// NewBus returns a Bus delivering to router.
func NewBus(router *Router, cfg BusConfig) (*Bus, error) {
	if router == nil {
		return nil, dialect.Invalid("dispatch.NewBus: nil *Router; pass the router from NewRouter")
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, dialect.Invalid("BusConfig.Concurrency is %d; use a positive number, or 0 for the database's default", cfg.Concurrency)
	case cfg.Concurrency == 0:
		cfg.Concurrency = router.d.Writers()
	}
	switch {
	case cfg.GroupSize < 0:
		return nil, dialect.Invalid("BusConfig.GroupSize is %d; use a positive number, or 0 for %d", cfg.GroupSize, DefaultGroupSize)
	case cfg.GroupSize == 0:
		cfg.GroupSize = DefaultGroupSize
	}
	return &Bus{router: router, n: cfg.Concurrency, group: cfg.GroupSize}, nil
}

// Publish delivers batch through the router. It returns nil when every
// message was delivered, and otherwise an *outbox.BatchError with one
// entry per message: nil for a delivered one, the cause for one that was
// not (the router's error, outbox.ErrHeldBack, or outbox.ErrNotAttempted
// for messages not started, or rolled back, before ctx was done). It
// returns when every started delivery has finished.
func (b *Bus) Publish(ctx context.Context, batch []outbox.Message) error {
	errs := make([]error, len(batch))
	shares := split(groupByKey(batch), b.n)
	if len(shares) <= 1 {
		for _, idx := range shares {
			b.deliver(ctx, batch, idx, errs)
		}
	} else {
		var wg sync.WaitGroup
		for _, idx := range shares {
			wg.Go(func() { b.deliver(ctx, batch, idx, errs) })
		}
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil {
			return &outbox.BatchError{Errs: errs}
		}
	}
	return nil
}

// deliver delivers the messages at idx, whole keys in batch order, in
// groups of at most b.group, one group after another. A key that failed in
// one group is held back in the next. Each call writes only its own
// entries of errs.
func (b *Bus) deliver(ctx context.Context, batch []outbox.Message, idx []int, errs []error) {
	var hold outbox.HoldBack
	group := make([]int, 0, min(len(idx), b.group))
	for start := 0; start < len(idx); start += b.group {
		chunk := idx[start:min(start+b.group, len(idx))]
		group = group[:0]
		for _, i := range chunk {
			if err := hold.Check(&batch[i]); err != nil {
				errs[i] = err
				continue
			}
			group = append(group, i)
		}
		b.router.deliverGroup(ctx, batch, group, errs)
		for _, i := range chunk {
			if errs[i] != nil {
				hold.Fail(&batch[i])
			}
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

// split shares keys among at most n workers, each key whole, balancing
// their message counts (the largest keys first, each to the least loaded
// worker), and returns each worker's indexes in batch order.
func split(keys [][]int, n int) [][]int {
	n = min(n, len(keys))
	if n <= 1 {
		if len(keys) == 1 {
			return keys
		}
		var all []int
		for _, k := range keys {
			all = append(all, k...)
		}
		if all == nil {
			return nil
		}
		slices.Sort(all)
		return [][]int{all}
	}
	order := slices.Clone(keys)
	slices.SortStableFunc(order, func(a, b []int) int { return len(b) - len(a) })
	shares := make([][]int, n)
	for _, k := range order {
		w := 0
		for j := 1; j < n; j++ {
			if len(shares[j]) < len(shares[w]) {
				w = j
			}
		}
		shares[w] = append(shares[w], k...)
	}
	for _, s := range shares {
		slices.Sort(s)
	}
	return shares
}

var _ outbox.Publisher = (*Bus)(nil)
