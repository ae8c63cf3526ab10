package uow

import (
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// Policy says what a unit of work does when it changes more than one
// aggregate. Most units change one; a few business rules need more (an order
// paid with gift coupons), and teams differ on whether to allow them.
type Policy int

const (
	// AllowMultiple commits units that change several aggregates. The default.
	AllowMultiple Policy = iota
	// WarnMultiple commits them but logs a warning naming the aggregates.
	WarnMultiple
	// RefuseMultiple rolls them back with an error wrapping ErrMultipleAggregates.
	RefuseMultiple
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case AllowMultiple:
		return "allow"
	case WarnMultiple:
		return "warn"
	case RefuseMultiple:
		return "refuse"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Config configures a Runner. The zero value is ready to use.
type Config struct {
	// MaxAttempts bounds how many times Do runs fn when it fails with a
	// version conflict or a transient database error (serialization failure,
	// deadlock, busy SQLite). If zero, the default is 10. One means no retry.
	MaxAttempts int
	// MinBackoff is the base delay before the first retry; each further retry
	// doubles it, up to MaxBackoff, and the actual delay is drawn at random
	// between zero and that bound ("full jitter"). If zero, 1ms and 100ms are used.
	MinBackoff time.Duration
	// MaxBackoff caps the retry delay. See MinBackoff.
	MaxBackoff time.Duration
	// MultiAggregate says what to do when one unit changes several aggregates.
	// If zero, AllowMultiple.
	MultiAggregate Policy
	// TxOptions are passed to BeginTx. If nil, the database default is used.
	TxOptions *sql.TxOptions
	// Logger receives warnings (WarnMultiple) and retry notices at debug
	// level. If nil, the store's logger is used.
	Logger *slog.Logger
	// MaxHandlerDepth bounds how many rounds of in-transaction handlers may
	// run when handlers record further events. If zero, 8.
	MaxHandlerDepth int
}

func (c *Config) setDefaults(log *slog.Logger) {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 10
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = log
	}
	if c.MaxHandlerDepth == 0 {
		c.MaxHandlerDepth = 8
	}
}

func (c *Config) validate() error {
	switch {
	case c.MaxAttempts < 0:
		return dialect.Invalid("uow.Config.MaxAttempts is %d; use a positive number, or 0 for the default of 10", c.MaxAttempts)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return dialect.Invalid("uow.Config backoff durations must not be negative (MinBackoff %v, MaxBackoff %v)", c.MinBackoff, c.MaxBackoff)
	case c.MaxBackoff < c.MinBackoff:
		return dialect.Invalid("uow.Config.MaxBackoff (%v) is less than MinBackoff (%v); raise MaxBackoff", c.MaxBackoff, c.MinBackoff)
	case c.MultiAggregate < AllowMultiple || c.MultiAggregate > RefuseMultiple:
		return dialect.Invalid("uow.Config.MultiAggregate is %v; use AllowMultiple, WarnMultiple or RefuseMultiple", c.MultiAggregate)
	case c.MaxHandlerDepth < 0:
		return dialect.Invalid("uow.Config.MaxHandlerDepth is %d; use a positive number, or 0 for the default of 8", c.MaxHandlerDepth)
	}
	return nil
}
