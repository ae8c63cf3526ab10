package dispatch

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

type messageKey struct{}

// MessageFrom returns the message an asynchronous handler is handling, for
// its id, headers, partition key and delivery attempt.
func MessageFrom(ctx context.Context) (outbox.Message, bool) {
	m, ok := ctx.Value(messageKey{}).(*outbox.Message)
	if !ok {
		return outbox.Message{}, false
	}
	return *m, true
}

// Deliver runs every handler registered for m.Name, one after another in
// registration order, each as a unit of work that first records (handler,
// m.ID) in the inbox. A handler whose inbox row is already there took
// effect on an earlier delivery and is skipped, so redelivering a message
// never repeats an effect. The handlers' units share one transaction, each
// in a savepoint of its own.
//
// Handlers succeed or fail independently: one that returns nil commits its
// effects with its inbox row whatever the others do, and one that fails
// leaves neither. Deliver returns nil when every handler has taken effect,
// now or before. Otherwise it returns a *DeliveryError listing the failed
// handlers, which are the only ones a redelivery runs again. A panic in a
// handler is recovered and reported as that handler's error.
//
// A message nothing is subscribed to is a no-op. A message whose name the
// Registry does not know, whose payload does not decode, or which has no id
// fails before any handler runs, with an error wrapping outbox.ErrPermanent
// (and aggregate.ErrUnknownEvent for an unknown name): retrying cannot fix
// it, so a relay parks it at once.
//
// Handlers see m through MessageFrom, and the events they record carry m's
// correlation id (m.ID when m has none) and m.ID as their causation id.
//
// DeliverBatch delivers many messages in one transaction.
func (r *Router) Deliver(ctx context.Context, m outbox.Message) error {
	errs := []error{nil}
	r.deliverGroup(ctx, []outbox.Message{m}, []int{0}, errs)
	return errs[0]
}

// DeliverBatch delivers msgs as Deliver delivers each, in one transaction:
// it records the inbox rows of every handler and message in one statement,
// skipping those already there, and runs each handler on each message in a
// savepoint of its own, in order. A failure rolls back to its savepoint
// only, and the rest commits. Once a message fails, the later messages of
// its partition key are not delivered, so a key's messages take effect in
// order: each of them gets an error wrapping outbox.ErrHeldBack.
//
// DeliverBatch returns nil when every message was delivered, and otherwise
// an *outbox.BatchError with one entry per message: nil for a delivered one,
// Deliver's error for one that failed, an error wrapping outbox.ErrHeldBack
// for one held back, and one wrapping outbox.ErrNotAttempted for one not
// started, or rolled back with the batch, before ctx was done.
//
// Should the batch's transaction fail as a whole (a connection lost, a
// commit refused after its retries), DeliverBatch delivers the messages
// again one by one, each handler in a transaction of its own, so that a
// message that breaks a transaction fails alone.
func (r *Router) DeliverBatch(ctx context.Context, msgs []outbox.Message) error {
	errs := make([]error, len(msgs))
	idx := make([]int, len(msgs))
	for i := range idx {
		idx[i] = i
	}
	r.deliverGroup(ctx, msgs, idx, errs)
	for _, err := range errs {
		if err != nil {
			return &outbox.BatchError{Errs: errs}
		}
	}
	return nil
}

// delivery is one message of a group, checked and decoded.
type delivery struct {
	i     int // index in the batch
	m     *outbox.Message
	hs    []*handler
	pairs []int // index of each handler's inbox row in the group's claim
	ctx   context.Context
	err   error           // why the message cannot be delivered at all
	first aggregate.Event // the payload decoded once, for the first handler of the first run
}

// inboxPair is one (handler, message) row of a group's inbox claim.
type inboxPair struct {
	handler, id string
	claimed     bool  // this transaction inserted the row
	done        bool  // the handler took effect in this transaction
	err         error // why a batch handler failed on the message
}

// deliverGroup delivers the messages batch[i], i in idx (in batch order),
// in one transaction, writing the outcome of each into errs[i].
func (r *Router) deliverGroup(ctx context.Context, batch []outbox.Message, idx []int, errs []error) {
	ds := make([]delivery, 0, len(idx))
	var pairs []inboxPair
	var invalid outbox.HoldBack
	for _, i := range idx {
		d := delivery{i: i, m: &batch[i]}
		d.hs = r.subscribers(r.reg.Resolve(d.m.Name))
		if len(d.hs) == 0 {
			errs[i] = nil
			continue
		}
		d.first, d.err = r.check(d.m)
		if d.err != nil {
			invalid.Fail(d.m)
		} else if invalid.Check(d.m) == nil {
			// Only messages that may run claim inbox rows.
			for _, h := range d.hs {
				d.pairs = append(d.pairs, len(pairs))
				pairs = append(pairs, inboxPair{handler: h.name, id: d.m.ID})
			}
		}
		d.ctx = messageContext(ctx, d.m)
		ds = append(ds, d)
	}
	if len(pairs) == 0 {
		// No handler can run: every message failed its checks or is held
		// back behind one that did.
		var hold outbox.HoldBack
		for _, d := range ds {
			if errs[d.i] = hold.Check(d.m); errs[d.i] == nil {
				errs[d.i] = d.err
			}
			hold.Fail(d.m)
		}
		return
	}
	// The claims insert their rows in this order (by handler, then by
	// message id), so that transactions claiming overlapping rows lock them
	// in the same order.
	order := make([]int, len(pairs))
	for j := range order {
		order[j] = j
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := strings.Compare(pairs[a].handler, pairs[b].handler); c != 0 {
			return c
		}
		return strings.Compare(pairs[a].id, pairs[b].id)
	})

	runs := 0
	err := r.runner.DoBatch(ctx, func(ctx context.Context, bt *uow.Batch) error {
		runs++
		for _, d := range ds {
			errs[d.i] = nil
		}
		for j := range pairs {
			pairs[j].claimed, pairs[j].done, pairs[j].err = false, false, nil
		}
		if err := r.claim(ctx, bt, pairs, order); err != nil {
			return err
		}
		if err := r.runBatchHandlers(ctx, bt, ds, pairs); err != nil {
			return err
		}
		var hold outbox.HoldBack
		for k := range ds {
			d := &ds[k]
			if err := hold.Check(d.m); err != nil {
				errs[d.i] = err
				continue
			}
			if d.err != nil {
				errs[d.i] = d.err
				hold.Fail(d.m)
				continue
			}
			if err := ctx.Err(); err != nil {
				errs[d.i] = notAttempted(d.m, err)
				hold.Fail(d.m)
				continue
			}
			if err := bt.Err(); err != nil {
				return err
			}
			var failed []*uow.HandlerError
			for j, h := range d.hs {
				p := &pairs[d.pairs[j]]
				if !p.claimed {
					r.cfg.Logger.DebugContext(d.ctx, "keel: handler already took effect; skipped", "handler", h.name, "event", d.m.Name, "message_id", d.m.ID)
					continue
				}
				if h.batch != nil {
					// It ran before the loop, on the whole group.
					if p.err != nil {
						failed = append(failed, &uow.HandlerError{Handler: h.name, Event: d.m.Name, MessageID: d.m.ID, Err: p.err})
					}
					continue
				}
				ev := d.first
				if runs > 1 || j > 0 {
					// Handlers each get their own value, so one that changes
					// a pointer-typed event cannot affect the next.
					var err error
					if ev, err = r.decode(d.m); err != nil {
						return err // cannot happen: the same payload decoded before
					}
				}
				err := r.guard(d.ctx, h, d.m, func(ctx context.Context) error {
					return bt.Do(ctx, func(ctx context.Context, tx *uow.Tx) error { return h.fn(ctx, tx, ev) })
				})
				if err != nil {
					failed = append(failed, &uow.HandlerError{Handler: h.name, Event: d.m.Name, MessageID: d.m.ID, Err: err})
					continue
				}
				p.done = true
			}
			if failed != nil {
				errs[d.i] = &DeliveryError{MessageID: d.m.ID, Event: d.m.Name, Failed: failed}
				hold.Fail(d.m)
			}
		}
		if err := bt.Err(); err != nil {
			return err
		}
		return r.release(ctx, bt, pairs, order)
	})
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		// Messages that took effect were rolled back with the batch through
		// no fault of their own: they keep their attempt.
		var hold outbox.HoldBack
		for _, d := range ds {
			if errs[d.i] == nil {
				if errs[d.i] = hold.Check(d.m); errs[d.i] == nil {
					errs[d.i] = fmt.Errorf("keel: delivery of %s stopped before it took effect: %w", d.m.ID, errors.Join(outbox.ErrNotAttempted, err))
				}
			}
			hold.Fail(d.m)
		}
		return
	}
	r.cfg.Logger.WarnContext(ctx, "keel: batch delivery failed; delivering its messages one by one", "messages", len(ds), "err", err)
	var hold outbox.HoldBack
	for _, d := range ds {
		switch e := hold.Check(d.m); {
		case e != nil:
			errs[d.i] = e
		case ctx.Err() != nil:
			errs[d.i] = notAttempted(d.m, ctx.Err())
		default:
			errs[d.i] = r.deliverAlone(d.ctx, d)
		}
		if errs[d.i] != nil {
			hold.Fail(d.m)
		}
	}
}

// notAttempted is the error of a message not started because ctx is done.
func notAttempted(m *outbox.Message, cause error) error {
	return fmt.Errorf("keel: delivery stopped before %s: %w", m.ID, errors.Join(outbox.ErrNotAttempted, cause))
}

// check returns m's event, or why m cannot be delivered at all.
func (r *Router) check(m *outbox.Message) (aggregate.Event, error) {
	if m.ID == "" {
		return nil, fmt.Errorf("keel: dispatch %s: %w: the message has no id to deduplicate on (%w)", m.Name, outbox.ErrInvalidMessage, outbox.ErrPermanent)
	}
	if err := dialect.CheckText("message id", m.ID, dialect.MaxIDBytes); err != nil {
		return nil, fmt.Errorf("keel: dispatch %s: %w: %v; the inbox cannot record it (%w)", m.Name, outbox.ErrInvalidMessage, err, outbox.ErrPermanent)
	}
	// Decode up front so that a bad message fails before any handler runs.
	return r.decode(m)
}

// messageContext returns ctx carrying m for MessageFrom and the metadata
// that the events handlers record inherit from m.
func messageContext(ctx context.Context, m *outbox.Message) context.Context {
	corr := m.CorrelationID
	if corr == "" {
		corr = m.ID
	}
	ctx = aggregate.WithMetadata(ctx, aggregate.Metadata{CorrelationID: corr, CausationID: m.ID, Headers: m.Headers})
	return context.WithValue(ctx, messageKey{}, m)
}

// claim records the group's inbox rows, one statement per handler, in the
// given order, and marks those this transaction inserted.
func (r *Router) claim(ctx context.Context, bt *uow.Batch, pairs []inboxPair, order []int) error {
	now := time.Now()
	return eachHandler(pairs, order, func(handler string, run []int, ids []string) error {
		claimed, err := dialect.ClaimInbox(ctx, bt.Conn(), r.d, &r.sql, now, handler, ids)
		if err != nil {
			return fmt.Errorf("keel: dispatch: record %d deliveries to %q in the inbox: %w", len(ids), handler, dialect.WrapMissing(r.d, err, r.inbox))
		}
		for k, j := range run {
			pairs[j].claimed = claimed[k]
		}
		return nil
	})
}

// release deletes the inbox rows the group claimed for handlers that did
// not take effect, so that a redelivery runs them.
func (r *Router) release(ctx context.Context, bt *uow.Batch, pairs []inboxPair, order []int) error {
	var undone []int
	for _, j := range order {
		if pairs[j].claimed && !pairs[j].done {
			undone = append(undone, j)
		}
	}
	return eachHandler(pairs, undone, func(handler string, _ []int, ids []string) error {
		if err := dialect.ReleaseInbox(ctx, bt.Conn(), r.d, &r.sql, handler, ids); err != nil {
			return fmt.Errorf("keel: dispatch: forget the inbox rows of %d failed deliveries to %q: %w", len(ids), handler, err)
		}
		return nil
	})
}

// eachHandler calls fn for each run of order (pair indexes sorted by
// handler) that shares a handler, with the run and its message ids.
func eachHandler(pairs []inboxPair, order []int, fn func(handler string, run []int, ids []string) error) error {
	for start := 0; start < len(order); {
		h := pairs[order[start]].handler
		end := start + 1
		for end < len(order) && pairs[order[end]].handler == h {
			end++
		}
		run := order[start:end]
		ids := make([]string, len(run))
		for k, j := range run {
			ids[k] = pairs[j].id
		}
		if err := fn(h, run, ids); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// deliverAlone runs each handler of d on its message in a transaction of
// its own: the isolated path, for messages whose batch failed as a whole.
func (r *Router) deliverAlone(ctx context.Context, d delivery) error {
	if d.err != nil {
		return d.err
	}
	var failed []*uow.HandlerError
	for _, h := range d.hs {
		ev, err := r.decode(d.m)
		if err != nil {
			return err
		}
		if err := r.guard(ctx, h, d.m, func(ctx context.Context) error { return r.runAlone(ctx, h, d.m, ev) }); err != nil {
			failed = append(failed, &uow.HandlerError{Handler: h.name, Event: d.m.Name, MessageID: d.m.ID, Err: err})
		}
	}
	if failed != nil {
		return &DeliveryError{MessageID: d.m.ID, Event: d.m.Name, Failed: failed}
	}
	return nil
}

// decode returns m's event. Handlers each get their own value, so one that
// changes a pointer-typed event cannot affect the next.
func (r *Router) decode(m *outbox.Message) (aggregate.Event, error) {
	ev, err := m.Decode(r.reg)
	if err != nil {
		return nil, fmt.Errorf("keel: dispatch message %s: %w (%w)", m.ID, err, outbox.ErrPermanent)
	}
	return ev, nil
}

// guard runs one handler's unit of work on one message, bounded by the
// router's HandlerTimeout, turning a panic into an error.
func (r *Router) guard(ctx context.Context, h *handler, m *outbox.Message, run func(ctx context.Context) error) (err error) {
	ctx, finish := r.traceHandler(ctx, h, m)
	defer func() { finish(err) }()
	parent := ctx
	if r.cfg.HandlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.HandlerTimeout)
		defer cancel()
	}
	defer func() {
		// The unit of work has rolled back by the time a panic gets here.
		if p := recover(); p != nil {
			r.cfg.Logger.ErrorContext(ctx, "keel: handler panicked", "handler", h.name, "event", m.Name,
				"message_id", m.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("keel: handler panicked: %v", p)
		}
	}()
	err = run(ctx)
	if err != nil && ctx.Err() != nil && parent.Err() == nil {
		err = fmt.Errorf("keel: handler ran over RouterConfig.HandlerTimeout (%v): %w", r.cfg.HandlerTimeout, err)
	}
	return err
}

// runAlone runs one handler on one message in a unit of work of its own
// with its inbox row.
func (r *Router) runAlone(ctx context.Context, h *handler, m *outbox.Message, ev aggregate.Event) error {
	var duplicate bool
	err := r.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		res, err := tx.ExecContext(ctx, r.insertInbox, h.name, m.ID, r.d.Time(time.Now()))
		var n int64
		switch {
		case err != nil && r.d.Classify(err) == dialect.KeyConflict:
		case err != nil:
			return fmt.Errorf("keel: dispatch: record %s in the inbox: %w", m.ID, dialect.WrapMissing(r.d, err, r.inbox))
		default:
			if n, err = res.RowsAffected(); err != nil {
				return fmt.Errorf("keel: dispatch: record %s in the inbox: %w", m.ID, err)
			}
		}
		// Do may run this function more than once; only the last run counts.
		duplicate = n == 0
		if duplicate {
			return nil // committing an empty transaction is as cheap as rolling it back
		}
		return h.fn(ctx, tx, ev)
	})
	if err == nil && duplicate {
		r.cfg.Logger.DebugContext(ctx, "keel: handler already took effect; skipped", "handler", h.name, "event", m.Name, "message_id", m.ID)
	}
	return err
}
