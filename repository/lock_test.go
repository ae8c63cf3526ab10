package repository_test

import (
	"context"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// TestGetForUpdateBlocks shows that GetForUpdate on PostgreSQL and MySQL
// makes a second transaction wait for the first: the second reads only
// after the first commits, so it sees the committed state (on MySQL, not
// its REPEATABLE READ snapshot) and saves without conflict.
func TestGetForUpdateBlocks(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, tdb testdb.DB, repo repository.Repository[*Account]) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db := tdb.SQL()
		mustSave(t, repo, db, newAccount("a1", "Ada"))

		probe, rowLocks := lockProbes[tdb.Setup.Dialect]
		if !rowLocks {
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
		var conn int64
		if err := second.QueryRowContext(ctx, probe.conn).Scan(&conn); err != nil {
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

		// Wait until the server reports the second connection waiting on a
		// lock.
		for {
			var waiting int
			err := db.QueryRowContext(ctx, tdb.Dialect().Rebind(probe.waiting), conn).Scan(&waiting)
			if err != nil {
				t.Fatalf("waiting for the second transaction to block: %v", err)
			}
			if waiting > 0 {
				break
			}
			select {
			case r := <-done:
				t.Fatalf("second GetForUpdate returned while the first transaction held the row: %+v", r)
			case <-time.After(probe.every):
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

// lockProbe asks a server with row locks which connection a transaction
// runs on, and whether that connection waits on a lock.
type lockProbe struct {
	conn    string        // the current connection's id
	waiting string        // 1 if the connection with the id (?) waits on a lock, else 0
	every   time.Duration // how often to ask
}

// lockProbes has the probes of the dialects with row locks, by dialect name.
var lockProbes = map[string]lockProbe{
	"postgres": {
		conn:    "SELECT pg_backend_pid()",
		waiting: "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock'",
		every:   time.Millisecond,
	},
	"mysql": {
		conn:    "SELECT CONNECTION_ID()",
		waiting: "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ? AND trx_state = 'LOCK WAIT'",
		// InnoDB refreshes the table only when nobody has read it for
		// 100ms, so asking more often would read a stale copy forever.
		every: 150 * time.Millisecond,
	},
}
