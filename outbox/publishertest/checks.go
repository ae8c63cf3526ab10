package publishertest

import (
	"context"
	"errors"
	"time"

	"github.com/keel-go/keel/outbox"
)

// checks are the suite's checks, in the order Run runs them.
var checks = []check{
	{name: "EmptyBatch", run: emptyBatch},
	{name: "OrderPerKey", run: orderPerKey},
	{name: "OrderAcrossBatches", run: orderAcrossBatches},
	{name: "PermanentFailure", skip: needs(permanent), run: permanentFailure},
	{name: "TransientFailure", skip: needs(transient), run: transientFailure},
	{name: "MixedFailures", skip: needsEither, run: mixedFailures},
	{name: "CancelledBefore", run: cancelledBefore},
	{name: "CancelledDuring", run: cancelledDuring},
}

// fate is what should become of one message of a batch.
type fate int

const (
	delivered fate = iota
	permanent      // rejected for good
	transient      // failed for now
	heldBack       // not attempted, behind a failed message of its key
)

func needs(kind fate) func(Features) string {
	return func(f Features) string {
		switch {
		case kind == permanent && f.NoPermanentFailure:
			return "the destination cannot be made to fail permanently (Features.NoPermanentFailure)"
		case kind == transient && f.NoTransientFailure:
			return "the destination cannot be made to fail transiently (Features.NoTransientFailure)"
		}
		return ""
	}
}

func needsEither(f Features) string {
	if f.NoPermanentFailure && f.NoTransientFailure {
		return "the destination cannot be made to fail (Features.NoPermanentFailure and NoTransientFailure)"
	}
	return ""
}

// emptyBatch: Publish of no messages returns nil and delivers nothing.
func emptyBatch(s *session) {
	before, err := s.h.Delivered(s.ctx)
	if err != nil {
		s.fatalf("Harness.Delivered: %v", err)
		return
	}
	for _, batch := range [][]outbox.Message{nil, {}} {
		r, ok := s.publish(s.ctx, batch)
		if !ok {
			return
		}
		if r.err != nil {
			s.errorf("Publish of an empty batch (%#v) = %v, want nil", batch, r.err)
		}
	}
	after, err := s.h.Delivered(s.ctx)
	if err != nil {
		s.fatalf("Harness.Delivered: %v", err)
		return
	}
	if len(after) != len(before) {
		s.errorf("the destination holds %d messages after two empty batches, %d before", len(after), len(before))
	}
}

// orderPerKey: one batch of many keys, mixed at random, arrives whole,
// each message once, each key in order.
func orderPerKey(s *session) {
	batch := s.interleave(s.keys(16), 8, true)
	r, ok := s.publish(s.ctx, batch)
	if !ok {
		return
	}
	if r.err != nil {
		s.errorf("Publish = %v, want nil: the destination is healthy", r.err)
	}
	s.checkDestination(batch, false)
}

// orderAcrossBatches: a key's messages spread over consecutive batches
// arrive in order, each once.
func orderAcrossBatches(s *session) {
	all := s.interleave(s.keys(6), 20, true)
	for start := 0; start < len(all); start += 24 {
		batch := all[start:min(start+24, len(all))]
		r, ok := s.publish(s.ctx, batch)
		if !ok {
			return
		}
		if r.err != nil {
			s.errorf("Publish of batch %d = %v, want nil: the destination is healthy", start/24+1, r.err)
		}
	}
	s.checkDestination(all, false)
}

// permanentFailure: a message the destination rejects for good is reported
// with outbox.ErrPermanent; its key's later messages are held back; every
// other key is delivered.
func permanentFailure(s *session) {
	s.failOne(permanent)
}

// transientFailure: a message that fails for now is reported with an error
// that is neither permanent nor "not attempted"; its key's later messages
// are held back; every other key is delivered. Published again with the
// messages held behind it, as a relay does, it arrives, and the key keeps
// its order.
func transientFailure(s *session) {
	batch, ok := s.failOne(transient)
	if !ok {
		return
	}
	// The relay sends the failed message again, unchanged, and the ones it
	// held back.
	var retry []outbox.Message
	for _, m := range batch {
		if m.Key == batch[1].Key {
			retry = append(retry, s.orig[m.ID])
		}
	}
	r, ok := s.publish(s.ctx, retry)
	if !ok {
		return
	}
	if r.err != nil {
		s.errorf("Publish of the failed message and the ones held behind it = %v, want nil once the failure is gone", r.err)
	}
	s.checkDestination(batch, false)
}

// failOne publishes three keys of four messages, taking turns, with the
// first message of the second key made to fail as kind says, and checks
// the outcome. It returns the batch as published.
func (s *session) failOne(kind fate) ([]outbox.Message, bool) {
	batch := s.interleave(s.keys(3), 4, false) // a0 b0 c0 a1 b1 c1 ...
	fates := make([]fate, len(batch))
	// b0 fails, which holds back b1..b3; a and c go through.
	batch[1] = s.fail(batch[1], kind)
	for i := 4; i < len(batch); i += 3 {
		fates[i] = heldBack
	}
	fates[1] = kind
	if s.failed {
		return nil, false
	}
	r, ok := s.publish(s.ctx, batch)
	if !ok {
		return nil, false
	}
	return batch, s.checkFates(batch, r, fates)
}

// mixedFailures: in one batch of six keys mixed at random, messages fail
// in four keys, first, in the middle and last of their key, permanently
// and transiently. The BatchError has one entry per message, each with the
// right kind of error, and exactly the keys' messages before their failure
// and the other keys arrive.
func mixedFailures(s *session) {
	keys := s.keys(6)
	batch := s.interleave(keys, 5, true)
	kinds := []fate{permanent, transient}
	switch {
	case s.f.NoPermanentFailure:
		kinds = []fate{transient, transient}
	case s.f.NoTransientFailure:
		kinds = []fate{permanent, permanent}
	}
	failAt := map[string]struct { // key -> which of its messages fails, and how
		seq  int
		kind fate
	}{
		keys[0]: {1, kinds[0]},
		keys[2]: {3, kinds[1]},
		keys[4]: {0, kinds[0]},
		keys[5]: {4, kinds[1]}, // the key's last: nothing held behind it
	}
	fates := make([]fate, len(batch))
	for i, m := range batch {
		f, ok := failAt[m.Key]
		switch {
		case !ok || s.seq[m.ID] < f.seq:
		case s.seq[m.ID] == f.seq:
			batch[i], fates[i] = s.fail(m, f.kind), f.kind
		default:
			fates[i] = heldBack
		}
	}
	if s.failed {
		return
	}
	r, ok := s.publish(s.ctx, batch)
	if !ok {
		return
	}
	s.checkFates(batch, r, fates)
}

// cancelledBefore: Publish with a context already done returns, reports no
// message delivered that did not arrive, and reports those it did not try
// as not attempted. Published again, the rest arrive in order.
func cancelledBefore(s *session) {
	batch := s.interleave(s.keys(3), 3, false)
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	r, ok := s.publish(ctx, batch)
	if !ok {
		return
	}
	arr, ok := s.arrivals()
	if !ok {
		return
	}
	got := copies(arr)
	s.checkClaims(batch, r, got)
	s.checkHeldBack(batch, got)
	if !r.whole {
		for i, m := range batch {
			if got[m.ID] == 0 && r.entries[i] != nil && !errors.Is(r.entries[i], outbox.ErrNotAttempted) {
				s.errorf("%s: Publish with a cancelled context reported %v, which does not wrap outbox.ErrNotAttempted: the relay would count an attempt that was never made", m.ID, r.entries[i])
			}
		}
	}
	s.resend(batch, r, false)
}

// cancelledDuring: a Publish whose context ends mid-batch returns, reports
// no message delivered that did not arrive, and holds back each key after
// its first undelivered message. Published again, as a relay does, every
// message arrives, in order, none twice out of order.
func cancelledDuring(s *session) {
	batch := s.interleave(s.keys(8), 40, true)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	done := s.start(ctx, batch)
	// Cancel as soon as the first message arrives, unless Publish returns
	// first.
	var (
		r        result
		returned bool
	)
	for !returned {
		select {
		case err := <-done:
			r, returned = s.result(batch, err), true
			continue
		case <-time.After(2 * time.Millisecond):
		}
		arr, ok := s.arrivals()
		if !ok {
			return
		}
		if len(arr) > 0 {
			break
		}
	}
	cancel()
	if !returned {
		var ok bool
		if r, ok = s.wait(batch, done); !ok {
			return
		}
	}
	arr, ok := s.arrivals()
	if !ok {
		return
	}
	got := copies(arr)
	s.checkClaims(batch, r, got)
	s.checkHeldBack(batch, got)
	s.resend(batch, r, s.f.LateDuplicates)
}

// resend publishes again, as a relay does, the messages of batch that r
// did not report delivered, then checks that every message of batch
// arrived, in order.
func (s *session) resend(batch []outbox.Message, r result, firstCopiesOnly bool) {
	var again []outbox.Message
	for i, m := range batch {
		if r.entries[i] != nil {
			again = append(again, m)
		}
	}
	if len(again) > 0 {
		r2, ok := s.publish(s.ctx, again)
		if !ok {
			return
		}
		if r2.err != nil {
			s.errorf("Publish of the %d messages not delivered before = %v, want nil: the destination is healthy", len(again), r2.err)
		}
	}
	s.checkDestination(batch, firstCopiesOnly)
}

// fail returns m as h makes it fail.
func (s *session) fail(m outbox.Message, kind fate) outbox.Message {
	var got outbox.Message
	if kind == permanent {
		got = s.h.FailPermanently(m)
	} else {
		got = s.h.FailTransiently(m)
	}
	if got.ID != m.ID || got.Key != m.Key || got.Name != m.Name {
		s.fatalf("the harness changed the ID, Key or Name of a message it made fail (%q %q %q, was %q %q %q); it may change only Topic, Headers and Payload",
			got.ID, got.Key, got.Name, m.ID, m.Key, m.Name)
	}
	return got
}

// checkFates checks each message's entry in r and the destination against
// the message's fate, and reports whether the check can go on.
func (s *session) checkFates(batch []outbox.Message, r result, fates []fate) bool {
	if r.err == nil || r.whole {
		s.errorf("Publish = %v; want a *outbox.BatchError with one entry per message, since some failed and others did not", r.err)
	} else {
		for i, m := range batch {
			e := r.entries[i]
			switch fates[i] {
			case delivered:
				if e != nil {
					s.errorf("%s: reported %v; want it delivered (a nil entry): its key had no failure", m.ID, e)
				}
			case permanent:
				if !errors.Is(e, outbox.ErrPermanent) || errors.Is(e, outbox.ErrNotAttempted) {
					s.errorf("%s: reported %v; want an error wrapping outbox.ErrPermanent and not outbox.ErrNotAttempted, so that the relay parks it at once", m.ID, e)
				}
			case transient:
				if e == nil || errors.Is(e, outbox.ErrPermanent) || errors.Is(e, outbox.ErrNotAttempted) {
					s.errorf("%s: reported %v; want an error wrapping neither outbox.ErrPermanent nor outbox.ErrNotAttempted, so that the relay counts the attempt and retries", m.ID, e)
				}
			case heldBack:
				if !errors.Is(e, outbox.ErrHeldBack) || errors.Is(e, outbox.ErrPermanent) {
					s.errorf("%s: reported %v; want an error wrapping outbox.ErrHeldBack (and not outbox.ErrPermanent), since an earlier message of its key failed", m.ID, e)
				}
			}
		}
	}
	arr, ok := s.arrivals()
	if !ok {
		return false
	}
	got := copies(arr)
	for i, m := range batch {
		switch {
		case fates[i] == delivered && got[m.ID] == 0:
			s.errorf("%s never reached the destination", m.ID)
		case fates[i] != delivered && got[m.ID] > 0:
			s.errorf("%s reached the destination although it should have failed or been held back", m.ID)
		}
	}
	s.checkArrivals(arr, false)
	return true
}

// checkDestination checks that every message of msgs arrived, in order,
// none more often than published.
func (s *session) checkDestination(msgs []outbox.Message, firstCopiesOnly bool) {
	arr, ok := s.arrivals()
	if !ok {
		return
	}
	s.checkAllArrived(msgs, copies(arr))
	s.checkArrivals(arr, firstCopiesOnly)
}
