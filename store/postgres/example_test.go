package postgres_test

import (
	"database/sql"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
)

// Open keel's store on PostgreSQL through pgx, with relays woken by
// LISTEN on a connection of the same pool. Nothing connects until the
// store is used.
func Example() {
	db, err := sql.Open("pgx", "postgres://app@db.internal:5432/app")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pgxlisten.New(db)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Dialect().Name(), st.Table("outbox"))
	fmt.Println(st.Dialect().Rebind("SELECT id FROM keel_outbox WHERE seq > ? LIMIT ?"))
	// Output:
	// postgres keel_outbox
	// SELECT id FROM keel_outbox WHERE seq > $1 LIMIT $2
}
