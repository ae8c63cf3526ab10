package outbox

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/telemetry"
)

// observers calls each of its Observers in turn.
type observers []Observer

func (list observers) ObserveBatch(r BatchReport) {
	for _, o := range list {
		o.ObserveBatch(r)
	}
}

// metricsObserver records a relay's batches as OpenTelemetry metrics.
type metricsObserver struct {
	tel      *telemetry.Telemetry
	relay    attribute.KeyValue
	outcomes [5]metric.AddOption // delivered, failed, parked, held, unrecorded
	plain    metric.MeasurementOption
}

func newMetricsObserver(tel *telemetry.Telemetry, relayID string) *metricsObserver {
	relay := telemetry.KeyRelayID.String(relayID)
	o := &metricsObserver{tel: tel, relay: relay, plain: metric.WithAttributeSet(attribute.NewSet(relay))}
	for i, name := range []string{"delivered", "failed", "parked", "held", "unrecorded"} {
		o.outcomes[i] = metric.WithAttributeSet(attribute.NewSet(relay, telemetry.KeyOutcome.String(name)))
	}
	return o
}

// ObserveBatch implements Observer.
func (o *metricsObserver) ObserveBatch(r BatchReport) {
	ctx := context.Background()
	t := o.tel
	t.RelayBatches.Add(ctx, 1, o.plain)
	for i, n := range []int{r.Delivered, r.Failed, r.Parked, r.Held, r.Unrecorded} {
		if n > 0 {
			t.RelayMessages.Add(ctx, int64(n), o.outcomes[i])
		}
	}
	t.RelayBatchDuration.Record(ctx, r.Duration.Seconds(), o.plain)
	t.RelayLag.Record(ctx, r.Lag.Seconds(), o.plain)
}

// observe reports, each time the meter collects while the relay runs, the
// partitions it leases and the outbox's counts (Stats), and returns the
// function that stops it. Every running relay of a process reports the
// outbox's counts, as the same values.
func (r *Relay) observe() (stop func()) {
	tel := r.ob.tel
	relay := metric.WithAttributeSet(attribute.NewSet(telemetry.KeyRelayID.String(r.cfg.ID)))
	reg, err := tel.Meter.RegisterCallback(func(ctx context.Context, obs metric.Observer) error {
		obs.ObserveInt64(tel.RelayPartitions, int64(r.leases.count()), relay)
		s, err := r.ob.Stats(ctx)
		if err != nil {
			return err
		}
		obs.ObserveInt64(tel.OutboxPending, s.Pending)
		obs.ObserveInt64(tel.OutboxRetrying, s.Retrying)
		obs.ObserveInt64(tel.OutboxParked, s.Parked)
		obs.ObserveFloat64(tel.OutboxOldest, s.OldestPending.Seconds())
		obs.ObserveInt64(tel.OutboxLater, s.Scheduled)
		return nil
	}, tel.RelayPartitions, tel.OutboxPending, tel.OutboxRetrying, tel.OutboxParked, tel.OutboxOldest, tel.OutboxLater)
	if err != nil {
		r.log.Warn("keel: cannot report relay metrics", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// tracedPublisher records a span around each Publish of a relay. Its
// messages come from many units of work, each its own trace, so the span
// does not continue any of them: it starts a trace of its own and links to
// the span context each message carries (up to telemetry.MaxLinks).
// Publishers see it in their ctx; dispatch's handlers, for example, link
// back to it.
type tracedPublisher struct {
	pub   Publisher
	tel   *telemetry.Telemetry
	attrs []attribute.KeyValue
}

func (p tracedPublisher) Publish(ctx context.Context, batch []Message) error {
	ctx, span := p.tel.Tracer.Start(ctx, "keel.relay.publish", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(p.attrs...), trace.WithAttributes(telemetry.KeyBatchSize.Int(len(batch))))
	if span.IsRecording() {
		links := 0
		var last string // the traceparent linked last: a unit's messages share it
		for i := range batch {
			tp := batch[i].Headers[telemetry.HeaderTraceParent]
			if tp == "" || tp == last {
				continue
			}
			if sc := telemetry.SpanContext(batch[i].Headers); sc.IsValid() {
				span.AddLink(trace.Link{SpanContext: sc})
				last = tp
				if links++; links == telemetry.MaxLinks {
					break
				}
			}
		}
	}
	err := p.pub.Publish(ctx, batch)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "some messages were not published")
	}
	span.End()
	return err
}
