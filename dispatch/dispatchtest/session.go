package dispatchtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// Config configures a Session. The zero value delivers to a Bus over the
// Router, retrying failures at once and parking after ten attempts.
type Config struct {
	// Publisher is where the session's relay delivers: the application's
	// own publisher when it routes some messages elsewhere (a publisher
	// that hands some topics to Kafka and the rest to a Bus, say). If nil,
	// a dispatch.Bus over the Router.
	Publisher outbox.Publisher
	// Relay configures the session's relay. Its defaults are the relay's,
	// except RetryBackoff and MaxRetryBackoff, which default to a
	// millisecond so that retries do not slow the test, and Logger, the
	// store's.
	Relay outbox.RelayConfig
	// Timeout bounds how long one settling may take before the test fails:
	// a handler that never stops failing is parked long before. If zero,
	// 30 seconds.
	Timeout time.Duration
}

// Session runs units of work and delivers what they caused. Build it with
// New. A Session is meant for one test goroutine.
type Session struct {
	t       testing.TB
	runner  *uow.Runner
	router  *dispatch.Router
	relay   *outbox.Relay
	rec     *recorder
	timeout time.Duration
}

// New returns a session running units of work through runner and
// delivering through router (see Config). It fails the test if the relay
// or Bus cannot be built.
func New(t testing.TB, runner *uow.Runner, router *dispatch.Router, cfg Config) *Session {
	t.Helper()
	if runner == nil || router == nil {
		t.Fatalf("dispatchtest.New: pass the application's *uow.Runner and *dispatch.Router")
	}
	pub := cfg.Publisher
	if pub == nil {
		bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
		if err != nil {
			t.Fatalf("dispatchtest.New: %v", err)
		}
		pub = bus
	}
	rc := cfg.Relay
	if rc.RetryBackoff == 0 {
		rc.RetryBackoff = time.Millisecond
	}
	if rc.MaxRetryBackoff == 0 {
		rc.MaxRetryBackoff = max(time.Millisecond, rc.RetryBackoff)
	}
	rec := &recorder{inner: pub}
	relay, err := outbox.NewRelay(runner.Store(), rec, rc)
	if err != nil {
		t.Fatalf("dispatchtest.New: %v", err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Session{t: t, runner: runner, router: router, relay: relay, rec: rec, timeout: timeout}
}

// Relay returns the session's relay, whose Outbox method reaches the
// outbox's administration (Requeue, Stats).
func (s *Session) Relay() *outbox.Relay { return s.relay }

// Do runs each of units as a unit of work of its own, in order, through
// the runner (uow.Runner.Do), then settles once, so that what they caused
// is delivered together. It returns the units' errors (errors.Join of
// them, or the one error unchanged): a command's refusal is part of what a
// test checks. Whatever the units return, what committed is delivered.
func (s *Session) Do(units ...func(ctx context.Context, tx *uow.Tx) error) error {
	s.t.Helper()
	var errs []error
	for _, fn := range units {
		if err := s.runner.Do(s.t.Context(), fn); err != nil {
			errs = append(errs, err)
		}
	}
	s.Settle()
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Settle delivers every pending message, and the messages their handlers
// cause, until none is in flight: each is delivered, or parked, or held
// behind a parked message of its key (which keeps the key's order, as a
// relay does, until the parked one is requeued and Settle runs again). Do calls it;
// call it after committing by other means (a requeue, or units of work run
// without the session).
func (s *Session) Settle() {
	s.t.Helper()
	ctx := s.t.Context()
	deadline := time.Now().Add(s.timeout)
	for {
		n, err := s.relay.Drain(ctx)
		if err != nil {
			s.t.Fatalf("dispatchtest: deliver: %v", err)
		}
		st, err := s.relay.Outbox().Stats(ctx)
		if err != nil {
			s.t.Fatalf("dispatchtest: read the outbox: %v", err)
		}
		if st.Pending == 0 || (n == 0 && st.Retrying == 0) {
			// Pending rows that are neither deliverable nor waiting for a
			// retry are held behind a parked message of their key, as a
			// relay holds them until that message is requeued.
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("dispatchtest: %d messages still pending after %v (%d retrying); the last errors:\n%s",
				st.Pending, s.timeout, st.Retrying, s.lastErrors(5))
		}
		if n == 0 {
			// What is left waits for its retry backoff.
			select {
			case <-ctx.Done():
				s.t.Fatalf("dispatchtest: %v", ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// Published returns the messages delivered so far, in delivery order.
func (s *Session) Published() []outbox.Message { return s.rec.delivered() }

// Errors returns the failed deliveries so far, in order: one per failed
// attempt. Messages held back behind a failure of their key are not
// counted; they were not attempted.
func (s *Session) Errors() []Failure { return s.rec.failures() }

// Failure is one failed delivery attempt.
type Failure struct {
	// Message is the message whose delivery failed.
	Message outbox.Message
	// Err is the publisher's error for it, such as a *dispatch.DeliveryError.
	Err error
}

// Parked returns the parked messages, in outbox order.
func (s *Session) Parked() []outbox.ParkedMessage {
	s.t.Helper()
	var out []outbox.ParkedMessage
	q := outbox.ParkedQuery{Limit: 1000}
	for {
		page, err := s.relay.Outbox().Parked(s.t.Context(), q)
		if err != nil {
			s.t.Fatalf("dispatchtest: list parked messages: %v", err)
		}
		out = append(out, page...)
		if len(page) < q.Limit {
			return out
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// Handled returns the messages that the handler called handler has
// applied, in the order they were first attempted: those whose inbox row
// for it is there.
func (s *Session) Handled(handler string) []outbox.Message {
	s.t.Helper()
	var out []outbox.Message
	for _, m := range s.rec.attempted() {
		ps, err := dispatch.ProcessedBy(s.t.Context(), s.runner.Store(), m.ID)
		if err != nil {
			s.t.Fatalf("dispatchtest: read the inbox: %v", err)
		}
		if slices.ContainsFunc(ps, func(p dispatch.Processed) bool { return p.Handler == handler }) {
			out = append(out, m)
		}
	}
	return out
}

// RequirePublished asserts that a message called name with partition key
// key was delivered, and returns the first one. An empty key matches any.
func (s *Session) RequirePublished(name, key string) outbox.Message {
	s.t.Helper()
	pub := s.Published()
	for _, m := range pub {
		if m.Name == name && (key == "" || m.PartitionKey() == key) {
			return m
		}
	}
	s.t.Errorf("expected %s to be published, but it was not (-want +got):\n%s",
		describe(name, key), cmp.Diff([]string{describe(name, key)}, describeAll(pub)))
	return outbox.Message{}
}

// RequireNotPublished asserts that no message called name was delivered.
func (s *Session) RequireNotPublished(name string) {
	s.t.Helper()
	var got []outbox.Message
	for _, m := range s.Published() {
		if m.Name == name {
			got = append(got, m)
		}
	}
	if len(got) > 0 {
		s.t.Errorf("expected no %s to be published, but %s (-want +got):\n%s", name, count(len(got), "was", "were"), cmp.Diff([]string(nil), describeAll(got)))
	}
}

// RequirePublishedNames asserts that the messages delivered so far were
// exactly these, by name and key ("order.placed o-1", or just the name for
// any key), in any order: deliveries of different keys run in parallel.
func (s *Session) RequirePublishedNames(want ...string) {
	s.t.Helper()
	want = slices.Clone(want)
	got := describeAll(s.Published())
	for i, w := range want {
		if !strings.Contains(w, " ") {
			// A bare name matches the delivered message of that name with
			// whatever key it has: take the key from the first unmatched one.
			for _, g := range got {
				if strings.HasPrefix(g, w+" ") && !slices.Contains(want, g) {
					want[i] = g
					break
				}
			}
		}
	}
	want, got = sorted(want), sorted(got)
	if diff := cmp.Diff(want, got); diff != "" {
		s.t.Errorf("expected exactly %s to be published, but %s (-want +got):\n%s",
			count(len(want), "message", "messages"), count(len(got), "was", "were"), diff)
	}
}

// RequireHandled asserts that the handler called handler applied exactly
// n messages.
func (s *Session) RequireHandled(handler string, n int) []outbox.Message {
	s.t.Helper()
	got := s.Handled(handler)
	if len(got) != n {
		s.t.Errorf("expected handler %s to apply %s, but it applied %d (-want +got):\n%s", handler, count(n, "message", "messages"), len(got),
			cmp.Diff(n, len(got))+"applied: ["+strings.Join(describeAll(got), ", ")+"]")
	}
	return got
}

// RequireParked asserts that a message called name with partition key key
// (any key when empty) is parked, and returns it.
func (s *Session) RequireParked(name, key string) outbox.ParkedMessage {
	s.t.Helper()
	parked := s.Parked()
	for _, p := range parked {
		if p.Name == name && (key == "" || p.PartitionKey() == key) {
			return p
		}
	}
	msgs := make([]outbox.Message, len(parked))
	for i := range parked {
		msgs[i] = parked[i].Message
	}
	s.t.Errorf("expected %s to be parked, but it was not (-want +got):\n%s", describe(name, key), cmp.Diff([]string{describe(name, key)}, describeAll(msgs)))
	return outbox.ParkedMessage{}
}

// RequireNothingParked asserts that no message is parked.
func (s *Session) RequireNothingParked() {
	s.t.Helper()
	parked := s.Parked()
	if len(parked) == 0 {
		return
	}
	names, why := make([]string, len(parked)), make([]string, len(parked))
	for i, p := range parked {
		names[i] = describe(p.Name, p.PartitionKey())
		why[i] = names[i] + ": " + p.LastError
	}
	s.t.Errorf("expected nothing to be parked, but %s (-want +got):\n%sbecause:\n  %s",
		count(len(parked), "message was", "messages were"), cmp.Diff([]string(nil), names), strings.Join(why, "\n  "))
}

// RequireNoErrors asserts that every delivery attempt succeeded.
func (s *Session) RequireNoErrors() {
	s.t.Helper()
	fs := s.Errors()
	if len(fs) == 0 {
		return
	}
	names, why := make([]string, len(fs)), make([]string, len(fs))
	for i, f := range fs {
		names[i] = describe(f.Message.Name, f.Message.PartitionKey())
		why[i] = names[i] + ": " + f.Err.Error()
	}
	s.t.Errorf("expected every delivery to succeed, but %s (-want +got):\n%sbecause:\n  %s",
		count(len(fs), "failed", "failed"), cmp.Diff([]string(nil), names), strings.Join(why, "\n  "))
}

// count writes n with the singular or plural of what follows.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// RequireError asserts that a delivery of a message called name failed
// with an error matching target (errors.Is), and returns the failure.
func (s *Session) RequireError(name string, target error) Failure {
	s.t.Helper()
	fs := s.Errors()
	var got []string
	for _, f := range fs {
		if f.Message.Name == name && errors.Is(f.Err, target) {
			return f
		}
		got = append(got, describe(f.Message.Name, f.Message.PartitionKey())+": "+f.Err.Error())
	}
	s.t.Errorf("expected a delivery of %s to fail with %q, but none did (-want +got):\n%s", name, target,
		cmp.Diff([]string{name + ": " + target.Error()}, got))
	return Failure{}
}

func (s *Session) lastErrors(n int) string {
	fs := s.Errors()
	fs = fs[max(0, len(fs)-n):]
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s: %v\n", describe(f.Message.Name, f.Message.PartitionKey()), f.Err)
	}
	return b.String()
}

// describe names a message in assertions: "order.placed o-1".
func describe(name, key string) string {
	if key == "" {
		return name
	}
	return name + " " + key
}

func describeAll(ms []outbox.Message) []string {
	out := make([]string, len(ms))
	for i := range ms {
		out[i] = describe(ms[i].Name, ms[i].PartitionKey())
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// recorder is the publisher the session's relay delivers to: it passes
// each batch to the real one and notes what became of every message.
type recorder struct {
	inner outbox.Publisher

	mu    sync.Mutex
	seen  map[string]bool  // message ids attempted
	order []outbox.Message // first attempts, in order
	ok    []outbox.Message
	fails []Failure
}

// Publish hands batch to the real publisher and notes each message's
// outcome.
func (r *recorder) Publish(ctx context.Context, batch []outbox.Message) error {
	err := r.inner.Publish(ctx, batch)
	var be *outbox.BatchError
	perMessage := errors.As(err, &be) && len(be.Errs) == len(batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	for i, m := range batch {
		e := err
		if perMessage {
			e = be.Errs[i]
		}
		if errors.Is(e, outbox.ErrNotAttempted) {
			continue // held back or never started: not an attempt
		}
		if !r.seen[m.ID] {
			r.seen[m.ID] = true
			r.order = append(r.order, m)
		}
		if e == nil {
			r.ok = append(r.ok, m)
		} else {
			r.fails = append(r.fails, Failure{Message: m, Err: e})
		}
	}
	return err
}

func (r *recorder) delivered() []outbox.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ok)
}

func (r *recorder) attempted() []outbox.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

func (r *recorder) failures() []Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fails)
}
