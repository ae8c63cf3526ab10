package outbox_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/outbox"
)

type labelled struct {
	Text string `json:"text"`
}

func (labelled) EventName() string  { return "label.printed" }
func (labelled) SchemaVersion() int { return 2 }

type labelledV1 struct {
	Label string `json:"label"`
}

// TestFromEnvelopeWritesTheSchemaVersion: the message carries the event's
// version in its headers, beside the envelope's own, and the envelope's map
// is left alone.
func TestFromEnvelopeWritesTheSchemaVersion(t *testing.T) {
	env := aggregate.Envelope{ID: "m-1", Name: "label.printed", SchemaVersion: 2, Event: labelled{Text: "x"},
		Headers: map[string]string{"traceparent": "tp"}}
	m, err := outbox.FromEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	if m.Headers[aggregate.HeaderSchemaVersion] != "2" || m.Headers["traceparent"] != "tp" {
		t.Fatalf("headers %v", m.Headers)
	}
	if _, ok := env.Headers[aggregate.HeaderSchemaVersion]; ok {
		t.Fatal("FromEnvelope changed the envelope's headers")
	}
	env.SchemaVersion = 0 // an envelope built by hand
	if m, _ = outbox.FromEnvelope(env); m.Headers[aggregate.HeaderSchemaVersion] != "1" {
		t.Fatalf("an envelope without a version gave %q, want 1", m.Headers[aggregate.HeaderSchemaVersion])
	}
}

// TestMessageDecodeUpcasts: Decode reads the version header, takes a
// message without one for version 1, and refuses a header that is not a
// version.
func TestMessageDecodeUpcasts(t *testing.T) {
	reg := aggregate.NewRegistry().MustRegister(labelled{})
	aggregate.MustUpcast(reg, "label.printed", 1, func(o labelledV1) (labelled, error) { return labelled{Text: o.Label}, nil })
	for _, h := range []map[string]string{nil, {aggregate.HeaderSchemaVersion: "1"}} {
		m := outbox.Message{Name: "label.printed", Payload: []byte(`{"label":"old"}`), Headers: h}
		e, err := m.Decode(reg)
		if err != nil || e != aggregate.Event(labelled{Text: "old"}) {
			t.Fatalf("headers %v: %v, %v", h, e, err)
		}
	}
	m := outbox.Message{Name: "label.printed", Payload: []byte(`{"text":"new"}`), Headers: map[string]string{aggregate.HeaderSchemaVersion: "2"}}
	if e, err := m.Decode(reg); err != nil || e != aggregate.Event(labelled{Text: "new"}) {
		t.Fatalf("v2: %v, %v", e, err)
	}
	m.Headers[aggregate.HeaderSchemaVersion] = "two"
	if _, err := m.Decode(reg); err == nil || !strings.Contains(err.Error(), `header keel-schema-version is "two"`) {
		t.Fatalf("a bad header: %v", err)
	}
	m.Headers[aggregate.HeaderSchemaVersion] = "3"
	if _, err := m.Decode(reg); !errors.Is(err, aggregate.ErrNewerVersion) {
		t.Fatalf("a newer version: %v", err)
	}
}
