// Command order follows an order through its life when the stock is
// reserved after the order is placed, by an asynchronous handler. It
// answers two questions from the seed threads.
//
// Seed 001, one transaction or eventual consistency: placing an order
// changes only the Order aggregate. Reserving stock is a separate step, a
// reaction to the committed order.placed event, run by an asynchronous
// handler in a unit of work of its own. The order is confirmed or
// rejected by further handlers, once the outcome is known.
//
// Seed 002, what happens when the handler fails: there are two kinds of
// failure, and they are handled differently.
//   - A technical failure (the warehouse database timed out) is an error.
//     The handler's unit rolls back, the relay delivers the message again
//     later, and only the handler that failed runs again: the other handler
//     of the same message already took effect, and its inbox row says so.
//   - A business outcome (there is not enough stock) is not an error. The
//     stock aggregate records a stock.reservation_refused event, a fact
//     like any other, and the compensating handler rejects the order. The
//     order was accepted and later rejected: the same end state as refusing
//     it up front, reached through events.
//
// The relay is stepped with Drain so that the narrative can show each hop;
// a service would call Relay.Run once, and every commit would wake it, as
// in the payment example.
//
// Run it with:
//
//	go run ./examples/order
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// Order is an aggregate: a customer's order for one product.
type Order struct {
	aggregate.Root
	SKU    string `json:"sku"`
	Qty    int    `json:"qty"`
	Status string `json:"status"` // placed, confirmed or rejected
	Reason string `json:"reason,omitempty"`
}

// OrderPlaced is recorded when a customer places an order.
type OrderPlaced struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// EventName implements aggregate.Event.
func (OrderPlaced) EventName() string { return "order.placed" }

// OrderConfirmed is recorded when the order's stock is reserved.
type OrderConfirmed struct{}

// EventName implements aggregate.Event.
func (OrderConfirmed) EventName() string { return "order.confirmed" }

// OrderRejected is recorded when the order cannot be fulfilled.
type OrderRejected struct {
	Reason string `json:"reason"`
}

// EventName implements aggregate.Event.
func (OrderRejected) EventName() string { return "order.rejected" }

// PlaceOrder creates an order.
func PlaceOrder(id, sku string, qty int) (*Order, error) {
	if qty <= 0 {
		return nil, fmt.Errorf("order %s: quantity must be positive, got %d", id, qty)
	}
	o := &Order{SKU: sku, Qty: qty, Status: "placed"}
	o.Init("order", id)
	o.Record(OrderPlaced{SKU: sku, Qty: qty})
	return o, nil
}

// Confirm marks a placed order as confirmed. Confirming twice is a no-op.
func (o *Order) Confirm() error {
	switch o.Status {
	case "confirmed":
		return nil
	case "rejected":
		return fmt.Errorf("order %s was rejected; it cannot be confirmed", o.ID())
	}
	o.Status = "confirmed"
	o.Record(OrderConfirmed{})
	return nil
}

// Reject marks a placed order as rejected. Rejecting twice is a no-op.
func (o *Order) Reject(reason string) error {
	switch o.Status {
	case "rejected":
		return nil
	case "confirmed":
		return fmt.Errorf("order %s was confirmed; it cannot be rejected", o.ID())
	}
	o.Status, o.Reason = "rejected", reason
	o.Record(OrderRejected{Reason: reason})
	return nil
}

// Stock is an aggregate: the units of one product that can still be sold,
// and those reserved for orders.
type Stock struct {
	aggregate.Root
	Available int            `json:"available"`
	Reserved  map[string]int `json:"reserved,omitempty"` // order id -> quantity
}

// StockReserved is recorded when units are set aside for an order.
type StockReserved struct {
	OrderID string `json:"order_id"`
	Qty     int    `json:"qty"`
}

// EventName implements aggregate.Event.
func (StockReserved) EventName() string { return "stock.reserved" }

// ReservationRefused is recorded when an order asks for more than is left.
type ReservationRefused struct {
	OrderID   string `json:"order_id"`
	Qty       int    `json:"qty"`
	Available int    `json:"available"`
}

// EventName implements aggregate.Event.
func (ReservationRefused) EventName() string { return "stock.reservation_refused" }

// NewStock creates the stock of a product.
func NewStock(sku string, available int) *Stock {
	s := &Stock{Available: available}
	s.Init("stock", sku)
	return s
}

// Reserve sets qty units aside for an order, or records that it cannot.
// Either way the outcome is an event; neither is an error.
func (s *Stock) Reserve(orderID string, qty int) {
	if _, done := s.Reserved[orderID]; done {
		return
	}
	if qty > s.Available {
		s.Record(ReservationRefused{OrderID: orderID, Qty: qty, Available: s.Available})
		return
	}
	if s.Reserved == nil {
		s.Reserved = map[string]int{}
	}
	s.Available -= qty
	s.Reserved[orderID] = qty
	s.Record(StockReserved{OrderID: orderID, Qty: qty})
}

// errWarehouseTimeout is the technical failure the example injects once.
var errWarehouseTimeout = errors.New("warehouse database timed out")

type shop struct {
	db     *sql.DB
	runner *uow.Runner
	orders *repository.Document[*Order]
	stock  *repository.Document[*Stock]

	failNextReservation atomic.Bool

	mu   sync.Mutex
	log  []string       // what the handlers did, in order
	runs map[string]int // handler runs, failed ones included
}

func (s *shop) note(handler, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[handler]++
	s.log = append(s.log, fmt.Sprintf("   %-24s %s", handler+":", fmt.Sprintf(format, args...)))
}

// flush prints and clears the handler log.
func (s *shop) flush(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range s.log {
		fmt.Fprintln(w, line)
	}
	s.log = nil
}

// newShop wires the shop over st: its repositories, its runner, and a
// router with its asynchronous handlers.
func newShop(st *store.Store) (*shop, *dispatch.Router, error) {
	var err error
	s := &shop{db: st.DB(), runs: map[string]int{}}
	if s.orders, err = repository.NewDocument(st, repository.DocumentConfig[*Order]{
		Type: "order", New: func() *Order { return new(Order) },
	}); err != nil {
		return nil, nil, err
	}
	if s.stock, err = repository.NewDocument(st, repository.DocumentConfig[*Stock]{
		Type: "stock", New: func() *Stock { return new(Stock) },
	}); err != nil {
		return nil, nil, err
	}
	if s.runner, err = uow.New(st, uow.Config{}); err != nil {
		return nil, nil, err
	}
	// Handle registers each handler's event type in the registry.
	router, err := dispatch.NewRouter(s.runner, aggregate.NewRegistry(), dispatch.RouterConfig{})
	if err != nil {
		return nil, nil, err
	}
	s.register(router)
	return s, router, nil
}

// register adds the asynchronous handlers. Each runs after the commit that
// recorded its event, in a unit of work of its own with its inbox row.
func (s *shop) register(router *dispatch.Router) {
	// Two handlers react to order.placed. The inbox tracks them one by one.
	dispatch.Handle(router, "mail.order-received", func(ctx context.Context, tx *uow.Tx, e OrderPlaced) error {
		m, _ := dispatch.MessageFrom(ctx)
		s.note("mail.order-received", "we have your order %s for %d x %s", m.AggregateID, e.Qty, e.SKU)
		return nil
	})
	dispatch.Handle(router, "inventory.reserve-stock", func(ctx context.Context, tx *uow.Tx, e OrderPlaced) error {
		m, _ := dispatch.MessageFrom(ctx)
		if s.failNextReservation.CompareAndSwap(true, false) {
			s.note("inventory.reserve-stock", "failed: %v; the relay will deliver the message again", errWarehouseTimeout)
			return errWarehouseTimeout
		}
		st, err := s.stock.Get(ctx, tx, e.SKU)
		if err != nil {
			return err
		}
		st.Reserve(m.AggregateID, e.Qty)
		if _, ok := st.Reserved[m.AggregateID]; ok {
			s.note("inventory.reserve-stock", "reserved %d x %s for %s, %d left", e.Qty, e.SKU, m.AggregateID, st.Available)
		} else {
			s.note("inventory.reserve-stock", "only %d x %s left, %s wants %d: reservation refused", st.Available, e.SKU, m.AggregateID, e.Qty)
		}
		return s.stock.Save(ctx, tx, st)
	})

	// The outcome of the reservation decides the order's fate.
	dispatch.Handle(router, "orders.confirm", func(ctx context.Context, tx *uow.Tx, e StockReserved) error {
		return s.changeOrder(ctx, tx, e.OrderID, "orders.confirm", func(o *Order) error {
			return o.Confirm()
		})
	})
	dispatch.Handle(router, "orders.reject", func(ctx context.Context, tx *uow.Tx, e ReservationRefused) error {
		return s.changeOrder(ctx, tx, e.OrderID, "orders.reject", func(o *Order) error {
			return o.Reject("out of stock")
		})
	})
	dispatch.Handle(router, "mail.order-rejected", func(ctx context.Context, tx *uow.Tx, e OrderRejected) error {
		m, _ := dispatch.MessageFrom(ctx)
		s.note("mail.order-rejected", "sorry, order %s was cancelled (%s); you were not charged", m.AggregateID, e.Reason)
		return nil
	})
}

func (s *shop) changeOrder(ctx context.Context, tx *uow.Tx, id, handler string, change func(*Order) error) error {
	o, err := s.orders.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	if err := change(o); err != nil {
		return err
	}
	s.note(handler, "order %s is now %s", id, o.Status)
	return s.orders.Save(ctx, tx, o)
}

// place is the customer's command: it saves the order and nothing else.
func (s *shop) place(ctx context.Context, id, sku string, qty int) error {
	return s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		o, err := PlaceOrder(id, sku, qty)
		if err != nil {
			return err
		}
		return s.orders.Save(ctx, tx, o)
	})
}

func run(ctx context.Context, w io.Writer, dsn string) error {
	st, closeDB, err := demo.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	return tell(ctx, w, st)
}

// tell runs the example on st, whose database has keel's tables: the
// program gives it a fresh database, and the test a storetest one.
func tell(ctx context.Context, w io.Writer, st *store.Store) error {
	s, router, err := newShop(st)
	if err != nil {
		return err
	}
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		return err
	}
	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{
		RetryBackoff: 10 * time.Millisecond, // short, for the example; the default is 1s
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	// settle delivers until nothing is pending, including messages waiting
	// for a retry, then prints what the handlers did.
	settle := func() error {
		if err := demo.Settle(ctx, relay); err != nil {
			return err
		}
		s.flush(w)
		return nil
	}

	if err := s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return s.stock.Save(ctx, tx, NewStock("keel-mug", 5))
	}); err != nil {
		return err
	}
	fmt.Fprintln(w, "Stock: 5 x keel-mug.")

	fmt.Fprintln(w, "\n1. The customer places o-1 for 3 x keel-mug.")
	if err := s.place(ctx, "o-1", "keel-mug", 3); err != nil {
		return err
	}
	if err := s.status(ctx, w, "o-1", "   The unit saved the order alone"); err != nil {
		return err
	}
	fmt.Fprintln(w, "   The relay delivers order.placed; the warehouse times out on the first try:")
	s.failNextReservation.Store(true)
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprintf(w, "   Handler runs for order.placed: mail.order-received %d, inventory.reserve-stock %d.\n",
		s.runs["mail.order-received"], s.runs["inventory.reserve-stock"])
	fmt.Fprintln(w, "   The redelivery ran only the handler that had failed; the mail went out once.")

	fmt.Fprintln(w, "\n2. The customer places o-2 for 4 x keel-mug; only 2 are left.")
	if err := s.place(ctx, "o-2", "keel-mug", 4); err != nil {
		return err
	}
	if err := s.status(ctx, w, "o-2", "   Accepted: the order cannot see the stock"); err != nil {
		return err
	}
	fmt.Fprintln(w, "   The relay delivers order.placed; the shortage is an outcome, not an error:")
	if err := settle(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nFinally:")
	for _, id := range []string{"o-1", "o-2"} {
		if err := s.status(ctx, w, id, "   "+id); err != nil {
			return err
		}
	}
	mugs, err := s.stock.Get(ctx, s.db, "keel-mug")
	if err != nil {
		return err
	}
	reserved := 0
	for _, q := range mugs.Reserved {
		reserved += q
	}
	fmt.Fprintf(w, "   keel-mug: %d available, %d reserved; 5 in total, as at the start.\n", mugs.Available, reserved)
	return nil
}

// status prints an order's stored status after a prefix.
func (s *shop) status(ctx context.Context, w io.Writer, id, prefix string) error {
	o, err := s.orders.Get(ctx, s.db, id)
	if err != nil {
		return err
	}
	reason := ""
	if o.Reason != "" {
		reason = " (" + o.Reason + ")"
	}
	fmt.Fprintf(w, "%s: status %s%s, version %d.\n", prefix, o.Status, reason, o.Version())
	return nil
}
