package repository_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// ignoreRoot compares aggregates by their domain state; identity and
// version are checked through their methods.
var ignoreRoot = cmpopts.IgnoreUnexported(aggregate.Root{})

func mustSave(t *testing.T, repo repository.Repository[*Account], q repository.Querier, a *Account) {
	t.Helper()
	if err := repo.Save(context.Background(), q, a); err != nil {
		t.Fatalf("save %s: %v", a.ID(), err)
	}
}

func mustGet(t *testing.T, repo repository.Repository[*Account], q repository.Querier, id string) *Account {
	t.Helper()
	a, err := repo.Get(context.Background(), q, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return a
}

func wantConflict(t *testing.T, err error, id string, expected, actual int64) {
	t.Helper()
	if !errors.Is(err, repository.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	var ce *repository.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T %v, want *ConflictError", err, err)
	}
	want := repository.ConflictError{Type: "account", ID: id, Expected: expected, Actual: actual}
	if diff := cmp.Diff(want, *ce); diff != "" {
		t.Fatalf("conflict (-want +got):\n%s", diff)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		a := newAccount("a1", "Ada")
		a.Deposit(100)
		tr := tracking(db.SQL())
		mustSave(t, repo, tr, a)
		if a.Version() != 1 {
			t.Fatalf("version after insert = %d, want 1", a.Version())
		}
		if len(a.Events()) != 1 {
			t.Fatalf("pending events after save = %d, want 1: the repository must leave them to the unit of work", len(a.Events()))
		}

		got := mustGet(t, repo, db.SQL(), "a1")
		if diff := cmp.Diff(a, got, ignoreRoot); diff != "" {
			t.Fatalf("loaded aggregate differs (-saved +loaded):\n%s", diff)
		}
		if got.ID() != "a1" || got.Type() != "account" || got.Version() != 1 {
			t.Fatalf("loaded identity = %s/%s v%d, want account/a1 v1", got.Type(), got.ID(), got.Version())
		}
		if got.HasChanges() {
			t.Fatal("a loaded aggregate has pending events")
		}
	})
}

func TestVersionIncrements(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		a := newAccount("a1", "Ada")
		mustSave(t, repo, db.SQL(), a)
		tr := tracking(db.SQL())
		for want := int64(2); want <= 4; want++ {
			a.Deposit(10)
			mustSave(t, repo, tr, a)
			if a.Version() != want {
				t.Fatalf("version = %d, want %d", a.Version(), want)
			}
		}
		got := mustGet(t, repo, db.SQL(), "a1")
		if got.Version() != 4 || got.Balance != 30 {
			t.Fatalf("loaded v%d balance %d, want v4 balance 30", got.Version(), got.Balance)
		}
		// Events recorded after a save are stamped with the next version.
		got.Deposit(1)
		if v := got.Events()[0].AggregateVersion; v != 5 {
			t.Fatalf("event version = %d, want 5", v)
		}
	})
}

func TestStaleUpdate(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		q := db.SQL()
		mustSave(t, repo, q, newAccount("a1", "Ada"))
		first := mustGet(t, repo, q, "a1")
		second := mustGet(t, repo, q, "a1")

		first.Deposit(5)
		mustSave(t, repo, tracking(q), first)
		second.Deposit(7)
		err := repo.Save(context.Background(), tracking(q), second)
		wantConflict(t, err, "a1", 1, 2)
		if second.Version() != 1 {
			t.Fatalf("version after a failed save = %d, want 1", second.Version())
		}
		if got := mustGet(t, repo, q, "a1"); got.Balance != 5 || got.Version() != 2 {
			t.Fatalf("stored v%d balance %d, want the first writer's v2 balance 5", got.Version(), got.Balance)
		}
	})
}

func TestDuplicateInsert(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		a := newAccount("a1", "Ada")
		mustSave(t, repo, db.SQL(), a)
		a.Deposit(1)
		mustSave(t, repo, tracking(db.SQL()), a) // now at version 2

		// Inside a transaction, so PostgreSQL would abort it on an error.
		tx := begin(t, db)
		err := repo.Save(ctx, tx, newAccount("a1", "Bob"))
		wantConflict(t, err, "a1", 0, 2)
		if !strings.Contains(err.Error(), "is new") {
			t.Errorf("message %q does not say the aggregate is new", err)
		}
		// The conflict leaves the transaction usable.
		if got := mustGet(t, repo, tx, "a1"); got.Owner != "Ada" {
			t.Fatalf("owner = %q, want Ada", got.Owner)
		}
		mustSave(t, repo, tx, newAccount("a2", "Bob"))
		commit(t, tx)
		if ok, err := repo.Exists(ctx, db.SQL(), "a2"); err != nil || !ok {
			t.Fatalf("Exists(a2) = %v, %v after commit", ok, err)
		}
	})
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		q := db.SQL()
		if _, err := repo.Get(ctx, q, "missing"); !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
		if _, err := repo.GetForUpdate(ctx, q, "missing"); !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("GetForUpdate = %v, want ErrNotFound", err)
		}
		if ok, err := repo.Exists(ctx, q, "missing"); err != nil || ok {
			t.Fatalf("Exists = %v, %v; want false", ok, err)
		}
		mustSave(t, repo, q, newAccount("a1", "Ada"))
		if ok, err := repo.Exists(ctx, q, "a1"); err != nil || !ok {
			t.Fatalf("Exists = %v, %v; want true", ok, err)
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		q := db.SQL()
		t.Run("current", func(t *testing.T) {
			a := newAccount("d1", "Ada")
			mustSave(t, repo, q, a)
			if err := repo.Delete(ctx, q, a); err != nil {
				t.Fatal(err)
			}
			if _, err := repo.Get(ctx, q, "d1"); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("Get after delete = %v, want ErrNotFound", err)
			}
			// Deleted under a writer that still holds it.
			a.Deposit(1)
			err := repo.Save(ctx, tracking(q), a)
			wantConflict(t, err, "d1", 1, 0)
			if !strings.Contains(err.Error(), "no longer stored") {
				t.Errorf("message %q does not say the row is gone", err)
			}
			if err := repo.Delete(ctx, tracking(q), a); err != nil {
				wantConflict(t, err, "d1", 1, 0)
			} else {
				t.Fatal("second delete succeeded")
			}
		})
		t.Run("stale", func(t *testing.T) {
			mustSave(t, repo, q, newAccount("d2", "Ada"))
			stale := mustGet(t, repo, q, "d2")
			fresh := mustGet(t, repo, q, "d2")
			fresh.Deposit(1)
			mustSave(t, repo, tracking(q), fresh)
			wantConflict(t, repo.Delete(ctx, q, stale), "d2", 1, 2)
			if ok, _ := repo.Exists(ctx, q, "d2"); !ok {
				t.Fatal("a stale delete removed the row")
			}
		})
		t.Run("never saved", func(t *testing.T) {
			if err := repo.Delete(ctx, q, newAccount("d3", "Ada")); !errors.Is(err, repository.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	})
}

func TestTrack(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		tx := tracking(begin(t, db))
		a := newAccount("a1", "Ada")
		a.Deposit(10)
		mustSave(t, repo, tx, a)
		if len(tx.tracked) != 1 || tx.tracked[0] != a {
			t.Fatalf("tracked after insert = %v, want [a1] once", tx.tracked)
		}
		a.Deposit(5)
		mustSave(t, repo, tx, a)
		if len(tx.tracked) != 2 || tx.tracked[1] != a {
			t.Fatalf("tracked after update = %d aggregates, want 2", len(tx.tracked))
		}
		if n := len(a.Events()); n != 2 {
			t.Fatalf("pending events = %d, want 2: only the unit of work clears them", n)
		}

		// Failed writes and reads track nothing.
		_ = repo.Save(ctx, tx, newAccount("a1", "Bob"))
		if _, err := repo.Get(ctx, tx, "a1"); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.GetForUpdate(ctx, tx, "a1"); err != nil {
			t.Fatal(err)
		}
		if len(tx.tracked) != 2 {
			t.Fatalf("tracked = %d aggregates after a failed save and reads, want 2", len(tx.tracked))
		}

		if err := repo.Delete(ctx, tx, a); err != nil {
			t.Fatal(err)
		}
		if len(tx.tracked) != 3 {
			t.Fatalf("tracked = %d aggregates after delete, want 3", len(tx.tracked))
		}

		// The repository itself writes no outbox rows.
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+db.Table("outbox")).Scan(&n); err != nil || n != 0 {
			t.Fatalf("outbox rows = %d, %v; want 0", n, err)
		}
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		q := db.SQL()
		for name, tc := range map[string]struct {
			a    *Account
			want error
		}{
			"nil":      {nil, aggregate.ErrEmptyID},
			"no Init":  {&Account{}, aggregate.ErrEmptyType},
			"empty id": {newAccount("", "Ada"), aggregate.ErrEmptyID},
		} {
			if err := repo.Save(ctx, q, tc.a); !errors.Is(err, tc.want) {
				t.Errorf("Save(%s) = %v, want %v", name, err, tc.want)
			}
			if err := repo.Delete(ctx, q, tc.a); !errors.Is(err, tc.want) {
				t.Errorf("Delete(%s) = %v, want %v", name, err, tc.want)
			}
		}
		other := &Account{}
		other.Init("order", "o1")
		if err := repo.Save(ctx, q, other); err == nil || !strings.Contains(err.Error(), `"order"`) {
			t.Errorf("Save of another type = %v, want an error naming the type", err)
		}
		if _, err := repo.Get(ctx, q, ""); !errors.Is(err, aggregate.ErrEmptyID) {
			t.Errorf("Get(\"\") = %v, want ErrEmptyID", err)
		}
		if _, err := repo.GetForUpdate(ctx, q, ""); !errors.Is(err, aggregate.ErrEmptyID) {
			t.Errorf("GetForUpdate(\"\") = %v, want ErrEmptyID", err)
		}
		if _, err := repo.Exists(ctx, q, ""); !errors.Is(err, aggregate.ErrEmptyID) {
			t.Errorf("Exists(\"\") = %v, want ErrEmptyID", err)
		}
	})
}

// TestConflictReportsStoredVersion guards ConflictError.Actual in a
// transaction that read before another writer committed. Before, on MySQL
// (REPEATABLE READ) the version read after a failed write came from the
// transaction's snapshot: a stale update reported "loaded at version 1 but
// version 1 is stored", a taken id "version 0 is already stored", and a
// deleted row was still at its old version. Now that read sees the
// committed row.
func TestConflictReportsStoredVersion(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		if _, rowLocks := lockProbes[db.Setup.Dialect]; !rowLocks {
			t.Skip("SQLite takes the write lock at BEGIN, so no other writer commits during a transaction")
		}
		ctx := context.Background()
		q := db.SQL()
		mustSave(t, repo, q, newAccount("a1", "Ada"))
		mustSave(t, repo, q, newAccount("c1", "Cy"))

		tx := begin(t, db)
		stale := mustGet(t, repo, tx, "a1") // the transaction's first read
		gone := mustGet(t, repo, tx, "c1")
		if _, err := repo.Get(ctx, tx, "b1"); !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("Get(b1) = %v, want ErrNotFound", err)
		}

		// Meanwhile another writer updates a1, creates b1 and deletes c1.
		fresh := mustGet(t, repo, q, "a1")
		fresh.Balance = 5
		mustSave(t, repo, q, fresh)
		mustSave(t, repo, q, newAccount("b1", "Bob"))
		if err := repo.Delete(ctx, q, mustGet(t, repo, q, "c1")); err != nil {
			t.Fatal(err)
		}

		stale.Balance = 9
		wantConflict(t, repo.Save(ctx, tx, stale), "a1", 1, 2)
		wantConflict(t, repo.Delete(ctx, tx, stale), "a1", 1, 2)
		wantConflict(t, repo.Save(ctx, tx, newAccount("b1", "Eve")), "b1", 0, 1)
		gone.Balance = 1
		wantConflict(t, repo.Save(ctx, tx, gone), "c1", 1, 0)
	})
}
