// Command order follows orders through a process manager: an order is
// placed, its stock is reserved asynchronously, and it waits for its
// payment. It answers the first question of seed 002: what happens when
// the stock runs out after the order was placed?
//
// Placing an order changes only the Order aggregate. The order's
// fulfilment is a process (package dispatch/process), keyed by the order
// id, started by order.placed: it sends a command to reserve the stock,
// and sets a timer for the payment. Stock and payments answer with
// events, and the process decides:
//   - reserved and paid: the order is confirmed, and the process completes;
//   - not paid in time: the timer fires, the process compensates (the
//     stock is released) and cancels the order;
//   - out of stock: the process compensates (the payment is refunded) and
//     cancels the order.
//
// A shortage is a business outcome, recorded as an event, not an error.
// A technical failure (the warehouse database timing out) is an error:
// the handler's unit rolls back and the relay delivers the message again.
//
// The relay is stepped with Drain so that the narrative can show each
// hop; a service would call Relay.Run once. The payment window is two
// seconds, so the program waits that long for the timer; its test moves
// the store's clock instead.
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// PaymentWindow is how long an order waits for its payment.
const PaymentWindow = 2 * time.Second

// Order is an aggregate: a customer's order for one product.
type Order struct {
	aggregate.Root
	SKU    string `json:"sku"`
	Qty    int    `json:"qty"`
	Amount int64  `json:"amount"` // cents
	Status string `json:"status"` // placed, confirmed or cancelled
	Reason string `json:"reason,omitempty"`
}

// OrderPlaced is recorded when a customer places an order.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	Amount  int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (OrderPlaced) EventName() string { return "order.placed" }

// OrderConfirmed is recorded when the order is reserved and paid.
type OrderConfirmed struct{}

// EventName implements aggregate.Event.
func (OrderConfirmed) EventName() string { return "order.confirmed" }

// OrderCancelled is recorded when the order cannot be fulfilled.
type OrderCancelled struct {
	Reason string `json:"reason"`
}

// EventName implements aggregate.Event.
func (OrderCancelled) EventName() string { return "order.cancelled" }

// PlaceOrder creates an order.
func PlaceOrder(id, sku string, qty int, amount int64) (*Order, error) {
	if qty <= 0 {
		return nil, fmt.Errorf("order %s: quantity must be positive, got %d", id, qty)
	}
	o := &Order{SKU: sku, Qty: qty, Amount: amount, Status: "placed"}
	o.Init("order", id)
	o.Record(OrderPlaced{OrderID: id, SKU: sku, Qty: qty, Amount: amount})
	return o, nil
}

// Confirm marks a placed order as confirmed. Confirming twice is a no-op.
func (o *Order) Confirm() error {
	switch o.Status {
	case "confirmed":
		return nil
	case "cancelled":
		return fmt.Errorf("order %s was cancelled; it cannot be confirmed", o.ID())
	}
	o.Status = "confirmed"
	o.Record(OrderConfirmed{})
	return nil
}

// Cancel marks a placed order as cancelled. Cancelling twice is a no-op.
func (o *Order) Cancel(reason string) error {
	switch o.Status {
	case "cancelled":
		return nil
	case "confirmed":
		return fmt.Errorf("order %s was confirmed; it cannot be cancelled", o.ID())
	}
	o.Status, o.Reason = "cancelled", reason
	o.Record(OrderCancelled{Reason: reason})
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

// StockReleased is recorded when an order's reservation is given back.
type StockReleased struct {
	OrderID string `json:"order_id"`
	Qty     int    `json:"qty"`
}

// EventName implements aggregate.Event.
func (StockReleased) EventName() string { return "stock.released" }

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

// Release gives an order's reserved units back. Releasing what is not
// reserved is a no-op.
func (s *Stock) Release(orderID string) {
	qty, ok := s.Reserved[orderID]
	if !ok {
		return
	}
	delete(s.Reserved, orderID)
	s.Available += qty
	s.Record(StockReleased{OrderID: orderID, Qty: qty})
}

// Payment is an aggregate: what a customer paid for an order, keyed by
// the order id.
type Payment struct {
	aggregate.Root
	Amount   int64 `json:"amount"`
	Refunded bool  `json:"refunded"`
}

// PaymentReceived is recorded when the customer pays.
type PaymentReceived struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (PaymentReceived) EventName() string { return "payment.received" }

// PaymentRefunded is recorded when a payment is given back.
type PaymentRefunded struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (PaymentRefunded) EventName() string { return "payment.refunded" }

// Pay records the customer's payment for an order.
func Pay(orderID string, amount int64) *Payment {
	p := &Payment{Amount: amount}
	p.Init("payment", orderID)
	p.Record(PaymentReceived{OrderID: orderID, Amount: amount})
	return p
}

// Refund gives the payment back. Refunding twice is a no-op.
func (p *Payment) Refund() {
	if p.Refunded {
		return
	}
	p.Refunded = true
	p.Record(PaymentRefunded{OrderID: p.ID(), Amount: p.Amount})
}

// The commands the fulfilment process sends, and its timeout.
type (
	// ReserveStock asks the warehouse to set an order's units aside.
	ReserveStock struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	// ReleaseStock gives an order's reserved units back: it undoes
	// ReserveStock.
	ReleaseStock struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
	}
	// RefundPayment gives an order's payment back: it undoes the payment.
	RefundPayment struct {
		OrderID string `json:"order_id"`
	}
	// ConfirmOrder confirms an order that is reserved and paid.
	ConfirmOrder struct {
		OrderID string `json:"order_id"`
	}
	// CancelOrder cancels an order the process gave up on.
	CancelOrder struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
	// PaymentOverdue is the fulfilment's timeout: the payment window
	// closed.
	PaymentOverdue struct {
		OrderID string `json:"order_id"`
	}
)

// EventName implements aggregate.Event.
func (ReserveStock) EventName() string { return "warehouse.reserve" }

// EventName implements aggregate.Event.
func (ReleaseStock) EventName() string { return "warehouse.release" }

// EventName implements aggregate.Event.
func (RefundPayment) EventName() string { return "payments.refund" }

// EventName implements aggregate.Event.
func (ConfirmOrder) EventName() string { return "orders.confirm" }

// EventName implements aggregate.Event.
func (CancelOrder) EventName() string { return "orders.cancel" }

// EventName implements aggregate.Event.
func (PaymentOverdue) EventName() string { return "fulfilment.payment_overdue" }

// Fulfilment is the state of one order's fulfilment process.
type Fulfilment struct {
	SKU      string `json:"sku"`
	Qty      int    `json:"qty"`
	Reserved bool   `json:"reserved"`
	Paid     bool   `json:"paid"`
}

// errWarehouseTimeout is the technical failure the example injects once.
var errWarehouseTimeout = errors.New("warehouse database timed out")

type shop struct {
	st         *store.Store
	db         *sql.DB
	runner     *uow.Runner
	orders     *repository.Document[*Order]
	stock      *repository.Document[*Stock]
	payments   *repository.Document[*Payment]
	fulfilment *process.Manager[Fulfilment]

	failNextReservation atomic.Bool

	mu  sync.Mutex
	log []string // what the handlers did, in order
}

func (s *shop) note(handler, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, fmt.Sprintf("   %-18s %s", handler+":", fmt.Sprintf(format, args...)))
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
// router with the fulfilment process and the handlers of its commands.
func newShop(st *store.Store) (*shop, *dispatch.Router, error) {
	var err error
	s := &shop{st: st, db: st.DB()}
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
	if s.payments, err = repository.NewDocument(st, repository.DocumentConfig[*Payment]{
		Type: "payment", New: func() *Payment { return new(Payment) },
	}); err != nil {
		return nil, nil, err
	}
	if s.runner, err = uow.New(st, uow.Config{}); err != nil {
		return nil, nil, err
	}
	router, err := dispatch.NewRouter(s.runner, aggregate.NewRegistry(), dispatch.RouterConfig{})
	if err != nil {
		return nil, nil, err
	}
	if s.fulfilment, err = process.New[Fulfilment](router, process.Config{Name: "fulfilment"}); err != nil {
		return nil, nil, err
	}
	s.registerProcess()
	s.registerCommands(router)
	return s, router, nil
}

// registerProcess adds the fulfilment process: started by order.placed,
// advanced by the answers of the warehouse and the payments, and by its
// own timeout.
func (s *shop) registerProcess() {
	m := s.fulfilment
	process.Start(m, func(e OrderPlaced) string { return e.OrderID },
		func(ctx context.Context, p *process.Process[Fulfilment], e OrderPlaced) error {
			p.State.SKU, p.State.Qty = e.SKU, e.Qty
			p.Send(ReserveStock{OrderID: e.OrderID, SKU: e.SKU, Qty: e.Qty})
			p.Schedule("payment", p.Now().Add(PaymentWindow), PaymentOverdue{OrderID: e.OrderID})
			s.note("fulfilment", "%s started: reserve %d x %s; wait %v for %s", e.OrderID, e.Qty, e.SKU, PaymentWindow, demo.Money(e.Amount))
			return nil
		})
	process.On(m, func(e StockReserved) string { return e.OrderID },
		func(ctx context.Context, p *process.Process[Fulfilment], e StockReserved) error {
			p.State.Reserved = true
			p.Step("reserve stock", ReleaseStock{OrderID: e.OrderID, SKU: p.State.SKU})
			s.note("fulfilment", "%s: stock reserved", e.OrderID)
			s.confirmIfReady(p)
			return nil
		})
	process.On(m, func(e PaymentReceived) string { return e.OrderID },
		func(ctx context.Context, p *process.Process[Fulfilment], e PaymentReceived) error {
			p.State.Paid = true
			p.Cancel("payment")
			p.Step("take payment", RefundPayment{OrderID: e.OrderID})
			s.note("fulfilment", "%s: paid %s; payment timer cancelled", e.OrderID, demo.Money(e.Amount))
			s.confirmIfReady(p)
			return nil
		})
	process.On(m, func(e ReservationRefused) string { return e.OrderID },
		func(ctx context.Context, p *process.Process[Fulfilment], e ReservationRefused) error {
			s.giveUp(p, "out of stock")
			return nil
		})
	process.On(m, func(e PaymentOverdue) string { return e.OrderID },
		func(ctx context.Context, p *process.Process[Fulfilment], e PaymentOverdue) error {
			s.giveUp(p, "not paid in time")
			return nil
		})
}

// confirmIfReady confirms the order, and completes the process, once the
// stock is reserved and the order paid.
func (s *shop) confirmIfReady(p *process.Process[Fulfilment]) {
	if !p.State.Reserved || !p.State.Paid {
		return
	}
	p.Send(ConfirmOrder{OrderID: p.ID()})
	p.Complete()
	s.note("fulfilment", "%s: reserved and paid; confirm it; completed", p.ID())
}

// giveUp undoes what the process did, in reverse, and cancels the order.
func (s *shop) giveUp(p *process.Process[Fulfilment], reason string) {
	var undo []string
	steps := p.Steps()
	for i := len(steps) - 1; i >= 0; i-- {
		undo = append(undo, steps[i].Undo)
	}
	p.Compensate(reason)
	p.Send(CancelOrder{OrderID: p.ID(), Reason: reason})
	if len(undo) == 0 {
		undo = []string{"nothing"}
	}
	s.note("fulfilment", "%s: %s; undo %s; cancel the order", p.ID(), reason, strings.Join(undo, ", then "))
}

// registerCommands adds the handlers of the process's commands, each a
// unit of work on one aggregate.
func (s *shop) registerCommands(router *dispatch.Router) {
	dispatch.Handle(router, "warehouse.reserve", func(ctx context.Context, tx *uow.Tx, c ReserveStock) error {
		if s.failNextReservation.CompareAndSwap(true, false) {
			s.note("warehouse", "failed: %v; the relay will deliver the command again", errWarehouseTimeout)
			return errWarehouseTimeout
		}
		st, err := s.stock.Get(ctx, tx, c.SKU)
		if err != nil {
			return err
		}
		st.Reserve(c.OrderID, c.Qty)
		if _, ok := st.Reserved[c.OrderID]; ok {
			s.note("warehouse", "reserved %d x %s for %s, %d left", c.Qty, c.SKU, c.OrderID, st.Available)
		} else {
			s.note("warehouse", "only %d x %s left, %s wants %d: reservation refused", st.Available, c.SKU, c.OrderID, c.Qty)
		}
		return s.stock.Save(ctx, tx, st)
	})
	dispatch.Handle(router, "warehouse.release", func(ctx context.Context, tx *uow.Tx, c ReleaseStock) error {
		st, err := s.stock.Get(ctx, tx, c.SKU)
		if err != nil {
			return err
		}
		st.Release(c.OrderID)
		s.note("warehouse", "released %s's units of %s, %d left", c.OrderID, c.SKU, st.Available)
		return s.stock.Save(ctx, tx, st)
	})
	dispatch.Handle(router, "payments.refund", func(ctx context.Context, tx *uow.Tx, c RefundPayment) error {
		p, err := s.payments.Get(ctx, tx, c.OrderID)
		if err != nil {
			return err
		}
		p.Refund()
		s.note("payments", "refunded %s for %s", demo.Money(p.Amount), c.OrderID)
		return s.payments.Save(ctx, tx, p)
	})
	dispatch.Handle(router, "orders.confirm", func(ctx context.Context, tx *uow.Tx, c ConfirmOrder) error {
		return s.changeOrder(ctx, tx, c.OrderID, func(o *Order) error { return o.Confirm() })
	})
	dispatch.Handle(router, "orders.cancel", func(ctx context.Context, tx *uow.Tx, c CancelOrder) error {
		return s.changeOrder(ctx, tx, c.OrderID, func(o *Order) error { return o.Cancel(c.Reason) })
	})
}

func (s *shop) changeOrder(ctx context.Context, tx *uow.Tx, id string, change func(*Order) error) error {
	o, err := s.orders.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	if err := change(o); err != nil {
		return err
	}
	s.note("orders", "order %s is now %s", id, o.Status)
	return s.orders.Save(ctx, tx, o)
}

// place is the customer's command: it saves the order and nothing else.
func (s *shop) place(ctx context.Context, id, sku string, qty int, amount int64) error {
	return s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		o, err := PlaceOrder(id, sku, qty, amount)
		if err != nil {
			return err
		}
		return s.orders.Save(ctx, tx, o)
	})
}

// pay is the payment provider's callback: it records the payment alone.
func (s *shop) pay(ctx context.Context, orderID string, amount int64) error {
	return s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return s.payments.Save(ctx, tx, Pay(orderID, amount))
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
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	return tell(ctx, w, st, wait)
}

// tell runs the example on st, whose database has keel's tables: the
// program gives it a fresh database, and the test a storetest one. wait
// lets d pass on st's clock: the program sleeps, and the test moves its
// clock.
func tell(ctx context.Context, w io.Writer, st *store.Store, wait func(d time.Duration) error) error {
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

	fmt.Fprintln(w, "\n1. The customer places o-1 for 3 x keel-mug (30.00).")
	if err := s.place(ctx, "o-1", "keel-mug", 3, 3000); err != nil {
		return err
	}
	fmt.Fprintln(w, "   The order is saved alone. Its process starts; the warehouse times out on the first try:")
	s.failNextReservation.Store(true)
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprintln(w, "   The customer pays:")
	if err := s.pay(ctx, "o-1", 3000); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\n2. The customer places o-2 for 1 x keel-mug (10.00), and never pays.")
	if err := s.place(ctx, "o-2", "keel-mug", 1, 1000); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	if err := s.printRunning(ctx, w); err != nil {
		return err
	}
	fmt.Fprintf(w, "   %v later the payment timer fires:\n", PaymentWindow)
	if err := wait(PaymentWindow); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\n3. The customer places o-3 for 4 x keel-mug (40.00) and pays at once; only 2 are left.")
	if err := s.place(ctx, "o-3", "keel-mug", 4, 4000); err != nil {
		return err
	}
	if err := s.pay(ctx, "o-3", 4000); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nFinally:")
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		if err := s.status(ctx, w, id); err != nil {
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
	return s.printRunning(ctx, w)
}

// printRunning lists the running processes, as an operator would.
func (s *shop) printRunning(ctx context.Context, w io.Writer) error {
	running, err := s.fulfilment.List(ctx, process.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   Running processes: %d.", len(running))
	for _, p := range running {
		fmt.Fprintf(w, " %s waits for its payment timer, due in %v.", p.ID, p.NextTimeout.Sub(s.st.Now()).Round(time.Second))
	}
	fmt.Fprintln(w)
	return nil
}

// status prints an order's stored status, and its process's.
func (s *shop) status(ctx context.Context, w io.Writer, id string) error {
	o, err := s.orders.Get(ctx, s.db, id)
	if err != nil {
		return err
	}
	reason := ""
	if o.Reason != "" {
		reason = " (" + o.Reason + ")"
	}
	procs, err := s.fulfilment.List(ctx, process.ListOptions{All: true})
	if err != nil {
		return err
	}
	for _, p := range procs {
		if p.ID == id {
			fmt.Fprintf(w, "   %s: order %s%s; process %s after %d deliveries.\n", id, o.Status, reason, p.Status, p.Version)
			return nil
		}
	}
	return fmt.Errorf("no fulfilment process for %s", id)
}
