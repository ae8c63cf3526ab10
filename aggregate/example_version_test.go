package aggregate_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/keel-go/keel/aggregate"
)

// TicketBooked is at version 3 of its shape. Its older shapes live on in
// outbox rows, parked messages and Kafka topics:
//
//	v1 {"seat": "12A"}
//	v2 {"seat": {"row": 12, "letter": "A"}}
//	v3 {"seat": {"row": 12, "letter": "A"}, "class": "economy"}
type TicketBooked struct {
	Seat  Seat   `json:"seat"`
	Class string `json:"class"`
}

// Seat is a seat on the plane.
type Seat struct {
	Row    int    `json:"row"`
	Letter string `json:"letter"`
}

// EventName names the event in storage and on the wire.
func (TicketBooked) EventName() string { return "ticket.booked" }

// SchemaVersion is the version of the shape TicketBooked encodes to.
func (TicketBooked) SchemaVersion() int { return 3 }

// ticketBookedV1 and ticketBookedV2 are the old shapes, kept for their
// upcasters.
type ticketBookedV1 struct {
	Seat string `json:"seat"`
}

type ticketBookedV2 struct {
	Seat Seat `json:"seat"`
}

// Old payloads decode into the current type through a chain of upcasters,
// one per version. Typed ones pass values along without encoding them
// again.
func ExampleUpcast() {
	reg := aggregate.NewRegistry().MustRegister(TicketBooked{})
	aggregate.MustUpcast(reg, "ticket.booked", 1, func(old ticketBookedV1) (ticketBookedV2, error) {
		var s Seat
		if _, err := fmt.Sscanf(old.Seat, "%d%s", &s.Row, &s.Letter); err != nil {
			return ticketBookedV2{}, fmt.Errorf("seat %q: %w", old.Seat, err)
		}
		return ticketBookedV2{Seat: s}, nil
	})
	aggregate.MustUpcast(reg, "ticket.booked", 2, func(old ticketBookedV2) (TicketBooked, error) {
		return TicketBooked{Seat: old.Seat, Class: "economy"}, nil
	})

	for _, stored := range []struct {
		version int
		payload string
	}{
		{1, `{"seat":"12A"}`},
		{2, `{"seat":{"row":14,"letter":"C"}}`},
		{3, `{"seat":{"row":2,"letter":"F"},"class":"business"}`},
	} {
		e, err := reg.DecodeVersion("ticket.booked", stored.version, []byte(stored.payload))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("v%d: %+v\n", stored.version, e)
	}
	// Output:
	// v1: {Seat:{Row:12 Letter:A} Class:economy}
	// v2: {Seat:{Row:14 Letter:C} Class:economy}
	// v3: {Seat:{Row:2 Letter:F} Class:business}
}

// A JSON upcaster suits a small change to the document, or a version whose
// Go type is gone. A gap in the chain is an error that names the event and
// both versions; it never decodes into zero values.
func ExampleRegistry_UpcastJSON() {
	reg := aggregate.NewRegistry().MustRegister(TicketBooked{})
	err := reg.UpcastJSON("ticket.booked", 2, func(p []byte) ([]byte, error) {
		// {"seat":{...}} becomes {"seat":{...},"class":"economy"}.
		return append(p[:len(p)-1:len(p)-1], `,"class":"economy"}`...), nil
	})
	if err != nil {
		log.Fatal(err)
	}
	e, err := reg.DecodeVersion("ticket.booked", 2, []byte(`{"seat":{"row":3,"letter":"B"}}`))
	fmt.Printf("%+v %v\n", e, err)

	_, err = reg.DecodeVersion("ticket.booked", 1, []byte(`{"seat":"12A"}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, aggregate.ErrNoUpcaster))
	// Output:
	// {Seat:{Row:3 Letter:B} Class:economy} <nil>
	// keel: event "ticket.booked" was stored at version 1, but its type is at version 3 and no upcaster from version 1 to 2 is registered: register one with Registry.UpcastJSON or aggregate.Upcast
	// true
}

// An event renamed in a later release still decodes, and reaches the
// handlers of its new name, from messages stored under the old one.
func ExampleRegistry_Rename() {
	reg := aggregate.NewRegistry().MustRegister(TicketBooked{})
	if err := reg.Rename("seat.reserved", "ticket.booked"); err != nil {
		log.Fatal(err)
	}
	e, err := reg.DecodeVersion("seat.reserved", 3, []byte(`{"seat":{"row":7,"letter":"D"},"class":"economy"}`))
	fmt.Println(reg.Resolve("seat.reserved"), e, err)
	// Output: ticket.booked {{7 D} economy} <nil>
}
