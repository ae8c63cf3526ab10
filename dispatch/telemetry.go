package dispatch

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
)

// spanHandle is the name of the span of one handler's run on one message.
const spanHandle = "keel.handle"

// handlerMetrics are a handler's measurement options, made once.
type handlerMetrics struct {
	once       sync.Once
	ok, failed metric.MeasurementOption
	errors     metric.AddOption
	attrs      []attribute.KeyValue
}

func (h *handler) metrics() *handlerMetrics {
	m := &h.tel
	m.once.Do(func() {
		name, event := telemetry.KeyHandler.String(h.name), telemetry.KeyEvent.String(h.event)
		m.attrs = []attribute.KeyValue{name, event}
		m.ok = metric.WithAttributeSet(attribute.NewSet(name, event, telemetry.KeyOutcome.String("ok")))
		m.failed = metric.WithAttributeSet(attribute.NewSet(name, event, telemetry.KeyOutcome.String("error")))
		m.errors = metric.WithAttributeSet(attribute.NewSet(name, event))
	})
	return m
}

// traceHandler starts the span of h's run on m and returns the context
// to run it in, and the function that ends the span and records the run's
// duration and outcome.
//
// The span continues the trace of the unit of work that wrote m: its
// parent is the span context m carries in its traceparent header. When ctx
// already has a span of that trace (a Kafka consumer's span for the
// record), that span is the parent instead. A span of another trace in ctx
// (a relay's batch) becomes a link.
func (r *Router) traceHandler(ctx context.Context, h *handler, m *outbox.Message) (context.Context, func(err error)) {
	hm := h.metrics()
	start := time.Now()
	parent := ctx
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	cur := trace.SpanContextFromContext(ctx)
	if sc := telemetry.SpanContext(m.Headers); sc.IsValid() && sc.TraceID() != cur.TraceID() {
		parent = trace.ContextWithRemoteSpanContext(ctx, sc)
		if cur.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cur}))
		}
	}
	ctx, span := r.tel.Tracer.Start(parent, spanHandle, opts...)
	if span.IsRecording() {
		span.SetAttributes(hm.attrs...)
		span.SetAttributes(telemetry.KeyMessageID.String(m.ID), telemetry.KeyKey.String(m.PartitionKey()))
	}
	return ctx, func(err error) {
		bg := context.Background()
		took := time.Since(start).Seconds()
		if err != nil {
			r.tel.HandlerDuration.Record(bg, took, hm.failed)
			r.tel.HandlerErrors.Add(bg, 1, hm.errors)
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			r.tel.HandlerDuration.Record(bg, took, hm.ok)
		}
		span.End()
	}
}
