package outbox

import (
	"context"
	"time"
)

// Hooks for the external tests. They reach the relay's internals from
// outside its structs, which carry no test-only state.

// ClaimAll runs one claim over all partitions, as if r held every lease,
// and returns how many rows it read. Rows are left untouched.
func ClaimAll(ctx context.Context, r *Relay) (int, error) {
	msgs, err := r.claimRows(ctx, ^uint64(0), time.Now())
	return len(msgs), err
}

// DeliverWithLeaseLeft takes the free leases, pretends they expire after
// left, runs one delivery round and hands the leases back.
func DeliverWithLeaseLeft(ctx context.Context, r *Relay, left time.Duration) (claimed, delivered int, err error) {
	if err := r.leases.tick(ctx, true); err != nil {
		r.leases.leave()
		return 0, 0, err
	}
	defer r.leases.leave()
	r.leases.mu.Lock()
	r.leases.deadline = time.Now().Add(left)
	r.leases.mu.Unlock()
	res, err := r.deliverBatch(ctx)
	return res.Claimed, res.Delivered, err
}
