package kafka

import (
	"context"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
)

// traceRecord starts the span of one record's handling, a child of the
// span context the record carries in its traceparent header (the unit of
// work that wrote its outbox row), and returns the function ending it.
func (c *Consumer) traceRecord(ctx context.Context, km *kafkago.Message, m *outbox.Message) (context.Context, func(error)) {
	ctx, span := c.tel.Tracer.Start(telemetry.Extract(ctx, m.Headers), "keel.kafka.process "+km.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(telemetry.KeySystem.String("kafka"), telemetry.KeyTopic.String(km.Topic),
			telemetry.KeyGroup.String(c.cfg.GroupID), telemetry.KeyMessageID.String(m.ID),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(km.Partition)),
			attribute.Int64("messaging.kafka.offset", km.Offset))
	}
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// observeLag reports the consumer's lag each time the meter collects,
// while Run runs, and returns the function that stops it.
func (c *Consumer) observeLag() (stop func()) {
	attrs := metric.WithAttributes(telemetry.KeyGroup.String(c.cfg.GroupID))
	reg, err := c.tel.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(c.tel.ConsumerLag, c.r.Stats().Lag, attrs)
		return nil
	}, c.tel.ConsumerLag)
	if err != nil {
		c.log.Warn("keel: cannot report kafka consumer lag", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
