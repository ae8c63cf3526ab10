package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // driver "sqlite"; pure Go, so examples run without cgo

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// openExampleStore opens a SQLite database in a temporary directory with
// the recommended options, and creates keel's tables.
func openExampleStore() (st *store.Store, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(db, sqlite.Dialect(), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return st, func() { db.Close(); os.RemoveAll(dir) }
}

// Messages written in the application's transaction are delivered by a
// relay once it commits, in order per key. Drain delivers what is there and
// returns, which suits batch jobs and tests.
func ExampleRelay_Drain() {
	st, cleanup := openExampleStore()
	defer cleanup()
	ctx := context.Background()

	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	tx, err := st.DB().BeginTx(ctx, nil)
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
	relay, err := outbox.NewRelay(st, publish, outbox.RelayConfig{})
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

// A long-running relay delivers as soon as a commit in this process wakes
// it: Outbox.Enqueue and units of work wake the store's relays by
// themselves. Stopping the relay hands its leases back.
func ExampleRelay_Run() {
	st, cleanup := openExampleStore()
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
	relay, err := outbox.NewRelay(st, publish, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error)
	go func() { stopped <- relay.Run(ctx) }()

	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Enqueue(ctx, outbox.Message{Name: "order.shipped", Key: "order-7", Payload: []byte(`{}`)}); err != nil {
		log.Fatal(err)
	}

	m := <-delivered
	fmt.Println(m.Name, m.Key)
	cancel()
	fmt.Println("stopped:", <-stopped)
	// Output:
	// order.shipped order-7
	// stopped: <nil>
}

// Parked messages, which used up their attempts or failed permanently,
// wait for an operator. Administration needs only the store: no relay and
// no Publisher.
func ExampleOutbox_Requeue() {
	st, cleanup := openExampleStore()
	defer cleanup()
	ctx := context.Background()

	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	msg := outbox.Message{ID: "msg-1", Name: "invoice.paid", Key: "inv-1", Payload: []byte(`{}`)}
	if err := ob.Enqueue(ctx, msg); err != nil {
		log.Fatal(err)
	}
	// A destination rejects the message for good.
	reject := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
		return fmt.Errorf("schema registry: unknown field: %w", outbox.ErrPermanent)
	})
	relay, err := outbox.NewRelay(st, reject, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := relay.Drain(ctx); err != nil {
		log.Fatal(err)
	}

	stats, err := ob.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("parked:", stats.Parked)
	parked, err := ob.Parked(ctx, outbox.ParkedQuery{Key: "inv-1"})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range parked {
		fmt.Println(p.ID, p.Attempts, p.LastError)
	}
	// Once the destination is fixed:
	if err := ob.Requeue(ctx, "msg-1"); err != nil {
		log.Fatal(err)
	}
	stats, err = ob.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", stats.Pending, "parked:", stats.Parked)
	// Output:
	// parked: 1
	// msg-1 1 schema registry: unknown field: keel: permanent delivery failure
	// pending: 1 parked: 0
}

// A relay publishes up to MaxInFlight batches at once, never two holding
// the same key, so a key that is slow to publish does not hold up the
// others. Here the publish of "slow" waits until both other keys were
// delivered, which they are, in batches claimed while it waits.
func ExampleRelayConfig_maxInFlight() {
	st, cleanup := openExampleStore()
	defer cleanup()
	ctx := context.Background()
	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	err = ob.Enqueue(ctx,
		outbox.Message{Name: "report.rendered", Key: "slow", Payload: []byte{}},
		outbox.Message{Name: "order.placed", Key: "order-1", Payload: []byte{}},
		outbox.Message{Name: "order.placed", Key: "order-2", Payload: []byte{}},
	)
	if err != nil {
		log.Fatal(err)
	}

	others := make(chan string, 2)
	publish := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
		for _, m := range batch {
			if m.Key != "slow" {
				others <- m.Key
				continue
			}
			// A remote call that takes its time: done once the others are.
			var got []string
			for len(got) < 2 {
				select {
				case k := <-others:
					got = append(got, k)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			fmt.Println("delivered", got[0], "and", got[1], "while slow waited")
		}
		return nil
	})
	relay, err := outbox.NewRelay(st, publish, outbox.RelayConfig{BatchSize: 1, MaxInFlight: 2})
	if err != nil {
		log.Fatal(err)
	}
	n, err := relay.Drain(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered", n)
	// Output:
	// delivered order-1 and order-2 while slow waited
	// delivered 3
}
