package repository_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/uow"
)

// txHandle is a transaction an application holds: *sql.Tx or *sqlx.Tx.
type txHandle interface {
	uow.Conn
	Commit() error
	Rollback() error
}

// wantUntracked checks that err is the refusal to write an aggregate with
// pending events outside a unit of work, and that it says what to do.
func wantUntracked(t *testing.T, err error, op string) {
	t.Helper()
	if !errors.Is(err, repository.ErrUntracked) {
		t.Fatalf("%s = %v, want ErrUntracked", op, err)
	}
	if !strings.Contains(err.Error(), "unit of work") {
		t.Errorf("%s: message %q does not say to use a unit of work", op, err)
	}
}

// TestUntracked guards against losing events: before, a repository saved
// (or deleted) an aggregate with pending events through a plain
// transaction, and the events, which only the unit of work writes to the
// outbox, were silently dropped. Now the write is refused with
// ErrUntracked and nothing is stored; the same aggregate then saves
// through Runner.Join with that very transaction, and through Runner.Do,
// and its events reach the outbox.
func TestUntracked(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		runner, err := uow.New(db.Store, uow.Config{})
		if err != nil {
			t.Fatal(err)
		}
		outboxRows := func(id string) int {
			return testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("outbox")+" WHERE aggregate_id = ?", id)
		}
		exists := func(q repository.Querier, id string) bool {
			t.Helper()
			ok, err := repo.Exists(ctx, q, id)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		xdb := sqlx.NewDb(db.SQL(), db.Setup.Driver)
		for _, h := range []struct {
			name  string
			begin func(t *testing.T) txHandle
		}{
			{"sql.Tx", func(t *testing.T) txHandle { return begin(t, db) }},
			{"sqlx.Tx", func(t *testing.T) txHandle {
				tx, err := xdb.BeginTxx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = tx.Rollback() })
				return tx
			}},
		} {
			t.Run(h.name, func(t *testing.T) {
				id := strings.ReplaceAll(t.Name(), "/", "-")

				// Save of a new aggregate with an event.
				a := newAccount(id, "Ada")
				a.Deposit(10)
				tx := h.begin(t)
				wantUntracked(t, repo.Save(ctx, tx, a), "Save through "+h.name)
				if a.Version() != 0 || len(a.Events()) != 1 {
					t.Fatalf("after the refused save: v%d with %d events, want v0 with 1", a.Version(), len(a.Events()))
				}
				if exists(tx, id) {
					t.Fatal("the refused save stored the aggregate")
				}
				// The transaction is still usable, and the unit of work
				// writes into it.
				if err := runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
					return repo.Save(ctx, utx, a)
				}); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if a.Version() != 1 || a.HasChanges() {
					t.Fatalf("after Join: v%d, pending events %v; want v1, none", a.Version(), a.HasChanges())
				}
				if !exists(db.SQL(), id) || outboxRows(id) != 1 {
					t.Fatalf("after Join: stored %v, %d outbox rows; want stored, 1 row", exists(db.SQL(), id), outboxRows(id))
				}

				// Save and Delete of a loaded aggregate with an event.
				loaded := mustGet(t, repo, db.SQL(), id)
				loaded.Deposit(5)
				tx = h.begin(t)
				wantUntracked(t, repo.Save(ctx, tx, loaded), "Save through "+h.name)
				wantUntracked(t, repo.Delete(ctx, tx, loaded), "Delete through "+h.name)
				if got := mustGet(t, repo, tx, id); got.Version() != 1 || got.Balance != 10 {
					t.Fatalf("after the refused writes: stored v%d balance %d, want v1 balance 10", got.Version(), got.Balance)
				}
				if err := runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
					return repo.Delete(ctx, utx, loaded)
				}); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if exists(db.SQL(), id) || outboxRows(id) != 2 {
					t.Fatalf("after the joined delete: stored %v, %d outbox rows; want gone, 2 rows", exists(db.SQL(), id), outboxRows(id))
				}
			})
		}

		t.Run("Do", func(t *testing.T) {
			id := strings.ReplaceAll(t.Name(), "/", "-")
			a := newAccount(id, "Ada")
			a.Deposit(10)
			tx := begin(t, db)
			wantUntracked(t, repo.Save(ctx, tx, a), "Save through sql.Tx")
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			if err := runner.Do(ctx, func(ctx context.Context, utx *uow.Tx) error {
				return repo.Save(ctx, utx, a)
			}); err != nil {
				t.Fatal(err)
			}
			if a.Version() != 1 || a.HasChanges() || outboxRows(id) != 1 {
				t.Fatalf("after Do: v%d, pending %v, %d outbox rows; want v1, none, 1", a.Version(), a.HasChanges(), outboxRows(id))
			}
		})
	})
}
