package uow

import (
	"context"
	"fmt"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/aggstate"
)

// HandlerFunc is an in-transaction event handler: it runs inside the unit's
// transaction, before commit, and may load and save aggregates through tx.
// An error rolls back the whole unit.
type HandlerFunc[E aggregate.Event] func(ctx context.Context, tx *Tx, e E) error

type handler struct {
	name string
	fn   func(ctx context.Context, tx *Tx, env *aggregate.Envelope) error
}

// Handle registers fn to run, inside the transaction, for every event named
// like E that the unit records. This is the synchronous form: the effect
// commits or rolls back with the change that caused it. Handlers for one
// event run in registration order. Register handlers before the Runner is
// used; Handle is not safe to call concurrently with Do.
func Handle[E aggregate.Event](r *Runner, name string, fn HandlerFunc[E]) {
	event := aggregate.NameOf[E]()
	r.handlers[event] = append(r.handlers[event], handler{
		name: name,
		fn: func(ctx context.Context, tx *Tx, env *aggregate.Envelope) error {
			e, ok := env.Event.(E)
			if !ok {
				var want E
				return fmt.Errorf("keel: handler %q expects %T but event %q is %T", name, want, env.Name, env.Event)
			}
			return fn(ctx, tx, e)
		},
	})
}

type envelopeKey struct{}

// EnvelopeFrom returns the envelope of the event an in-transaction handler
// is handling, for its message id, correlation id and headers.
func EnvelopeFrom(ctx context.Context) (aggregate.Envelope, bool) {
	env, ok := ctx.Value(envelopeKey{}).(*aggregate.Envelope)
	if !ok {
		return aggregate.Envelope{}, false
	}
	return *env, true
}

// runHandlers passes every not yet handled event to its handlers. Events
// recorded by handlers are handled in the next round; more than
// MaxHandlerDepth rounds is an error, since it usually means a cycle.
//
// Every event gets metadata once, when first seen: those recorded by fn
// get the unit's (from ctx), those recorded by a handler get the handled
// event's correlation id (or its id, when it has none) and its id as
// causation.
func (t *Tx) runHandlers(ctx context.Context, md aggregate.Metadata, hasMD bool) error {
	if hasMD {
		t.stamp(md)
	} else {
		t.stamp(aggregate.Metadata{})
	}
	ends := make([]int, 0, len(t.tracked))
	for round := 0; ; round++ {
		ends = ends[:0]
		for _, tr := range t.tracked {
			ends = append(ends, len(pending(tr.a)))
		}
		progressed := false
		for i, end := range ends {
			for t.tracked[i].seen < end {
				env := pending(t.tracked[i].a)[t.tracked[i].seen]
				t.tracked[i].seen++
				progressed = true
				hs := t.r.handlers[env.Name]
				if len(hs) == 0 {
					continue
				}
				if round >= t.r.cfg.MaxHandlerDepth {
					return fmt.Errorf("%w: still handling %s after %d rounds; look for handlers that trigger each other", ErrHandlerDepth, env.Name, round)
				}
				corr := env.CorrelationID
				if corr == "" {
					corr = env.ID
				}
				caused := aggregate.Metadata{CorrelationID: corr, CausationID: env.ID, Headers: env.Headers}
				hctx := context.WithValue(ctx, envelopeKey{}, &env)
				hctx = aggregate.WithMetadata(hctx, caused)
				for _, h := range hs {
					err := h.fn(hctx, t, &env)
					t.stamp(caused)
					if err != nil {
						return &HandlerError{Handler: h.name, Event: env.Name, MessageID: env.ID, Err: err}
					}
				}
			}
		}
		if !progressed {
			return nil
		}
	}
}

// stamp applies md to the events recorded since the last stamp, on every
// tracked aggregate.
func (t *Tx) stamp(md aggregate.Metadata) {
	for i := range t.tracked {
		t.tracked[i].stamped = aggstate.Stamp(t.tracked[i].a, t.tracked[i].stamped, md)
	}
}
