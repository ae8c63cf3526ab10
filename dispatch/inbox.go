package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// DefaultPruneBatch is the number of inbox rows PruneInbox deletes per
// statement when it is given zero.
const DefaultPruneBatch = 1000

// PruneInbox deletes inbox rows recorded more than olderThan ago, at most
// batch rows per statement (DefaultPruneBatch if batch is zero), until none
// is left or ctx is done, and returns how many it deleted. Several processes
// may run it at once. Schedule it, hourly say, from the application.
//
// The inbox only remembers what it keeps: once a row is pruned, a
// redelivery of its message runs the handler again. olderThan is therefore
// the dedupe window and must exceed the longest time a message can take to
// be redelivered: the relay's MaxRetryBackoff over its attempts, how long a
// message may stay parked before someone requeues it, a Kafka consumer's
// rewind. Days, not minutes. The table is shared by every router with the
// same table prefix, whatever its handlers, so pass the longest window any
// of them needs.
func (r *Router) PruneInbox(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: PruneInbox olderThan is %v; pass the dedupe window, longer than any redelivery can take", ErrInvalidConfig, olderThan)
	}
	switch {
	case batch < 0:
		return 0, fmt.Errorf("%w: PruneInbox batch is %d; pass a positive number, or 0 for %d", ErrInvalidConfig, batch, DefaultPruneBatch)
	case batch == 0:
		batch = DefaultPruneBatch
	}
	cutoff := r.d.Time(time.Now().Add(-olderThan))
	n, err := dialect.DeleteInBatches(ctx, r.runner.DB(), r.pruneInbox, cutoff, batch)
	if err != nil {
		err = fmt.Errorf("keel: prune inbox: %w", dialect.MissingTable(err, r.inbox))
	}
	return n, err
}
