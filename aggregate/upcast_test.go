package aggregate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
)

// The history of one event, "order.placed":
//   v1 {"total": 1250}                       (cents, an int)
//   v2 {"amount": {"cents": 1250}}           (the amount gets a currency-ready shape)
//   v3 {"amount": {"cents": 1250, "currency": "EUR"}, "channel": "web"}

type placedV1 struct {
	Total int64 `json:"total"`
}

type money struct {
	Cents    int64  `json:"cents"`
	Currency string `json:"currency,omitempty"`
}

type placedV2 struct {
	Amount money `json:"amount"`
}

type Placed struct {
	Amount  money  `json:"amount"`
	Channel string `json:"channel"`
}

func (Placed) EventName() string  { return "order.placed" }
func (Placed) SchemaVersion() int { return 3 }

func v1to2(o placedV1) (placedV2, error) { return placedV2{Amount: money{Cents: o.Total}}, nil }

func v2to3(o placedV2) (Placed, error) {
	a := o.Amount
	a.Currency = "EUR"
	return Placed{Amount: a, Channel: "web"}, nil
}

// rawV1to2 is v1to2 on JSON, as an application without the old types writes it.
func rawV1to2(p []byte) ([]byte, error) {
	var o placedV1
	if err := json.Unmarshal(p, &o); err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf(`{"amount":{"cents":%d}}`, o.Total)), nil
}

func rawV2to3(p []byte) ([]byte, error) {
	p = bytes.Replace(p, []byte(`}}`), []byte(`,"currency":"EUR"}`), 1)
	return append(p[:len(p):len(p)], []byte(`,"channel":"web"}`)...), nil
}

var (
	v1payload = []byte(`{"total":1250}`)
	v2payload = []byte(`{"amount":{"cents":1250}}`)
	want      = Placed{Amount: money{Cents: 1250, Currency: "EUR"}, Channel: "web"}
)

func TestUpcastChains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(r *aggregate.Registry) error
	}{
		{"typed", func(r *aggregate.Registry) error {
			return errors.Join(aggregate.Upcast(r, "order.placed", 1, v1to2), aggregate.Upcast(r, "order.placed", 2, v2to3))
		}},
		{"raw", func(r *aggregate.Registry) error {
			return errors.Join(r.UpcastJSON("order.placed", 1, rawV1to2), r.UpcastJSON("order.placed", 2, rawV2to3))
		}},
		{"raw then typed", func(r *aggregate.Registry) error {
			return errors.Join(r.UpcastJSON("order.placed", 1, rawV1to2), aggregate.Upcast(r, "order.placed", 2, v2to3))
		}},
		{"typed then raw", func(r *aggregate.Registry) error {
			return errors.Join(aggregate.Upcast(r, "order.placed", 1, v1to2), r.UpcastJSON("order.placed", 2, rawV2to3))
		}},
		{"upcasters before the type", func(r *aggregate.Registry) error {
			return errors.Join(aggregate.Upcast(r, "order.placed", 1, v1to2), aggregate.Upcast(r, "order.placed", 2, v2to3))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := aggregate.NewRegistry()
			if tc.name == "upcasters before the type" {
				if err := tc.setup(r); err != nil {
					t.Fatal(err)
				}
				r.MustRegister(Placed{})
			} else {
				r.MustRegister(Placed{})
				if err := tc.setup(r); err != nil {
					t.Fatal(err)
				}
			}
			for _, in := range []struct {
				v       int
				payload []byte
			}{{1, v1payload}, {2, v2payload}} {
				got, err := r.DecodeVersion("order.placed", in.v, in.payload)
				if err != nil {
					t.Fatalf("v%d: %v", in.v, err)
				}
				if diff := cmp.Diff(Placed(want), got); diff != "" {
					t.Errorf("v%d decoded (-want +got):\n%s", in.v, diff)
				}
			}
		})
	}
}

func TestUpcastIntoAPointerType(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(&Placed{})
	aggregate.MustUpcast(r, "order.placed", 1, v1to2)
	aggregate.MustUpcast(r, "order.placed", 2, func(o placedV2) (*Placed, error) {
		p, err := v2to3(o)
		return &p, err
	})
	got, err := r.DecodeVersion("order.placed", 1, v1payload)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestCurrentVersionDecodesPlainly(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(Placed{})
	// No upcaster is needed, or consulted, for the current version.
	cur := []byte(`{"amount":{"cents":1250,"currency":"EUR"},"channel":"web"}`)
	for _, v := range []int{0, 3} {
		got, err := r.DecodeVersion("order.placed", v, cur)
		if err != nil || got != aggregate.Event(want) {
			t.Fatalf("version %d: %v, %v", v, got, err)
		}
	}
	if v, ok := r.Version("order.placed"); v != 3 || !ok {
		t.Fatalf("Version = %d, %v", v, ok)
	}
}

func TestMissingUpcasterIsAClearError(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(Placed{})
	aggregate.MustUpcast(r, "order.placed", 2, v2to3)
	_, err := r.DecodeVersion("order.placed", 1, v1payload)
	var ve *aggregate.VersionError
	if !errors.As(err, &ve) || !errors.Is(err, aggregate.ErrNoUpcaster) {
		t.Fatalf("err = %v, want a *VersionError matching ErrNoUpcaster", err)
	}
	if ve.Event != "order.placed" || ve.Found != 1 || ve.Expected != 3 || ve.Missing != 1 {
		t.Fatalf("%+v", ve)
	}
	const text = `keel: event "order.placed" was stored at version 1, but its type is at version 3 and no upcaster from version 1 to 2 is registered: register one with Registry.UpcastJSON or aggregate.Upcast`
	if err.Error() != text {
		t.Fatalf("error reads\n%s\nwant\n%s", err, text)
	}
}

func TestNewerVersionIsRefused(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(Placed{})
	_, err := r.DecodeVersion("order.placed", 4, []byte(`{}`))
	if !errors.Is(err, aggregate.ErrNewerVersion) || !strings.Contains(err.Error(), "stored at version 4") || !strings.Contains(err.Error(), "up to version 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestUpcasterErrorsAreReturned(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(Placed{})
	boom := errors.New("no currency for this market")
	aggregate.MustUpcast(r, "order.placed", 1, v1to2)
	aggregate.MustUpcast(r, "order.placed", 2, func(placedV2) (Placed, error) { return Placed{}, boom })
	if _, err := r.DecodeVersion("order.placed", 1, v1payload); !errors.Is(err, boom) || !strings.Contains(err.Error(), "from version 2 to 3") {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.DecodeVersion("order.placed", 1, []byte(`{"total":"x"}`)); err == nil || !strings.Contains(err.Error(), "at version 1") {
		t.Fatalf("a bad old payload: err = %v", err)
	}
}

func TestUpcasterRegistrationMistakes(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(Placed{})
	aggregate.MustUpcast(r, "order.placed", 1, v1to2)
	for name, err := range map[string]error{
		"duplicate":  r.UpcastJSON("order.placed", 1, rawV1to2),
		"version 0":  r.UpcastJSON("order.placed", 0, rawV1to2),
		"empty name": r.UpcastJSON("", 1, rawV1to2),
		"nil":        r.UpcastJSON("order.placed", 2, nil),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// OrderSubmitted is the event once called "order.placed"; its versions
// continue the old name's.
type OrderSubmitted struct {
	Cents int64 `json:"cents"`
}

func (OrderSubmitted) EventName() string  { return "order.submitted" }
func (OrderSubmitted) SchemaVersion() int { return 2 }

func TestRenamedEvent(t *testing.T) {
	r := aggregate.NewRegistry().MustRegister(OrderSubmitted{})
	if err := r.Rename("order.placed", "order.submitted"); err != nil {
		t.Fatal(err)
	}
	aggregate.MustUpcast(r, "order.submitted", 1, func(o placedV1) (OrderSubmitted, error) { return OrderSubmitted{Cents: o.Total}, nil })
	got, err := r.DecodeVersion("order.placed", 1, v1payload)
	if err != nil || got != aggregate.Event(OrderSubmitted{Cents: 1250}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if r.Resolve("order.placed") != "order.submitted" || r.Resolve("other") != "other" {
		t.Fatal("Resolve")
	}
	if err := r.Rename("order.submitted", "order.placed"); err == nil {
		t.Fatal("a loop was accepted")
	}
	if err := r.Rename("order.submitted", "x"); err == nil {
		t.Fatal("renamed a name that has a type")
	}
	if err := r.UpcastJSON("order.placed", 1, rawV1to2); err == nil {
		t.Fatal("an upcaster under the old name was accepted")
	}
	if err := r.Register(placedUnderOldName{}); err == nil {
		t.Fatal("a type under the old name was accepted")
	}
}

type placedUnderOldName struct{}

func (placedUnderOldName) EventName() string { return "order.placed" }

type badVersion struct{}

func (badVersion) EventName() string  { return "bad" }
func (badVersion) SchemaVersion() int { return 0 }

func TestRecordStampsTheSchemaVersion(t *testing.T) {
	if err := aggregate.NewRegistry().Register(badVersion{}); err == nil {
		t.Fatal("a version 0 type was accepted")
	}
	a := NewAccount("a-1")
	a.Record(Placed{})
	_ = a.Deposit(1)
	evs := a.Events()
	if evs[0].SchemaVersion != 3 || evs[1].SchemaVersion != 1 {
		t.Fatalf("versions %d, %d; want 3, 1", evs[0].SchemaVersion, evs[1].SchemaVersion)
	}
}

func TestParseVersion(t *testing.T) {
	for h, want := range map[string]int{"": 1, "1": 1, "7": 7, "0": -1, "x": -1, "-2": -1} {
		headers := map[string]string{aggregate.HeaderSchemaVersion: h}
		if h == "" {
			headers = nil
		}
		v, err := aggregate.ParseVersion(headers)
		if want < 0 {
			if err == nil || !strings.Contains(err.Error(), aggregate.HeaderSchemaVersion) {
				t.Errorf("%q: err = %v", h, err)
			}
			continue
		}
		if err != nil || v != want {
			t.Errorf("%q: %d, %v", h, v, err)
		}
	}
}
