package process

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
)

// HeaderTimer is the header that marks a process's timeout message; its
// value is the timer's name. A handler registered with On recognises a
// timeout of its own process by it, and absorbs one that was cancelled or
// replaced after it fell due.
const HeaderTimer = "keel-process-timer"

// timerSpace is the UUID namespace of timer message ids.
var timerSpace = uuid.MustParse("6f1c2a9e-3b0d-4c55-9a57-0e1f4b7c8d21")

// Process is one running instance of a process, handed to a handler for
// the duration of one delivery. The handler reads and changes State, and
// asks for effects: Send messages, Schedule and Cancel timeouts, record a
// Step with its compensation, and end the process with Complete or
// Compensate. Nothing happens until the handler returns nil: then the
// effects and the new state commit together, with the delivery's inbox
// row, or not at all.
//
// A Process is valid only inside its handler, and is not safe for
// concurrent use.
type Process[P any] struct {
	// State is the process's own state, loaded before the handler runs
	// and saved after it returns nil. For the event that starts a process
	// it is P's zero value.
	State *P

	in      *instance[P]
	typ     string
	now     time.Time
	msgs    []outbox.Message
	cancels []string // message ids of timers to cancel
	err     error
}

// ID returns the process's id: the correlation id its events carry, such
// as an order id.
func (p *Process[P]) ID() string { return p.in.ID() }

// Status returns the process's status: Running until the handler calls
// Complete or Compensate.
func (p *Process[P]) Status() Status { return p.in.Status }

// IsNew reports whether this delivery starts the process.
func (p *Process[P]) IsNew() bool { return p.in.IsNew() }

// Now returns the time of this delivery by the store's clock
// (store.Options.Now), to schedule timeouts from.
func (p *Process[P]) Now() time.Time { return p.now }

// Send sends events as outbox messages, in order, when the delivery
// commits. Each is keyed by the process id, so the messages of one
// process reach their handlers in the order sent; they carry the
// delivered event's correlation id, and its id as their causation id.
func (p *Process[P]) Send(events ...aggregate.Event) {
	for _, e := range events {
		m, err := p.message(e)
		if err != nil {
			p.fail(fmt.Errorf("keel: process %s %s: send: %w", p.typ, dialect.Quote(p.ID()), err))
			return
		}
		p.msgs = append(p.msgs, m)
	}
}

// Schedule sends e at a later time: the timeout called name. The
// process's handler for e's type receives it at that time, as an event
// like any other, unless the process cancels the timer, schedules
// another of the same name (which replaces it), or ends first. A
// timeout that falls due in the same instant as the event that cancels
// it loses cleanly: whichever commits first wins, and the other is
// absorbed. A time already past sends e at once.
func (p *Process[P]) Schedule(name string, at time.Time, e aggregate.Event) {
	if !p.usable("schedule") {
		return
	}
	if err := dialect.CheckText("timer name", name, dialect.MaxIDBytes); err != nil || name == "" {
		p.fail(dialect.Invalid("process %s: Schedule: timer name %s is not valid (%v); use a short non-empty name such as \"payment\"", p.typ, dialect.Quote(name), err))
		return
	}
	p.Cancel(name)
	m, err := p.message(e)
	if err != nil {
		p.fail(fmt.Errorf("keel: process %s %s: schedule %s: %w", p.typ, dialect.Quote(p.ID()), dialect.Quote(name), err))
		return
	}
	p.in.Scheduled++
	m.ID = uuid.NewSHA1(timerSpace, []byte(p.typ+"\x00"+p.ID()+"\x00"+name+"\x00"+strconv.FormatInt(p.in.Scheduled, 10))).String()
	m.NotBefore = at
	m.Headers[HeaderTimer] = name
	p.msgs = append(p.msgs, m)
	p.in.Timers = append(p.in.Timers, Timer{Name: name, MessageID: m.ID, Due: at.UTC()})
}

// Cancel cancels the timeout called name, if one is pending: it never
// reaches the process. Cancelling a timer that is not pending does
// nothing.
func (p *Process[P]) Cancel(name string) {
	i := p.in.timer(name)
	if i < 0 {
		return
	}
	id := p.in.Timers[i].MessageID
	p.in.Timers = append(p.in.Timers[:i:i], p.in.Timers[i+1:]...)
	for j := range p.msgs {
		if p.msgs[j].ID == id {
			// Scheduled by this delivery: never written.
			p.msgs = append(p.msgs[:j:j], p.msgs[j+1:]...)
			return
		}
	}
	p.cancels = append(p.cancels, id)
}

// Timer returns when the timeout called name falls due, and false when
// none is pending.
func (p *Process[P]) Timer(name string) (time.Time, bool) {
	if i := p.in.timer(name); i >= 0 {
		return p.in.Timers[i].Due, true
	}
	return time.Time{}, false
}

// Step records that the process did something that undo undoes: if the
// process later compensates, undo is sent, after the undo events of the
// steps recorded after this one. Record a step once its effect is known to
// have happened (on the event that confirms it), so that compensation
// undoes only what was done.
func (p *Process[P]) Step(name string, undo aggregate.Event) {
	if !p.usable("record a step") {
		return
	}
	m, err := p.message(undo)
	if err != nil {
		p.fail(fmt.Errorf("keel: process %s %s: step %s: %w", p.typ, dialect.Quote(p.ID()), dialect.Quote(name), err))
		return
	}
	p.in.Steps = append(p.in.Steps, Step{Name: name, Undo: m.Name, Payload: m.Payload, Headers: m.Headers})
}

// Steps returns the steps recorded so far, in the order done.
func (p *Process[P]) Steps() []Step { return append([]Step(nil), p.in.Steps...) }

// Complete ends the process successfully: its pending timers are
// cancelled, and every event that arrives for it later is absorbed.
func (p *Process[P]) Complete() {
	if p.usable("complete") {
		p.end(Completed, "")
	}
}

// Compensate ends the process by undoing what it did: the undo events of
// its steps are sent in reverse order, its pending timers are cancelled,
// and every event that arrives for it later is absorbed. reason says why,
// for the process's record (see List).
func (p *Process[P]) Compensate(reason string) {
	if !p.usable("compensate") {
		return
	}
	for i := len(p.in.Steps) - 1; i >= 0; i-- {
		s := p.in.Steps[i]
		m := p.base()
		m.Name, m.Payload = s.Undo, append([]byte(nil), s.Payload...)
		for k, v := range s.Headers {
			m.Headers[k] = v
		}
		p.msgs = append(p.msgs, m)
	}
	p.end(Compensated, reason)
}

// end cancels the pending timers and records the final status.
func (p *Process[P]) end(s Status, reason string) {
	for len(p.in.Timers) > 0 {
		p.Cancel(p.in.Timers[0].Name)
	}
	p.in.Status, p.in.Reason, p.in.EndedAt = s, reason, p.now.UTC()
}

// usable reports whether the process still runs, recording the misuse as
// the handler's error when it does not.
func (p *Process[P]) usable(what string) bool {
	if p.in.Status == Running {
		return true
	}
	p.fail(fmt.Errorf("keel: process %s %s: cannot %s: the process already ended (%s) in this handler", p.typ, dialect.Quote(p.ID()), what, p.in.Status))
	return false
}

// fail records the handler's first misuse, returned when it returns.
func (p *Process[P]) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// base returns a message of this process with fresh headers.
func (p *Process[P]) base() outbox.Message {
	return outbox.Message{
		ID:               aggregate.NewMessageID(),
		Key:              p.ID(),
		AggregateType:    p.typ,
		AggregateID:      p.ID(),
		AggregateVersion: p.in.Version() + 1,
		OccurredAt:       p.now.UTC(),
		Headers:          map[string]string{},
	}
}

// message encodes e as a message of this process.
func (p *Process[P]) message(e aggregate.Event) (outbox.Message, error) {
	if e == nil {
		return outbox.Message{}, errors.New("nil event")
	}
	m, err := outbox.FromEnvelope(aggregate.Envelope{
		ID:               aggregate.NewMessageID(),
		Name:             e.EventName(),
		SchemaVersion:    aggregate.VersionOf(e),
		AggregateType:    p.typ,
		AggregateID:      p.ID(),
		AggregateVersion: p.in.Version() + 1,
		OccurredAt:       p.now.UTC(),
		Event:            e,
	})
	if err != nil {
		return outbox.Message{}, err
	}
	return m, nil
}
