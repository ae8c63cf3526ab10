package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	_ "github.com/mattn/go-sqlite3"

	"github.com/keel-go/keel/outbox"
)

// openExampleDB opens a SQLite database in a temporary directory with the
// recommended options.
func openExampleDB() (db *sql.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// Messages written in the application's transaction are delivered by a
// relay once it commits, in order per key. Drain delivers what is there and
// returns, which suits batch jobs and tests.
func ExampleRelay_Drain() {
	db, cleanup := openExampleDB()
	defer cleanup()
	ctx := context.Background()

	ob, err := outbox.New(db, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	// ... change application state in tx, then record what happened:
	err = ob.EnqueueTx(ctx, tx,
		outbox.Message{Name: "invoice.issued", Key: "inv-1", Payload: []byte(`{"amount":100}`)},
		outbox.Message{Name: "invoice.paid", Key: "inv-1", Payload: []byte(`{"amount":100}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	publish := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
		for _, m := range batch {
			fmt.Println(m.Key, m.Name, string(m.Payload))
		}
		return nil
	})
	relay, err := outbox.NewRelay(db, publish, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	n, err := relay.Drain(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered:", n)
	// Output:
	// inv-1 invoice.issued {"amount":100}
	// inv-1 invoice.paid {"amount":100}
	// delivered: 2
}

// A long-running relay delivers as soon as it is notified of a commit.
func ExampleRelay_Run() {
	db, cleanup := openExampleDB()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	delivered := make(chan outbox.Message, 1)
	publish := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
		for _, m := range batch {
			delivered <- m
		}
		return nil
	})
	relay, err := outbox.NewRelay(db, publish, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error)
	go func() { stopped <- relay.Run(ctx) }()

	ob, err := outbox.New(db, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Enqueue(ctx, outbox.Message{Name: "order.shipped", Key: "order-7", Payload: []byte(`{}`)}); err != nil {
		log.Fatal(err)
	}
	relay.Notify() // after commit; the unit of work does this for you

	m := <-delivered
	fmt.Println(m.Name, m.Key)
	cancel()
	fmt.Println("stopped:", <-stopped)
	// Output:
	// order.shipped order-7
	// stopped: <nil>
}
