package repository_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jmoiron/sqlx"

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
// may hold.
func TestQueriers(t *testing.T) {
	eachKind(t, func(t *testing.T, db *sql.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		driver := "sqlite3"
		if isPostgres(t, db) {
			driver = "postgres"
		}
		xdb := sqlx.NewDb(db, driver)
		xtx, err := xdb.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustSave(t, repo, xtx, newAccount("x1", "Ada"))
		if err := xtx.Commit(); err != nil {
			t.Fatal(err)
		}
		a := mustGet(t, repo, xdb, "x1")

		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		a.Deposit(1)
		mustSave(t, repo, conn, a)
		if got := mustGet(t, repo, conn, "x1"); got.Version() != 2 || got.Balance != 1 {
			t.Fatalf("got v%d balance %d, want v2 balance 1", got.Version(), got.Balance)
		}
	})
}
