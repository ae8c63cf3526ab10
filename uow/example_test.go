package uow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // driver "sqlite", pure Go

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/uow"
)

// Wallet is an example aggregate.
type Wallet struct {
	aggregate.Root
	Balance int64 `json:"balance"`
}

// Credited is the event a Wallet records when credited.
type Credited struct {
	Amount int64 `json:"amount"`
}

// EventName names the event in the outbox.
func (Credited) EventName() string { return "wallet.credited" }

// NewWallet returns a new wallet with an opening credit.
func NewWallet(id string, opening int64) *Wallet {
	w := &Wallet{}
	w.Init("wallet", id)
	w.Credit(opening)
	return w
}

// Credit adds amount to the balance and records it.
func (w *Wallet) Credit(amount int64) {
	w.Balance += amount
	w.Record(Credited{Amount: amount})
}

// exampleSetup opens a SQLite database in a temporary directory, creates
// keel's tables, and returns a Runner and a wallet repository over it.
func exampleSetup() (st *store.Store, runner *uow.Runner, wallets *repository.Document[*Wallet], cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(db, sqlite.Dialect(), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	runner, err = uow.New(st, uow.Config{})
	if err != nil {
		log.Fatal(err)
	}
	wallets, err = repository.NewDocument(st, repository.DocumentConfig[*Wallet]{
		Type: "wallet",
		New:  func() *Wallet { return new(Wallet) },
	})
	if err != nil {
		log.Fatal(err)
	}
	return st, runner, wallets, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleRunner_Do() {
	ctx := context.Background()
	_, runner, wallets, cleanup := exampleSetup()
	defer cleanup()

	// Open a wallet: the wallet and its event commit together.
	if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return wallets.Save(ctx, tx, NewWallet("w1", 100))
	}); err != nil {
		log.Fatal(err)
	}

	// fn must load what it changes through tx each time it runs. To show a
	// conflict, the first attempt below works from a copy read earlier
	// instead, as a cache might hold it, while another request has credited
	// the wallet since.
	stale, err := wallets.Get(ctx, runner.Store().DB(), "w1")
	if err != nil {
		log.Fatal(err)
	}
	if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		w, err := wallets.Get(ctx, tx, "w1")
		if err != nil {
			return err
		}
		w.Credit(10)
		return wallets.Save(ctx, tx, w)
	}); err != nil {
		log.Fatal(err)
	}

	attempt := 0
	err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		attempt++
		w := stale
		if attempt > 1 {
			var err error
			if w, err = wallets.Get(ctx, tx, "w1"); err != nil {
				return err
			}
		}
		w.Credit(5)
		err := wallets.Save(ctx, tx, w)
		fmt.Printf("attempt %d: conflict %v\n", attempt, errors.Is(err, repository.ErrConflict))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}

	w, err := wallets.Get(ctx, runner.Store().DB(), "w1")
	if err != nil {
		log.Fatal(err)
	}
	stats, err := runner.Outbox().Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// The rolled-back attempt left no event behind.
	fmt.Println(w.Balance, w.Version(), stats.Pending)
	// Output:
	// attempt 1: conflict true
	// attempt 2: conflict false
	// 115 3 3
}

func ExampleRunner_DoIdempotent() {
	ctx := context.Background()
	_, runner, wallets, cleanup := exampleSetup()
	defer cleanup()
	if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return wallets.Save(ctx, tx, NewWallet("w1", 100))
	}); err != nil {
		log.Fatal(err)
	}

	// The client names each command; a retry after a timeout sends the
	// same key again.
	credit := func(key string, amount int64) error {
		return runner.DoIdempotent(ctx, key, func(ctx context.Context, tx *uow.Tx) error {
			w, err := wallets.Get(ctx, tx, "w1")
			if err != nil {
				return err
			}
			w.Credit(amount)
			if err := wallets.Save(ctx, tx, w); err != nil {
				return err
			}
			tx.SetResult(fmt.Appendf(nil, `{"balance":%d}`, w.Balance))
			return nil
		})
	}
	fmt.Println(credit("cmd-1", 25))

	err := credit("cmd-1", 25)
	var dup *uow.DuplicateError
	if errors.As(err, &dup) {
		fmt.Println("already applied:", string(dup.Result))
	}

	w, err := wallets.Get(ctx, runner.Store().DB(), "w1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Balance)
	// Output:
	// <nil>
	// already applied: {"balance":125}
	// 125
}

func ExampleRunner_Join() {
	ctx := context.Background()
	st, runner, wallets, cleanup := exampleSetup()
	defer cleanup()
	if _, err := st.DB().Exec(`CREATE TABLE signups (wallet_id TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}

	// The application begins and commits its own transaction.
	tx, err := st.DB().BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, st.Dialect().Rebind("INSERT INTO signups (wallet_id) VALUES (?)"), "w1"); err != nil {
		log.Fatal(err)
	}

	// A plain transaction does not carry events to the outbox, so the
	// repository refuses a wallet that recorded some...
	w := NewWallet("w1", 100)
	err = wallets.Save(ctx, tx, w)
	fmt.Println(errors.Is(err, repository.ErrUntracked))

	// ...and Join writes the wallet and its events into tx, without
	// committing it.
	if err := runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
		return wallets.Save(ctx, utx, w)
	}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	// Join cannot see the commit: wake this process's relays now.
	st.Notify()

	stats, err := runner.Outbox().Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Version(), w.HasChanges(), stats.Pending)
	// Output:
	// true
	// 1 false 1
}

// Many small units share one transaction and one commit, each in a
// savepoint: the one that fails is undone alone.
func ExampleRunner_DoBatch() {
	ctx := context.Background()
	_, runner, wallets, cleanup := exampleSetup()
	defer cleanup()

	credits := map[string]int64{"w1": 100, "w2": -5, "w3": 30}
	err := runner.DoBatch(ctx, func(ctx context.Context, b *uow.Batch) error {
		for _, id := range []string{"w1", "w2", "w3"} {
			err := b.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				if err := wallets.Save(ctx, tx, NewWallet(id, credits[id])); err != nil {
					return err
				}
				if credits[id] < 0 {
					return fmt.Errorf("wallet %s: a negative opening credit", id) // undoes the save above
				}
				return nil
			})
			if err != nil {
				fmt.Println("failed:", err)
			}
		}
		return b.Err() // nil unless the transaction itself broke
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		ok, err := wallets.Exists(ctx, runner.Store().DB(), id)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, ok)
	}
	stats, err := runner.Outbox().Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("events:", stats.Pending)
	// Output:
	// failed: wallet w2: a negative opening credit
	// w1 true
	// w2 false
	// w3 true
	// events: 2
}
