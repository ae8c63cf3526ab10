package pqlisten_test

import (
	"database/sql"
	"fmt"

	_ "github.com/lib/pq" // driver "postgres"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pqlisten"
)

// Wake relays on commits in other processes through lib/pq, on a
// dedicated connection opened from the same connection string.
func Example() {
	dsn := "postgres://app@db.internal:5432/app?sslmode=disable"
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pqlisten.New(dsn)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("listening:", st.Options().Listener != nil)
	// Output: listening: true
}
