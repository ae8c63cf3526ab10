package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// ParkedKey summarizes the parked messages of one partition key.
type ParkedKey struct {
	// Key is the partition key.
	Key string
	// Count is how many messages of the key are parked.
	Count int64
	// FirstSeq is the outbox position of the key's oldest parked message,
	// which under ParkKey holds the key's later messages back.
	FirstSeq int64
	// FirstID is the id of that message.
	FirstID string
	// FirstName is its event name.
	FirstName string
	// LastError is the error of its last failed attempt.
	LastError string
	// ParkedAt is when that oldest message was parked.
	ParkedAt time.Time
}

// ParkedKeysQuery pages through ParkedKeys. The zero value asks for the
// first 100 keys.
type ParkedKeysQuery struct {
	// AfterSeq lists the keys whose FirstSeq is above it; pass the last
	// FirstSeq of the previous page to page on.
	AfterSeq int64
	// Limit caps the keys returned. If zero, 100 are returned at most.
	Limit int
}

// defaultParkedLimit is the page size of Parked and ParkedKeys when the
// query leaves Limit zero.
const defaultParkedLimit = 100

// ParkedKeys lists the keys that have parked messages, oldest first (by
// FirstSeq), with how many each has and its oldest parked message: the one
// to look at, and under ParkKey the one holding the key back. One
// statement groups the parked rows by key in the database, reading an
// index of the rows that hold keys back, not the delivered history; its
// cost grows with the parked rows, not with the table.
func (o *Outbox) ParkedKeys(ctx context.Context, q ParkedKeysQuery) ([]ParkedKey, error) {
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, dialect.Invalid("ParkedKeys: ParkedKeysQuery.Limit is %d; pass a positive number of keys, or 0 for %d", limit, defaultParkedLimit)
	case limit == 0:
		limit = defaultParkedLimit
	}
	rows, err := o.db.QueryContext(ctx, o.q.ParkedKeys, q.AfterSeq, limit)
	if err != nil {
		return nil, o.wrap("list parked keys", err, o.table)
	}
	defer rows.Close()
	var out []ParkedKey
	for rows.Next() {
		var (
			k        ParkedKey
			lastErr  sql.NullString
			parkedAt dialect.Timestamp
		)
		if err := rows.Scan(&k.Key, &k.Count, &k.FirstSeq, &k.FirstID, &k.FirstName, &lastErr, &parkedAt); err != nil {
			return nil, o.wrap("list parked keys", err, o.table)
		}
		k.LastError, k.ParkedAt = lastErr.String, parkedAt.Time
		out = append(out, k)
	}
	return out, o.wrap("list parked keys", rows.Err(), o.table)
}

// ParkedError summarizes the parked messages whose last errors share a
// fingerprint (ErrorFingerprint).
type ParkedError struct {
	// Fingerprint identifies the group; pass it to RequeueError, or as
	// ParkedQuery.Error to list the group's messages.
	Fingerprint string
	// Pattern is the errors' common ErrorPattern.
	Pattern string
	// Sample is the last error of the group's oldest message, as written.
	Sample string
	// Count is how many parked messages the group holds.
	Count int64
	// Keys is how many distinct partition keys they belong to.
	Keys int64
	// FirstSeq is the outbox position of the group's oldest message.
	FirstSeq int64
}

// ParkedErrors groups every parked message by the fingerprint of its last
// error, largest group first (ties: oldest FirstSeq first).
//
// Fingerprints are computed in Go, so ParkedErrors reads the seq, id,
// partition key and last error of every parked row, in pages of 1000 in
// outbox order: its cost grows with the parked rows. It holds one entry
// per group and per distinct key of a group, never a page more of rows.
func (o *Outbox) ParkedErrors(ctx context.Context) ([]ParkedError, error) {
	groups := map[string]*ParkedError{}
	seen := map[[2]string]struct{}{} // (fingerprint, key) pairs counted
	err := o.scanParked(ctx, "group parked errors", func(page []parkedRow) error {
		for _, r := range page {
			pattern := ErrorPattern(r.lastErr)
			fp := fingerprintOf(pattern)
			g := groups[fp]
			if g == nil {
				// Rows come in seq order: the first is the oldest.
				g = &ParkedError{Fingerprint: fp, Pattern: pattern, Sample: r.lastErr, FirstSeq: r.seq}
				groups[fp] = g
			}
			g.Count++
			if _, ok := seen[[2]string{fp, r.key}]; !ok {
				seen[[2]string{fp, r.key}] = struct{}{}
				g.Keys++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]ParkedError, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b ParkedError) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.FirstSeq, b.FirstSeq)
	})
	return out, nil
}

// RequeueError makes every parked message whose last error has the given
// fingerprint (ErrorFingerprint, as ParkedErrors lists them) pending
// again, with a fresh set of attempts, wakes the relays once, and returns
// how many it requeued.
//
// It reads the parked rows as ParkedErrors does, and requeues the matches
// of each page of 1000 with one statement. Under ParkKey a requeued
// message whose key has an earlier parked message of another error still
// waits behind it: the relays deliver no message of a key past a parked
// one, so requeueing a group never breaks a key's order. When a statement
// fails, it returns how many it requeued before, with the error.
func (o *Outbox) RequeueError(ctx context.Context, fingerprint string) (int64, error) {
	if err := checkFingerprint("RequeueError", fingerprint); err != nil {
		return 0, err
	}
	var n int64
	ids := make([]string, 0, parkedPage)
	err := o.scanParked(ctx, "requeue error", func(page []parkedRow) error {
		ids = ids[:0]
		for _, r := range page {
			if ErrorFingerprint(r.lastErr) == fingerprint {
				ids = append(ids, r.id)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		res, err := o.db.ExecContext(ctx, o.q.RequeueIDs, o.d.Strings(ids))
		if err != nil {
			return o.wrap("requeue error", err, o.table)
		}
		m, err := res.RowsAffected()
		if err != nil {
			return o.wrap("requeue error", err, o.table)
		}
		n += m
		return nil
	})
	if n > 0 {
		// Wake the relays for what was requeued, even when a later page
		// failed.
		o.log.InfoContext(ctx, "keel: outbox error group requeued", "fingerprint", fingerprint, "messages", n)
		o.wake(ctx)
	}
	return n, err
}

// checkFingerprint returns an error, naming op, unless fp has the form of
// ErrorFingerprint's result.
func checkFingerprint(op, fp string) error {
	if !validFingerprint(fp) {
		return dialect.Invalid("%s: fingerprint %s is not 12 lowercase hex digits; take one from ParkedErrors, or compute it with ErrorFingerprint", op, dialect.Quote(fp))
	}
	return nil
}

// parkedPage is how many parked rows one read of scanParked or of a
// filtered Parked takes in.
const parkedPage = 1000

// parkedRow is a parked row as scanParked reads it.
type parkedRow struct {
	seq     int64
	id, key string
	lastErr string
}

// scanParked reads every parked row, in outbox order and in pages of
// parkedPage, and hands each page to fn once the page is read and its
// result set closed, so that fn may write.
func (o *Outbox) scanParked(ctx context.Context, op string, fn func([]parkedRow) error) error {
	page := make([]parkedRow, 0, parkedPage)
	var after int64
	for {
		rows, err := o.db.QueryContext(ctx, o.q.ParkedScan, after, parkedPage)
		if err != nil {
			return o.wrap(op, err, o.table)
		}
		page = page[:0]
		for rows.Next() {
			var (
				r       parkedRow
				lastErr sql.NullString
			)
			if err := rows.Scan(&r.seq, &r.id, &r.key, &lastErr); err != nil {
				rows.Close()
				return o.wrap(op, err, o.table)
			}
			r.lastErr = lastErr.String
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return o.wrap(op, err, o.table)
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
			after = page[len(page)-1].seq
		}
		if len(page) < parkedPage {
			return nil
		}
	}
}
