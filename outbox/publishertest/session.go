package publishertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"

	"github.com/keel-go/keel/outbox"
)

// session is one run of one check: the messages it made, what it
// published, and the breaches it found.
type session struct {
	ctx    context.Context
	h      Harness
	f      Features
	prefix string
	rng    *mrand.Rand
	orig   map[string]outbox.Message // id -> the message as made
	seq    map[string]int            // id -> its place among its key's messages
	sent   map[string]int            // id -> Publish calls that included it
	errs   []error
	failed bool // a breach after which the check cannot go on
}

func newSession(ctx context.Context, h Harness, f Features) *session {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &session{
		ctx:    ctx,
		h:      h,
		f:      f,
		prefix: "pt-" + hex.EncodeToString(b),
		rng:    mrand.New(mrand.NewPCG(1, 2)), // the same interleavings on every run
		orig:   map[string]outbox.Message{},
		seq:    map[string]int{},
		sent:   map[string]int{},
	}
}

// errorf records a breach of the contract.
func (s *session) errorf(format string, args ...any) {
	s.errs = append(s.errs, fmt.Errorf(format, args...))
}

// fatalf records a breach after which the check stops.
func (s *session) fatalf(format string, args ...any) {
	s.errorf(format, args...)
	s.failed = true
}

// keys returns n partition keys no other check or run uses.
func (s *session) keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-k%02d", s.prefix, i)
	}
	return out
}

// message makes the seq-th message of key.
func (s *session) message(key string, seq int) outbox.Message {
	payload, err := json.Marshal(Event{Key: key, Seq: seq})
	if err != nil {
		panic(err) // cannot happen: a struct of a string and an int
	}
	m := outbox.Message{ID: fmt.Sprintf("%s-%02d", key, seq), Name: EventName, Key: key, Payload: payload}
	s.orig[m.ID], s.seq[m.ID] = m, seq
	return m
}

// interleave makes perKey messages for each key. Keys take turns (the first
// message of every key, then the second...) unless shuffle is set, when
// they mix at random; either way each key's messages keep their order.
func (s *session) interleave(keys []string, perKey int, shuffle bool) []outbox.Message {
	next := make([]int, len(keys))
	var out []outbox.Message
	for len(out) < len(keys)*perKey {
		for k, key := range keys {
			if shuffle {
				k = s.rng.IntN(len(keys))
				key = keys[k]
			}
			if next[k] < perKey {
				out = append(out, s.message(key, next[k]))
				next[k]++
			}
		}
	}
	return out
}

// result is what Publish said of a batch.
type result struct {
	err error
	// entries has, per message, nil when Publish reported it delivered,
	// else the error it reported for it.
	entries []error
	// whole is set when Publish returned an error that is not a usable
	// *outbox.BatchError: no message of the batch may be taken as
	// delivered.
	whole bool
}

// start calls Publish(ctx, batch) in a goroutine and returns where its
// error will arrive. Publish gets a copy of batch, so the session's record
// of what it sent stays as sent.
func (s *session) start(ctx context.Context, batch []outbox.Message) <-chan error {
	for _, m := range batch {
		s.sent[m.ID]++
	}
	done := make(chan error, 1)
	pub := s.h.Publisher()
	cp := slices.Clone(batch)
	go func() { done <- pub.Publish(ctx, cp) }()
	return done
}

// wait waits for the Publish that start began and reads its result. It
// reports false, having recorded why, when the check's context ends first.
func (s *session) wait(batch []outbox.Message, done <-chan error) (result, bool) {
	select {
	case err := <-done:
		return s.result(batch, err), true
	case <-s.ctx.Done():
		s.fatalf("Publish of %d messages did not return before the check's deadline (%v); a Publisher must return once its context is done", len(batch), context.Cause(s.ctx))
		return result{}, false
	}
}

// publish calls Publish and waits for its result.
func (s *session) publish(ctx context.Context, batch []outbox.Message) (result, bool) {
	return s.wait(batch, s.start(ctx, batch))
}

func (s *session) result(batch []outbox.Message, err error) result {
	r := result{err: err, entries: make([]error, len(batch))}
	if err == nil {
		return r
	}
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Errs) != len(batch) {
		if be != nil {
			s.errorf("Publish returned a *outbox.BatchError with %d entries for %d messages; it must have exactly one per message, nil for a delivered one (a relay takes a wrong-sized one as a failure of the whole batch)", len(be.Errs), len(batch))
		}
		r.whole = true
		for i := range r.entries {
			r.entries[i] = err
		}
		return r
	}
	copy(r.entries, be.Errs)
	if !slices.ContainsFunc(be.Errs, func(e error) bool { return e != nil }) {
		s.errorf("Publish returned a *outbox.BatchError whose every entry is nil; it must return nil when every message was delivered")
	}
	return r
}

// arrivals returns the copies of this session's messages that reached the
// destination, in the order they arrived.
func (s *session) arrivals() ([]outbox.Message, bool) {
	all, err := s.h.Delivered(s.ctx)
	if err != nil {
		s.fatalf("Harness.Delivered: %v", err)
		return nil, false
	}
	var out []outbox.Message
	for _, m := range all {
		if _, ok := s.orig[m.ID]; ok {
			out = append(out, m)
		}
	}
	return out, true
}

// copies counts the copies of each message in arr.
func copies(arr []outbox.Message) map[string]int {
	n := map[string]int{}
	for _, m := range arr {
		n[m.ID]++
	}
	return n
}

// checkClaims reports each message of batch that Publish reported
// delivered but that did not arrive.
func (s *session) checkClaims(batch []outbox.Message, r result, got map[string]int) {
	for i, m := range batch {
		if r.entries[i] == nil && got[m.ID] == 0 {
			s.errorf("Publish reported %s delivered, but it did not reach the destination", m.ID)
		}
	}
}

// checkHeldBack reports each message of batch, a batch of fresh messages,
// that arrived although an earlier message of its key did not: once a
// message of a key fails, the key's later messages must not be attempted.
func (s *session) checkHeldBack(batch []outbox.Message, got map[string]int) {
	gap := map[string]string{} // key -> first message of the batch that did not arrive
	for _, m := range batch {
		k := m.PartitionKey()
		if first, ok := gap[k]; ok {
			if got[m.ID] > 0 {
				s.errorf("%s arrived although %s, earlier in its key, did not: after a failure the key's later messages must be held back", m.ID, first)
			}
		} else if got[m.ID] == 0 {
			gap[k] = m.ID
		}
	}
}

// checkArrivals checks every copy that arrived: its key, name and payload
// are as published; no message arrived more often than it was published;
// the first copies of each key's messages arrived in the key's order; and,
// unless firstCopiesOnly, so did every later copy.
func (s *session) checkArrivals(arr []outbox.Message, firstCopiesOnly bool) {
	seen := map[string]int{}
	lastFirst := map[string]string{} // key -> message whose first copy arrived last
	lastAny := map[string]string{}   // key -> latest message of any copy so far
	for _, m := range arr {
		o := s.orig[m.ID]
		k := o.PartitionKey()
		seen[m.ID]++
		if seen[m.ID] == 1 {
			if m.PartitionKey() != k || m.Name != o.Name || !bytes.Equal(m.Payload, o.Payload) {
				s.errorf("%s arrived with key %q, name %q and payload %q; it was published with key %q, name %q and payload %q",
					m.ID, m.PartitionKey(), m.Name, m.Payload, k, o.Name, o.Payload)
			}
			if prev, ok := lastFirst[k]; ok && s.seq[prev] > s.seq[m.ID] {
				s.errorf("key %s: %s arrived after %s, which was published after it", k, m.ID, prev)
			}
			if prev, ok := lastFirst[k]; !ok || s.seq[prev] < s.seq[m.ID] {
				lastFirst[k] = m.ID
			}
		} else if prev, ok := lastAny[k]; ok && !firstCopiesOnly && s.seq[prev] > s.seq[m.ID] {
			s.errorf("key %s: a second copy of %s arrived after %s, which was published after it", k, m.ID, prev)
		}
		if prev, ok := lastAny[k]; !ok || s.seq[prev] < s.seq[m.ID] {
			lastAny[k] = m.ID
		}
	}
	for _, id := range sortedKeys(seen) {
		if seen[id] > s.sent[id] {
			s.errorf("%s arrived %d times but was published %d times", id, seen[id], s.sent[id])
		}
	}
}

// checkAllArrived reports each message of msgs that never arrived.
func (s *session) checkAllArrived(msgs []outbox.Message, got map[string]int) {
	for _, m := range msgs {
		if got[m.ID] == 0 {
			s.errorf("%s never reached the destination", m.ID)
		}
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
