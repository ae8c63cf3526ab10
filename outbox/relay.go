package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// Relay delivers committed outbox rows to a Publisher, at least once and in
// order per partition key. Several relays, in one process or many, share the
// work through leases on the Partitions hash partitions.
//
// Guarantees, assuming relay hosts' clocks agree to well within
// LeaseDuration/3:
//   - Every committed message is published at least once, including one
//     whose transaction committed after later rows were relayed.
//   - Messages of one key reach the publisher in enqueue order, and a key
//     whose message failed sends nothing after it until that message is
//     delivered (or, under SkipMessage, parked).
//   - In normal operation no message is published twice: a partition is
//     leased to one relay at a time and a relay hands a partition over only
//     between batches. Duplicates are possible for the batch a relay had in
//     flight when it crashed or lost its lease (a database outage longer than
//     LeaseDuration, a stalled process); consumers deduplicate on Message.ID.
//
// A Relay is safe for concurrent use; Run and Drain may not overlap.
type Relay struct {
	db      *sql.DB
	pub     Publisher
	cfg     RelayConfig
	d       *dialect.Dialect
	q       *relaySQL
	log     *slog.Logger
	obs     Observer
	ob      string // outbox table name
	channel string
	pref    int // offset of this relay's preferred partitions

	wake    chan struct{}
	kick    chan struct{}
	running atomic.Bool

	mu        sync.Mutex
	owned     uint64    // partitions leased, one bit each
	releasing uint64    // owned partitions being handed back; not claimed
	inflight  uint64    // partitions of the batch being published
	deadline  time.Time // when the leases expire unless renewed

	// Lease bookkeeping of the goroutine running leaseTick.
	lastLive  int       // relays counted at the last tick
	changedAt time.Time // when that count last changed
	short     bool      // below the fair share soon after a change

	listening  chan struct{} // closed once LISTEN is active; for tests
	listenOnce sync.Once
	// crashOnStop makes Run and Drain return without handing back their
	// leases, as a crashed process would; for tests.
	crashOnStop atomic.Bool
}

// NewRelay returns a relay delivering the outbox rows in db to pub. It
// validates cfg but does not touch the database; Run and Drain report a
// missing schema as an error wrapping ErrNotMigrated.
func NewRelay(db *sql.DB, pub Publisher, cfg RelayConfig) (*Relay, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB; pass an open database handle", ErrInvalidConfig)
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: nil Publisher; pass one, such as a PublisherFunc", ErrInvalidConfig)
	}
	d, prefix, err := Config{Dialect: cfg.Dialect, TablePrefix: cfg.TablePrefix}.resolve(db)
	if err != nil {
		return nil, err
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(cfg.ID))
	return &Relay{
		db:        db,
		pub:       pub,
		cfg:       cfg,
		d:         d,
		q:         newRelaySQL(d, prefix, cfg.Policy),
		log:       cfg.Logger.With("relay", cfg.ID),
		obs:       cfg.Observer,
		ob:        prefix + "outbox",
		channel:   notifyChannel(prefix),
		pref:      int(h.Sum32() % Partitions),
		wake:      make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		listening: make(chan struct{}),
	}, nil
}

// ID returns the relay's name in the lease tables.
func (r *Relay) ID() string { return r.cfg.ID }

// Notify wakes the relay to look for new rows at once. It never blocks and
// may be called from any goroutine, typically right after a transaction that
// enqueued messages commits.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

var errRunning = errors.New("keel: relay is already running; Run and Drain may not overlap")

// Run delivers messages until ctx is done, then hands its leases back and
// returns nil. It joins the relays sharing the database, leases its share
// of the partitions and keeps that share as relays come and go. It polls as
// a safety net, backing off while idle, and wakes at once on Notify or, on
// PostgreSQL with ListenDSN set, on a notification from EnqueueTx in any
// process. Database errors are logged and retried; Run returns early only
// when the schema is missing (an error wrapping ErrNotMigrated) or when it
// is already running.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer r.running.Store(false)
	for {
		err := r.initLeases(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrNotMigrated) {
			return err
		}
		r.log.Error("keel: relay cannot reach the lease table; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if err := r.leaseTick(ctx, false); err != nil {
		if errors.Is(err, ErrNotMigrated) {
			return err
		}
		r.log.Error("keel: relay could not take leases; retrying", "err", err)
	}
	defer r.leave()

	inner, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { r.leaseLoop(inner) })
	if r.cfg.Retention > 0 {
		wg.Go(func() { r.cleanLoop(inner) })
	}
	if r.d.IsPostgres() {
		if r.cfg.ListenDSN != "" {
			wg.Go(func() { r.listen(inner) })
		} else {
			r.log.Info("keel: relay polls only: set RelayConfig.ListenDSN to be woken by PostgreSQL notifications from other processes")
		}
	}
	r.deliverLoop(inner)
	return nil
}

// Drain delivers every message it can reach now and returns how many it
// delivered: it leases all free or expired partitions (ignoring the fair
// share, but never taking a live relay's lease), publishes batches until a
// claim comes back empty, and hands the leases back. Messages waiting for a
// retry, held behind a failed message, or in partitions another relay holds
// are left. It suits tests and batch jobs.
func (r *Relay) Drain(ctx context.Context) (int, error) {
	if !r.running.CompareAndSwap(false, true) {
		return 0, errRunning
	}
	defer r.running.Store(false)
	if err := r.initLeases(ctx); err != nil {
		return 0, err
	}
	if err := r.leaseTick(ctx, true); err != nil {
		r.leave()
		return 0, err
	}
	defer r.leave()
	total := 0
	for ctx.Err() == nil {
		if time.Until(r.leaseDeadline()) < r.cfg.LeaseDuration*2/3 {
			if err := r.leaseTick(ctx, true); err != nil {
				return total, err
			}
		}
		res, err := r.deliverBatch(ctx)
		total += res.Delivered
		if err != nil {
			return total, err
		}
		if res.Claimed == 0 {
			return total, nil
		}
	}
	return total, ctx.Err()
}

// deliverLoop publishes batches until ctx is done: straight on while
// batches come back full, otherwise after a poll interval that doubles while
// idle, or at once when woken.
func (r *Relay) deliverLoop(ctx context.Context) {
	interval := r.cfg.MinPollInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	failing := false
	for {
		res, err := r.deliverBatch(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if !failing {
				r.log.Error("keel: relay batch failed; retrying", "err", err)
			}
			failing = true
			interval = min(max(interval*2, 100*time.Millisecond), r.cfg.MaxPollInterval)
		case res.Claimed == r.cfg.BatchSize:
			failing = false
			interval = r.cfg.MinPollInterval
			continue
		case res.Claimed > 0:
			failing = false
			interval = r.cfg.MinPollInterval
		default:
			failing = false
			interval = min(interval*2, r.cfg.MaxPollInterval)
		}
		timer.Reset(interval)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			interval = r.cfg.MinPollInterval
		case <-timer.C:
		}
	}
}

// cleanLoop deletes delivered rows past Retention every CleanupInterval.
func (r *Relay) cleanLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Cleanup(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("keel: outbox cleanup failed", "err", err)
		} else if n > 0 {
			r.log.Debug("keel: outbox cleanup", "deleted", n)
		}
	}
}

// wrap names the operation and maps a missing table to ErrNotMigrated.
func (r *Relay) wrap(op string, err error, table string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("keel: relay %s: %w", op, dialect.MissingTable(err, table))
}
