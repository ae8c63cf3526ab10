package outbox

import (
	"context"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// leases holds one relay's partition leases. Every relay heartbeats into
// the relays table, counts the live relays and keeps ceil(Partitions/live)
// partitions: it renews the leases it holds, takes free or expired ones up
// to its share, and hands back its surplus when relays join. A surplus
// partition is no longer claimed from, and is handed back once no batch
// claimed from it is in flight, never while one is being published, so a
// rebalance does not cause double delivery. Times
// are the relay's own clock, passed as parameters.
type leases struct {
	ob        *Outbox
	id        string
	pref      int // offset of the partitions this relay prefers
	duration  time.Duration
	log       *slog.Logger
	acquired  func()       // called when partitions were acquired
	delivered func() int64 // the relay's delivered count, for the heartbeat
	kick      chan struct{}

	// mu guards the partition sets, which the delivery goroutines read
	// while the lease goroutine changes them.
	mu        sync.Mutex
	owned     uint64             // partitions leased, one bit each
	releasing uint64             // owned partitions being handed back; not claimed
	inflight  uint64             // partitions of the batches being claimed or published
	batches   [Partitions]uint16 // per partition, how many such batches
	deadline  time.Time          // when the leases expire unless renewed

	// Owned by the goroutine calling tick.
	lastLive  int       // relays counted at the last tick
	changedAt time.Time // when that count last changed
	short     bool      // below the fair share soon after a change
}

var epoch = time.Unix(0, 0).UTC()

// begin returns the partitions a batch may claim now and marks them in
// flight, with the time the leases expire. Every begin is paired with an
// end of the set it returned.
func (l *leases) begin() (uint64, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.owned &^ l.releasing
	for s := set; s != 0; s &= s - 1 {
		l.batches[bits.TrailingZeros64(s)]++
	}
	l.inflight |= set
	return set, l.deadline
}

// end marks the batch claimed from set finished and asks for an early tick
// when partitions wait to be handed back.
func (l *leases) end(set uint64) {
	l.mu.Lock()
	for s := set; s != 0; s &= s - 1 {
		p := bits.TrailingZeros64(s)
		if l.batches[p]--; l.batches[p] == 0 {
			l.inflight &^= 1 << p
		}
	}
	pending := l.releasing != 0
	l.mu.Unlock()
	if pending {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// expiry returns when the leases expire unless renewed.
func (l *leases) expiry() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// count returns how many partitions are leased now.
func (l *leases) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bits.OnesCount64(l.owned)
}

// tick heartbeats, renews the leases and moves towards the fair share.
// greedy takes every free or expired partition, for Drain.
func (l *leases) tick(ctx context.Context, greedy bool) error {
	db, d, q := l.ob.db, l.ob.d, &l.ob.q
	relays, table := l.ob.st.Table("outbox_relays"), l.ob.st.Table("outbox_leases")
	now := time.Now()
	exp := now.Add(l.duration)
	if _, err := db.ExecContext(ctx, q.Heartbeat, l.id, d.Time(exp), l.delivered()); err != nil {
		return l.ob.wrap("heartbeat", err, relays)
	}
	if _, err := db.ExecContext(ctx, q.ReapRelays, d.Time(now.Add(-l.duration))); err != nil {
		return l.ob.wrap("reap relays", err, relays)
	}
	var live int
	if err := db.QueryRowContext(ctx, q.LiveRelays, d.Time(now)).Scan(&live); err != nil {
		return l.ob.wrap("count relays", err, relays)
	}
	share := Partitions
	if !greedy && live > 1 {
		share = (Partitions + live - 1) / live
	}
	if live != l.lastLive {
		l.lastLive, l.changedAt = live, now
	}

	if _, err := db.ExecContext(ctx, q.Renew, d.Time(exp), l.id); err != nil {
		return l.ob.wrap("renew leases", err, table)
	}
	owned, err := l.held(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	lost := l.owned &^ owned
	l.owned = owned
	l.releasing &= owned
	l.deadline = exp
	l.mu.Unlock()
	if lost != 0 {
		l.log.Warn("keel: relay lost partition leases to another relay", "partitions", partitionList(lost))
	}

	l.short = false
	if n := bits.OnesCount64(owned); n > share {
		l.mu.Lock()
		l.releasing |= l.surplus(owned, n-share)
		l.mu.Unlock()
	} else if n < share {
		if _, err := db.ExecContext(ctx, q.Acquire, l.id, d.Time(exp), d.Time(now), d.Time(now), l.pref, share-n); err != nil {
			return l.ob.wrap("acquire leases", err, table)
		}
		after, err := l.held(ctx)
		if err != nil {
			return err
		}
		if got := after &^ owned; got != 0 {
			l.mu.Lock()
			l.owned |= got
			l.mu.Unlock()
			l.log.Info("keel: relay acquired partition leases", "acquired", bits.OnesCount64(got), "held", bits.OnesCount64(after), "share", share, "relays", live)
			l.acquired()
		}
		// Relays that just joined or left are still handing partitions
		// over; look again soon rather than a renewal interval later.
		l.short = bits.OnesCount64(after) < share && now.Sub(l.changedAt) < l.duration
	}
	return l.releaseIdle(ctx)
}

// held reads the set of partitions whose lease names this relay.
func (l *leases) held(ctx context.Context) (uint64, error) {
	table := l.ob.st.Table("outbox_leases")
	rows, err := l.ob.db.QueryContext(ctx, l.ob.q.Owned, l.id)
	if err != nil {
		return 0, l.ob.wrap("read leases", err, table)
	}
	defer rows.Close()
	var set uint64
	for rows.Next() {
		var p int
		if err := rows.Scan(&p); err != nil {
			return 0, l.ob.wrap("read leases", err, table)
		}
		if p >= 0 && p < Partitions {
			set |= 1 << p
		}
	}
	return set, l.ob.wrap("read leases", rows.Err(), table)
}

// releaseIdle hands back the partitions marked for release that no batch in
// flight is using.
func (l *leases) releaseIdle(ctx context.Context) error {
	l.mu.Lock()
	free := l.releasing &^ l.inflight
	l.mu.Unlock()
	if free == 0 {
		return nil
	}
	d := l.ob.d
	if _, err := l.ob.db.ExecContext(ctx, l.ob.q.Release, d.Time(epoch), l.id, d.Int64s(partitionList(free))); err != nil {
		return l.ob.wrap("release leases", err, l.ob.st.Table("outbox_leases"))
	}
	l.mu.Lock()
	l.owned &^= free
	l.releasing &^= free
	total := bits.OnesCount64(l.owned)
	l.mu.Unlock()
	l.log.Info("keel: relay released partition leases", "released", bits.OnesCount64(free), "held", total)
	return nil
}

// surplus picks n of the owned partitions to hand back: those this relay
// prefers least, so relays settle on stable, distinct sets.
func (l *leases) surplus(owned uint64, n int) uint64 {
	var out uint64
	for rank := Partitions - 1; rank >= 0 && n > 0; rank-- {
		p := (rank - l.pref + Partitions) % Partitions // (p + pref) % Partitions == rank
		if owned&(1<<p) != 0 {
			out |= 1 << p
			n--
		}
	}
	return out
}

// loop renews leases every LeaseDuration/3, sooner while a renewal is
// failing or the relay is short of its share just after the relay count
// changed, and at once when kicked. It returns when ctx is done, or with
// the error of a tick that no retry can fix (a closed database).
func (l *leases) loop(ctx context.Context) error {
	every := l.duration / 3
	t := time.NewTimer(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-l.kick:
		}
		next := every
		if err := l.tick(ctx, false); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if dialect.IsClosed(err) {
				return err
			}
			if !failing {
				l.log.Error("keel: relay lease renewal failed; retrying", "err", err, "deadline", l.expiry())
			}
			failing = true
			next = min(every, time.Second)
		} else {
			failing = false
			if l.short {
				next = max(every/10, 50*time.Millisecond)
			}
		}
		t.Reset(next)
	}
}

// leave hands back every lease and removes the relay from the relays
// table. A relay that cannot (its database is gone) leaves its leases to
// expire, as a crashed one does.
func (l *leases) leave() {
	l.mu.Lock()
	l.owned, l.releasing, l.deadline = 0, 0, time.Time{}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.ob.db.ExecContext(ctx, l.ob.q.ReleaseAll, l.ob.d.Time(epoch), l.id); err != nil {
		l.log.Error("keel: relay could not release its leases; they expire after LeaseDuration", "err", err)
		return
	}
	if _, err := l.ob.db.ExecContext(ctx, l.ob.q.Leave, l.id); err != nil {
		l.log.Error("keel: relay could not leave the relays table", "err", err)
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
