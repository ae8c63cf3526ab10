package uow

import (
	"context"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// DefaultPruneBatch is the batch size PruneIdempotencyKeys uses when given 0.
const DefaultPruneBatch = 1000

// PruneIdempotencyKeys deletes idempotency keys recorded more than olderThan
// ago, at most batch rows per statement (DefaultPruneBatch if batch is 0),
// until none are left, and returns how many it deleted. A command retried
// after its key was pruned is applied again, so olderThan must exceed the
// longest time a client may keep retrying. It is safe to run from several
// processes at once.
func (r *Runner) PruneIdempotencyKeys(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, dialect.Invalid("PruneIdempotencyKeys: olderThan is %v; pass how long keys must be kept, such as 7*24*time.Hour", olderThan)
	}
	if batch < 0 {
		return 0, dialect.Invalid("PruneIdempotencyKeys: batch is %d; pass a positive size, or 0 for %d", batch, DefaultPruneBatch)
	}
	if batch == 0 {
		batch = DefaultPruneBatch
	}
	n, err := dialect.DeleteInBatches(ctx, r.db, r.idemPrune, r.d.Time(time.Now().Add(-olderThan)), batch)
	if err != nil {
		err = fmt.Errorf("keel: prune idempotency keys: %w", dialect.WrapMissing(r.d, err, r.idemTable))
	}
	return n, err
}
