package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The command's own entry point, run in process: migrate a new SQLite file,
// then read its (empty) outbox's counts as JSON.
func Example() {
	dir, err := os.MkdirTemp("", "keel-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	dsn := "sqlite:" + filepath.Join(dir, "app.db")
	ctx := context.Background()

	if code := run(ctx, []string{"migrate", "--dsn", dsn}, io.Discard, os.Stderr); code == 0 {
		fmt.Println("migrated")
	}
	run(ctx, []string{"stats", "--dsn", dsn, "--json"}, os.Stdout, os.Stderr)
	code := run(ctx, []string{"parked", "show", "no-such-id", "--dsn", dsn}, os.Stdout, os.Stdout)
	fmt.Println("exit status", code)
	// Output:
	// migrated
	// {
	//   "oldest_pending_seconds": 0,
	//   "parked": 0,
	//   "pending": 0,
	//   "retrying": 0,
	//   "scheduled": 0
	// }
	// keel parked show: keel: no outbox message with this id: id "no-such-id"
	// exit status 1
}
