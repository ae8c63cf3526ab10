package publishertest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/publishertest"
)

// memory is a destination kept in memory, and the Publisher that delivers
// to it: the kind a team might write to deliver to a service of its own.
// A message with a "fail" header is refused, for good or for now.
type memory struct {
	mu  sync.Mutex
	got []outbox.Message
}

// Publish delivers the batch in order, holding back a key's later messages
// once one of its messages fails, as outbox.Publisher requires.
func (d *memory) Publish(ctx context.Context, batch []outbox.Message) error {
	errs := make([]error, len(batch))
	failed := false
	var hold outbox.HoldBack
	for i := range batch {
		m := &batch[i]
		err := hold.Check(m)
		if err == nil {
			err = d.deliver(ctx, m)
		}
		if err != nil {
			errs[i], failed = err, true
			hold.Fail(m)
		}
	}
	if failed {
		return &outbox.BatchError{Errs: errs}
	}
	return nil
}

func (d *memory) deliver(ctx context.Context, m *outbox.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s not sent: %w (%w)", m.ID, err, outbox.ErrNotAttempted)
	}
	switch m.Headers["fail"] {
	case "permanent":
		return fmt.Errorf("memory: %s refused: %w", m.ID, outbox.ErrPermanent)
	case "transient":
		return fmt.Errorf("memory: %s: busy, try again", m.ID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, *m)
	return nil
}

// memoryHarness lets the suite drive a memory destination.
type memoryHarness struct {
	d   *memory
	pub outbox.Publisher // the Publisher under test; d itself if nil
}

func (h memoryHarness) Publisher() outbox.Publisher {
	if h.pub != nil {
		return h.pub
	}
	return h.d
}

func (h memoryHarness) Delivered(context.Context) ([]outbox.Message, error) {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return slices.Clone(h.d.got), nil
}

func (h memoryHarness) FailPermanently(m outbox.Message) outbox.Message {
	return withHeader(m, "fail", "permanent")
}

func (h memoryHarness) FailTransiently(m outbox.Message) outbox.Message {
	return withHeader(m, "fail", "transient")
}

// withHeader returns m with one more header, leaving m's own map alone.
func withHeader(m outbox.Message, k, v string) outbox.Message {
	m.Headers = maps.Clone(m.Headers)
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	m.Headers[k] = v
	return m
}

// A team checks its own Publisher against the contract before handing it
// to outbox.NewRelay. In a test, one call runs every check as a subtest:
//
//	func TestMemoryPublisher(t *testing.T) {
//		publishertest.Run(t, publishertest.Features{}, func(t *testing.T) publishertest.Harness {
//			return memoryHarness{d: &memory{}}
//		})
//	}
//
// Checks gives the same checks for running elsewhere, as here.
func Example() {
	h := memoryHarness{d: &memory{}}
	for _, c := range publishertest.Checks(publishertest.Features{}) {
		fmt.Printf("%-18s %v\n", c.Name, c.Run(context.Background(), h))
	}
	// Output:
	// EmptyBatch         <nil>
	// OrderPerKey        <nil>
	// OrderAcrossBatches <nil>
	// PermanentFailure   <nil>
	// TransientFailure   <nil>
	// MixedFailures      <nil>
	// CancelledBefore    <nil>
	// CancelledDuring    <nil>
}
