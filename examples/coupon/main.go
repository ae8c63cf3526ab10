// Command coupon answers a question from seed 001: may one transaction
// change several aggregates? An order is paid with gift coupons; the order
// records the payments and every coupon is marked as redeemed, and either
// all of that commits or none of it does.
//
// The design follows the thread's accepted answer. Order.PayWithCoupons
// takes the coupon aggregates and redeems each one for the order; the
// command saves the order and every coupon in one unit of work. Changing
// several aggregates at once is usually discouraged because every extra
// aggregate is one more chance of a version conflict. Here the cost is
// small: a coupon is issued, then spent once, and nothing else changes it,
// so the only conflict possible on a coupon is two orders spending the
// same one, which is exactly the conflict that must be caught.
//
// The example shows:
//   - a payment with two coupons committing three aggregates and their
//     events together;
//   - a payment with one coupon already spent rolling back entirely, the
//     good coupon included;
//   - two orders racing for one coupon: exactly one wins;
//   - the optimistic version check itself, which is what catches the race.
//
// Run it with:
//
//	go run ./examples/coupon
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// ErrCouponRedeemed is returned when a coupon that was already spent is
// offered again.
var ErrCouponRedeemed = errors.New("coupon already redeemed")

// ErrNothingDue is returned when an order that is fully paid is offered a
// coupon.
var ErrNothingDue = errors.New("order is already paid")

// GiftCoupon is an aggregate: a prepaid value that can be spent once.
type GiftCoupon struct {
	aggregate.Root
	Value      int64  `json:"value"`
	RedeemedBy string `json:"redeemed_by,omitempty"`
}

// CouponIssued is recorded when a coupon is created.
type CouponIssued struct {
	Value int64 `json:"value"`
}

// EventName implements aggregate.Event.
func (CouponIssued) EventName() string { return "coupon.issued" }

// CouponRedeemed is recorded when a coupon is spent on an order.
type CouponRedeemed struct {
	OrderID string `json:"order_id"`
}

// EventName implements aggregate.Event.
func (CouponRedeemed) EventName() string { return "coupon.redeemed" }

// IssueCoupon creates a coupon worth value cents.
func IssueCoupon(id string, value int64) *GiftCoupon {
	c := &GiftCoupon{Value: value}
	c.Init("gift_coupon", id)
	c.Record(CouponIssued{Value: value})
	return c
}

// RedeemFor spends the coupon on an order.
func (c *GiftCoupon) RedeemFor(orderID string) error {
	if c.RedeemedBy != "" {
		return fmt.Errorf("%w: %s was spent on order %s", ErrCouponRedeemed, c.ID(), c.RedeemedBy)
	}
	c.RedeemedBy = orderID
	c.Record(CouponRedeemed{OrderID: orderID})
	return nil
}

// Order is an aggregate: what a customer owes and what was paid.
type Order struct {
	aggregate.Root
	Total    int64     `json:"total"`
	Payments []Payment `json:"payments,omitempty"`
}

// Payment is one coupon applied to an order.
type Payment struct {
	CouponID string `json:"coupon_id"`
	Amount   int64  `json:"amount"`
}

// OrderPlaced is recorded when an order is created.
type OrderPlaced struct {
	Total int64 `json:"total"`
}

// EventName implements aggregate.Event.
func (OrderPlaced) EventName() string { return "order.placed" }

// PaidWithCoupon is recorded for every coupon applied to an order.
type PaidWithCoupon struct {
	CouponID string `json:"coupon_id"`
	Amount   int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (PaidWithCoupon) EventName() string { return "order.paid_with_coupon" }

// OrderPaid is recorded when nothing is due any more.
type OrderPaid struct{}

// EventName implements aggregate.Event.
func (OrderPaid) EventName() string { return "order.paid" }

// PlaceOrder creates an order for total cents.
func PlaceOrder(id string, total int64) *Order {
	o := &Order{Total: total}
	o.Init("order", id)
	o.Record(OrderPlaced{Total: total})
	return o
}

// Due is what is left to pay.
func (o *Order) Due() int64 {
	due := o.Total
	for _, p := range o.Payments {
		due -= p.Amount
	}
	return due
}

// PayWithCoupons applies coupons in the order given, redeeming each for
// this order. A coupon is spent whole, even when it is worth more than is
// due. The order changes the coupons it is given; the caller saves them
// all in one unit, so an error here leaves nothing half done.
func (o *Order) PayWithCoupons(coupons []*GiftCoupon) error {
	for _, c := range coupons {
		due := o.Due()
		if due == 0 {
			return fmt.Errorf("%w: %s", ErrNothingDue, o.ID())
		}
		if err := c.RedeemFor(o.ID()); err != nil {
			return err
		}
		amount := min(c.Value, due)
		o.Payments = append(o.Payments, Payment{CouponID: c.ID(), Amount: amount})
		o.Record(PaidWithCoupon{CouponID: c.ID(), Amount: amount})
	}
	if o.Due() == 0 {
		o.Record(OrderPaid{})
	}
	return nil
}

type shop struct {
	st      *store.Store
	db      *sql.DB // st.DB(), for reads outside units of work
	runner  *uow.Runner
	orders  *repository.Document[*Order]
	coupons *repository.Document[*GiftCoupon]
}

// payWithCoupons is the application command: one unit of work loads the
// order and the coupons, lets the order decide, and saves all of them.
func (s *shop) payWithCoupons(ctx context.Context, orderID string, couponIDs ...string) error {
	return s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		o, err := s.orders.Get(ctx, tx, orderID)
		if err != nil {
			return err
		}
		coupons := make([]*GiftCoupon, len(couponIDs))
		for i, id := range couponIDs {
			if coupons[i], err = s.coupons.Get(ctx, tx, id); err != nil {
				return err
			}
		}
		if err := o.PayWithCoupons(coupons); err != nil {
			return err
		}
		if err := s.orders.Save(ctx, tx, o); err != nil {
			return err
		}
		for _, c := range coupons {
			if err := s.coupons.Save(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
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
	var err error
	s := &shop{st: st, db: st.DB()}
	if s.orders, err = repository.NewDocument(st, repository.DocumentConfig[*Order]{
		Type: "order", New: func() *Order { return new(Order) },
	}); err != nil {
		return err
	}
	if s.coupons, err = repository.NewDocument(st, repository.DocumentConfig[*GiftCoupon]{
		Type: "gift_coupon", New: func() *GiftCoupon { return new(GiftCoupon) },
	}); err != nil {
		return err
	}
	// AllowMultiple is the default; it is spelled out because this
	// command depends on it. WarnMultiple would log every such unit, and
	// RefuseMultiple would roll it back.
	if s.runner, err = uow.New(st, uow.Config{MultiAggregate: uow.AllowMultiple}); err != nil {
		return err
	}

	if err := s.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		for _, c := range []*GiftCoupon{IssueCoupon("GC-10", 1000), IssueCoupon("GC-25", 2500), IssueCoupon("GC-50", 5000), IssueCoupon("GC-5", 500)} {
			if err := s.coupons.Save(ctx, tx, c); err != nil {
				return err
			}
		}
		for _, o := range []*Order{PlaceOrder("o-1", 3500), PlaceOrder("o-2", 6000), PlaceOrder("o-3", 4000), PlaceOrder("o-4", 4000)} {
			if err := s.orders.Save(ctx, tx, o); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintln(w, "Issued gift coupons GC-10 (10.00), GC-25 (25.00), GC-50 (50.00), GC-5 (5.00).")
	fmt.Fprintln(w, "Placed orders o-1 (35.00), o-2 (60.00), o-3 (40.00), o-4 (40.00).")
	events, err := s.outboxCount(ctx)
	if err != nil {
		return err
	}

	// 1. Everything valid: three aggregates commit together.
	fmt.Fprintln(w, "\n1. Pay o-1 with GC-10 and GC-25.")
	if err := s.payWithCoupons(ctx, "o-1", "GC-10", "GC-25"); err != nil {
		return err
	}
	if err := s.describe(ctx, w, "o-1", "GC-10", "GC-25"); err != nil {
		return err
	}
	if events, err = s.reportEvents(ctx, w, events); err != nil {
		return err
	}

	// 2. One coupon already spent: nothing of the unit survives.
	fmt.Fprintln(w, "\n2. Pay o-2 with GC-50 and GC-10 (GC-10 was spent on o-1).")
	err = s.payWithCoupons(ctx, "o-2", "GC-50", "GC-10")
	if !errors.Is(err, ErrCouponRedeemed) {
		return fmt.Errorf("paying o-2: want ErrCouponRedeemed, got %v", err)
	}
	fmt.Fprintf(w, "   Refused: %v.\n", err)
	fmt.Fprintln(w, "   The unit rolled back, including GC-50, which the order had already redeemed in memory:")
	if err := s.describe(ctx, w, "o-2", "GC-50"); err != nil {
		return err
	}
	if events, err = s.reportEvents(ctx, w, events); err != nil {
		return err
	}

	// 3. Two orders race for the same coupon.
	fmt.Fprintln(w, "\n3. o-3 and o-4 both try to pay with GC-50, at the same moment.")
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make(map[string]error)
		mu      sync.Mutex
	)
	for _, id := range []string{"o-3", "o-4"} {
		wg.Go(func() {
			<-start
			err := s.payWithCoupons(ctx, id, "GC-50")
			mu.Lock()
			results[id] = err
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	var won, lost []string
	for id, err := range results {
		switch {
		case err == nil:
			won = append(won, id)
		case errors.Is(err, ErrCouponRedeemed):
			lost = append(lost, id)
		default:
			return fmt.Errorf("paying %s: %w", id, err)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		return fmt.Errorf("race for GC-50: want one winner and one loser, got won %v lost %v", won, lost)
	}
	gc50, err := s.coupons.Get(ctx, s.db, "GC-50")
	if err != nil {
		return err
	}
	if gc50.RedeemedBy != won[0] || gc50.Version() != 2 {
		return fmt.Errorf("GC-50 is redeemed by %q at version %d; want %s at version 2", gc50.RedeemedBy, gc50.Version(), won[0])
	}
	fmt.Fprintln(w, "   Exactly one order paid with GC-50; the other was refused with ErrCouponRedeemed.")
	fmt.Fprintln(w, "   GC-50 was saved once (version 2). If both units read GC-50 before either committed")
	fmt.Fprintln(w, "   (PostgreSQL runs them side by side), the loser's save hit a version conflict, Do ran it")
	fmt.Fprintln(w, "   again, and the rerun found the coupon spent. SQLite queues the two units at BEGIN, so")
	fmt.Fprintln(w, "   the second one reads the spent coupon straight away.")
	if events, err = s.reportEvents(ctx, w, events); err != nil {
		return err
	}

	// 4. The version check that catches the race, by hand.
	fmt.Fprintln(w, "\n4. The version check, step by step: two requests load GC-5, then both try to spend it.")
	first, err := s.coupons.Get(ctx, s.db, "GC-5")
	if err != nil {
		return err
	}
	second, err := s.coupons.Get(ctx, s.db, "GC-5")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   Both copies were loaded at version %d.\n", first.Version())
	if err := first.RedeemFor("o-3"); err != nil {
		return err
	}
	if err := s.saveInOwnTx(ctx, first); err != nil {
		return err
	}
	fmt.Fprintf(w, "   The first saves: GC-5 is now at version %d.\n", first.Version())
	if err := second.RedeemFor("o-4"); err != nil {
		return err
	}
	err = s.saveInOwnTx(ctx, second)
	var conflict *repository.ConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("saving a stale coupon: want *repository.ConflictError, got %v", err)
	}
	fmt.Fprintf(w, "   The second fails: %v\n", err)
	fmt.Fprintf(w, "   (errors.Is(err, repository.ErrConflict) = %t; expected version %d, stored %d).\n",
		errors.Is(err, repository.ErrConflict), conflict.Expected, conflict.Actual)
	fmt.Fprintln(w, "   Inside runner.Do the same error re-runs the unit with fresh loads.")
	return nil
}

// saveInOwnTx saves a coupon loaded earlier, in a transaction of the
// caller's own that runner.Join writes into. Join, unlike Do, does not
// retry: it returns a version conflict as it is, which is what this step
// shows. It is how a stale copy carried across transactions (an edit form
// that posts the version it showed, say) meets the check.
func (s *shop) saveInOwnTx(ctx context.Context, c *GiftCoupon) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	if err := s.runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
		return s.coupons.Save(ctx, utx, c)
	}); err != nil {
		return err
	}
	return tx.Commit()
}

// describe prints an order and coupons as stored.
func (s *shop) describe(ctx context.Context, w io.Writer, orderID string, couponIDs ...string) error {
	o, err := s.orders.Get(ctx, s.db, orderID)
	if err != nil {
		return err
	}
	status := "unpaid"
	if o.Due() == 0 {
		status = "paid"
	}
	fmt.Fprintf(w, "   %s: %s, due %s (version %d)\n", o.ID(), status, demo.Money(o.Due()), o.Version())
	for _, id := range couponIDs {
		c, err := s.coupons.Get(ctx, s.db, id)
		if err != nil {
			return err
		}
		state := "unredeemed"
		if c.RedeemedBy != "" {
			state = "redeemed by " + c.RedeemedBy
		}
		fmt.Fprintf(w, "   %s: %s (version %d)\n", c.ID(), state, c.Version())
	}
	return nil
}

// reportEvents prints the outbox rows written since the last count.
func (s *shop) reportEvents(ctx context.Context, w io.Writer, before int) (int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM "+s.st.Table("outbox")+" ORDER BY seq")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return 0, err
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	added := names[before:]
	if len(added) == 0 {
		fmt.Fprintln(w, "   Outbox: no new events.")
		return len(names), nil
	}
	count := map[string]int{}
	for _, n := range added {
		count[n]++
	}
	var parts []string
	for n, c := range count {
		parts = append(parts, fmt.Sprintf("%d %s", c, n))
	}
	sort.Strings(parts)
	fmt.Fprintf(w, "   Outbox: %d new events in the same commit (%s).\n", len(added), strings.Join(parts, ", "))
	return len(names), nil
}

func (s *shop) outboxCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.st.Table("outbox")).Scan(&n)
	return n, err
}
