package publishertest

import (
	"context"
	"errors"
	"testing"
	"time"
)

// CheckTimeout bounds each check that Run runs, waits for Publish
// included.
const CheckTimeout = 2 * time.Minute

// Check is one check of the suite.
type Check struct {
	// Name names the check; Run runs it as a subtest of that name.
	Name string

	// Run publishes through h and returns nil when the Publisher kept the
	// contract, or an error listing each breach it found, joined with
	// errors.Join. It returns early, with an error, when Publish does not
	// return before ctx is done or Delivered fails.
	Run func(ctx context.Context, h Harness) error
}

// check is a check before it is bound to Features.
type check struct {
	name string
	// skip returns why the check cannot run on a destination with f, or "".
	skip func(f Features) string
	run  func(s *session)
}

// Checks returns the suite's checks that apply to a destination with the
// features f, in the order Run runs them, for running the suite outside go
// test. Each check publishes fresh messages, so one Harness may serve all
// of them.
func Checks(f Features) []Check {
	var out []Check
	for _, c := range checks {
		if c.skip != nil && c.skip(f) != "" {
			continue
		}
		out = append(out, Check{Name: c.name, Run: func(ctx context.Context, h Harness) error {
			s := newSession(ctx, h, f)
			c.run(s)
			return errors.Join(s.errs...)
		}})
	}
	return out
}

// Run runs every check of the suite as a subtest of t, each with a Harness
// from newHarness, which may return a new one each time or share one.
// Checks that f says the destination cannot take part in are skipped with
// the reason. Each breach of the contract is reported with t.Error.
func Run(t *testing.T, f Features, newHarness func(t *testing.T) Harness) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != nil {
				if why := c.skip(f); why != "" {
					t.Skip(why)
				}
			}
			h := newHarness(t)
			ctx, cancel := context.WithTimeout(t.Context(), CheckTimeout)
			defer cancel()
			s := newSession(ctx, h, f)
			c.run(s)
			for _, err := range s.errs {
				t.Error(err)
			}
		})
	}
}
