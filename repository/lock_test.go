package repository_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// TestGetForUpdateBlocks shows that GetForUpdate on PostgreSQL makes a
// second transaction wait for the first: the second reads only after the
// first commits, so it sees the committed state and saves without conflict.
func TestGetForUpdateBlocks(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, tdb testdb.DB, repo repository.Repository[*Account]) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db := tdb.SQL()
		mustSave(t, repo, db, newAccount("a1", "Ada"))

		if !tdb.Setup.IsPostgres() {
			// SQLite serialises writers at BEGIN (_txlock=immediate), so
			// GetForUpdate is a plain read inside the transaction.
			tx := begin(t, tdb)
			a, err := repo.GetForUpdate(ctx, tx, "a1")
			if err != nil {
				t.Fatal(err)
			}
			a.Deposit(1)
			mustSave(t, repo, tracking(tx), a)
			commit(t, tx)
			return
		}

		first := begin(t, tdb)
		a, err := repo.GetForUpdate(ctx, first, "a1")
		if err != nil {
			t.Fatal(err)
		}

		second := begin(t, tdb)
		var pid int
		if err := second.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		type result struct {
			a   *Account
			err error
		}
		done := make(chan result, 1)
		go func() {
			b, err := repo.GetForUpdate(ctx, second, "a1")
			done <- result{b, err}
		}()

		// Wait until PostgreSQL reports the second backend waiting on a lock.
		for {
			var waiting sql.NullString
			err := db.QueryRowContext(ctx, tdb.Dialect().Rebind("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?"), pid).Scan(&waiting)
			if err != nil {
				t.Fatalf("waiting for the second transaction to block: %v", err)
			}
			if waiting.String == "Lock" {
				break
			}
			select {
			case r := <-done:
				t.Fatalf("second GetForUpdate returned while the first transaction held the row: %+v", r)
			case <-time.After(time.Millisecond):
			}
		}

		// A plain Get does not take the lock, so it does not wait.
		if got := mustGet(t, repo, db, "a1"); got.Version() != 1 {
			t.Fatalf("plain Get saw version %d, want 1", got.Version())
		}

		a.Deposit(10)
		mustSave(t, repo, tracking(first), a)
		commit(t, first)

		var r result
		select {
		case r = <-done:
		case <-ctx.Done():
			t.Fatal("second GetForUpdate still blocked after the first transaction committed")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.a.Version() != 2 || r.a.Balance != 10 {
			t.Fatalf("second transaction read v%d balance %d, want the committed v2 balance 10", r.a.Version(), r.a.Balance)
		}
		r.a.Deposit(5)
		mustSave(t, repo, tracking(second), r.a)
		commit(t, second)
		if got := mustGet(t, repo, db, "a1"); got.Version() != 3 || got.Balance != 15 {
			t.Fatalf("final v%d balance %d, want v3 balance 15", got.Version(), got.Balance)
		}
	})
}
