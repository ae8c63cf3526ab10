package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // or _ "github.com/mattn/go-sqlite3", driver name "sqlite3"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// Open keel's store on a SQLite file with the recommended options.
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
	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := st.Migrate(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.Dialect().Name(), "journal:", mode)
	// Output: sqlite journal: wal
}
