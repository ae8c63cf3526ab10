package aggregatetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/aggstate"
)

// Fixture is an aggregate in a given state, waiting for the behaviour under
// test. Build it with Given.
type Fixture[T aggregate.Aggregate] struct {
	t   testing.TB
	agg T
	ran bool
}

// Given returns a fixture holding agg after the behaviour history, run in
// order. Each step must succeed: a failing step fails the test, since the
// state it was to build does not exist. The events the steps record are
// taken as saved, so agg enters When at its next version (1 for a new
// aggregate) with nothing pending. agg must have a type and id (see
// aggregate.Root.Init).
func Given[T aggregate.Aggregate](t testing.TB, agg T, history ...func(T) error) *Fixture[T] {
	t.Helper()
	if err := aggregate.Validate(agg); err != nil {
		t.Fatalf("aggregatetest.Given: %v", err)
	}
	for i, step := range history {
		if err := step(agg); err != nil {
			t.Fatalf("aggregatetest: step %d of the history failed, so the given state does not exist: %v", i+1, err)
		}
	}
	v := agg.Version()
	if v == 0 || agg.HasChanges() {
		v++
	}
	aggstate.Restore(agg, agg.Type(), agg.ID(), v)
	return &Fixture[T]{t: t, agg: agg}
}

// Applier is an aggregate that can apply a past event to its state without
// recording it: the style in which behaviour methods check a rule, then
// record an event and apply it. GivenEvents builds such an aggregate's state
// from its history of events.
type Applier interface {
	aggregate.Aggregate
	Apply(e aggregate.Event) error
}

// GivenEvents returns a fixture holding agg after applying the prior events
// in order, for aggregates that implement Applier. An event that does not
// apply fails the test. As with Given, the history counts as saved.
func GivenEvents[T Applier](t testing.TB, agg T, prior ...aggregate.Event) *Fixture[T] {
	t.Helper()
	steps := make([]func(T) error, len(prior))
	for i, e := range prior {
		steps[i] = func(a T) error {
			if err := a.Apply(e); err != nil {
				return fmt.Errorf("apply %s: %w", e.EventName(), err)
			}
			return nil
		}
	}
	return Given(t, agg, steps...)
}

// Aggregate returns the fixture's aggregate, for checks of its own.
func (f *Fixture[T]) Aggregate() T { return f.agg }

// When runs the behaviour under test on the given aggregate and returns
// what it did, for the Then assertions. A fixture runs one behaviour: build
// a new one with Given for the next.
func (f *Fixture[T]) When(behaviour func(T) error) *Result[T] {
	f.t.Helper()
	if f.ran {
		f.t.Fatalf("aggregatetest: When was already called on this fixture; start each scenario with its own Given")
	}
	f.ran = true
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				f.t.Fatalf("aggregatetest: the behaviour under test panicked: %v", p)
			}
		}()
		err = behaviour(f.agg)
	}()
	return &Result[T]{t: f.t, agg: f.agg, envs: slices.Clone(aggstate.Pending(f.agg).([]aggregate.Envelope)), err: err}
}

// Result is what the behaviour under test did: the events it recorded and
// the error it returned.
type Result[T aggregate.Aggregate] struct {
	t    testing.TB
	agg  T
	envs []aggregate.Envelope
	err  error
}

// Err returns the behaviour's error.
func (r *Result[T]) Err() error { return r.err }

// Envelopes returns the events the behaviour recorded, with their metadata.
func (r *Result[T]) Envelopes() []aggregate.Envelope { return r.envs }

// Events returns the events the behaviour recorded.
func (r *Result[T]) Events() []aggregate.Event {
	evs := make([]aggregate.Event, len(r.envs))
	for i, env := range r.envs {
		evs[i] = env.Event
	}
	return evs
}

// Aggregate returns the aggregate after the behaviour.
func (r *Result[T]) Aggregate() T { return r.agg }

// Then asserts that the behaviour succeeded and recorded exactly want, in
// order. Events compare by value (a pointer event by what it points to).
func (r *Result[T]) Then(want ...aggregate.Event) *Result[T] {
	r.t.Helper()
	if r.err != nil {
		r.t.Errorf("expected the events %s, but the behaviour failed: %v", names(want), r.err)
		return r
	}
	got := r.Events()
	if diff := cmp.Diff(want, got, exportAll, cmpopts.EquateEmpty()); diff != "" {
		if names(want) == names(got) {
			r.t.Errorf("the behaviour recorded the events %s as expected, but their contents differ (-want +got):\n%s", names(got), diff)
		} else {
			r.t.Errorf("expected the events %s, but %s were recorded (-want +got):\n%s", names(want), names(got), diff)
		}
	}
	return r
}

// ThenNothing asserts that the behaviour succeeded and recorded no event.
func (r *Result[T]) ThenNothing() *Result[T] {
	r.t.Helper()
	return r.Then()
}

// ThenError asserts that the behaviour failed with an error matching
// target (errors.Is) and recorded no event: a behaviour method that
// refuses must leave the aggregate as it was, and a unit of work would
// discard such events anyway.
func (r *Result[T]) ThenError(target error) *Result[T] {
	r.t.Helper()
	switch {
	case r.err == nil:
		r.t.Errorf("expected the error %q, but the behaviour succeeded and recorded %s", target, names(r.Events()))
	case !errors.Is(r.err, target):
		r.t.Errorf("expected an error matching %q, but the behaviour failed with another (-want +got):\n%s", target,
			cmp.Diff(target.Error(), r.err.Error()))
	case len(r.envs) > 0:
		r.t.Errorf("the behaviour failed with %q as expected, but it also recorded %s; a refusing behaviour should record nothing", r.err, names(r.Events()))
	}
	return r
}

// ThenErrorContains asserts that the behaviour failed with an error whose
// text contains substr, for errors that have no sentinel to match.
func (r *Result[T]) ThenErrorContains(substr string) *Result[T] {
	r.t.Helper()
	switch {
	case r.err == nil:
		r.t.Errorf("expected an error containing %q, but the behaviour succeeded and recorded %s", substr, names(r.Events()))
	case !strings.Contains(r.err.Error(), substr):
		r.t.Errorf("expected an error containing %q, but it failed with %q", substr, r.err)
	}
	return r
}

// ThenState asserts that the aggregate's state after the behaviour equals
// want's. The embedded aggregate.Root (id, version, pending events) is not
// compared; every other field is, exported or not.
func (r *Result[T]) ThenState(want T) *Result[T] {
	r.t.Helper()
	if diff := cmp.Diff(want, r.agg, cmpopts.IgnoreTypes(aggregate.Root{}), exportAll); diff != "" {
		r.t.Errorf("the aggregate's state is not the one expected (-want +got):\n%s", diff)
	}
	return r
}

// exportAll lets cmp compare unexported fields too: events and aggregates
// are plain values, and an unexported field is part of what they are.
var exportAll = cmp.Exporter(func(reflect.Type) bool { return true })

// names lists events by name, as a sentence fragment.
func names(evs []aggregate.Event) string {
	if len(evs) == 0 {
		return "none"
	}
	s := make([]string, len(evs))
	for i, e := range evs {
		if e == nil {
			s[i] = "<nil>"
			continue
		}
		s[i] = e.EventName()
	}
	return "[" + strings.Join(s, ", ") + "]"
}
