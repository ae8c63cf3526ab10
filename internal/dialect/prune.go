package dialect

import (
	"context"
	"database/sql"
)

// DeleteInBatches runs query, a DELETE of at most batch rows older than
// cutoff that takes (cutoff, batch) as its parameters, until a run deletes
// fewer than batch rows or ctx is done. It returns how many rows it deleted
// in all. Errors are returned as they come, for the caller to wrap.
func DeleteInBatches(ctx context.Context, db *sql.DB, query string, cutoff any, batch int) (int64, error) {
	var total int64
	for {
		res, err := db.ExecContext(ctx, query, cutoff, batch)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
