package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// Open a store over a SQLite file and create keel's tables.
func Example() {
	dir, err := os.MkdirTemp("", "keel-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	st, err := store.Open(db, sqlite.Dialect(), store.Options{TablePrefix: "shop_"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	fmt.Println("before:", st.CheckSchema(ctx) != nil)
	if err := st.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("after:", st.CheckSchema(ctx))
	fmt.Println("outbox table:", st.Table("outbox"))
	// Output:
	// before: true
	// after: <nil>
	// outbox table: shop_outbox
}

// List the migrations, rendered for the store's dialect and prefix, that a
// team applying its own migrations would hand to its tool.
func ExampleStore_Migrations() {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ms, err := st.Migrations()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range ms {
		fmt.Println(m.Version, m.Name)
	}
	// Output:
	// 1 0001_init
	// 2 0002_outbox_claim_idx
	// 3 0003_inbox_processed_idx
	// 4 0004_idempotency_created_idx
	// 5 0005_outbox_leases_rows
	// 6 0006_aggregates_state_version
	// 7 0007_scheduled
	// 8 0008_outbox_relays_delivered
}
