package outbox

import (
	"context"
	"errors"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/dialect"
)

// batch is one claimed batch, from its claim until it is settled.
type batch struct {
	msgs  []Message
	parts uint64 // the partitions it was claimed from, in flight until it ends
	limit int    // how many rows the claim asked for
	start time.Time

	// Set by publish.
	left  bool // not published: the leases were too close to expiry
	rep   BatchReport
	perr  error                // what Publish returned
	err   error                // why marking the delivered rows failed
	took  time.Duration        // how long Publish ran; 0 when the relay was stopping
	stuck map[string]time.Time // keys whose failure could not be recorded, until when
}

// full reports whether the claim returned as many rows as it asked for, so
// more are probably waiting.
func (b *batch) full() bool { return len(b.msgs) == b.limit }

// settleTimeout bounds marking a published batch done, which runs even
// while the relay stops so that delivered rows are not sent again.
const settleTimeout = 10 * time.Second

// claimBatch claims up to batchLimit deliverable rows of the leased
// partitions. When batches are in flight (after > 0 is the highest seq
// they claimed, and inFlight their row count), it leaves out the rows of
// the keys in except, and the rows beyond a window above after, wide enough
// to hold reach batches of this relay's partitions. It returns nil when there is
// nothing to publish now: no row, no lease, or leases too close to expiry
// to publish within PublishTimeout. A batch it returns keeps its partitions
// in flight until publish ends; publish checks the leases again before it
// publishes.
func (r *Relay) claimBatch(ctx context.Context, except map[string]struct{}, after int64, reach, inFlight int) (*batch, error) {
	claimable, deadline := r.leases.begin()
	keep := false
	defer func() {
		if !keep {
			r.leases.end(claimable)
		}
	}()
	if claimable == 0 {
		return nil, nil
	}
	start := time.Now()
	if deadline.Sub(start) <= r.cfg.PublishTimeout {
		// The leases may lapse mid-publish and another relay take over;
		// wait for a renewal instead.
		return nil, nil
	}
	limit := r.batchLimit()
	var msgs []Message
	var err error
	var maxSeq int64
	if after > 0 {
		maxSeq = after + int64(reach*limit)*Partitions/int64(bits.OnesCount64(claimable))
	}
	switch _, inGo := r.ob.d.(dialect.KeysFilteredByRelay); {
	case after == 0:
		msgs, err = r.claimRows(ctx, claimable, start, nil, 0, limit)
	case inGo:
		// Rows of the keys in flight come back, their batches' own rows
		// among them: ask for that many more, and drop them here.
		msgs, err = r.claimRows(ctx, claimable, start, []string{}, maxSeq, limit+inFlight)
		msgs = slices.DeleteFunc(msgs, func(m Message) bool {
			_, busy := except[m.PartitionKey()]
			return busy
		})
		msgs = msgs[:min(len(msgs), limit)]
	default:
		keys := make([]string, 0, len(except))
		for k := range except {
			keys = append(keys, k)
		}
		msgs, err = r.claimRows(ctx, claimable, start, keys, maxSeq, limit)
	}
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	keep = true
	return &batch{msgs: msgs, parts: claimable, limit: limit, start: start}, nil
}

// publish publishes b and records the outcome: delivered rows are deleted
// (or marked delivered when Retention > 0), failed ones get a retry time or
// are parked. Two statements at most, whatever the batch size. It runs in
// a goroutine of its own while other batches, of other keys, are claimed
// and published; it reports through b's fields and hands its partitions
// back when it ends.
func (r *Relay) publish(ctx context.Context, b *batch) {
	defer r.leases.end(b.parts)
	msgs := b.msgs
	if time.Until(r.leases.expiry()) <= r.cfg.PublishTimeout {
		// Checked again right before publishing: the claim took time.
		r.log.Warn("keel: relay lease close to expiry; batch left for after renewal", "claimed", len(msgs))
		b.left = true
		return
	}
	gctx, release := r.publishContext(ctx)
	pctx, cancel := context.WithTimeout(gctx, r.cfg.PublishTimeout)
	pstart := time.Now()
	perr := r.pub.Publish(pctx, msgs)
	cancel()
	release()
	now := time.Now()
	done, fails, rep := r.outcome(msgs, perr, now)
	if perr != nil && ctx.Err() != nil {
		// Stopping: a failure now is most likely the cancellation itself, so
		// it does not count as an attempt.
		fails, rep.Failed, rep.Parked = nil, 0, 0
	} else {
		b.took = now.Sub(pstart)
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer wcancel()
	b.perr = perr
	if b.err = r.settleDone(wctx, done, now); b.err != nil {
		return
	}
	rep.Unrecorded, b.stuck = r.settleFailed(wctx, msgs, fails, now)
	rep.Claimed, rep.Delivered = len(msgs), len(done)
	rep.Duration = time.Since(b.start)
	oldest := msgs[0].EnqueuedAt
	for i := range msgs {
		if msgs[i].EnqueuedAt.Before(oldest) {
			oldest = msgs[i].EnqueuedAt
		}
	}
	rep.Lag = now.Sub(oldest)
	b.rep = rep
}

// report observes and logs a settled batch. It runs on the delivering
// goroutine, so the Observer is never called concurrently.
func (r *Relay) report(b *batch) {
	if b.err != nil || b.left {
		return
	}
	rep := b.rep
	r.obs.ObserveBatch(rep)
	if b.perr != nil && rep.Failed+rep.Parked > 0 {
		r.log.Warn("keel: publish failed; messages will be retried", "failed", rep.Failed, "parked", rep.Parked,
			"held", rep.Held, "delivered", rep.Delivered, "err", b.perr)
	}
	r.log.Debug("keel: relay batch", "claimed", rep.Claimed, "delivered", rep.Delivered, "duration", rep.Duration, "lag", rep.Lag)
}

// batchLimit is how many rows the next claim asks for: BatchSize, or fewer
// when the publisher's pace says a full batch would not publish within
// half of PublishTimeout.
func (r *Relay) batchLimit() int {
	if r.pace <= 0 {
		return r.cfg.BatchSize
	}
	n := int(min(int64(r.cfg.PublishTimeout/2/r.pace), int64(r.cfg.BatchSize)))
	return max(n, 1)
}

// learnPace updates the publisher's pace per message from a published
// batch: a moving average, except that a slower batch counts at once, so
// that one publish running into PublishTimeout halves the next batches.
func (r *Relay) learnPace(b *batch) {
	if b.took <= 0 {
		return
	}
	per := b.took / time.Duration(len(b.msgs))
	switch {
	case r.pace == 0 || per > r.pace:
		r.pace = per
	default:
		r.pace = (3*r.pace + per) / 4
	}
}

// claimRows reads the oldest deliverable rows of the partitions in set:
// pending, due, not behind a failed or parked row of the same key, not of a
// key in except or held in memory after its failure could not be recorded,
// and, when maxSeq > 0, not above maxSeq.
func (r *Relay) claimRows(ctx context.Context, set uint64, now time.Time, except []string, maxSeq int64, n int) ([]Message, error) {
	d := r.ob.d
	except = append(except, r.stuckKeys(now)...)
	var query string
	args := []any{d.Int64s(partitionList(set)), d.Time(now)}
	switch {
	case maxSeq > 0:
		query, args = r.claimAhead, append(args, d.Strings(except), maxSeq, n)
	case len(except) > 0:
		query, args = r.claimExcept, append(args, d.Strings(except), n)
	default:
		query, args = r.claim, append(args, n)
	}
	rows, err := r.stmts.query(ctx, query, args...)
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
		err = r.stmts.exec(ctx, r.ob.q.MarkDone, d.Time(now), d.Int64s(done))
	} else {
		err = r.stmts.exec(ctx, r.ob.q.DeleteDone, d.Int64s(done))
	}
	return r.ob.wrap("mark delivered", err, r.ob.table)
}

// settleFailed records failures in one statement. If that fails, it tries
// them one by one, so that one row the database refuses cannot keep the
// others from being recorded. A row it still cannot record is reported
// loudly, and its key is left out of claims until its retry time: the
// message is neither lost nor sent in a tight loop, and other keys flow.
// A closed database is reported once, as no row would fare better. It
// returns how many failures went unrecorded, and the keys to hold in
// memory with their retry times; the delivering goroutine adds them to the
// relay's before the batch's keys may be claimed again.
func (r *Relay) settleFailed(ctx context.Context, msgs []Message, fails []dialect.Failure, now time.Time) (int, map[string]time.Time) {
	if len(fails) == 0 {
		return 0, nil
	}
	err := r.recordFailures(ctx, fails)
	if err == nil {
		return 0, nil
	}
	if dialect.IsClosed(err) {
		// No row fares better alone, and Run stops at its next statement.
		r.log.Error("keel: relay could not record failed deliveries: the database is closed", "failures", len(fails), "err", err)
		return len(fails), nil
	}
	r.log.Error("keel: relay could not record failed deliveries; recording them one by one", "failures", len(fails), "err", err)
	bySeq := make(map[int64]*Message, len(msgs))
	for i := range msgs {
		bySeq[msgs[i].Seq] = &msgs[i]
	}
	unrecorded := 0
	stuck := map[string]time.Time{}
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
		stuck[m.PartitionKey()] = until
		r.log.Error("keel: relay cannot record a failed delivery; its key is held in memory until its retry time",
			"id", m.ID, "key", dialect.Quote(m.PartitionKey()), "seq", m.Seq, "until", until, "err", err)
	}
	return unrecorded, stuck
}

func (r *Relay) recordFailures(ctx context.Context, fails []dialect.Failure) error {
	args, err := r.ob.d.Failures(fails)
	if err == nil {
		err = r.stmts.exec(ctx, r.ob.q.Fail, args...)
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

// publishContext returns the context a batch publishes under, and the
// function that releases it once the batch is done: ctx itself or, with a
// StopTimeout, a context that ends StopTimeout after ctx does, so that a
// stopping relay lets its batches in flight finish.
func (r *Relay) publishContext(ctx context.Context) (context.Context, func()) {
	if r.cfg.StopTimeout <= 0 {
		return ctx, func() {}
	}
	grace, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(r.cfg.StopTimeout, func() { cancel(context.Cause(ctx)) })
	})
	return grace, func() {
		stop()
		cancel(nil)
	}
}
