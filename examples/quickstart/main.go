// Command quickstart deposits 100 into account acc-1 in one unit of work:
// the new balance and the account.deposited event commit together. The
// first run creates the account; each run after it loads the stored one.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	_ "github.com/mattn/go-sqlite3" // SQLite driver "sqlite3" (cgo)

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/uow"
)

// Account is an aggregate: state that changes only through its methods.
type Account struct {
	aggregate.Root
	Balance int64 `json:"balance"`
}

// Deposited is the event an account records for a deposit.
type Deposited struct {
	Amount int64 `json:"amount"`
}

// EventName names the event in storage and on the wire.
func (Deposited) EventName() string { return "account.deposited" }

// OpenAccount returns a new, empty account.
func OpenAccount(id string) *Account {
	a := &Account{}
	a.Init("account", id)
	return a
}

// Deposit adds amount to the balance and records the event.
func (a *Account) Deposit(amount int64) {
	a.Balance += amount
	a.Record(Deposited{Amount: amount})
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	db, err := sql.Open("sqlite3", sqlite.FileDSN("app.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil { // keel's tables; safe at every start
		return err
	}

	accounts, err := repository.NewDocument(st, repository.DocumentConfig[*Account]{
		Type: "account",
		New:  func() *Account { return new(Account) },
	})
	if err != nil {
		return err
	}
	runner, err := uow.New(st, uow.Config{})
	if err != nil {
		return err
	}

	err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		acct, err := accounts.Get(ctx, tx, "acc-1")
		if errors.Is(err, repository.ErrNotFound) {
			acct, err = OpenAccount("acc-1"), nil
		}
		if err != nil {
			return err
		}
		acct.Deposit(100)
		return accounts.Save(ctx, tx, acct) // state and event commit together
	})
	if err != nil {
		return err
	}

	acct, err := accounts.Get(ctx, db, "acc-1") // reads need no unit of work
	if err != nil {
		return err
	}
	stats, err := runner.Outbox().Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("acc-1: balance %d, version %d; outbox messages waiting for a relay: %d\n",
		acct.Balance, acct.Version(), stats.Pending)
	return nil
}
