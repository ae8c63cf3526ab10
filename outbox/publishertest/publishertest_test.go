package publishertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/publishertest"
)

// TestMemoryConforms runs the suite, as a user would, against the example's
// memory Publisher, which keeps the contract.
func TestMemoryConforms(t *testing.T) {
	publishertest.Run(t, publishertest.Features{}, func(t *testing.T) publishertest.Harness {
		return memoryHarness{d: &memory{}}
	})
}

// TestSharedHarness: one harness serves every check, since each check
// publishes fresh ids and keys.
func TestSharedHarness(t *testing.T) {
	h := memoryHarness{d: &memory{}}
	publishertest.Run(t, publishertest.Features{}, func(t *testing.T) publishertest.Harness { return h })
	if len(h.d.got) < 500 {
		t.Errorf("the shared destination received %d messages; the checks publish more than 500", len(h.d.got))
	}
}

// TestFeatures: checks a destination cannot take part in are left out.
func TestFeatures(t *testing.T) {
	names := func(f publishertest.Features) []string {
		var out []string
		for _, c := range publishertest.Checks(f) {
			out = append(out, c.Name)
		}
		return out
	}
	all := names(publishertest.Features{})
	for _, tc := range []struct {
		f    publishertest.Features
		gone []string
	}{
		{publishertest.Features{NoPermanentFailure: true}, []string{"PermanentFailure"}},
		{publishertest.Features{NoTransientFailure: true}, []string{"TransientFailure"}},
		{publishertest.Features{NoPermanentFailure: true, NoTransientFailure: true}, []string{"PermanentFailure", "TransientFailure", "MixedFailures"}},
		{publishertest.Features{LateDuplicates: true}, nil},
	} {
		want := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(tc.gone, n) })
		if got := names(tc.f); !slices.Equal(got, want) {
			t.Errorf("Checks(%+v) = %v, want %v", tc.f, got, want)
		}
	}
	// Without permanent failures, the mixed check uses transient ones only.
	h := memoryHarness{d: &memory{}}
	for _, c := range publishertest.Checks(publishertest.Features{NoPermanentFailure: true}) {
		if err := c.Run(context.Background(), failsOnly{h, "permanent"}); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// failsOnly is a harness whose destination panics if asked to fail a
// message in the way it cannot.
type failsOnly struct {
	memoryHarness
	cannot string
}

func (h failsOnly) FailPermanently(m outbox.Message) outbox.Message {
	if h.cannot == "permanent" {
		panic("FailPermanently called although Features.NoPermanentFailure is set")
	}
	return h.memoryHarness.FailPermanently(m)
}

// broken is a Publisher over a memory destination with one mistake.
type broken func(d *memory, ctx context.Context, batch []outbox.Message) error

// TestCatchesBrokenPublishers: each way of breaking the contract fails the
// check that covers it, with a message that says what went wrong.
func TestCatchesBrokenPublishers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pub   broken
		check string
		want  string
	}{
		{"reverses the batch", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			rev := slices.Clone(batch)
			slices.Reverse(rev)
			return d.Publish(ctx, rev)
		}, "OrderPerKey", "which was published after it"},

		{"delivers twice", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			if err := d.Publish(ctx, batch); err != nil {
				return err
			}
			return d.Publish(ctx, batch)
		}, "OrderAcrossBatches", "arrived 2 times but was published 1 times"},

		{"loses messages", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			return d.Publish(ctx, batch[:len(batch)/2])
		}, "OrderPerKey", "never reached the destination"},

		{"fails empty batches", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			if len(batch) == 0 {
				return errors.New("nothing to send")
			}
			return d.Publish(ctx, batch)
		}, "EmptyBatch", "want nil"},

		{"does not hold back", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			errs := make([]error, len(batch))
			for i := range batch {
				errs[i] = d.deliver(ctx, &batch[i])
			}
			return &outbox.BatchError{Errs: errs}
		}, "PermanentFailure", "reached the destination although it should have failed or been held back"},

		{"holds back every key", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			errs := make([]error, len(batch))
			for i := range batch {
				if err := d.deliver(ctx, &batch[i]); err != nil {
					errs[i] = err
					for j := i + 1; j < len(batch); j++ {
						errs[j] = fmt.Errorf("stopped: %w", outbox.ErrHeldBack)
					}
					break
				}
			}
			return &outbox.BatchError{Errs: errs}
		}, "TransientFailure", "want it delivered (a nil entry)"},

		{"short BatchError", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			var be *outbox.BatchError
			if err := d.Publish(ctx, batch); errors.As(err, &be) {
				be.Errs = be.Errs[:len(be.Errs)-1]
				return be
			} else {
				return err
			}
		}, "PermanentFailure", "entries for 12 messages"},

		{"BatchError without failures", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			if err := d.Publish(ctx, batch); err != nil {
				return err
			}
			return &outbox.BatchError{Errs: make([]error, len(batch))}
		}, "OrderPerKey", "every entry is nil"},

		{"permanent also not attempted", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			var be *outbox.BatchError
			if err := d.Publish(ctx, batch); errors.As(err, &be) {
				for i, e := range be.Errs {
					if errors.Is(e, outbox.ErrPermanent) {
						be.Errs[i] = errors.Join(e, outbox.ErrNotAttempted)
					}
				}
				return be
			} else {
				return err
			}
		}, "PermanentFailure", "so that the relay parks it at once"},

		{"transient reported as not attempted", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			var be *outbox.BatchError
			if err := d.Publish(ctx, batch); errors.As(err, &be) {
				for i, e := range be.Errs {
					if e != nil && !errors.Is(e, outbox.ErrNotAttempted) {
						be.Errs[i] = fmt.Errorf("%w (%w)", e, outbox.ErrNotAttempted)
					}
				}
				return be
			} else {
				return err
			}
		}, "TransientFailure", "so that the relay counts the attempt"},

		{"held back as permanent", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			var be *outbox.BatchError
			if err := d.Publish(ctx, batch); errors.As(err, &be) {
				for i, e := range be.Errs {
					if errors.Is(e, outbox.ErrHeldBack) {
						be.Errs[i] = fmt.Errorf("%w (%w)", e, outbox.ErrPermanent)
					}
				}
				return be
			} else {
				return err
			}
		}, "MixedFailures", "want an error wrapping outbox.ErrHeldBack (and not outbox.ErrPermanent)"},

		{"claims delivery when cancelled", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			if ctx.Err() != nil {
				return nil
			}
			return d.Publish(ctx, batch)
		}, "CancelledBefore", "reported pt-"},

		{"cancelled without ErrNotAttempted", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			if ctx.Err() != nil {
				errs := make([]error, len(batch))
				for i := range errs {
					errs[i] = ctx.Err()
				}
				return &outbox.BatchError{Errs: errs}
			}
			return d.Publish(ctx, batch)
		}, "CancelledBefore", "does not wrap outbox.ErrNotAttempted"},

		{"ignores its context", func(d *memory, ctx context.Context, batch []outbox.Message) error {
			<-make(chan struct{}) // never returns
			return nil
		}, "CancelledBefore", "did not return before the check's deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &memory{}
			h := memoryHarness{d: d, pub: outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
				return tc.pub(d, ctx, batch)
			})}
			var c *publishertest.Check
			for _, x := range publishertest.Checks(publishertest.Features{}) {
				if x.Name == tc.check {
					c = &x
				}
			}
			if c == nil {
				t.Fatalf("no check %s", tc.check)
			}
			ctx := context.Background()
			if tc.name == "ignores its context" {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			err := c.Run(ctx, h)
			if err == nil {
				t.Fatalf("%s passed a Publisher that %s", tc.check, tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s reported:\n%v\nwant a breach saying %q", tc.check, err, tc.want)
			}
		})
	}
}
