package repository_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// BenchmarkLoadSave measures one command, load then save in a transaction,
// through each repository and through hand-written database/sql doing the
// same statements; the repositories should cost little more than the
// baseline.
func BenchmarkLoadSave(b *testing.B) {
	for _, setup := range testdb.Setups {
		b.Run(setup.Name, func(b *testing.B) {
			tdb := testdb.Open(b, setup)
			db := tdb.SQL()
			ctx := context.Background()
			doc, err := repository.NewDocument(tdb.Store, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc})
			if err != nil {
				b.Fatal(err)
			}
			exec(b, tdb, accountsDDL(tdb, "accounts"))
			tbl, err := repository.NewTable(tdb.Store, repository.TableConfig[*Account]{
				Table: "accounts", Type: "account", New: newAccountFunc,
				Columns: []string{"owner", "balance"}, Fields: accountFields,
			})
			if err != nil {
				b.Fatal(err)
			}
			d := tdb.Dialect()
			for _, repo := range []repository.Repository[*Account]{doc, tbl} {
				if err := repo.Save(ctx, db, newAccount("a1", "Ada")); err != nil {
					b.Fatal(err)
				}
			}
			run := func(b *testing.B, step func(tx *sql.Tx) error) {
				b.ReportAllocs()
				for b.Loop() {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := step(tx); err != nil {
						b.Fatal(err)
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
			}
			viaRepo := func(repo repository.Repository[*Account]) func(tx *sql.Tx) error {
				return func(tx *sql.Tx) error {
					a, err := repo.Get(ctx, tx, "a1")
					if err != nil {
						return err
					}
					a.Balance++
					return repo.Save(ctx, tx, a)
				}
			}
			b.Run("document", func(b *testing.B) { run(b, viaRepo(doc)) })
			b.Run("table", func(b *testing.B) { run(b, viaRepo(tbl)) })

			getDoc := d.Rebind("SELECT version, state FROM " + tdb.Table("aggregates") + " WHERE aggregate_type = ? AND aggregate_id = ?")
			putDoc := d.Rebind("UPDATE " + tdb.Table("aggregates") + " SET version = ?, state = ?, updated_at = ? WHERE aggregate_type = ? AND aggregate_id = ? AND version = ?")
			b.Run("document-baseline", func(b *testing.B) {
				run(b, func(tx *sql.Tx) error {
					var v int64
					var state []byte
					if err := tx.QueryRowContext(ctx, getDoc, "account", "a1").Scan(&v, &state); err != nil {
						return err
					}
					a := new(Account)
					if err := json.Unmarshal(state, a); err != nil {
						return err
					}
					a.Balance++
					state, err := json.Marshal(a)
					if err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, putDoc, v+1, string(state), d.Time(time.Now()), "account", "a1", v)
					return err
				})
			})
			getRow := d.Rebind("SELECT version, owner, balance FROM accounts WHERE id = ?")
			putRow := d.Rebind("UPDATE accounts SET owner = ?, balance = ?, version = ? WHERE id = ? AND version = ?")
			b.Run("table-baseline", func(b *testing.B) {
				run(b, func(tx *sql.Tx) error {
					var v int64
					a := new(Account)
					if err := tx.QueryRowContext(ctx, getRow, "a1").Scan(&v, &a.Owner, &a.Balance); err != nil {
						return err
					}
					a.Balance++
					_, err := tx.ExecContext(ctx, putRow, a.Owner, a.Balance, v+1, "a1", v)
					return err
				})
			})
		})
	}
}
