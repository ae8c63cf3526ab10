package outbox

import (
	"context"
	"math/bits"
	"time"
)

// Partition leases. Every relay heartbeats into the relays table, counts the
// live relays and keeps ceil(Partitions/live) partitions: it renews the
// leases it holds, takes free or expired ones up to its share, and hands
// back its surplus when relays join. Surplus is handed back only between
// batches, never while a batch of that partition is being published, so a
// rebalance does not cause double delivery. Times are the relay's own clock,
// passed as parameters, on both dialects.

var epoch = time.Unix(0, 0).UTC()

// leaseDeadline returns when the relay's leases expire unless renewed.
func (r *Relay) leaseDeadline() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deadline
}

// partitionCount returns how many partitions the relay holds a lease on now.
func (r *Relay) partitionCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bits.OnesCount64(r.owned)
}

func (r *Relay) initLeases(ctx context.Context) error {
	args := make([]any, Partitions)
	for i := range args {
		args[i] = r.d.Time(epoch)
	}
	_, err := r.db.ExecContext(ctx, r.q.initLeases, args...)
	return r.wrap("init leases", err, r.q.leases)
}

// leaseTick heartbeats, renews the relay's leases and moves it towards its
// fair share. greedy takes every free or expired partition, for Drain.
func (r *Relay) leaseTick(ctx context.Context, greedy bool) error {
	now := time.Now()
	exp := now.Add(r.cfg.LeaseDuration)
	if _, err := r.db.ExecContext(ctx, r.q.heartbeat, r.cfg.ID, r.d.Time(exp)); err != nil {
		return r.wrap("heartbeat", err, r.q.relays)
	}
	if _, err := r.db.ExecContext(ctx, r.q.reapRelays, r.d.Time(now.Add(-r.cfg.LeaseDuration))); err != nil {
		return r.wrap("reap relays", err, r.q.relays)
	}
	var live int
	if err := r.db.QueryRowContext(ctx, r.q.liveRelays, r.d.Time(now)).Scan(&live); err != nil {
		return r.wrap("count relays", err, r.q.relays)
	}
	share := Partitions
	if !greedy && live > 1 {
		share = (Partitions + live - 1) / live
	}
	if live != r.lastLive {
		r.lastLive, r.changedAt = live, now
	}

	owned, err := r.partitionQuery(ctx, "renew leases", r.q.renew, r.d.Time(exp), r.cfg.ID)
	if err != nil {
		return err
	}
	r.mu.Lock()
	lost := r.owned &^ owned
	r.owned = owned
	r.releasing &= owned
	r.deadline = exp
	r.mu.Unlock()
	if lost != 0 {
		r.log.Warn("keel: relay lost partition leases to another relay", "partitions", partitionList(lost))
	}

	r.short = false
	if n := bits.OnesCount64(owned); n > share {
		r.mu.Lock()
		r.releasing |= r.surplus(owned, n-share)
		r.mu.Unlock()
	} else if n < share {
		got, err := r.partitionQuery(ctx, "acquire leases", r.q.acquire,
			r.cfg.ID, r.d.Time(exp), r.d.Time(now), r.d.Time(now), r.pref, share-n)
		if err != nil {
			return err
		}
		if got != 0 {
			r.mu.Lock()
			r.owned |= got
			total := bits.OnesCount64(r.owned)
			r.mu.Unlock()
			r.log.Info("keel: relay acquired partition leases", "acquired", bits.OnesCount64(got), "held", total, "share", share, "relays", live)
			r.Notify()
		}
		// Relays that just joined or left are still handing partitions
		// over; look again soon rather than a renewal interval later.
		r.short = bits.OnesCount64(owned|got) < share && now.Sub(r.changedAt) < r.cfg.LeaseDuration
	}
	return r.releaseIdle(ctx)
}

// releaseIdle hands back the partitions marked for release that no batch in
// flight is using.
func (r *Relay) releaseIdle(ctx context.Context) error {
	r.mu.Lock()
	free := r.releasing &^ r.inflight
	r.mu.Unlock()
	if free == 0 {
		return nil
	}
	if _, err := r.db.ExecContext(ctx, r.q.release, r.d.Time(epoch), r.cfg.ID, r.q.ints(partitionList(free))); err != nil {
		return r.wrap("release leases", err, r.q.leases)
	}
	r.mu.Lock()
	r.owned &^= free
	r.releasing &^= free
	total := bits.OnesCount64(r.owned)
	r.mu.Unlock()
	r.log.Info("keel: relay released partition leases", "released", bits.OnesCount64(free), "held", total)
	return nil
}

// surplus picks n of the owned partitions to hand back: those this relay
// prefers least, so relays settle on stable, distinct sets.
func (r *Relay) surplus(owned uint64, n int) uint64 {
	var out uint64
	for rank := Partitions - 1; rank >= 0 && n > 0; rank-- {
		p := (rank - r.pref + Partitions) % Partitions // (p + pref) % Partitions == rank
		if owned&(1<<p) != 0 {
			out |= 1 << p
			n--
		}
	}
	return out
}

// partitionQuery runs a lease statement returning partition numbers.
func (r *Relay) partitionQuery(ctx context.Context, op, query string, args ...any) (uint64, error) {
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, r.wrap(op, err, r.q.leases)
	}
	defer rows.Close()
	var set uint64
	for rows.Next() {
		var p int
		if err := rows.Scan(&p); err != nil {
			return 0, r.wrap(op, err, r.q.leases)
		}
		if p >= 0 && p < Partitions {
			set |= 1 << p
		}
	}
	return set, r.wrap(op, rows.Err(), r.q.leases)
}

// leaseLoop renews leases every LeaseDuration/3, sooner while a renewal is
// failing or the relay is short of its share just after the relay count
// changed, and at once when kicked.
func (r *Relay) leaseLoop(ctx context.Context) {
	every := r.cfg.LeaseDuration / 3
	t := time.NewTimer(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		next := every
		if err := r.leaseTick(ctx, false); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				r.log.Error("keel: relay lease renewal failed; retrying", "err", err, "deadline", r.leaseDeadline())
			}
			failing = true
			next = min(every, time.Second)
		} else {
			failing = false
			if r.short {
				next = max(every/10, 50*time.Millisecond)
			}
		}
		t.Reset(next)
	}
}

// leave hands back every lease and removes the relay from the relays table.
func (r *Relay) leave() {
	r.mu.Lock()
	r.owned, r.releasing, r.deadline = 0, 0, time.Time{}
	r.mu.Unlock()
	if r.crashOnStop.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.db.ExecContext(ctx, r.q.releaseAll, r.d.Time(epoch), r.cfg.ID); err != nil {
		r.log.Error("keel: relay could not release its leases; they expire after LeaseDuration", "err", err)
	}
	if _, err := r.db.ExecContext(ctx, r.q.leave, r.cfg.ID); err != nil {
		r.log.Error("keel: relay could not leave the relays table", "err", err)
	}
}

// kickLeases asks the lease loop for an early tick.
func (r *Relay) kickLeases() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// partitionList expands a partition set into partition numbers.
func partitionList(set uint64) []int64 {
	out := make([]int64, 0, bits.OnesCount64(set))
	for set != 0 {
		p := bits.TrailingZeros64(set)
		out = append(out, int64(p))
		set &^= 1 << p
	}
	return out
}
