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

	_ "github.com/mattn/go-sqlite3" // SQLite driver
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
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
	db, cleanup := exampleDB()
	defer cleanup()
	runner, err := uow.New(db, uow.Config{})
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
	relay, err := outbox.NewRelay(db, pub, outbox.RelayConfig{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	// A service runs the relay for good: go relay.Run(ctx).
	n, err := relay.Drain(ctx)
	fmt.Println("published", n, err)

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

func exampleDB() (db *sql.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-kafka-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL&_txlock=immediate&_busy_timeout=5000")
	if err != nil {
		log.Fatal(err)
	}
	if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}
