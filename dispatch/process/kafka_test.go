package process_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// TestProcessOverKafka runs processes whose events, and the commands they
// send, travel through Kafka (kfake): a relay publishes the outbox, and a
// Kafka consumer delivers every record to the router that holds the
// process. Two orders are placed, reserved and paid, in different orders;
// one is paid twice, the second payment arriving after its process
// completed, which absorbs it. Each ships once, its payment timer is
// cancelled, and the process completes.
func TestProcessOverKafka(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		clk := &clock{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
		db = testdb.Reopen(t, db.Setup, db.DSN, store.Options{Logger: quiet, Now: clk.Now})
		createEffects(t, db)
		b := wire(t, db, paymentWindow)
		_, broker := testkafka.Cluster(t, kfake.SeedTopics(3, "orders", "orders.dlq"))
		pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{broker}, Topic: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		relay, err := outbox.NewRelay(db.Store, pub, outbox.RelayConfig{Logger: quiet, MaxPollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: []string{broker}, GroupID: "orders", Topics: []string{"orders"},
			Logger: quiet}, b.router)
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan error, 2)
		go func() { done <- relay.Run(ctx) }()
		go func() { done <- consumer.Run(ctx) }()
		t.Cleanup(func() {
			stop()
			for range 2 {
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
			_ = consumer.Close()
		})

		b.emit(t, "o-1", Placed{"o-1"}, Reserved{"o-1"})
		b.emit(t, "o-2", Placed{"o-2"})
		b.emit(t, "o-2", Paid{"o-2"}, Reserved{"o-2"})
		b.emit(t, "o-1", Paid{"o-1"}, Paid{"o-1"})
		testdb.Eventually(t, 60*time.Second, "both orders to ship", func() bool {
			return slices.Contains(b.effects(t, "o-1"), "ship") && slices.Contains(b.effects(t, "o-2"), "ship")
		})
		ended, err := b.manager.List(t.Context(), process.ListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(ended) != 2 {
			t.Fatalf("%d processes, want 2: %+v", len(ended), ended)
		}
		for _, p := range ended {
			if p.Status != process.Completed || !p.NextTimeout.IsZero() {
				t.Errorf("process %s: %s, next timeout %v; want completed with no timer", p.ID, p.Status, p.NextTimeout)
			}
		}
		// Whatever arrives late is absorbed: the effects stay as they are.
		clk.Advance(2 * paymentWindow)
		db.Notify()
		time.Sleep(300 * time.Millisecond)
		for _, order := range []string{"o-1", "o-2"} {
			if got := b.effects(t, order); !slices.Equal(got, []string{"ship"}) {
				t.Errorf("%s effects %v, want one ship", order, got)
			}
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_scheduled"); n != 0 {
			t.Errorf("%d timers left scheduled", n)
		}
	})
}
