package dialect

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Querier is what the inbox statements need of a transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// maxInboxRounds bounds how often ClaimInbox retries an InboxInsert that
// found rows inserted since it last looked. Each round removes at least one
// row from the claim, so only a stream of concurrent deliveries of the same
// messages could use them up.
const maxInboxRounds = 16

// ClaimInbox records (handlers[i], ids[i]) in the inbox, in one statement
// where the dialect can, for every i whose row is not there yet, and
// reports which rows it inserted. q holds the rendered statements of d. A
// row it did not insert took effect on an earlier delivery. Rows other
// transactions are inserting are waited for. Pass the rows sorted, so that
// transactions claiming overlapping rows lock them in the same order.
func ClaimInbox(ctx context.Context, tx Querier, d Dialect, q *SQL, now time.Time, handlers, ids []string) ([]bool, error) {
	claimed := make([]bool, len(ids))
	if len(ids) == 0 {
		return claimed, nil
	}
	if q.InboxClaim != "" {
		rows, err := tx.QueryContext(ctx, q.InboxClaim, d.Time(now), d.Strings(handlers), d.Strings(ids))
		if err != nil {
			return nil, err
		}
		pos := positions(handlers, ids)
		err = scanPairs(rows, func(h, id string) {
			if i, ok := pos[pairKey(h, id)]; ok {
				claimed[i] = true
			}
		})
		return claimed, err
	}

	rest := make([]int, len(ids))
	for i := range rest {
		rest[i] = i
	}
	for round := 1; ; round++ {
		hs, ms := pick(handlers, rest), pick(ids, rest)
		_, err := tx.ExecContext(ctx, q.InboxInsert, d.Time(now), d.Strings(hs), d.Strings(ms))
		if err == nil {
			for _, i := range rest {
				claimed[i] = true
			}
			return claimed, nil
		}
		if d.Classify(err) != KeyConflict {
			return nil, err
		}
		if round == maxInboxRounds {
			return nil, fmt.Errorf("keel: the inbox rows of %d messages kept being inserted by other transactions while this one claimed them: %w", len(rest), err)
		}
		rows, err := tx.QueryContext(ctx, q.InboxPresent, d.Strings(hs), d.Strings(ms))
		if err != nil {
			return nil, err
		}
		present := map[string]bool{}
		if err := scanPairs(rows, func(h, id string) { present[pairKey(h, id)] = true }); err != nil {
			return nil, err
		}
		kept := rest[:0]
		for _, i := range rest {
			if !present[pairKey(handlers[i], ids[i])] {
				kept = append(kept, i)
			}
		}
		if rest = kept; len(rest) == 0 {
			return claimed, nil
		}
	}
}

// ReleaseInbox deletes the inbox rows (handlers[i], ids[i]): those a
// transaction claimed for handlers that then did not take effect.
func ReleaseInbox(ctx context.Context, tx Querier, d Dialect, q *SQL, handlers, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, q.InboxRelease, d.Strings(handlers), d.Strings(ids))
	return err
}

func pairKey(handler, id string) string { return handler + "\x00" + id }

func positions(handlers, ids []string) map[string]int {
	pos := make(map[string]int, len(ids))
	for i := range ids {
		pos[pairKey(handlers[i], ids[i])] = i
	}
	return pos
}

func pick(v []string, idx []int) []string {
	out := make([]string, len(idx))
	for j, i := range idx {
		out[j] = v[i]
	}
	return out
}

func scanPairs(rows *sql.Rows, fn func(handler, id string)) error {
	defer rows.Close()
	for rows.Next() {
		var h, id string
		if err := rows.Scan(&h, &id); err != nil {
			return err
		}
		fn(h, id)
	}
	return rows.Err()
}
