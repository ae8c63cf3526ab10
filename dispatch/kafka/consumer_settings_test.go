package kafka_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// TestConsumerSessionTimeoutRefused runs a Consumer against brokers whose
// group.min.session.timeout.ms is above the default SessionTimeout: Run
// returns an error matching store.ErrInvalidConfig that names the setting,
// rather than retrying a join that can never succeed.
func TestConsumerSessionTimeoutRefused(t *testing.T) {
	t.Parallel()
	_, addr := cluster(t, kfake.SeedTopics(1, "events", "events.dlq"), kfake.GroupMinSessionTimeout(10*time.Second))
	h := kafka.HandlerFunc(func(context.Context, outbox.Message) error { return nil })
	c := newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}}, h)
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "SessionTimeout") {
			t.Fatalf("Run = %v, want ErrInvalidConfig naming SessionTimeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still retrying a join the brokers refuse")
	}

	// Within the brokers' bounds, the same group forms.
	ok := newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"events"}, SessionTimeout: 10 * time.Second}, h)
	stop := runConsumer(t, ok)
	pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "events"})
	if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1)}); err != nil {
		t.Fatal(err)
	}
	testdb.Eventually(t, 30*time.Second, "the message committed", func() bool { return committed(t, addr, "g", "events", 1)[0] == 1 })
	stop()
}

// TestConsumerNewPartitions adds partitions to a topic a stable group is
// reading: the group notices within kafka-go's partition watch interval
// (5s), rebalances, and delivers what is produced to the new partitions.
func TestConsumerNewPartitions(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "grow", "grow.dlq"))
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "grow"})
		if err := pub.Publish(context.Background(), []outbox.Message{msg("a", 1)}); err != nil {
			t.Fatal(err)
		}
		h := newEffectHandler(t, db)
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"grow"}}, h))
		testdb.Eventually(t, 30*time.Second, "the first message", func() bool { return h.callCount() == 1 })

		client := &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 10 * time.Second}
		res, err := client.CreatePartitions(context.Background(), &kafkago.CreatePartitionsRequest{
			Topics: []kafkago.TopicPartitionsConfig{{Name: "grow", Count: 3}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Errors["grow"]; err != nil {
			t.Fatal(err)
		}
		conn, err := kafkago.DialLeader(context.Background(), "tcp", addr, "grow", 2)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		m := msg("b", 1)
		if _, err := conn.WriteMessages(kafkago.Message{Key: []byte(m.Key), Value: m.Payload, Headers: []kafkago.Header{
			{Key: kafka.HeaderMessageID, Value: []byte(m.ID)}, {Key: kafka.HeaderName, Value: []byte(m.Name)},
		}}); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 30*time.Second, "the message on the new partition 2", func() bool { return h.callCount() == 2 })
		if diff := effects(t, db); diff["b-v1"] != 1 {
			t.Errorf("effects %v, want b-v1 applied once", diff)
		}
	})
}
