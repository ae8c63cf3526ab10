package outbox

import (
	"context"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// pipeline runs a relay's batches: it claims the next batch while earlier
// ones publish, up to MaxInFlight at once, each publishing in a goroutine
// of its own, and settles each one as it finishes, in whatever order they
// finish. Batches in flight never share a partition key: a claim leaves out
// the keys of every batch in flight, and a batch's keys become claimable
// again only once its outcome is recorded in the database. So a key's
// later messages are claimed only after its earlier ones were deleted, or
// their failure recorded (which holds the key back in the claim), exactly
// as when batches run one after another. A pipeline is owned by the
// delivering goroutine.
type pipeline struct {
	r    *Relay
	ctx  context.Context
	done chan *batch // batches that finished, in the order they did

	n         int                 // batches in flight
	rows      int                 // rows of the batches in flight
	keys      map[string]struct{} // partition keys of the batches in flight
	hwm       int64               // highest seq claimed so far
	reach     int                 // how many batches wide a claim ahead reads past hwm
	delivered int
	err       error // the first failure to mark a batch done, until taken
}

func (r *Relay) newPipeline(ctx context.Context) *pipeline {
	return &pipeline{
		r:    r,
		ctx:  ctx,
		done: make(chan *batch, r.cfg.MaxInFlight),
		keys: map[string]struct{}{},
	}
}

// room reports whether another batch may be claimed now.
func (p *pipeline) room() bool { return p.n < p.r.cfg.MaxInFlight }

// claim claims the next batch. With batches in flight, it leaves out their
// keys and reads no row more than reach batches' worth beyond the highest
// seq claimed so far: when every key within reach is in flight, such a
// claim reads a window rather than the whole backlog. Each claim ahead
// that finds nothing doubles the reach, up to maxReach, for rows of keys
// in flight may fill the next window too; a claim with nothing in flight
// resets it.
func (p *pipeline) claim() (*batch, error) {
	if p.n == 0 {
		p.reach = 1
		return p.r.claimBatch(p.ctx, nil, 0, 0, 0)
	}
	b, err := p.r.claimBatch(p.ctx, p.keys, p.hwm, p.reach, p.rows)
	if b == nil && err == nil {
		p.reach = min(p.reach*2, maxReach)
	}
	return b, err
}

// maxReach bounds the window of a claim ahead, in batches.
const maxReach = 16

// start publishes b in a goroutine of its own.
func (p *pipeline) start(b *batch) {
	p.n++
	p.rows += len(b.msgs)
	for i := range b.msgs {
		p.keys[b.msgs[i].PartitionKey()] = struct{}{}
		p.hwm = max(p.hwm, b.msgs[i].Seq)
	}
	go func() {
		p.r.publish(p.ctx, b)
		p.done <- b // never blocks: done holds MaxInFlight
	}()
}

// finish takes in a batch that finished: its unrecordable failures are
// held in memory before its keys are released, so that no claim sees the
// keys free while their failure is neither recorded nor held.
func (p *pipeline) finish(b *batch) {
	p.n--
	p.rows -= len(b.msgs)
	for k, until := range b.stuck {
		p.r.stuck[k] = until
	}
	for i := range b.msgs {
		delete(p.keys, b.msgs[i].PartitionKey())
	}
	p.r.learnPace(b)
	p.r.report(b)
	p.delivered += b.rep.Delivered
	p.r.delivered.Add(int64(b.rep.Delivered))
	if b.err != nil && p.err == nil {
		p.err = b.err
	}
}

// wait waits for a batch in flight to finish and takes it in.
func (p *pipeline) wait() { p.finish(<-p.done) }

// settle waits for every batch in flight to finish.
func (p *pipeline) settle() {
	for p.n > 0 {
		p.wait()
	}
}

// takeErr returns the first failure to mark a batch done since the last
// call, if any.
func (p *pipeline) takeErr() error {
	err := p.err
	p.err = nil
	return err
}

// aheadBackoff is the wait before claiming ahead again after a claim ahead found
// nothing: it doubles from MinPollInterval to MaxPollInterval while such
// claims keep finding nothing, so that keys that are all in flight cost
// few wasted claims; a wake-up (a commit) or a claim ahead that finds rows
// resets it.
type aheadBackoff struct {
	at   time.Time
	wait time.Duration
}

func (b *aheadBackoff) miss(now time.Time, lo, hi time.Duration) {
	b.wait = min(max(b.wait*2, lo), hi)
	b.at = now.Add(b.wait)
}

func (b *aheadBackoff) reset() { *b = aheadBackoff{} }

// deliverLoop publishes batches until ctx is done: it claims straight on
// while claims come back full, otherwise after a poll interval that doubles
// while idle, or at once when woken, with up to MaxInFlight batches in
// flight. On return every batch it started is settled. It returns an error
// only when the database was closed.
func (r *Relay) deliverLoop(ctx context.Context, wake <-chan struct{}) error {
	p := r.newPipeline(ctx)
	defer p.settle()
	interval := r.cfg.MinPollInterval
	var next time.Time // when the next claim may run, unless woken
	var ahead aheadBackoff
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	failing := false
	fail := func(err error) error {
		if dialect.IsClosed(err) {
			return err
		}
		if !failing {
			r.log.Error("keel: relay batch failed; retrying", "err", err)
		}
		failing = true
		interval = min(max(interval*2, 100*time.Millisecond), r.cfg.MaxPollInterval)
		next = time.Now().Add(interval)
		return nil
	}
	for {
		if err := p.takeErr(); err != nil && ctx.Err() == nil {
			if err := fail(err); err != nil {
				return err
			}
		}
		now := time.Now()
		if p.room() && !now.Before(next) && (p.n == 0 || !now.Before(ahead.at)) {
			behind := p.n > 0
			b, err := p.claim()
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case err != nil:
				if err := fail(err); err != nil {
					return err
				}
			case b == nil && behind:
				failing = false
				ahead.miss(now, r.cfg.MinPollInterval, r.cfg.MaxPollInterval)
			case b == nil:
				failing = false
				interval = min(interval*2, r.cfg.MaxPollInterval)
				next = now.Add(interval)
			default:
				failing = false
				p.start(b)
				if behind {
					ahead.reset()
				}
				interval = r.cfg.MinPollInterval
				if b.full() {
					next = time.Time{}
					continue
				}
				next = now.Add(interval)
			}
		}
		timer.Stop()
		if p.room() {
			due := next
			if p.n > 0 && ahead.at.After(due) {
				due = ahead.at
			}
			timer.Reset(max(time.Until(due), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case b := <-p.done:
			p.finish(b)
		case <-wake:
			interval, next = r.cfg.MinPollInterval, time.Time{}
			ahead.reset()
		case <-r.acquired:
			interval, next = r.cfg.MinPollInterval, time.Time{}
			ahead.reset()
		case <-timer.C:
		}
	}
}

// drainLoop is Drain's loop: it claims straight on, with up to MaxInFlight
// batches in flight, until a claim with nothing in flight comes back empty.
// It returns how many messages it delivered, once every batch it started is
// settled.
func (r *Relay) drainLoop(ctx context.Context) (int, error) {
	p := r.newPipeline(ctx)
	var ahead aheadBackoff
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	err := func() error {
		for ctx.Err() == nil {
			if err := p.takeErr(); err != nil {
				return err
			}
			if time.Until(r.leases.expiry()) < r.cfg.LeaseDuration*2/3 {
				if err := r.leases.tick(ctx, true); err != nil {
					return err
				}
			}
			now := time.Now()
			if p.room() && (p.n == 0 || !now.Before(ahead.at)) {
				behind := p.n > 0
				b, err := p.claim()
				switch {
				case err != nil:
					return err
				case b == nil && !behind:
					return nil
				case b == nil:
					ahead.miss(now, r.cfg.MinPollInterval, r.cfg.MaxPollInterval)
				default:
					p.start(b)
					if behind {
						ahead.reset()
					}
					continue
				}
			}
			timer.Stop()
			if p.room() {
				timer.Reset(max(time.Until(ahead.at), 0))
			}
			select {
			case <-ctx.Done():
			case b := <-p.done:
				p.finish(b)
			case <-timer.C:
			}
		}
		return ctx.Err()
	}()
	p.settle()
	if err == nil {
		err = p.takeErr()
	}
	return p.delivered, err
}
