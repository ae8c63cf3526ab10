package uow

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/repository"
)

// Span names of units of work.
const (
	spanDo   = "keel.unit_of_work"
	spanJoin = "keel.unit_of_work.join"
)

var (
	reasonConflict  = metric.WithAttributeSet(attribute.NewSet(telemetry.KeyReason.String("conflict")))
	reasonTransient = metric.WithAttributeSet(attribute.NewSet(telemetry.KeyReason.String("transient")))
)

// traced runs unit inside a span named name, ending it with unit's error.
// The span is the parent of everything the unit does, and its context is
// what the unit's outbox messages carry.
func (r *Runner) traced(ctx context.Context, name string, idempotent bool, unit func(ctx context.Context) error) error {
	ctx, span := r.tel.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.Bool("keel.idempotent", idempotent)))
	err := unit(ctx)
	var dup *DuplicateError
	switch {
	case err == nil:
	case errors.As(err, &dup):
		span.AddEvent("keel.duplicate", trace.WithAttributes(attribute.Bool("keel.duplicate", true)))
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// noteFailure records an attempt that failed with err: a version conflict
// is counted and, when the unit will run again, the retry is an event of
// the unit's span.
func (r *Runner) noteFailure(ctx context.Context, attempt int, err error, retrying bool) {
	conflict := errors.Is(err, repository.ErrConflict)
	if conflict {
		r.tel.UnitConflicts.Add(ctx, 1)
	}
	if !retrying {
		return
	}
	reason := reasonTransient
	if conflict {
		reason = reasonConflict
	}
	r.tel.UnitRetries.Add(ctx, 1, reason)
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		kind := "transient"
		if conflict {
			kind = "conflict"
		}
		span.AddEvent("keel.retry", trace.WithAttributes(telemetry.KeyAttempt.Int(attempt),
			telemetry.KeyReason.String(kind), attribute.String("exception.message", err.Error())))
	}
}
