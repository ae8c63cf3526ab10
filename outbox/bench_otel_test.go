package outbox_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// BenchmarkDrainTelemetry is BenchmarkDrain's relay with and without
// OpenTelemetry's SDK recording its spans (to an exporter that drops them)
// and metrics (into a reader never collected), in the same run: what
// tracing and metrics cost a relay. Every row carries a traceparent
// header, as rows written under a traced unit of work do, so each batch's
// span links to its messages' traces.
//
//	go test -run '^$' -bench DrainTelemetry -benchtime 3x ./outbox/
func BenchmarkDrainTelemetry(b *testing.B) {
	const rows = 100000
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
			traced := testdb.Reopen(b, s, db.DSN, store.Options{TracerProvider: tp, MeterProvider: mp, Logger: testdb.Logger()})
			fill := func() {
				testdb.FillOutbox(b, db, rows, 0)
				d := db.Dialect()
				if _, err := db.SQL().Exec(d.Rebind("UPDATE "+db.Table("outbox")+" SET headers = ?"),
					`{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range []struct {
				name string
				st   *store.Store
			}{{"relay", db.Store}, {"relay-otel", traced.Store}} {
				b.Run(c.name, func(b *testing.B) {
					r := newRelay(b, c.st, nopPublisher, outbox.RelayConfig{})
					var total time.Duration
					for range b.N {
						fill()
						start := time.Now()
						n, err := r.Drain(context.Background())
						total += time.Since(start)
						if err != nil || n != rows {
							b.Fatalf("Drain = %d, %v", n, err)
						}
					}
					b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
				})
			}
		})
	}
}
