package dispatch

import (
	"context"
	"fmt"
	"runtime/debug"
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
// registration order, each in a unit of work of its own that first records
// (handler, m.ID) in the inbox. A handler whose inbox row is already there
// took effect on an earlier delivery and is skipped, so redelivering a
// message never repeats an effect.
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
func (r *Router) Deliver(ctx context.Context, m outbox.Message) error {
	hs := r.subscribers(r.reg.Resolve(m.Name))
	if len(hs) == 0 {
		return nil
	}
	if m.ID == "" {
		return fmt.Errorf("keel: dispatch %s: %w: the message has no id to deduplicate on (%w)", m.Name, outbox.ErrInvalidMessage, outbox.ErrPermanent)
	}
	if err := dialect.CheckText("message id", m.ID, dialect.MaxIDBytes); err != nil {
		return fmt.Errorf("keel: dispatch %s: %w: %v; the inbox cannot record it (%w)", m.Name, outbox.ErrInvalidMessage, err, outbox.ErrPermanent)
	}
	// Decode once up front so that a bad message fails before any handler
	// runs; each handler then gets a fresh copy (see decode).
	first, err := r.decode(&m)
	if err != nil {
		return err
	}

	corr := m.CorrelationID
	if corr == "" {
		corr = m.ID
	}
	ctx = aggregate.WithMetadata(ctx, aggregate.Metadata{CorrelationID: corr, CausationID: m.ID, Headers: m.Headers})
	ctx = context.WithValue(ctx, messageKey{}, &m)

	var failed []*uow.HandlerError
	for i, h := range hs {
		ev := first
		if i > 0 {
			if ev, err = r.decode(&m); err != nil {
				return err // cannot happen: the same payload decoded a moment ago
			}
		}
		if err := r.run(ctx, h, &m, ev); err != nil {
			failed = append(failed, &uow.HandlerError{Handler: h.name, Event: m.Name, MessageID: m.ID, Err: err})
		}
	}
	if failed != nil {
		return &DeliveryError{MessageID: m.ID, Event: m.Name, Failed: failed}
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

// run runs one handler on one message in a unit of work with its inbox row.
func (r *Router) run(ctx context.Context, h *handler, m *outbox.Message, ev aggregate.Event) (err error) {
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
	var duplicate bool
	err = r.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
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
	if err != nil && ctx.Err() != nil && parent.Err() == nil {
		err = fmt.Errorf("keel: handler ran over RouterConfig.HandlerTimeout (%v): %w", r.cfg.HandlerTimeout, err)
	}
	return err
}
