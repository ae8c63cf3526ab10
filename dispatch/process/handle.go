package process

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/uow"
)

// Handler is a process's reaction to an event of type E.
type Handler[P any, E aggregate.Event] func(ctx context.Context, p *Process[P], e E) error

// Start registers fn to start a process for every event of type E the
// manager's router delivers. id returns the id of the process the event
// belongs to (its correlation id, such as an order id). When no process
// has that id, the delivery creates one, with P's zero value as its
// state, and runs fn; when one is running, fn runs on it as for On, so a
// repeated start event is harmless; when it has ended, the event is
// absorbed.
//
// The handler is registered with dispatch.Handle under the name
// "process:<name>/<event name>", which keys its inbox rows. Like
// dispatch.Handle, Start panics on a mistake that can only be a
// programming error: a nil manager or function, or an event type the
// manager already handles.
func Start[P any, E aggregate.Event](m *Manager[P], id func(E) string, fn Handler[P, E]) {
	register(m, "Start", true, id, fn)
}

// On registers fn to advance a process with every event of type E the
// manager's router delivers, timeouts among them (see Process.Schedule).
// id returns the id of the process the event belongs to. fn runs on that
// process while it is running. An event for a process that has ended is
// absorbed, as is a timeout the process cancelled or replaced after it
// fell due. An event for a process that never started fails with
// ErrNotStarted, and is delivered again later.
//
// On registers and panics as Start does.
func On[P any, E aggregate.Event](m *Manager[P], id func(E) string, fn Handler[P, E]) {
	register(m, "On", false, id, fn)
}

func register[P any, E aggregate.Event](m *Manager[P], call string, start bool, id func(E) string, fn Handler[P, E]) {
	if m == nil {
		panic(fmt.Sprintf("keel: process.%s: nil *Manager", call))
	}
	if id == nil || fn == nil {
		panic(fmt.Sprintf("keel: process.%s: process %q: nil id or handler function for %s", call, m.name, reflect.TypeFor[E]()))
	}
	if reflect.TypeFor[E]().Kind() == reflect.Interface {
		panic(fmt.Sprintf("keel: process.%s: process %q takes the interface %s; use a concrete event type", call, m.name, reflect.TypeFor[E]()))
	}
	event := aggregate.NameOf[E]()
	if event == "" {
		panic(fmt.Sprintf("keel: process.%s: process %q takes %s, whose EventName is empty", call, m.name, reflect.TypeFor[E]()))
	}
	m.claim(call, event)
	dispatch.Handle(m.router, m.typ+"/"+event, func(ctx context.Context, tx *uow.Tx, e E) error {
		return m.deliver(ctx, tx, start, event, id(e), func(p *Process[P]) error { return fn(ctx, p, e) })
	})
}

// deliver runs one event's handler on the process called id inside the
// delivery's unit of work, and saves the process with what it sent. The
// save's version check serialises deliveries to one process: the loser
// conflicts, and the unit of work runs it again on the winner's state.
func (m *Manager[P]) deliver(ctx context.Context, tx *uow.Tx, start bool, event, id string, run func(p *Process[P]) error) error {
	if id == "" {
		return fmt.Errorf("keel: process %s: event %s carries no process id (its id function returned \"\") (%w)", m.typ, event, outbox.ErrPermanent)
	}
	in, err := m.repo.Get(ctx, tx, id)
	switch {
	case errors.Is(err, repository.ErrNotFound) && start:
		in = &instance[P]{Status: Running, StartedAt: m.st.Now().UTC()}
		in.Init(m.typ, id)
	case errors.Is(err, repository.ErrNotFound):
		return fmt.Errorf("%w: %s %s has no state for %s; it arrived before the event that starts the process, or the process never started", ErrNotStarted, m.typ, dialect.Quote(id), event)
	case err != nil:
		return err
	}
	msg, _ := dispatch.MessageFrom(ctx)
	if in.Status != Running {
		m.log.DebugContext(ctx, "keel: process already ended; event absorbed", "process", m.typ, "id", id, "status", in.Status, "event", event, "message_id", msg.ID)
		return nil
	}
	if name, ok := msg.Headers[HeaderTimer]; ok && msg.AggregateType == m.typ {
		i := in.timer(name)
		if i < 0 || in.Timers[i].MessageID != msg.ID {
			m.log.DebugContext(ctx, "keel: process timeout was cancelled or replaced; absorbed", "process", m.typ, "id", id, "timer", name, "message_id", msg.ID)
			return nil
		}
		in.Timers = append(in.Timers[:i:i], in.Timers[i+1:]...)
	}
	p := &Process[P]{State: &in.State, in: in, typ: m.typ, now: m.st.Now()}
	if err := run(p); err != nil {
		return err
	}
	if p.err != nil {
		return p.err
	}
	for _, mid := range p.cancels {
		// A timer that already fell due is in the outbox; it is absorbed
		// when it arrives, since the process no longer lists it.
		if err := m.ob.CancelTx(ctx, tx, mid); err != nil && !errors.Is(err, outbox.ErrNotScheduled) {
			return fmt.Errorf("keel: process %s %s: cancel timer: %w", m.typ, dialect.Quote(id), err)
		}
	}
	tx.Enqueue(p.msgs...)
	return m.repo.Save(ctx, tx, in)
}
