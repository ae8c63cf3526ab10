// Package backoff is keel's one rule for waiting between retries:
// exponential growth from a base delay to a cap, with random jitter so
// that callers failing together spread out.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter says how much of the exponential delay is randomised.
type Jitter int

const (
	// Equal waits a random time in the upper half of the delay: at least
	// half of it, never more. Retries of one thing stay spaced out.
	Equal Jitter = iota
	// Full waits a random time between zero and the delay, which spreads
	// competing writers best (a unit of work retrying a conflict).
	Full
)

// Policy is a retry schedule: the delay after the first failure is Base,
// doubling with each further one up to Max.
type Policy struct {
	Base   time.Duration
	Max    time.Duration
	Jitter Jitter
}

// Delay returns how long to wait after the given failed attempt (1 for the
// first).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if d <= 0 {
		return 0
	}
	if p.Jitter == Full {
		return rand.N(d + 1)
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d, or until ctx is done, when it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
