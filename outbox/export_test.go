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
	msgs, err := r.claimRows(ctx, ^uint64(0), time.Now(), nil, 0, r.cfg.BatchSize)
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
	b, err := r.claimBatch(ctx, nil, 0, 0, 0)
	if err != nil || b == nil {
		return 0, 0, err
	}
	r.publish(ctx, b)
	r.report(b)
	if b.left {
		return 0, 0, nil
	}
	return len(b.msgs), b.rep.Delivered, b.err
}

// ClaimStatement returns the relay's claim statement with its arguments
// for a claim over all partitions, as claimRows runs it.
func ClaimStatement(r *Relay) (string, []any) {
	d := r.ob.d
	return r.claim, []any{d.Int64s(partitionList(^uint64(0))), d.Time(time.Now()), r.cfg.BatchSize}
}

// PreparesStatements reports whether r prepares its hot statements.
func PreparesStatements(r *Relay) bool { return !r.stmts.off }
