package repository_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
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

// databases are the ones every test runs against: SQLite, PostgreSQL
// through lib/pq, and PostgreSQL through pgx's database/sql driver.
var databases = []string{"sqlite", "postgres", "pgx"}

// eachDB runs fn as a subtest per database, each fresh and migrated.
func eachDB(t *testing.T, fn func(t *testing.T, db *sql.DB)) {
	t.Helper()
	for _, name := range databases {
		t.Run(name, func(t *testing.T) { fn(t, openDB(t, name)) })
	}
}

func openDB(t testing.TB, name string) *sql.DB {
	t.Helper()
	if name != "pgx" {
		return testdb.Open(t, name)
	}
	db := openEmpty(t, name)
	if d, err := dialect.Detect(db); err != nil || !d.IsPostgres() {
		t.Fatalf("dialect detected for the pgx driver = %v, %v; want postgres", d, err)
	}
	// Migrate detects the dialect from the pgx driver too.
	if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

func openEmpty(t testing.TB, name string) *sql.DB {
	t.Helper()
	if name != "pgx" {
		return testdb.OpenEmpty(t, name)
	}
	db, err := sql.Open("pgx", testdb.DSN(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("ping pgx: %v", err)
	}
	return db
}

func isPostgres(t *testing.T, db *sql.DB) bool {
	t.Helper()
	d, err := dialect.Detect(db)
	if err != nil {
		t.Fatal(err)
	}
	return d.IsPostgres()
}

// kind is one way of storing accounts; the conformance suite runs against
// each.
type kind struct {
	name string
	open func(t *testing.T, db *sql.DB) repository.Repository[*Account]
}

var kinds = []kind{
	{"document", func(t *testing.T, db *sql.DB) repository.Repository[*Account] {
		r, err := repository.NewDocument(db, repository.DocumentConfig[*Account]{
			Type: "account",
			New:  func() *Account { return new(Account) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}},
	{"table", func(t *testing.T, db *sql.DB) repository.Repository[*Account] {
		exec(t, db, accountsDDL("accounts"))
		r, err := repository.NewTable(db, repository.TableConfig[*Account]{
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
	{"table-tags", func(t *testing.T, db *sql.DB) repository.Repository[*Account] {
		exec(t, db, `CREATE TABLE tagged_accounts (
			account_id TEXT PRIMARY KEY, rev BIGINT NOT NULL, owner TEXT NOT NULL, balance BIGINT NOT NULL)`)
		r, err := repository.NewTable(db, repository.TableConfig[*Account]{
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

func accountsDDL(table string) string {
	return "CREATE TABLE " + table + ` (
		id      TEXT PRIMARY KEY,
		version BIGINT NOT NULL,
		owner   TEXT NOT NULL,
		balance BIGINT NOT NULL)`
}

// eachKind runs fn for every database and every kind of repository.
func eachKind(t *testing.T, fn func(t *testing.T, db *sql.DB, repo repository.Repository[*Account])) {
	t.Helper()
	eachDB(t, func(t *testing.T, db *sql.DB) {
		for _, k := range kinds {
			t.Run(k.name, func(t *testing.T) { fn(t, db, k.open(t, db)) })
		}
	})
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// trackingTx is a Querier that records what the repository tracks, as the
// unit of work's transaction does.
type trackingTx struct {
	*sql.Tx
	tracked []aggregate.Aggregate
}

func (tx *trackingTx) Track(a aggregate.Aggregate) { tx.tracked = append(tx.tracked, a) }

var _ repository.Tracker = (*trackingTx)(nil)

// begin starts a transaction that is rolled back when the test ends unless
// it was committed.
func begin(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
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
