package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestPrometheusFormat checks the exposition of each kind of instrument:
// names and units as OpenTelemetry's Prometheus rules give them, counters
// ending in _total, cumulative histogram buckets, and escaped label values.
func TestPrometheusFormat(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m := mp.Meter("test")
	ctx := context.Background()

	c, _ := m.Int64Counter("keel.relay.messages", metric.WithUnit("{message}"), metric.WithDescription("Messages.\nBy outcome."))
	c.Add(ctx, 3, metric.WithAttributes(attribute.String("keel.outcome", "delivered")))
	c.Add(ctx, 1, metric.WithAttributes(attribute.String("keel.outcome", `odd "quoted"`+"\nvalue\\")))
	h, _ := m.Float64Histogram("keel.relay.lag", metric.WithUnit("s"), metric.WithDescription("Lag."),
		metric.WithExplicitBucketBoundaries(0.01, 0.1))
	for _, v := range []float64{0.005, 0.05, 0.05, 2} {
		h.Record(ctx, v)
	}
	g, _ := m.Int64ObservableGauge("keel.outbox.pending", metric.WithDescription("Pending."))
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, 42)
		return nil
	}, g)

	rec := httptest.NewRecorder()
	prometheus{reader: reader, log: slog.New(slog.NewTextHandler(io.Discard, nil))}.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `# HELP keel_relay_messages_total Messages.\nBy outcome.
# TYPE keel_relay_messages_total counter
keel_relay_messages_total{keel_outcome="delivered"} 3
keel_relay_messages_total{keel_outcome="odd \"quoted\"\nvalue\\"} 1
# HELP keel_relay_lag_seconds Lag.
# TYPE keel_relay_lag_seconds histogram
keel_relay_lag_seconds_bucket{le="0.01"} 1
keel_relay_lag_seconds_bucket{le="0.1"} 3
keel_relay_lag_seconds_bucket{le="+Inf"} 4
keel_relay_lag_seconds_sum 2.105
keel_relay_lag_seconds_count 4
# HELP keel_outbox_pending Pending.
# TYPE keel_outbox_pending gauge
keel_outbox_pending 42
`
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Errorf("/metrics (-want +got):\n%s", diff)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}
