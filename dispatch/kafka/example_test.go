package kafka_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/uow"
)

// OrderPlaced is the example's event.
type OrderPlaced struct {
	Order string `json:"order"`
	Total int64  `json:"total"`
}

// EventName names the event in the outbox and in Kafka's keel-name header.
func (OrderPlaced) EventName() string { return "order.placed" }

// A unit of work writes an event to the outbox; a relay publishes it to
// Kafka; a Consumer in another service reads it through a consumer group
// and runs the subscribed handler in a unit of work with an inbox row.
// kfake, an in-process Kafka-compatible cluster, stands in for the brokers.
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	brokers, stop := exampleCluster()
	defer stop()
	st, cleanup := exampleStore(quiet)
	defer cleanup()
	runner, err := uow.New(st, uow.Config{})
	if err != nil {
		log.Fatal(err)
	}

	// Producing side: an event enqueued in a transaction, relayed to Kafka.
	payload, _ := json.Marshal(OrderPlaced{Order: "o-1", Total: 2500})
	err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		tx.Enqueue(outbox.Message{Name: "order.placed", Key: "o-1", Payload: payload,
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers, Topic: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	// A service runs the relay for good, with go relay.Run(ctx), and units
	// of work wake it as they commit. Drain publishes what is there.
	n, err := relay.Drain(ctx)
	fmt.Println("published", n, err)
	stats, err := relay.Outbox().Stats(ctx)
	fmt.Println("pending", stats.Pending, err)

	// Consuming side: a Router runs handlers; the Consumer feeds it.
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(OrderPlaced{}), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan struct{})
	dispatch.Handle(router, "mail.confirmation", func(ctx context.Context, tx *uow.Tx, e OrderPlaced) error {
		m, _ := dispatch.MessageFrom(ctx)
		fmt.Printf("confirm %s (%d cents), trace %s\n", e.Order, e.Total, m.Headers["traceparent"][3:35])
		close(handled)
		return nil
	})
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: "mailer", Topics: []string{"orders"}, Logger: quiet,
	}, router)
	if err != nil {
		log.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- consumer.Run(runCtx) }()
	<-handled
	cancel()
	fmt.Println("consumer stopped", <-done)
	consumer.Close()
	// Output:
	// published 1 <nil>
	// pending 0 <nil>
	// confirm o-1 (2500 cents), trace 4bf92f3577b34da6a3ce929d0e0e4736
	// consumer stopped <nil>
}

func exampleCluster() (brokers []string, stop func()) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "orders.dlq"))
	if err != nil {
		log.Fatal(err)
	}
	return c.ListenAddrs(), c.Close
}

// exampleStore opens a SQLite database with keel's tables in a temporary
// directory.
func exampleStore(logger *slog.Logger) (st *store.Store, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-kafka-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(db, sqlite.Dialect(), store.Options{Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return st, func() { db.Close(); os.RemoveAll(dir) }
}
