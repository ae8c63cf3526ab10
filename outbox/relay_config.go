package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// FailurePolicy says what happens to the later messages of a partition key
// once one of its messages is parked.
type FailurePolicy int

const (
	// ParkKey holds back every later message of a key whose message is
	// parked, until the parked message is requeued (or deleted by hand).
	// Per-key order is never broken, at the price of a stalled key. It is the
	// default.
	ParkKey FailurePolicy = iota
	// SkipMessage parks only the failing message and lets the key's later
	// messages flow. The key keeps moving, but a consumer sees a gap, and a
	// parked message that is requeued later arrives after messages that
	// followed it.
	SkipMessage
)

// String returns "ParkKey" or "SkipMessage".
func (p FailurePolicy) String() string {
	switch p {
	case ParkKey:
		return "ParkKey"
	case SkipMessage:
		return "SkipMessage"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// Defaults used by RelayConfig when a field is left zero.
const (
	DefaultBatchSize       = 1000
	DefaultMaxInFlight     = 2
	DefaultLeaseDuration   = 15 * time.Second
	DefaultMaxAttempts     = 20
	DefaultRetryBackoff    = time.Second
	DefaultMaxRetryBackoff = 10 * time.Minute
	DefaultMinPollInterval = 10 * time.Millisecond
	DefaultMaxPollInterval = time.Second
	DefaultCleanupInterval = time.Minute
)

// RelayConfig configures a Relay. The zero value is ready to use: every
// field states the default it falls back to when left zero.
type RelayConfig struct {
	// ID names this relay in the lease tables. It must be unique among the
	// relays running against one database. If empty, a name is made from the
	// host name, the process id and random bytes.
	ID string

	// BatchSize is how many rows are claimed, published and marked done per
	// round trip, at most. A relay claims fewer while the publisher's pace,
	// learnt from earlier batches, says a full batch would not publish
	// within half of PublishTimeout, so that a slow destination (handlers
	// doing I/O, say) gets batches it can finish in time. If zero,
	// DefaultBatchSize (1000) is used.
	BatchSize int

	// MaxInFlight is how many batches a relay publishes at once. With more
	// than one, the relay claims the next batch while earlier ones publish,
	// leaving out their partition keys, so a key whose messages are slow to
	// publish holds up only its own batch while other keys flow. Batches in
	// flight never share a key, and a key's messages are claimed again only
	// once the outcome of its batch in flight is recorded, so per-key order
	// and failure handling are the same as with one batch at a time. The
	// Publisher must then accept concurrent Publish calls (see Publisher).
	// If zero, DefaultMaxInFlight (2) is used, except on SQLite, where 1 is:
	// its one writer at a time makes a second batch's settling queue behind
	// the first's and behind the application's commits, and under load the
	// relay's own lease renewals with them. Set it on SQLite when a slow
	// publisher matters more. 1 publishes one batch at a time; at most 16.
	MaxInFlight int

	// Retention keeps delivered rows for this long (state 1, with
	// delivered_at set) before the cleaner deletes them. If zero, delivered
	// rows are deleted in the same statement that marks the batch done.
	Retention time.Duration
	// CleanupInterval is how often a running relay deletes delivered rows
	// older than Retention. Used only when Retention > 0. If zero,
	// DefaultCleanupInterval (1 minute) is used.
	CleanupInterval time.Duration
	// CleanupBatch bounds the rows deleted per statement by the cleaner. If
	// zero, DefaultCleanupBatch (1000) is used.
	CleanupBatch int

	// LeaseDuration is how long a partition lease lasts without renewal. A
	// relay renews its leases every LeaseDuration/3; the partitions of a
	// relay that crashed are taken over once its leases expire, so this is
	// also the fail-over delay. Relay hosts' clocks must agree to well within
	// LeaseDuration/3. If zero, DefaultLeaseDuration (15s) is used; at
	// least 300ms.
	LeaseDuration time.Duration
	// PublishTimeout bounds one call to Publisher.Publish. A relay only
	// starts publishing a batch while its leases have more than
	// PublishTimeout left. If zero, LeaseDuration/3 is used; it may not
	// exceed LeaseDuration/2.
	PublishTimeout time.Duration
	// StopTimeout is how long the batches in flight when Run's context ends
	// may go on publishing: Run stops claiming at once, lets them finish
	// for up to StopTimeout, settles them and returns. A relay told to stop
	// (SIGTERM in a rolling deploy) then hands over no half-published
	// batch, whose messages the next relay would send again. If zero, the
	// batches in flight are cancelled at once: messages their publisher had
	// not sent are left for the next relay, with no attempt counted. It may
	// not exceed PublishTimeout, so a batch never outlives its leases.
	StopTimeout time.Duration

	// MaxAttempts is how many times a message is tried before it is parked
	// (state 2) with its last error. If zero, DefaultMaxAttempts (20) is
	// used. Errors wrapping ErrPermanent park a message at once.
	MaxAttempts int
	// RetryBackoff is the delay after a message's first failure; it doubles
	// with each further failure, with jitter, up to MaxRetryBackoff. If
	// zero, DefaultRetryBackoff (1s) and DefaultMaxRetryBackoff (10m) are
	// used.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Policy says what a parked message does to the later messages of its
	// key. The zero value is ParkKey.
	Policy FailurePolicy

	// MinPollInterval and MaxPollInterval bound the polling safety net: after
	// a poll that finds work the relay polls again after MinPollInterval,
	// and every idle poll doubles the wait up to MaxPollInterval. Commits in
	// this process (through Store.Notify) and, with a store Listener, in
	// others wake the relay at once whatever the interval.
	// If zero, DefaultMinPollInterval (10ms) and DefaultMaxPollInterval (1s)
	// are used.
	MinPollInterval time.Duration
	MaxPollInterval time.Duration

	// DisablePrepare runs the claim and settle statements from their text
	// on every call instead of preparing them once per Run or Drain. Set it
	// behind a connection pooler that cannot keep prepared statements
	// (PgBouncer in transaction mode before 1.21). pgx's database/sql
	// driver prepares and caches statements by itself (unless configured
	// not to), so the relay never prepares them there.
	DisablePrepare bool

	// Logger receives the relay's structured logs: lease changes at Info,
	// publish failures at Warn, parked messages, database errors and why Run
	// stopped at Error, batches at Debug. If nil, the store's logger is
	// used.
	Logger *slog.Logger
	// Observer is told about every batch, for metrics. If nil, nothing is
	// observed.
	Observer Observer
}

// withDefaults returns cfg with zero fields filled in, or an error naming the
// first field that cannot be used.
func (cfg RelayConfig) withDefaults(log *slog.Logger, writers int) (RelayConfig, error) {
	bad := func(format string, args ...any) (RelayConfig, error) {
		return RelayConfig{}, dialect.Invalid("RelayConfig."+format, args...)
	}
	if cfg.ID == "" {
		cfg.ID = defaultRelayID()
	}
	if len(cfg.ID) > 200 {
		return bad("ID is %d bytes long; use at most 200", len(cfg.ID))
	}
	switch {
	case cfg.BatchSize < 0:
		return bad("BatchSize %d is negative; leave it 0 for %d or set a positive size", cfg.BatchSize, DefaultBatchSize)
	case cfg.BatchSize == 0:
		cfg.BatchSize = DefaultBatchSize
	case cfg.BatchSize > 10000:
		return bad("BatchSize %d is above 10000; smaller batches keep round trips and redelivery after a crash bounded", cfg.BatchSize)
	}
	switch {
	case cfg.MaxInFlight < 0:
		return bad("MaxInFlight %d is negative; leave it 0 for %d, or use 1 to publish one batch at a time", cfg.MaxInFlight, DefaultMaxInFlight)
	case cfg.MaxInFlight == 0 && writers == 1:
		cfg.MaxInFlight = 1
	case cfg.MaxInFlight == 0:
		cfg.MaxInFlight = DefaultMaxInFlight
	case cfg.MaxInFlight > 16:
		return bad("MaxInFlight %d is above 16; every batch in flight adds its keys to the next claim's exclusion list", cfg.MaxInFlight)
	}
	if cfg.Retention < 0 {
		return bad("Retention %v is negative; use 0 to delete rows on delivery or a positive duration to keep them", cfg.Retention)
	}
	if cfg.CleanupInterval < 0 {
		return bad("CleanupInterval %v is negative; leave it 0 for %v", cfg.CleanupInterval, DefaultCleanupInterval)
	}
	if cfg.CleanupInterval == 0 {
		cfg.CleanupInterval = DefaultCleanupInterval
	}
	if cfg.CleanupBatch < 0 {
		return bad("CleanupBatch %d is negative; leave it 0 for %d", cfg.CleanupBatch, DefaultCleanupBatch)
	}
	if cfg.CleanupBatch == 0 {
		cfg.CleanupBatch = DefaultCleanupBatch
	}
	switch {
	case cfg.LeaseDuration == 0:
		cfg.LeaseDuration = DefaultLeaseDuration
	case cfg.LeaseDuration < 300*time.Millisecond:
		return bad("LeaseDuration %v is below 300ms; leave it 0 for %v", cfg.LeaseDuration, DefaultLeaseDuration)
	}
	switch {
	case cfg.PublishTimeout == 0:
		cfg.PublishTimeout = cfg.LeaseDuration / 3
	case cfg.PublishTimeout < 0:
		return bad("PublishTimeout %v is negative; leave it 0 for LeaseDuration/3", cfg.PublishTimeout)
	case cfg.PublishTimeout > cfg.LeaseDuration/2:
		return bad("PublishTimeout %v exceeds half of LeaseDuration %v; raise LeaseDuration or lower PublishTimeout", cfg.PublishTimeout, cfg.LeaseDuration)
	}
	if cfg.StopTimeout < 0 || cfg.StopTimeout > cfg.PublishTimeout {
		return bad("StopTimeout %v is outside 0 to PublishTimeout (%v); leave it 0 to cancel batches in flight when Run stops", cfg.StopTimeout, cfg.PublishTimeout)
	}
	switch {
	case cfg.MaxAttempts < 0:
		return bad("MaxAttempts %d is negative; leave it 0 for %d", cfg.MaxAttempts, DefaultMaxAttempts)
	case cfg.MaxAttempts == 0:
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryBackoff < 0 || cfg.MaxRetryBackoff < 0 {
		return bad("RetryBackoff %v and MaxRetryBackoff %v must not be negative; leave them 0 for %v and %v", cfg.RetryBackoff, cfg.MaxRetryBackoff, DefaultRetryBackoff, DefaultMaxRetryBackoff)
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = max(DefaultMaxRetryBackoff, cfg.RetryBackoff)
	}
	if cfg.MaxRetryBackoff < cfg.RetryBackoff {
		return bad("MaxRetryBackoff %v is below RetryBackoff %v; raise MaxRetryBackoff", cfg.MaxRetryBackoff, cfg.RetryBackoff)
	}
	if cfg.Policy != ParkKey && cfg.Policy != SkipMessage {
		return bad("Policy %v is unknown; use ParkKey or SkipMessage", cfg.Policy)
	}
	if cfg.MinPollInterval < 0 || cfg.MaxPollInterval < 0 {
		return bad("MinPollInterval %v and MaxPollInterval %v must not be negative; leave them 0 for %v and %v", cfg.MinPollInterval, cfg.MaxPollInterval, DefaultMinPollInterval, DefaultMaxPollInterval)
	}
	if cfg.MinPollInterval == 0 {
		cfg.MinPollInterval = min(DefaultMinPollInterval, max(cfg.MaxPollInterval, time.Millisecond))
	}
	if cfg.MaxPollInterval == 0 {
		cfg.MaxPollInterval = max(DefaultMaxPollInterval, cfg.MinPollInterval)
	}
	if cfg.MaxPollInterval < cfg.MinPollInterval {
		return bad("MaxPollInterval %v is below MinPollInterval %v; raise MaxPollInterval", cfg.MaxPollInterval, cfg.MinPollInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return cfg, nil
}

func defaultRelayID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	b := make([]byte, 4)
	_, _ = io.ReadFull(rand.Reader, b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}
