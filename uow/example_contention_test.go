package uow_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/keel-go/keel/uow"
)

// A unit that loses a version conflict retries with the aggregate's row
// locked, and for HotWindow after the conflict so do the first attempts of
// the Runner's other units. (SQLite, used here, serialises writers at
// BEGIN and needs no row lock; PostgreSQL and MySQL read with
// SELECT ... FOR UPDATE.)
func ExampleContention() {
	st, _, wallets, cleanup := exampleSetup()
	defer cleanup()
	ctx := context.Background()
	runner, err := uow.New(st, uow.Config{Contention: uow.Adaptive, HotWindow: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	credit := func(stale bool) {
		attempt := 0
		err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			attempt++
			w, err := wallets.Get(ctx, tx, "w-1")
			if err != nil {
				return err
			}
			fmt.Printf("attempt %d, locked read: %v\n", attempt, tx.ShouldLock("wallet", "w-1"))
			if stale && attempt == 1 {
				// Lose the race on purpose: another copy is saved between
				// this load and the save below, as a concurrent writer would.
				other, err := wallets.Get(ctx, tx, "w-1")
				if err != nil {
					return err
				}
				other.Credit(1)
				if err := wallets.Save(ctx, tx, other); err != nil {
					return err
				}
			}
			w.Credit(10)
			return wallets.Save(ctx, tx, w)
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return wallets.Save(ctx, tx, NewWallet("w-1", 0))
	}); err != nil {
		log.Fatal(err)
	}

	fmt.Println("a unit that conflicts:")
	credit(true)
	fmt.Println("the next unit:")
	credit(false)
	// Output:
	// a unit that conflicts:
	// attempt 1, locked read: false
	// attempt 2, locked read: true
	// the next unit:
	// attempt 1, locked read: true
}
