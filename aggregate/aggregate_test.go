package aggregate_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/aggstate"
)

type Invoice struct {
	aggregate.Root
	Amount int64 `json:"amount"`
	Paid   bool  `json:"paid"`
}

type InvoicePaid struct {
	Amount int64             `json:"amount"`
	PaidAt time.Time         `json:"paid_at"`
	Lines  []string          `json:"lines"`
	Meta   map[string]string `json:"meta"`
}

func (InvoicePaid) EventName() string { return "invoice.paid" }

type InvoiceVoided struct{ Reason string }

func (*InvoiceVoided) EventName() string { return "invoice.voided" }

func (i *Invoice) Pay(at time.Time) {
	i.Paid = true
	i.Record(InvoicePaid{Amount: i.Amount, PaidAt: at, Lines: []string{"a", "b"}, Meta: map[string]string{"k": "v"}})
}

func TestRecord(t *testing.T) {
	inv := &Invoice{Amount: 120}
	inv.Init("invoice", "inv-1")
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aggregate.SetClock(inv, func() time.Time { return fixed })
	inv.Pay(fixed)
	inv.Record(&InvoiceVoided{Reason: "dup"})

	evs := inv.Events()
	if len(evs) != 2 || !inv.HasChanges() {
		t.Fatalf("events = %d", len(evs))
	}
	e := evs[0]
	want := aggregate.Envelope{
		Name:             "invoice.paid",
		SchemaVersion:    1,
		AggregateType:    "invoice",
		AggregateID:      "inv-1",
		AggregateVersion: 1,
		OccurredAt:       fixed,
		Event:            InvoicePaid{Amount: 120, PaidAt: fixed, Lines: []string{"a", "b"}, Meta: map[string]string{"k": "v"}},
	}
	if diff := cmp.Diff(want, e, cmpopts.IgnoreFields(aggregate.Envelope{}, "ID")); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	id, err := uuid.Parse(e.ID)
	if err != nil || id.Version() != 7 {
		t.Errorf("message id %q is not a UUIDv7: %v", e.ID, err)
	}
	if evs[0].ID >= evs[1].ID {
		t.Errorf("UUIDv7 ids not time-ordered: %s >= %s", evs[0].ID, evs[1].ID)
	}
	// Events returns a copy.
	evs[0].Name = "changed"
	if inv.Events()[0].Name != "invoice.paid" {
		t.Error("Events exposed internal state")
	}
	aggstate.SetVersion(inv, 1)
	inv.Record(InvoicePaid{})
	if v := inv.Events()[2].AggregateVersion; v != 2 {
		t.Errorf("event after save stamped v%d, want v2", v)
	}
	aggstate.MarkCommitted(inv)
	if inv.HasChanges() {
		t.Error("MarkCommitted left events pending")
	}
	aggstate.Restore(inv, "invoice", "inv-2", 7)
	if inv.ID() != "inv-2" || inv.Version() != 7 || inv.IsNew() {
		t.Errorf("Restore: %s v%d", inv.ID(), inv.Version())
	}
}

func TestMetadata(t *testing.T) {
	inv := &Invoice{}
	inv.Init("invoice", "inv-1")
	inv.RecordWith(InvoicePaid{}, aggregate.Metadata{CorrelationID: "c1", Headers: map[string]string{"a": "1"}})
	env := inv.Events()[0]
	env.ApplyMetadata(aggregate.Metadata{CorrelationID: "ctx", CausationID: "cause", Headers: map[string]string{"a": "2", "b": "3"}})
	want := aggregate.Metadata{CorrelationID: "c1", CausationID: "cause", Headers: map[string]string{"a": "1", "b": "3"}}
	got := aggregate.Metadata{CorrelationID: env.CorrelationID, CausationID: env.CausationID, Headers: env.Headers}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	ctx := aggregate.WithMetadata(context.Background(), aggregate.Metadata{CorrelationID: "x"})
	if md, ok := aggregate.MetadataFrom(ctx); !ok || md.CorrelationID != "x" {
		t.Error("MetadataFrom lost the value")
	}
}

func TestRegistryRoundTrip(t *testing.T) {
	reg := aggregate.NewRegistry()
	if err := reg.Register(InvoicePaid{}, (*InvoiceVoided)(nil)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []aggregate.Event{
		InvoicePaid{Amount: 5, PaidAt: time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC), Lines: []string{"x"}, Meta: map[string]string{"a": "b"}},
		&InvoiceVoided{Reason: "customer asked"},
	} {
		b, err := reg.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reg.Decode(ev.EventName(), b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ev, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if diff := cmp.Diff([]string{"invoice.paid", "invoice.voided"}, reg.Names()); diff != "" {
		t.Error(diff)
	}
	if n := aggregate.NameOf[*InvoiceVoided](); n != "invoice.voided" {
		t.Errorf("NameOf = %q", n)
	}
	// Type reports each name in the form it was registered.
	for name, want := range map[string]reflect.Type{
		"invoice.paid":   reflect.TypeFor[InvoicePaid](),
		"invoice.voided": reflect.TypeFor[*InvoiceVoided](),
	} {
		if got, ok := reg.Type(name); !ok || got != want {
			t.Errorf("Type(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	if got, ok := reg.Type("invoice.refunded"); ok || got != nil {
		t.Errorf("Type of an unregistered name = %v, %v; want nil, false", got, ok)
	}
}

type otherPaid struct{}

func (otherPaid) EventName() string { return "invoice.paid" }

type unnamed struct{}

func (unnamed) EventName() string { return "" }

func TestRegistryErrors(t *testing.T) {
	reg := aggregate.NewRegistry().MustRegister(InvoicePaid{})
	_, err := reg.Decode("invoice.refunded", []byte(`{}`))
	if !errors.Is(err, aggregate.ErrUnknownEvent) || !strings.Contains(err.Error(), "invoice.refunded") {
		t.Errorf("unknown event: %v", err)
	}
	if _, err := reg.Decode("invoice.paid", []byte(`{"amount": "lots"}`)); err == nil || !strings.Contains(err.Error(), "invoice.paid") {
		t.Errorf("bad payload: %v", err)
	}
	if err := reg.Register(otherPaid{}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("conflicting name: %v", err)
	}
	if err := reg.Register(InvoicePaid{}); err != nil {
		t.Errorf("re-registering the same type: %v", err)
	}
	if err := reg.Register(unnamed{}); err == nil {
		t.Error("empty event name accepted")
	}
	if err := reg.Register(nil); err == nil {
		t.Error("nil event accepted")
	}
}

func TestValidate(t *testing.T) {
	var inv Invoice
	if err := aggregate.Validate(&inv); !errors.Is(err, aggregate.ErrEmptyType) {
		t.Errorf("no type: %v", err)
	}
	inv.Init("invoice", "")
	if err := aggregate.Validate(&inv); !errors.Is(err, aggregate.ErrEmptyID) || !strings.Contains(err.Error(), "Init") {
		t.Errorf("no id: %v", err)
	}
	if err := aggregate.Validate(nil); !errors.Is(err, aggregate.ErrEmptyID) {
		t.Errorf("nil: %v", err)
	}
	inv.Init("invoice", "inv-1")
	if err := aggregate.Validate(&inv); err != nil {
		t.Error(err)
	}
}
