package outbox

import (
	"context"
	"time"
)

// Hooks for the external tests.

// CrashOnStop makes r stop like a crashed process: without handing back its leases.
func CrashOnStop(r *Relay) { r.crashOnStop.Store(true) }

// Listening is closed once r's PostgreSQL listener is active.
func Listening(r *Relay) <-chan struct{} { return r.listening }

// ClaimAll runs one claim over all partitions, as if r held every lease,
// and returns how many rows it read. Rows are left untouched.
func ClaimAll(ctx context.Context, r *Relay) (int, error) {
	msgs, err := r.claim(ctx, ^uint64(0), time.Now())
	return len(msgs), err
}

// DeliverWithLeaseLeft takes the free leases, pretends they expire after
// left, runs one delivery round and hands the leases back.
func DeliverWithLeaseLeft(ctx context.Context, r *Relay, left time.Duration) (claimed, delivered int, err error) {
	if err := r.initLeases(ctx); err != nil {
		return 0, 0, err
	}
	if err := r.leaseTick(ctx, true); err != nil {
		return 0, 0, err
	}
	defer r.leave()
	r.mu.Lock()
	r.deadline = time.Now().Add(left)
	r.mu.Unlock()
	res, err := r.deliverBatch(ctx)
	return res.Claimed, res.Delivered, err
}

// ClaimSQL returns the claim statement.
func ClaimSQL(r *Relay) string { return r.q.claim }
