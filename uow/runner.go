package uow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
)

// Runner runs units of work against one database. Create it once with New
// and share it; it is safe for concurrent use once its handlers and hooks
// are registered.
type Runner struct {
	st       *store.Store
	db       *sql.DB
	d        dialect.Dialect
	cfg      Config
	retries  backoff.Policy
	hot      hotSet
	tel      *telemetry.Telemetry
	ob       *outbox.Outbox
	handlers map[string][]handler
	hooks    []func(ctx context.Context, msgs []outbox.Message)

	idemTable  string
	idemInsert string
	idemSelect string
	idemResult string
	idemPrune  string
}

// New returns a Runner over st's database. It checks cfg but does not touch
// the database; missing tables are reported, wrapping
// store.ErrNotMigrated, by the first unit that needs them.
func New(st *store.Store, cfg Config) (*Runner, error) {
	if st == nil {
		return nil, dialect.Invalid("uow.New: nil *store.Store; pass the store from store.Open")
	}
	cfg.setDefaults(st.Logger())
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ob, err := outbox.New(st)
	if err != nil {
		return nil, err
	}
	d := st.Dialect()
	q := dialect.Render(d, d.SQL(), st.TablePrefix())
	idem := st.Table("idempotency")
	return &Runner{
		st:         st,
		db:         st.DB(),
		d:          d,
		cfg:        cfg,
		retries:    backoff.Policy{Base: cfg.MinBackoff, Max: cfg.MaxBackoff, Jitter: backoff.Full},
		hot:        hotSet{window: cfg.HotWindow},
		tel:        telemetry.For(st.Options().TracerProvider, st.Options().MeterProvider),
		ob:         ob,
		handlers:   map[string][]handler{},
		idemTable:  idem,
		idemInsert: d.Rebind(d.InsertIfAbsent(idem, []string{"key", "created_at"}, []string{"key"})),
		idemSelect: q.IdemSelect,
		idemResult: q.IdemResult,
		idemPrune:  q.IdemPrune,
	}, nil
}

// Outbox returns the outbox the Runner writes to.
func (r *Runner) Outbox() *outbox.Outbox { return r.ob }

// Store returns the store the Runner was created with.
func (r *Runner) Store() *store.Store { return r.st }

// Logger returns the Runner's logger, from Config.Logger or the store.
func (r *Runner) Logger() *slog.Logger { return r.cfg.Logger }

// AfterCommit registers a hook called after every unit that committed,
// with the messages it wrote to the outbox (possibly none). Hooks run on
// the committing goroutine, so keep them short. Relays of the Runner's
// store need no hook: a unit that wrote messages wakes them itself. Register
// hooks before the Runner is used.
func (r *Runner) AfterCommit(hook func(ctx context.Context, msgs []outbox.Message)) {
	r.hooks = append(r.hooks, hook)
}

// Do runs fn as one unit of work: in a single transaction it runs fn, passes
// recorded events to in-transaction handlers, writes every pending event of
// the aggregates saved through tx as outbox rows, and commits. After the
// commit it marks those events committed and runs the AfterCommit hooks.
//
// If fn, a handler or the commit fails with a version conflict
// (repository.ErrConflict) or a transient database error, the transaction is
// rolled back and fn runs again, up to MaxAttempts times with jittered
// exponential backoff. Under the default Contention policy, the retries
// read the aggregate that conflicted with a row lock, so they do not lose
// to another writer again. fn must therefore load what it changes through
// tx each time it runs, and have no effects outside the transaction.
//
// Any other error rolls the unit back and is returned, wrapped. A panic in
// fn rolls back and is re-raised. Cancelling ctx rolls back the unit and
// stops the retries.
func (r *Runner) Do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return r.traced(ctx, spanDo, false, func(ctx context.Context) error {
		return r.retryLocking(ctx, func(conflicted []aggregateKey) error { return r.once(ctx, "", conflicted, fn) })
	})
}

// DoIdempotent is Do for a command that clients may send more than once (a
// retry after a timeout, say). key identifies the command; it is recorded in
// the same transaction as the command's effects. If the key was already
// recorded, fn does not run and DoIdempotent returns a *DuplicateError
// (matching ErrDuplicate) carrying what the first run stored with
// Tx.SetResult. Concurrent calls with one key apply it once: the second
// waits for the first to commit or roll back.
func (r *Runner) DoIdempotent(ctx context.Context, key string, fn func(ctx context.Context, tx *Tx) error) error {
	if key == "" {
		return dialect.Invalid("DoIdempotent: empty idempotency key; pass a client-chosen command id")
	}
	if err := dialect.CheckText("DoIdempotent: the idempotency key", key, dialect.MaxIDBytes); err != nil {
		return dialect.Invalid("%v", err)
	}
	return r.traced(ctx, spanDo, true, func(ctx context.Context) error {
		return r.retryLocking(ctx, func(conflicted []aggregateKey) error { return r.once(ctx, key, conflicted, fn) })
	})
}

// Join runs fn as a unit of work inside tx, a transaction the caller began
// and will commit or roll back itself: keel neither commits nor rolls it
// back. When fn returns nil, Join runs the in-transaction handlers and
// writes the outbox rows into tx, then marks the events committed. Join does
// not retry (the caller owns the transaction) and does not run AfterCommit
// hooks (it cannot see the commit); on PostgreSQL the relays are still woken
// by the notification sent at commit, elsewhere by polling, and a caller
// can wake this process's relays with Store.Notify once it has committed.
func (r *Runner) Join(ctx context.Context, tx Conn, fn func(ctx context.Context, tx *Tx) error) error {
	if tx == nil {
		return dialect.Invalid("uow.Join: nil transaction; pass the *sql.Tx or *sqlx.Tx to write into")
	}
	return r.traced(ctx, spanJoin, false, func(ctx context.Context) error {
		t := &Tx{conn: tx, r: r}
		if err := fn(ctx, t); err != nil {
			r.conflicted(err)
			return err
		}
		if err := r.flush(ctx, t); err != nil {
			r.conflicted(err)
			return err
		}
		for _, tr := range t.tracked {
			aggstate.MarkCommitted(tr.a)
		}
		return nil
	})
}

// retry runs run until it succeeds, fails for good or runs out of
// attempts. Under Adaptive, aggregates that conflict become hot.
func (r *Runner) retry(ctx context.Context, run func() error) error {
	return r.retryLocking(ctx, func([]aggregateKey) error { return run() })
}

// retryLocking is retry that also passes each attempt the aggregates that
// lost a version conflict in the attempts before, for its Tx to lock.
func (r *Runner) retryLocking(ctx context.Context, run func(conflicted []aggregateKey) error) error {
	var conflicted []aggregateKey
	for attempt := 1; ; attempt++ {
		err := run(conflicted)
		if err == nil {
			return nil
		}
		if !r.retryable(err) {
			r.noteFailure(ctx, attempt, err, false)
			return err
		}
		if k, ok := r.conflicted(err); ok {
			conflicted = addKey(conflicted, k)
		}
		if attempt >= r.cfg.MaxAttempts {
			r.noteFailure(ctx, attempt, err, false)
			r.tel.UnitsGaveUp.Add(ctx, 1)
			return fmt.Errorf("keel: unit of work gave up after %d attempts: %w", attempt, err)
		}
		r.noteFailure(ctx, attempt, err, true)
		r.cfg.Logger.DebugContext(ctx, "keel: retrying unit of work", "attempt", attempt, "locked", len(conflicted), "err", err)
		if err := backoff.Sleep(ctx, r.retries.Delay(attempt)); err != nil {
			return fmt.Errorf("keel: unit of work cancelled while retrying: %w", errors.Join(err, context.Cause(ctx)))
		}
	}
}

// conflicted returns the aggregate of a version conflict that err carries,
// when the Contention policy locks such aggregates, and under Adaptive
// marks it hot.
func (r *Runner) conflicted(err error) (aggregateKey, bool) {
	var ce *repository.ConflictError
	if r.cfg.Contention != Adaptive && r.cfg.Contention != LockOnRetry || !errors.As(err, &ce) {
		return aggregateKey{}, false
	}
	k := aggregateKey{ce.Type, ce.ID}
	if r.cfg.Contention == Adaptive {
		r.hot.mark(k)
	}
	return k, true
}

// addKey adds k to keys unless it is there already.
func addKey(keys []aggregateKey, k aggregateKey) []aggregateKey {
	for _, have := range keys {
		if have == k {
			return keys
		}
	}
	return append(keys, k)
}

// retryable reports whether a unit that failed with err may succeed if run
// again: a version conflict, or a transient database error.
func (r *Runner) retryable(err error) bool {
	return errors.Is(err, repository.ErrConflict) || r.d.Classify(err) == dialect.Transient
}

func (r *Runner) once(ctx context.Context, key string, conflicted []aggregateKey, fn func(ctx context.Context, tx *Tx) error) error {
	var t *Tx
	err := r.inTx(ctx, "unit of work", func(sqlTx *sql.Tx) error {
		t = &Tx{conn: sqlTx, r: r, conflicted: conflicted}
		if key != "" {
			if err := r.claimKey(ctx, t, key); err != nil {
				return err
			}
		}
		if err := fn(ctx, t); err != nil {
			return err
		}
		if err := r.flush(ctx, t); err != nil {
			return err
		}
		if key != "" && t.result != nil {
			if _, err := sqlTx.ExecContext(ctx, r.idemResult, t.result, key); err != nil {
				return fmt.Errorf("keel: store idempotent result: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.tel.UnitsCommitted.Add(ctx, 1)
	r.committed(ctx, t.tracked, t.written)
	return nil
}

// inTx begins a transaction, runs body in it and commits it. It rolls back
// when body fails, when ctx ends before the commit, and when body panics,
// letting the panic go on. what names the transaction in errors.
func (r *Runner) inTx(ctx context.Context, what string, body func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sqlTx, err := r.db.BeginTx(ctx, r.cfg.TxOptions)
	if err != nil {
		return fmt.Errorf("keel: begin %s: %w", what, err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		_ = sqlTx.Rollback() // already closed after a cancelled ctx; nothing to report
		if p := recover(); p != nil {
			panic(p)
		}
	}()
	if err := body(sqlTx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("keel: commit %s: %w", what, err)
	}
	committed = true
	return nil
}

func (r *Runner) claimKey(ctx context.Context, t *Tx, key string) error {
	res, err := t.conn.ExecContext(ctx, r.idemInsert, key, r.d.Time(time.Now()))
	switch {
	case err != nil && r.d.Classify(err) != dialect.KeyConflict:
		return fmt.Errorf("keel: record idempotency key: %w", dialect.WrapMissing(r.d, err, r.idemTable))
	case err == nil:
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
	}
	var result []byte
	if err := t.conn.QueryRowContext(ctx, r.idemSelect, key).Scan(&result); err != nil {
		return fmt.Errorf("keel: read idempotent result: %w", err)
	}
	return &DuplicateError{Key: key, Result: result}
}

// flush runs handlers, applies the multi-aggregate policy and writes the
// outbox rows, in that order.
func (r *Runner) flush(ctx context.Context, t *Tx) error {
	md, hasMD := aggregate.MetadataFrom(ctx)
	if err := t.runHandlers(ctx, md, hasMD); err != nil {
		return err
	}
	if len(t.tracked) > 1 && r.cfg.MultiAggregate != AllowMultiple {
		ids := make([]string, len(t.tracked))
		for i, tr := range t.tracked {
			ids[i] = tr.a.Type() + "/" + tr.a.ID()
		}
		if r.cfg.MultiAggregate == RefuseMultiple {
			return fmt.Errorf("%w: %v; split the work into units that each change one aggregate, or set Config.MultiAggregate", ErrMultipleAggregates, ids)
		}
		r.cfg.Logger.WarnContext(ctx, "keel: unit of work changed more than one aggregate", "aggregates", ids)
	}
	n := len(t.extra)
	for _, tr := range t.tracked {
		n += len(pending(tr.a))
	}
	if n == 0 {
		return nil
	}
	msgs := make([]outbox.Message, 0, n)
	for _, tr := range t.tracked {
		for _, env := range pending(tr.a) {
			m, err := outbox.FromEnvelope(env)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	for _, m := range t.extra {
		if hasMD && m.CorrelationID == "" {
			m.CorrelationID = md.CorrelationID
		}
		if hasMD && m.CausationID == "" {
			m.CausationID = md.CausationID
		}
		msgs = append(msgs, m)
	}
	if err := r.ob.EnqueueTx(ctx, t.conn, msgs...); err != nil {
		return err
	}
	t.written = msgs
	return nil
}

// pending returns a tracked aggregate's pending events, not copied.
func pending(a aggregate.Aggregate) []aggregate.Envelope {
	return aggstate.Pending(a).([]aggregate.Envelope)
}
