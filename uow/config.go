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

// Contention says when a unit of work reads aggregates with a row lock
// (SELECT ... FOR UPDATE) instead of relying on the version check alone.
// It applies to Get through the unit's *Tx; GetForUpdate always locks.
//
// Optimistic reads cost nothing while aggregates are rarely written at
// once, but an aggregate that many units change together (a hot account)
// makes them conflict again and again: every retry reads a version that a
// faster unit is about to replace. A locked read cannot lose that race,
// because the next writer waits for the lock and then reads what this one
// committed.
//
// SQLite has no row locks: a transaction opened with _txlock=immediate
// holds the database's write lock from BEGIN, so units never race there and
// the policy changes nothing.
type Contention int

const (
	// Adaptive reads optimistically until an aggregate loses a version
	// conflict. The unit's retries then read it with a row lock, and so
	// does the first attempt of every unit of the Runner while the
	// aggregate stays hot, so that its writers queue on its row instead of
	// each losing one race first. It stays hot for Config.HotWindow after
	// its last conflict; then one unit reads it optimistically, as a
	// probe, while the others go on locking: a conflict makes it hot
	// again, and a window without one makes it cold. Other aggregates
	// stay optimistic. The default.
	Adaptive Contention = iota
	// LockOnRetry reads optimistically on every first attempt; after a
	// version conflict, the unit's retries read the conflicting aggregate
	// with a row lock. Nothing is remembered between calls.
	LockOnRetry
	// NeverLock reads optimistically on every attempt: a hot aggregate is
	// left to retries and backoff, which may run out (MaxAttempts).
	NeverLock
	// AlwaysLock makes every Get through the unit's Tx lock the row it
	// reads, as GetForUpdate does, from the first attempt: for a Runner
	// dedicated to aggregates known to be hot. Aggregates that are only
	// read are locked too, which makes their readers queue.
	AlwaysLock
)

// String returns the policy's name.
func (c Contention) String() string {
	switch c {
	case Adaptive:
		return "adaptive"
	case LockOnRetry:
		return "lock-on-retry"
	case NeverLock:
		return "never-lock"
	case AlwaysLock:
		return "always-lock"
	}
	return fmt.Sprintf("Contention(%d)", int(c))
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
	// Contention says when Get through the unit's Tx locks the row it
	// reads. If zero, Adaptive: optimistic until an aggregate conflicts,
	// then locked while it stays hot.
	Contention Contention
	// HotWindow is how long, under Adaptive, an aggregate that lost a
	// version conflict is read with a row lock by the first attempts of
	// the Runner's units before one of them probes whether it is still
	// hot; each new conflict starts the window again. If zero, 1s.
	HotWindow time.Duration
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
	if c.HotWindow == 0 {
		c.HotWindow = time.Second
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
	case c.Contention < Adaptive || c.Contention > AlwaysLock:
		return dialect.Invalid("uow.Config.Contention is %v; use Adaptive, LockOnRetry, NeverLock or AlwaysLock", c.Contention)
	case c.HotWindow < 0:
		return dialect.Invalid("uow.Config.HotWindow is %v; use a positive duration, 0 for the default of 1s, or Contention LockOnRetry to lock only in retries", c.HotWindow)
	case c.MaxHandlerDepth < 0:
		return dialect.Invalid("uow.Config.MaxHandlerDepth is %d; use a positive number, or 0 for the default of 8", c.MaxHandlerDepth)
	}
	return nil
}
