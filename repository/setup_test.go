package repository_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// Account is the aggregate the conformance suite stores.
type Account struct {
	aggregate.Root
	Owner   string `json:"owner" db:"owner"`
	Balance int64  `json:"balance" db:"balance"`
}

func newAccount(id, owner string) *Account {
	a := &Account{Owner: owner}
	a.Init("account", id)
	return a
}

type deposited struct{ Amount int64 }

func (deposited) EventName() string { return "account.deposited" }

func (a *Account) Deposit(amount int64) {
	a.Balance += amount
	a.Record(deposited{Amount: amount})
}

// kind is one way of storing accounts; the conformance suite runs against
// each.
type kind struct {
	name string
	open func(t *testing.T, db testdb.DB) repository.Repository[*Account]
}

var kinds = []kind{
	{"document", func(t *testing.T, db testdb.DB) repository.Repository[*Account] {
		r, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Account]{
			Type: "account",
			New:  func() *Account { return new(Account) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}},
	{"table", func(t *testing.T, db testdb.DB) repository.Repository[*Account] {
		exec(t, db, accountsDDL(db, "accounts"))
		r, err := repository.NewTable(db.Store, repository.TableConfig[*Account]{
			Table:   "accounts",
			Type:    "account",
			New:     func() *Account { return new(Account) },
			Columns: []string{"owner", "balance"},
			Fields:  func(a *Account) []any { return []any{&a.Owner, &a.Balance} },
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}},
	{"table-tags", func(t *testing.T, db testdb.DB) repository.Repository[*Account] {
		exec(t, db, `CREATE TABLE tagged_accounts (
			account_id `+keyType(db)+` PRIMARY KEY, rev BIGINT NOT NULL, owner TEXT NOT NULL, balance BIGINT NOT NULL)`)
		r, err := repository.NewTable(db.Store, repository.TableConfig[*Account]{
			Table:         "tagged_accounts",
			Type:          "account",
			New:           func() *Account { return new(Account) },
			IDColumn:      "account_id",
			VersionColumn: "rev",
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}},
}

// keyType is the column type of the tables' ids, holding the longest id
// keel accepts (dialect.MaxKeyBytes) and comparing byte for byte, as
// TableConfig.IDColumn asks. MySQL cannot index a TEXT column whole, and
// its text collations pad, so "acc-1 " would be "acc-1" there.
func keyType(db testdb.DB) string {
	if db.Setup.IsMySQL() {
		return "VARBINARY(512)"
	}
	return "VARCHAR(512)"
}

func accountsDDL(db testdb.DB, table string) string {
	return "CREATE TABLE " + table + ` (
		id      ` + keyType(db) + ` PRIMARY KEY,
		version BIGINT NOT NULL,
		owner   TEXT NOT NULL,
		balance BIGINT NOT NULL)`
}

// eachKind runs fn for every setup (testdb.Setups) and every kind of
// repository, each setup on a fresh database of its own.
func eachKind(t *testing.T, fn func(t *testing.T, db testdb.DB, repo repository.Repository[*Account])) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		for _, k := range kinds {
			t.Run(k.name, func(t *testing.T) { fn(t, db, k.open(t, db)) })
		}
	})
}

// exec runs a statement written with "?" placeholders on db.
func exec(t testing.TB, db testdb.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.SQL().Exec(db.Dialect().Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// tracker is a Querier that records what the repository tracks, as the
// unit of work's transaction does, but writes no outbox rows: it lets the
// suite save aggregates with pending events and check that the repository
// leaves those events alone.
type tracker struct {
	repository.Querier
	tracked []aggregate.Aggregate
}

func (tr *tracker) Track(a aggregate.Aggregate) { tr.tracked = append(tr.tracked, a) }

var _ repository.Tracker = (*tracker)(nil)

// tracking wraps q in a tracker.
func tracking(q repository.Querier) *tracker { return &tracker{Querier: q} }

// begin starts a transaction that is rolled back when the test ends unless
// it was committed.
func begin(t *testing.T, db testdb.DB) *sql.Tx {
	t.Helper()
	tx, err := db.SQL().BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

func commit(t *testing.T, tx *sql.Tx) {
	t.Helper()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}
