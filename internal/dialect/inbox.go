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

// ClaimInbox records in the inbox that handler takes each of ids, in one
// statement where the dialect can, for every id whose row is not there
// yet, and reports which rows it inserted: claimed[i] for ids[i], true for
// only the first position of an id listed twice. q holds the rendered
// statements of d. A row it did not insert took effect on an earlier
// delivery. Rows other transactions are inserting are waited for. Pass ids
// sorted, so that transactions claiming overlapping rows lock them in the
// same order.
func ClaimInbox(ctx context.Context, tx Querier, d Dialect, q *SQL, now time.Time, handler string, ids []string) ([]bool, error) {
	claimed := make([]bool, len(ids))
	if len(ids) == 0 {
		return claimed, nil
	}
	// An id listed twice (a message a producer sent twice, in one batch)
	// is claimed once, for its first position.
	pos := make(map[string]int, len(ids))
	unique := ids[:0:0]
	for i, id := range ids {
		if _, ok := pos[id]; !ok {
			pos[id] = i
			unique = append(unique, id)
		}
	}
	ids = unique
	if q.InboxClaim != "" {
		rows, err := tx.QueryContext(ctx, q.InboxClaim, handler, d.Time(now), d.Strings(ids))
		if err != nil {
			return nil, err
		}
		err = scanIDs(rows, func(id string) {
			if i, ok := pos[id]; ok {
				claimed[i] = true
			}
		})
		return claimed, err
	}

	rest := ids
	for round := 1; ; round++ {
		_, err := tx.ExecContext(ctx, q.InboxInsert, handler, d.Time(now), d.Strings(rest))
		if err == nil {
			for _, id := range rest {
				claimed[pos[id]] = true
			}
			return claimed, nil
		}
		if d.Classify(err) != KeyConflict {
			return nil, err
		}
		if round == maxInboxRounds {
			return nil, fmt.Errorf("keel: the inbox rows of %d messages kept being inserted by other transactions while this one claimed them: %w", len(rest), err)
		}
		rows, err := tx.QueryContext(ctx, q.InboxPresent, handler, d.Strings(rest))
		if err != nil {
			return nil, err
		}
		present := map[string]bool{}
		if err := scanIDs(rows, func(id string) { present[id] = true }); err != nil {
			return nil, err
		}
		var kept []string
		for _, id := range rest {
			if !present[id] {
				kept = append(kept, id)
			}
		}
		if rest = kept; len(rest) == 0 {
			return claimed, nil
		}
	}
}

// ReleaseInbox deletes the inbox rows of handler and ids: those a
// transaction claimed for deliveries that then did not take effect.
func ReleaseInbox(ctx context.Context, tx Querier, d Dialect, q *SQL, handler string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, q.InboxRelease, handler, d.Strings(ids))
	return err
}

func scanIDs(rows *sql.Rows, fn func(id string)) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		fn(id)
	}
	return rows.Err()
}
