package outbox

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/backoff"
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
// time or are parked. Three statements in all, whatever the batch size.
func (r *Relay) deliverBatch(ctx context.Context) (batchResult, error) {
	claimable, deadline := r.leases.begin()
	defer r.leases.end()
	if claimable == 0 {
		return batchResult{}, nil
	}
	start := time.Now()
	if deadline.Sub(start) <= r.cfg.PublishTimeout {
		// The leases may lapse mid-publish and another relay take over;
		// wait for a renewal instead.
		return batchResult{}, nil
	}
	msgs, err := r.claimRows(ctx, claimable, start)
	if err != nil || len(msgs) == 0 {
		return batchResult{}, err
	}
	if time.Until(r.leases.expiry()) <= r.cfg.PublishTimeout {
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
	err = r.settleDone(wctx, done, now)
	if err == nil {
		rep.Unrecorded = r.settleFailed(wctx, msgs, fails, now)
	}
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

// claimRows reads the oldest deliverable rows of the partitions in set:
// pending, due, not behind a failed or parked row of the same key, and not
// of a key held in memory after its failure could not be recorded.
func (r *Relay) claimRows(ctx context.Context, set uint64, now time.Time) ([]Message, error) {
	d, n := r.ob.d, r.cfg.BatchSize
	query, args := r.claim, []any{d.Int64s(partitionList(set)), d.Time(now), n}
	if keys := r.stuckKeys(now); len(keys) > 0 {
		query, args = r.claimExcept, []any{args[0], args[1], d.Strings(keys), n}
	}
	rows, err := r.ob.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, r.ob.wrap("claim", err, r.ob.table)
	}
	defer rows.Close()
	msgs := make([]Message, 0, min(n, 256))
	for rows.Next() {
		m, err := r.ob.scanMessage(rows)
		if err != nil {
			return nil, r.ob.wrap("claim", err, r.ob.table)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, r.ob.wrap("claim", err, r.ob.table)
	}
	return msgs, nil
}

// outcome sorts a published batch into rows to mark done and failures to
// record. Once a message of a key fails, the key's later messages in the
// batch are held (HoldBack): left pending and untouched, even if the
// publisher reported them delivered, so the key's order survives the retry.
func (r *Relay) outcome(msgs []Message, perr error, now time.Time) (done []int64, fails []dialect.Failure, rep BatchReport) {
	var be *BatchError
	if perr != nil && (!errors.As(perr, &be) || len(be.Errs) != len(msgs)) {
		be = nil
	}
	done = make([]int64, 0, len(msgs))
	var hold HoldBack
	for i := range msgs {
		m := &msgs[i]
		err := perr
		if be != nil {
			err = be.Errs[i]
		}
		if hold.Check(m) != nil {
			rep.Held++
			continue
		}
		if err == nil {
			done = append(done, m.Seq)
			continue
		}
		hold.Fail(m)
		if errors.Is(err, ErrNotAttempted) {
			rep.Held++
			continue
		}
		attempt := m.Attempts + 1
		f := dialect.Failure{Seq: m.Seq, Err: errorText(err)}
		if errors.Is(err, ErrPermanent) || attempt >= r.cfg.MaxAttempts {
			f.State, f.NextAt = statePark, now // next_attempt_at of a parked row records when it was parked
			rep.Parked++
			r.log.Error("keel: outbox message parked", "id", m.ID, "key", m.Key, "seq", m.Seq, "attempts", attempt, "err", err)
		} else {
			f.State, f.NextAt = statePending, now.Add(r.retry().Delay(attempt))
			rep.Failed++
		}
		fails = append(fails, f)
	}
	return done, fails, rep
}

// Row states, as stored in the state column; 1 is delivered (kept for
// retention), set by the MarkDone statement.
const (
	statePending = 0
	statePark    = 2
)

// retry is the schedule of a failed message's next attempts.
func (r *Relay) retry() backoff.Policy {
	return backoff.Policy{Base: r.cfg.RetryBackoff, Max: r.cfg.MaxRetryBackoff}
}

// settleDone deletes the delivered rows, or marks them delivered when they
// are kept for retention, in one statement of its own: nothing that goes
// wrong recording failures can undo it.
func (r *Relay) settleDone(ctx context.Context, done []int64, now time.Time) error {
	if len(done) == 0 {
		return nil
	}
	d := r.ob.d
	var err error
	if r.cfg.Retention > 0 {
		_, err = r.ob.db.ExecContext(ctx, r.ob.q.MarkDone, d.Time(now), d.Int64s(done))
	} else {
		_, err = r.ob.db.ExecContext(ctx, r.ob.q.DeleteDone, d.Int64s(done))
	}
	return r.ob.wrap("mark delivered", err, r.ob.table)
}

// settleFailed records failures in one statement. If that fails, it tries
// them one by one, so that one row the database refuses cannot keep the
// others from being recorded. A row it still cannot record is reported
// loudly, and its key is left out of claims until its retry time: the
// message is neither lost nor sent in a tight loop, and other keys flow.
// A closed database is reported once, as no row would fare better. It
// returns how many failures went unrecorded.
func (r *Relay) settleFailed(ctx context.Context, msgs []Message, fails []dialect.Failure, now time.Time) int {
	if len(fails) == 0 {
		return 0
	}
	err := r.recordFailures(ctx, fails)
	if err == nil {
		return 0
	}
	if dialect.IsClosed(err) {
		// No row fares better alone, and Run stops at its next statement.
		r.log.Error("keel: relay could not record failed deliveries: the database is closed", "failures", len(fails), "err", err)
		return len(fails)
	}
	r.log.Error("keel: relay could not record failed deliveries; recording them one by one", "failures", len(fails), "err", err)
	bySeq := make(map[int64]*Message, len(msgs))
	for i := range msgs {
		bySeq[msgs[i].Seq] = &msgs[i]
	}
	unrecorded := 0
	for _, f := range fails {
		err := r.recordFailures(ctx, []dialect.Failure{f})
		if err == nil {
			continue
		}
		unrecorded++
		m := bySeq[f.Seq]
		until := f.NextAt
		if f.State == statePark || !until.After(now) {
			until = now.Add(r.retry().Delay(m.Attempts + 1))
		}
		r.stuck[m.PartitionKey()] = until
		r.log.Error("keel: relay cannot record a failed delivery; its key is held in memory until its retry time",
			"id", m.ID, "key", dialect.Quote(m.PartitionKey()), "seq", m.Seq, "until", until, "err", err)
	}
	return unrecorded
}

func (r *Relay) recordFailures(ctx context.Context, fails []dialect.Failure) error {
	args, err := r.ob.d.Failures(fails)
	if err == nil {
		_, err = r.ob.db.ExecContext(ctx, r.ob.q.Fail, args...)
	}
	return r.ob.wrap("record failures", err, r.ob.table)
}

// stuckKeys returns the keys still held in memory, forgetting those whose
// retry time has come.
func (r *Relay) stuckKeys(now time.Time) []string {
	if len(r.stuck) == 0 {
		return nil
	}
	keys := make([]string, 0, len(r.stuck))
	for k, until := range r.stuck {
		if !until.After(now) {
			delete(r.stuck, k)
			continue
		}
		keys = append(keys, k)
	}
	return keys
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
