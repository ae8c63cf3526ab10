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
// rewind. Days, not minutes. The table is shared by every router of the
// same store, whatever its handlers, so pass the longest window any of them
// needs.
func (r *Router) PruneInbox(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, dialect.Invalid("PruneInbox olderThan is %v; pass the dedupe window, longer than any redelivery can take", olderThan)
	}
	switch {
	case batch < 0:
		return 0, dialect.Invalid("PruneInbox batch is %d; pass a positive number, or 0 for %d", batch, DefaultPruneBatch)
	case batch == 0:
		batch = DefaultPruneBatch
	}
	cutoff := r.d.Time(time.Now().Add(-olderThan))
	n, err := dialect.DeleteInBatches(ctx, r.runner.Store().DB(), r.sql.InboxPrune, cutoff, batch)
	if err != nil {
		err = fmt.Errorf("keel: prune inbox: %w", dialect.WrapMissing(r.d, err, r.inbox))
	}
	return n, err
}
