package repository_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

var (
	_ repository.Querier = (*sql.DB)(nil)
	_ repository.Querier = (*sql.Tx)(nil)
	_ repository.Querier = (*sql.Conn)(nil)
	_ repository.Querier = (*sqlx.DB)(nil)
	_ repository.Querier = (*sqlx.Tx)(nil)

	_ repository.Repository[*Account] = (*repository.Document[*Account])(nil)
	_ repository.Repository[*Account] = (*repository.Table[*Account])(nil)
)

// TestQueriers saves and loads through each kind of handle an application
// may hold. None of them tracks aggregates, so the aggregate changes without
// recording events; once it records one, every handle refuses it.
func TestQueriers(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		xdb := sqlx.NewDb(db.SQL(), db.Setup.Driver)
		xtx, err := xdb.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustSave(t, repo, xtx, newAccount("x1", "Ada"))
		if err := xtx.Commit(); err != nil {
			t.Fatal(err)
		}
		a := mustGet(t, repo, xdb, "x1")

		conn, err := db.SQL().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		a.Balance++
		mustSave(t, repo, conn, a)
		if got := mustGet(t, repo, conn, "x1"); got.Version() != 2 || got.Balance != 1 {
			t.Fatalf("got v%d balance %d, want v2 balance 1", got.Version(), got.Balance)
		}

		tx := begin(t, db)
		a.Balance++
		mustSave(t, repo, tx, a)
		commit(t, tx)
		a.Balance++
		mustSave(t, repo, xdb, a)
		a.Balance++
		mustSave(t, repo, db.SQL(), a)
		if got := mustGet(t, repo, db.SQL(), "x1"); got.Version() != 5 || got.Balance != 4 {
			t.Fatalf("got v%d balance %d, want v5 balance 4", got.Version(), got.Balance)
		}

		// With a pending event, no plain handle will save or delete it. The
		// transactions are opened one at a time: on SQLite each holds the
		// write lock.
		a.Deposit(1)
		for _, h := range []struct {
			name string
			open func() (repository.Querier, func() error)
		}{
			{"*sql.DB", func() (repository.Querier, func() error) { return db.SQL(), func() error { return nil } }},
			{"*sql.Conn", func() (repository.Querier, func() error) { return conn, func() error { return nil } }},
			{"*sqlx.DB", func() (repository.Querier, func() error) { return xdb, func() error { return nil } }},
			{"*sql.Tx", func() (repository.Querier, func() error) { tx := begin(t, db); return tx, tx.Rollback }},
			{"*sqlx.Tx", func() (repository.Querier, func() error) {
				tx, err := xdb.BeginTxx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				return tx, tx.Rollback
			}},
		} {
			q, done := h.open()
			if err := repo.Save(ctx, q, a); !errors.Is(err, repository.ErrUntracked) {
				t.Errorf("Save through %s = %v, want ErrUntracked", h.name, err)
			}
			if err := repo.Delete(ctx, q, a); !errors.Is(err, repository.ErrUntracked) {
				t.Errorf("Delete through %s = %v, want ErrUntracked", h.name, err)
			}
			if err := done(); err != nil {
				t.Fatal(err)
			}
		}
		if a.Version() != 5 || len(a.Events()) != 1 {
			t.Errorf("after refused writes: v%d with %d events, want v5 with 1", a.Version(), len(a.Events()))
		}
		if got := mustGet(t, repo, db.SQL(), "x1"); got.Version() != 5 || got.Balance != 4 {
			t.Fatalf("stored v%d balance %d after refused writes, want v5 balance 4", got.Version(), got.Balance)
		}
	})
}
