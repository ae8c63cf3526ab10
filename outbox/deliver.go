package outbox

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// batchResult is what one claim-publish-settle round did.
type batchResult struct {
	Claimed   int
	Delivered int
}

// settleTimeout bounds marking a published batch done, which runs even
// while the relay stops so that delivered rows are not sent again.
const settleTimeout = 10 * time.Second

// deliverBatch claims up to BatchSize deliverable rows of the leased
// partitions, publishes them and records the outcome: delivered rows are
// deleted (or marked delivered when Retention > 0), failed ones get a retry
// time or are parked. Three statements at most, whatever the batch size.
func (r *Relay) deliverBatch(ctx context.Context) (batchResult, error) {
	r.mu.Lock()
	claimable := r.owned &^ r.releasing
	deadline := r.deadline
	r.inflight = claimable
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight = 0
		pending := r.releasing != 0
		r.mu.Unlock()
		if pending {
			r.kickLeases()
		}
	}()
	if claimable == 0 {
		return batchResult{}, nil
	}
	start := time.Now()
	if deadline.Sub(start) <= r.cfg.PublishTimeout {
		// The leases may lapse mid-publish and another relay take over;
		// wait for a renewal instead.
		return batchResult{}, nil
	}
	msgs, err := r.claim(ctx, claimable, start)
	if err != nil || len(msgs) == 0 {
		return batchResult{}, err
	}
	if time.Until(r.leaseDeadline()) <= r.cfg.PublishTimeout {
		r.log.Warn("keel: relay lease close to expiry; batch left for after renewal", "claimed", len(msgs))
		return batchResult{}, nil
	}

	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	perr := r.pub.Publish(pctx, msgs)
	cancel()
	now := time.Now()
	done, fails, rep := r.outcome(msgs, perr, now)
	if perr != nil && ctx.Err() != nil {
		// Stopping: a failure now is most likely the cancellation itself, so
		// it does not count as an attempt.
		fails, rep.Failed, rep.Parked = nil, 0, 0
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	err = r.settle(wctx, done, fails, now)
	wcancel()
	if err != nil {
		return batchResult{Claimed: len(msgs)}, err
	}

	rep.Claimed, rep.Delivered = len(msgs), len(done)
	rep.Duration = time.Since(start)
	oldest := msgs[0].EnqueuedAt
	for i := range msgs {
		if msgs[i].EnqueuedAt.Before(oldest) {
			oldest = msgs[i].EnqueuedAt
		}
	}
	rep.Lag = now.Sub(oldest)
	r.obs.ObserveBatch(rep)
	if perr != nil && rep.Failed+rep.Parked > 0 {
		r.log.Warn("keel: publish failed; messages will be retried", "failed", rep.Failed, "parked", rep.Parked,
			"held", rep.Held, "delivered", rep.Delivered, "err", perr)
	}
	r.log.Debug("keel: relay batch", "claimed", rep.Claimed, "delivered", rep.Delivered, "duration", rep.Duration, "lag", rep.Lag)
	return batchResult{Claimed: len(msgs), Delivered: len(done)}, nil
}

// claim reads the oldest deliverable rows of the partitions in set:
// pending, due, and not behind a failed or parked row of the same key.
func (r *Relay) claim(ctx context.Context, set uint64, now time.Time) ([]Message, error) {
	n := r.cfg.BatchSize
	rows, err := r.db.QueryContext(ctx, r.q.claim, r.q.ints(partitionList(set)), r.d.Time(now), n)
	if err != nil {
		return nil, r.wrap("claim", err, r.ob)
	}
	defer rows.Close()
	msgs := make([]Message, 0, min(n, 256))
	for rows.Next() {
		m, _, err := r.scanMessage(rows)
		if err != nil {
			return nil, r.wrap("claim", err, r.ob)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, r.wrap("claim", err, r.ob)
	}
	return msgs, nil
}

// scanMessage scans messageColumns, then extra.
func (r *Relay) scanMessage(rows *sql.Rows, extra ...any) (Message, int, error) {
	var (
		m          Message
		part       int
		headers    string
		occurred   dialect.Timestamp
		enqueuedAt dialect.Timestamp
	)
	dest := append([]any{&m.Seq, &m.ID, &m.Topic, &m.Key, &part, &m.Name, &m.AggregateType, &m.AggregateID,
		&m.AggregateVersion, &m.Payload, &headers, &m.CorrelationID, &m.CausationID, &occurred, &enqueuedAt, &m.Attempts}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return m, 0, err
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	m.OccurredAt, m.EnqueuedAt = occurred.Time, enqueuedAt.Time
	h, err := DecodeHeaders(headers)
	if err != nil {
		r.log.Warn("keel: outbox row has corrupt headers; delivering without them", "id", m.ID, "err", err)
	}
	m.Headers = h
	return m, part, nil
}

// outcome sorts a published batch into rows to mark done and failures to
// record. Once a message of a key fails, the key's later messages in the
// batch are held: left pending and untouched, even if the publisher reported
// them delivered, so the key's order survives the retry.
func (r *Relay) outcome(msgs []Message, perr error, now time.Time) (done []int64, fails []failure, rep BatchReport) {
	var be *BatchError
	if perr != nil && (!errors.As(perr, &be) || len(be.Errs) != len(msgs)) {
		be = nil
	}
	done = make([]int64, 0, len(msgs))
	var failedKeys map[string]struct{}
	for i := range msgs {
		m := &msgs[i]
		err := perr
		if be != nil {
			err = be.Errs[i]
		}
		if failedKeys != nil {
			if _, held := failedKeys[m.Key]; held {
				rep.Held++
				continue
			}
		}
		if err == nil {
			done = append(done, m.Seq)
			continue
		}
		if failedKeys == nil {
			failedKeys = map[string]struct{}{}
		}
		failedKeys[m.Key] = struct{}{}
		if errors.Is(err, ErrNotAttempted) {
			rep.Held++
			continue
		}
		attempt := m.Attempts + 1
		f := failure{seq: m.Seq, err: errorText(err)}
		if errors.Is(err, ErrPermanent) || attempt >= r.cfg.MaxAttempts {
			f.state, f.nextAt = statePark, now // next_attempt_at of a parked row records when it was parked
			rep.Parked++
			r.log.Error("keel: outbox message parked", "id", m.ID, "key", m.Key, "seq", m.Seq, "attempts", attempt, "err", err)
		} else {
			f.state, f.nextAt = statePending, now.Add(r.backoff(attempt))
			rep.Failed++
		}
		fails = append(fails, f)
	}
	return done, fails, rep
}

// Row states, as stored in the state column; 1 is delivered (kept for
// retention), set by the markDone statement.
const (
	statePending = 0
	statePark    = 2
)

// settle records a batch's outcome in one statement per kind, in one
// transaction when there are both.
func (r *Relay) settle(ctx context.Context, done []int64, fails []failure, now time.Time) error {
	if len(done) == 0 && len(fails) == 0 {
		return nil
	}
	var ex Execer = r.db
	var tx *sql.Tx
	if len(done) > 0 && len(fails) > 0 {
		var err error
		if tx, err = r.db.BeginTx(ctx, nil); err != nil {
			return r.wrap("settle", err, r.ob)
		}
		defer func() { _ = tx.Rollback() }()
		ex = tx
	}
	if len(done) > 0 {
		var err error
		if r.cfg.Retention > 0 {
			_, err = ex.ExecContext(ctx, r.q.markDone, r.d.Time(now), r.q.ints(done))
		} else {
			_, err = ex.ExecContext(ctx, r.q.deleteDone, r.q.ints(done))
		}
		if err != nil {
			return r.wrap("mark delivered", err, r.ob)
		}
	}
	if len(fails) > 0 {
		args, err := r.q.failArgs(fails)
		if err != nil {
			return r.wrap("record failures", err, r.ob)
		}
		if _, err := ex.ExecContext(ctx, r.q.fail, args...); err != nil {
			return r.wrap("record failures", err, r.ob)
		}
	}
	if tx != nil {
		return r.wrap("settle", tx.Commit(), r.ob)
	}
	return nil
}

// backoff returns the delay before attempt+1: RetryBackoff doubled per
// earlier failure, capped at MaxRetryBackoff, with "equal jitter" (a random
// point in the upper half) so that keys failing together spread out.
func (r *Relay) backoff(attempt int) time.Duration {
	d := r.cfg.RetryBackoff
	for i := 1; i < attempt && d < r.cfg.MaxRetryBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxRetryBackoff)
	return d/2 + rand.N(d/2+1)
}

// errorText is an error as stored in last_error: valid UTF-8 without NUL
// bytes (PostgreSQL text accepts neither), at most 2000 bytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 2000 {
		s = s[:2000]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
