package pgxlisten_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
)

// Wake relays on commits in other processes through pgx: the listener
// takes one connection of the pool while relays run.
func Example() {
	pool, err := pgxpool.New(context.Background(), "postgres://app@db.internal:5432/app")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pgxlisten.New(db)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("listening:", st.Options().Listener != nil)
	// Output: listening: true
}
