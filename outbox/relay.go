package outbox

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/store"
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
//     while no batch of it is in flight. Duplicates are possible for the
//     batches a relay had in flight when it crashed or lost its lease (a
//     database outage longer than LeaseDuration, a stalled process);
//     consumers deduplicate on Message.ID.
//
// A relay publishes up to MaxInFlight batches at once (two by default): it
// claims the next batch while earlier ones publish, leaving out their
// partition keys, so that a key whose messages are slow to publish holds up
// its own batch only. Batches in flight never share a key, and a key is
// claimed again only after the outcome of its batch in flight is recorded,
// so the guarantees above hold whatever the number of batches in flight.
//
// A Relay is safe for concurrent use; Run and Drain may not overlap.
type Relay struct {
	ob     *Outbox
	pub    Publisher
	cfg    RelayConfig
	log    *slog.Logger
	obs    Observer
	leases *leases

	// claim, claimExcept and claimAhead are the claim statements of the
	// relay's failure policy: plain, with a list of keys to leave out, and
	// with that list and a bound on seq, for claims beside batches in
	// flight.
	claim, claimExcept, claimAhead string
	stmts                          *stmts

	acquired chan struct{} // the lease goroutine acquired partitions
	running  atomic.Bool
	// delivered counts the messages delivered since Run or Drain started;
	// every heartbeat writes it to the relays table (see Outbox.Relays).
	delivered atomic.Int64

	// Owned by the delivering goroutine.
	stuck map[string]time.Time // keys whose failed message could not be recorded, until a retry time
	pace  time.Duration        // the publisher's time per message, learnt from batches
}

// NewRelay returns a relay delivering the outbox rows of st's database to
// pub. It checks cfg but does not touch the database; Run and Drain report
// a missing schema as an error wrapping store.ErrNotMigrated.
func NewRelay(st *store.Store, pub Publisher, cfg RelayConfig) (*Relay, error) {
	if st == nil {
		return nil, dialect.Invalid("outbox.NewRelay: nil *store.Store; pass the store from store.Open")
	}
	if pub == nil {
		return nil, dialect.Invalid("outbox.NewRelay: nil Publisher; pass one, such as a dispatch.Bus or a kafka.Publisher")
	}
	cfg, err := cfg.withDefaults(st.Logger(), st.Dialect().Writers())
	if err != nil {
		return nil, err
	}
	ob, err := New(st)
	if err != nil {
		return nil, err
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(cfg.ID))
	r := &Relay{
		ob:          ob,
		pub:         tracedPublisher{pub: pub, tel: ob.tel, attrs: []attribute.KeyValue{telemetry.KeyRelayID.String(cfg.ID)}},
		cfg:         cfg,
		log:         cfg.Logger.With("relay", cfg.ID),
		obs:         observers{cfg.Observer, newMetricsObserver(ob.tel, cfg.ID)},
		claim:       ob.q.Claim,
		claimExcept: ob.q.ClaimExcept,
		claimAhead:  ob.q.ClaimAhead,
		stmts:       newStmts(ob.db, cfg.DisablePrepare),
		acquired:    make(chan struct{}, 1),
		stuck:       map[string]time.Time{},
	}
	if cfg.Policy == SkipMessage {
		r.claim, r.claimExcept, r.claimAhead = ob.q.ClaimSkip, ob.q.ClaimSkipExcept, ob.q.ClaimSkipAhead
	}
	r.leases = &leases{
		ob:        ob,
		id:        cfg.ID,
		pref:      int(h.Sum32() % Partitions),
		duration:  cfg.LeaseDuration,
		log:       r.log,
		acquired:  func() { signal(r.acquired) },
		delivered: r.delivered.Load,
		kick:      make(chan struct{}, 1),
	}
	return r, nil
}

// signal sends on a channel of capacity one without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ID returns the relay's name in the lease tables.
func (r *Relay) ID() string { return r.cfg.ID }

// Outbox returns the outbox the relay delivers, for Stats, Parked, Requeue
// and the other administration.
func (r *Relay) Outbox() *Outbox { return r.ob }

// Partitions returns how many partitions the relay holds a lease on now.
func (r *Relay) Partitions() int { return r.leases.count() }

var errRunning = errors.New("keel: relay is already running; Run and Drain may not overlap")

// errStopped is the cause the relay gives its goroutines when one of them
// met an error no retry can fix.
var errStopped = errors.New("keel: relay stopped")

// Run delivers messages until ctx is done, then hands its leases back and
// returns nil. It joins the relays sharing the database, leases its share
// of the partitions and keeps that share as relays come and go. It polls as
// a safety net, backing off while idle, and wakes at once on a commit in
// this process or, with a store Listener, in any other. Database errors are
// logged and retried.
//
// Run returns early, logging why at Error level, only when the schema is
// missing (an error wrapping store.ErrNotMigrated), when the *sql.DB was
// closed, or when the relay is already running. Since Run usually runs in a
// goroutine of its own, check its error, or watch the log.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer r.running.Store(false)
	defer r.stmts.close()
	r.delivered.Store(0)
	err := r.run(ctx)
	if err != nil {
		r.log.Error("keel: relay stopped", "err", err)
	} else {
		r.log.Info("keel: relay stopped", "reason", context.Cause(ctx))
	}
	return err
}

func (r *Relay) run(ctx context.Context) error {
	if err := r.waitForSchema(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	wake, unsubscribe := r.ob.st.Subscribe()
	defer unsubscribe()
	defer r.observe()()
	if _, ok := r.ob.d.(dialect.Notifier); ok && r.ob.st.Options().Listener == nil {
		r.log.Info("keel: relay polls for commits made by other processes: set store.Options.Listener (pgxlisten.New or pqlisten.New) to be woken by them at once")
	}
	if err := r.leases.tick(ctx, false); err != nil {
		if fatal(err) {
			return err
		}
		r.log.Error("keel: relay could not take leases; retrying", "err", err)
	}
	defer r.leases.leave()

	inner, stop := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	var failed error
	var once sync.Once
	fail := func(err error) {
		once.Do(func() { failed = err })
		stop(errStopped)
	}
	wg.Go(func() {
		if err := r.leases.loop(inner); err != nil {
			fail(err)
		}
	})
	if r.cfg.Retention > 0 {
		wg.Go(func() { r.cleanLoop(inner) })
	}
	wg.Go(func() { r.scheduleLoop(inner) })
	if err := r.deliverLoop(inner, wake); err != nil {
		fail(err)
	}
	stop(nil)
	wg.Wait()
	return failed
}

// fatal reports whether err ends Run: no retry can fix it.
func fatal(err error) bool {
	return errors.Is(err, store.ErrNotMigrated) || dialect.IsClosed(err)
}

// waitForSchema checks the schema, retrying while the database cannot be
// reached, until ctx is done.
func (r *Relay) waitForSchema(ctx context.Context) error {
	for failures := 0; ; failures++ {
		err := r.ob.st.CheckSchema(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			return fmt.Errorf("keel: relay: %w", err)
		}
		if failures == 0 {
			r.log.Error("keel: relay cannot reach the database; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
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
	defer r.stmts.close()
	r.delivered.Store(0)
	if err := r.leases.tick(ctx, true); err != nil {
		r.leases.leave()
		return 0, err
	}
	defer r.leases.leave()
	if err := r.ob.moveAllDue(ctx, r.ob.st.Now()); err != nil {
		return 0, err
	}
	return r.drainLoop(ctx)
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
		if n, err := r.ob.Cleanup(ctx, r.cfg.Retention, r.cfg.CleanupBatch); err != nil && ctx.Err() == nil {
			r.log.Error("keel: outbox cleanup failed", "err", err)
		} else if n > 0 {
			r.log.Debug("keel: outbox cleanup", "deleted", n)
		}
	}
}
