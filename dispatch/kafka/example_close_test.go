//go:build unix

package kafka_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
)

// A service runs its Consumer until the orchestrator sends SIGTERM, then
// calls Close, which leaves the consumer group at once: the other members
// take over its partitions within a second, instead of waiting
// SessionTimeout for it to be declared dead. The message being handled
// when the signal comes is not committed, so another member handles it
// again, and the inbox makes that harmless.
func ExampleConsumer_Close() {
	brokers, stop := exampleCluster()
	defer stop()
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers, Topic: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(context.Background(), []outbox.Message{{ID: "m-1", Name: "order.placed", Key: "o-1", Payload: []byte(`{}`)}}); err != nil {
		log.Fatal(err)
	}

	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: "mailer", Topics: []string{"orders"}, Logger: slog.New(slog.DiscardHandler),
	}, kafka.HandlerFunc(func(ctx context.Context, m outbox.Message) error {
		fmt.Println("handled", m.ID)
		// Here the example stops itself as an orchestrator would.
		return syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}))
	if err != nil {
		log.Fatal(err)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	if err := consumer.Run(ctx); err != nil { // returns nil once the signal came
		log.Fatal(err)
	}
	if err := consumer.Close(); err != nil { // leaves the group
		log.Fatal(err)
	}
	fmt.Println("left the group")
	// Output:
	// handled m-1
	// left the group
}
