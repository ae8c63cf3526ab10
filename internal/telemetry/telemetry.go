// Package telemetry holds keel's OpenTelemetry instruments and the W3C
// trace-context propagation through message headers. It uses only the
// OpenTelemetry API: with no SDK installed every call is a no-op.
package telemetry

import (
	"context"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of keel's tracer and meter.
const ScopeName = "github.com/keel-go/keel"

// Header names of the W3C trace context, as stored in outbox headers and
// carried in Kafka record headers.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Attribute keys keel records.
const (
	KeyOutcome   = attribute.Key("keel.outcome")
	KeyReason    = attribute.Key("keel.retry.reason")
	KeyAttempt   = attribute.Key("keel.attempt")
	KeyHandler   = attribute.Key("keel.handler")
	KeyEvent     = attribute.Key("keel.event")
	KeyMessageID = attribute.Key("messaging.message.id")
	KeyKey       = attribute.Key("keel.partition_key")
	KeyRelayID   = attribute.Key("keel.relay.id")
	KeyBatchSize = attribute.Key("messaging.batch.message_count")
	KeyTopic     = attribute.Key("messaging.destination.name")
	KeyGroup     = attribute.Key("messaging.consumer.group.name")
	KeySystem    = attribute.Key("messaging.system")
)

// Telemetry is keel's tracer and instruments for one pair of providers.
type Telemetry struct {
	Tracer trace.Tracer
	Meter  metric.Meter

	UnitsCommitted metric.Int64Counter
	UnitRetries    metric.Int64Counter
	UnitConflicts  metric.Int64Counter
	UnitsGaveUp    metric.Int64Counter

	RelayBatches       metric.Int64Counter
	RelayMessages      metric.Int64Counter
	RelayBatchDuration metric.Float64Histogram
	RelayLag           metric.Float64Histogram
	RelayPartitions    metric.Int64ObservableGauge

	HandlerDuration metric.Float64Histogram
	HandlerErrors   metric.Int64Counter

	DeadLetters metric.Int64Counter

	OutboxPending  metric.Int64ObservableGauge
	OutboxRetrying metric.Int64ObservableGauge
	OutboxParked   metric.Int64ObservableGauge
	OutboxOldest   metric.Float64ObservableGauge
	OutboxLater    metric.Int64ObservableGauge
	ConsumerLag    metric.Int64ObservableGauge
}

type providers struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

var cache sync.Map // providers -> *Telemetry

// For returns the Telemetry of the given providers; nil ones are
// OpenTelemetry's global providers, which forward to an SDK installed at
// any time. Instruments are made once per pair of providers.
func For(tp trace.TracerProvider, mp metric.MeterProvider) *Telemetry {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	key := providers{tp, mp}
	cacheable := reflect.TypeOf(tp).Comparable() && reflect.TypeOf(mp).Comparable()
	if cacheable {
		if t, ok := cache.Load(key); ok {
			return t.(*Telemetry)
		}
	}
	t := build(tp, mp)
	if cacheable {
		actual, _ := cache.LoadOrStore(key, t)
		return actual.(*Telemetry)
	}
	return t
}

func build(tp trace.TracerProvider, mp metric.MeterProvider) *Telemetry {
	m := mp.Meter(ScopeName)
	t := &Telemetry{Tracer: tp.Tracer(ScopeName), Meter: m}
	// Instrument constructors return a usable no-op instrument with their
	// error, which is only ever about an invalid name or unit: fixed here.
	t.UnitsCommitted, _ = m.Int64Counter("keel.uow.committed", metric.WithUnit("{unit}"),
		metric.WithDescription("Units of work committed."))
	t.UnitRetries, _ = m.Int64Counter("keel.uow.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Units of work run again after a version conflict or a transient error, by keel.retry.reason."))
	t.UnitConflicts, _ = m.Int64Counter("keel.uow.conflicts", metric.WithUnit("{conflict}"),
		metric.WithDescription("Version conflicts met by units of work, retried or not."))
	t.UnitsGaveUp, _ = m.Int64Counter("keel.uow.gave_up", metric.WithUnit("{unit}"),
		metric.WithDescription("Units of work that used up their attempts."))

	t.RelayBatches, _ = m.Int64Counter("keel.relay.batches", metric.WithUnit("{batch}"),
		metric.WithDescription("Batches published by relays."))
	t.RelayMessages, _ = m.Int64Counter("keel.relay.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages handled by relays, by keel.outcome: delivered, failed, parked, held, unrecorded."))
	t.RelayBatchDuration, _ = m.Float64Histogram("keel.relay.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from claiming a batch to recording its outcome."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	t.RelayLag, _ = m.Float64Histogram("keel.relay.lag", metric.WithUnit("s"),
		metric.WithDescription("Commit-to-publish lag: the age of a batch's oldest message when it was published."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))

	t.RelayPartitions, _ = m.Int64ObservableGauge("keel.relay.partitions", metric.WithUnit("{partition}"),
		metric.WithDescription("Partitions a running relay leases, of 64."))

	t.HandlerDuration, _ = m.Float64Histogram("keel.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Time a handler took for one message, by keel.handler, keel.event and keel.outcome."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	t.HandlerErrors, _ = m.Int64Counter("keel.handler.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Handler runs that failed, by keel.handler and keel.event."))

	t.DeadLetters, _ = m.Int64Counter("keel.kafka.consumer.dead_letters", metric.WithUnit("{message}"),
		metric.WithDescription("Records a Kafka consumer wrote to its dead-letter topic, by messaging.destination.name."))
	t.ConsumerLag, _ = m.Int64ObservableGauge("keel.kafka.consumer.lag", metric.WithUnit("{message}"),
		metric.WithDescription("Records a Kafka consumer has yet to read, by messaging.destination.name and messaging.consumer.group.name."))

	t.OutboxPending, _ = m.Int64ObservableGauge("keel.outbox.pending", metric.WithUnit("{message}"),
		metric.WithDescription("Outbox rows waiting for delivery, including those waiting to retry."))
	t.OutboxRetrying, _ = m.Int64ObservableGauge("keel.outbox.retrying", metric.WithUnit("{message}"),
		metric.WithDescription("Pending outbox rows that have failed at least once."))
	t.OutboxParked, _ = m.Int64ObservableGauge("keel.outbox.parked", metric.WithUnit("{message}"),
		metric.WithDescription("Outbox rows parked after their last attempt or a permanent failure."))
	t.OutboxLater, _ = m.Int64ObservableGauge("keel.outbox.scheduled", metric.WithUnit("{message}"),
		metric.WithDescription("Messages scheduled for later (Message.NotBefore), not yet due."))
	t.OutboxOldest, _ = m.Float64ObservableGauge("keel.outbox.oldest_pending.age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest pending outbox row; 0 when none is pending."))
	return t
}

// propagator writes and reads the W3C trace context: keel stores it with
// every message whatever propagator the application installed globally.
var propagator = propagation.TraceContext{}

// Inject returns headers with the trace context of ctx's span added as
// traceparent (and tracestate), when ctx has a span and headers carry no
// traceparent of their own. It never changes headers: when it adds
// anything it returns a copy.
func Inject(ctx context.Context, headers map[string]string) map[string]string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return headers
	}
	if _, ok := headers[HeaderTraceParent]; ok {
		return headers
	}
	out := make(map[string]string, len(headers)+2)
	for k, v := range headers {
		out[k] = v
	}
	propagator.Inject(ctx, propagation.MapCarrier(out))
	return out
}

// Extract returns ctx carrying, as its remote parent, the span context in
// headers' traceparent, or ctx unchanged when headers carry none.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	if headers[HeaderTraceParent] == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(headers))
}

// SpanContext returns the span context in headers, which is invalid when
// they carry none.
func SpanContext(headers map[string]string) trace.SpanContext {
	if headers[HeaderTraceParent] == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.MapCarrier(headers)))
}

// MaxLinks bounds the links a batch span records: OpenTelemetry SDKs keep
// 128 by default and drop the rest.
const MaxLinks = 128
