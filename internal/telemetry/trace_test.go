package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

type orderPlaced struct {
	Order string `json:"order"`
}

func (orderPlaced) EventName() string { return "order.placed" }

// fanOut publishes a batch to every publisher in turn: here to Kafka, and
// to an in-process Bus.
type fanOut []outbox.Publisher

func (f fanOut) Publish(ctx context.Context, batch []outbox.Message) error {
	for _, p := range f {
		if err := p.Publish(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// TestOneTrace follows one command through the unit of work, the relay,
// Kafka (kfake) to a consumer's handler, and through the in-process Bus to
// a handler, and checks that they form one trace with the documented
// parents and links:
//
//	command
//	└── keel.unit_of_work                       (writes traceparent into the row)
//	    ├── keel.handle in-process              (link: keel.relay.publish)
//	    └── keel.kafka.process events
//	        └── keel.handle from-kafka
//	keel.relay.publish  (a trace of its own; link: keel.unit_of_work)
func TestOneTrace(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		db = testdb.Reopen(t, db.Setup, db.DSN, store.Options{TracerProvider: tp, Logger: testdb.Logger()})
		st := db.Store
		ctx := context.Background()

		runner, err := uow.New(st, uow.Config{Logger: testdb.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		router := func(handler string, seen *atomic.Int32) *dispatch.Router {
			r, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{Logger: testdb.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			dispatch.Handle(r, handler, func(context.Context, *uow.Tx, orderPlaced) error {
				seen.Add(1)
				return nil
			})
			return r
		}
		var inProcess, fromKafka atomic.Int32
		bus, err := dispatch.NewBus(router("in-process", &inProcess), dispatch.BusConfig{})
		if err != nil {
			t.Fatal(err)
		}
		_, broker := testkafka.Cluster(t, kfake.SeedTopics(1, "events", "events.dlq"))
		pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{broker}, Topic: "events"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })

		// The command: a span of the application's, around one unit of work
		// that writes one message.
		cctx, command := tp.Tracer("app").Start(ctx, "command")
		payload, _ := json.Marshal(orderPlaced{Order: "o-1"})
		if err := runner.Do(cctx, func(ctx context.Context, tx *uow.Tx) error {
			tx.Enqueue(outbox.Message{Name: "order.placed", Key: "o-1", Payload: payload})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		command.End()

		relay, err := outbox.NewRelay(st, fanOut{pub, bus}, outbox.RelayConfig{Logger: testdb.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := relay.Drain(ctx); err != nil || n != 1 {
			t.Fatalf("Drain = %d, %v", n, err)
		}
		consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: []string{broker}, GroupID: "g", Topics: []string{"events"},
			Logger: testdb.Logger(), TracerProvider: tp}, router("from-kafka", &fromKafka))
		if err != nil {
			t.Fatal(err)
		}
		cctx2, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- consumer.Run(cctx2) }()
		testdb.Eventually(t, 30*time.Second, "the Kafka handler to run", func() bool { return fromKafka.Load() == 1 })
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := consumer.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close: %v", err)
		}
		if inProcess.Load() != 1 {
			t.Fatalf("in-process handler ran %d times", inProcess.Load())
		}

		spans := map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			name := s.Name
			if name == "keel.handle" {
				for _, a := range s.Attributes {
					if a.Key == "keel.handler" {
						name += " " + a.Value.AsString()
					}
				}
			}
			if _, dup := spans[name]; dup && name != "keel.unit_of_work" {
				t.Errorf("two spans named %q", name)
			}
			if _, dup := spans[name]; !dup {
				spans[name] = s
			}
		}
		get := func(name string) tracetest.SpanStub {
			t.Helper()
			s, ok := spans[name]
			if !ok {
				names := make([]string, 0, len(spans))
				for n := range spans {
					names = append(names, n)
				}
				t.Fatalf("no span %q among %v", name, names)
			}
			return s
		}
		cmd, unit := get("command"), get("keel.unit_of_work")
		publish, process := get("keel.relay.publish"), get("keel.kafka.process events")
		local, remote := get("keel.handle in-process"), get("keel.handle from-kafka")

		traceID := cmd.SpanContext.TraceID()
		for _, s := range []tracetest.SpanStub{unit, process, local, remote} {
			if s.SpanContext.TraceID() != traceID {
				t.Errorf("%s is in trace %s, not the command's %s", s.Name, s.SpanContext.TraceID(), traceID)
			}
		}
		parent := func(child, want tracetest.SpanStub, wantName string) {
			t.Helper()
			if child.Parent.SpanID() != want.SpanContext.SpanID() {
				t.Errorf("%s's parent is %s, want %s", child.Name, child.Parent.SpanID(), wantName)
			}
		}
		parent(unit, cmd, "command")
		parent(process, unit, "keel.unit_of_work")
		parent(local, unit, "keel.unit_of_work")
		parent(remote, process, "keel.kafka.process")

		if publish.SpanContext.TraceID() == traceID || publish.Parent.IsValid() {
			t.Errorf("keel.relay.publish should start a trace of its own")
		}
		linked := func(s tracetest.SpanStub, to tracetest.SpanStub) bool {
			for _, l := range s.Links {
				if l.SpanContext.SpanID() == to.SpanContext.SpanID() {
					return true
				}
			}
			return false
		}
		if !linked(publish, unit) {
			t.Errorf("keel.relay.publish has no link to the unit of work: %v", publish.Links)
		}
		if !linked(local, publish) {
			t.Errorf("the in-process handler has no link to keel.relay.publish: %v", local.Links)
		}
		if local.SpanKind != trace.SpanKindConsumer || process.SpanKind != trace.SpanKindConsumer || publish.SpanKind != trace.SpanKindProducer {
			t.Errorf("span kinds: handler %v, process %v, publish %v", local.SpanKind, process.SpanKind, publish.SpanKind)
		}
	})
}
