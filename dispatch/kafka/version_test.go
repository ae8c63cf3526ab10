package kafka_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// The event "meter.read" as three releases wrote it.
type readV1 struct {
	Watts int `json:"watts"`
}

func (readV1) EventName() string { return "meter.read" }

type readV2 struct {
	Kilowatts float64 `json:"kw"`
}

type readV3 struct {
	Kilowatts float64 `json:"kw"`
	Unit      string  `json:"unit"`
}

func (readV3) EventName() string  { return "meter.read" }
func (readV3) SchemaVersion() int { return 3 }

// TestConsumerUpcastsOldRecords: records written by the v1 release (through
// keel's Publisher, with the version header) and by a producer that sets no
// keel headers at all reach a v3 consumer's handler as v3, through a chain
// v1 to v2 to v3.
func TestConsumerUpcastsOldRecords(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "meters", "meters.dlq"))
		ctx := context.Background()

		// The v1 release publishes an event its aggregate recorded.
		env := aggregate.Envelope{ID: aggregate.NewMessageID(), Name: "meter.read", SchemaVersion: 1, AggregateID: "m-1", Event: readV1{Watts: 1500}}
		old, err := outbox.FromEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "meters"}).Publish(ctx, []outbox.Message{old}); err != nil {
			t.Fatal(err)
		}
		if v, _ := header(readTopic(t, addr, "meters")[0], aggregate.HeaderSchemaVersion); v != "1" {
			t.Fatalf("the record's %s header is %q, want 1", aggregate.HeaderSchemaVersion, v)
		}
		// Another producer, which knows nothing of versions, writes v1 too.
		w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: "meters"}
		err = w.WriteMessages(ctx, kafkago.Message{Key: []byte("m-2"), Value: []byte(`{"watts":250}`),
			Headers: []kafkago.Header{{Key: kafka.HeaderName, Value: []byte("meter.read")}}},
			// A newer release's record, which this one cannot read: it is
			// dead-lettered at once, and does not hold up the others.
			kafkago.Message{Key: []byte("m-3"), Value: []byte(`{"kw":1,"unit":"kW","phase":2}`),
				Headers: []kafkago.Header{{Key: kafka.HeaderName, Value: []byte("meter.read")}, {Key: kafka.HeaderSchemaVersion, Value: []byte("4")}}})
		w.Close()
		if err != nil {
			t.Fatal(err)
		}

		// The v3 release consumes them.
		runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		reg := aggregate.NewRegistry().MustRegister(readV3{})
		aggregate.MustUpcast(reg, "meter.read", 1, func(o readV1) (readV2, error) { return readV2{Kilowatts: float64(o.Watts) / 1000}, nil })
		aggregate.MustUpcast(reg, "meter.read", 2, func(o readV2) (readV3, error) { return readV3{Kilowatts: o.Kilowatts, Unit: "kW"}, nil })
		router, err := dispatch.NewRouter(runner, reg, dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		got := map[string]readV3{}
		dispatch.Handle(router, "billing.meter", func(ctx context.Context, tx *uow.Tx, e readV3) error {
			m, _ := dispatch.MessageFrom(ctx)
			mu.Lock()
			defer mu.Unlock()
			got[m.Key] = e
			return nil
		})
		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "billing", Topics: []string{"meters"}}, router))
		testdb.Eventually(t, 30*time.Second, "both records handled", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == 2
		})
		mu.Lock()
		defer mu.Unlock()
		want := map[string]readV3{"m-1": {1.5, "kW"}, "m-2": {0.25, "kW"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("handled (-want +got):\n%s", diff)
		}
		var dead []kafkago.Message
		testdb.Eventually(t, 30*time.Second, "the dead letter", func() bool {
			dead = readTopic(t, addr, "meters.dlq")
			return len(dead) > 0
		})
		if len(dead) != 1 || string(dead[0].Key) != "m-3" {
			t.Fatalf("%d dead letters; want the v4 record alone", len(dead))
		}
		const says = `keel: event "meter.read" was stored at version 4, but this release knows it up to version 3`
		if e, _ := header(dead[0], kafka.HeaderError); !strings.Contains(e, says) {
			t.Fatalf("dead letter's error %q; want it to say %q", e, says)
		}
	})
}
