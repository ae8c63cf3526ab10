package process_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/dispatchtest"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

var quiet = testdb.Logger()

// The events of the fulfilment process the tests run: an order is placed,
// its stock reserved (or short), and it is paid before a timeout or
// cancelled.
type (
	Placed       struct{ Order string }
	Reserved     struct{ Order string }
	Short        struct{ Order string }
	Paid         struct{ Order string }
	PaymentDue   struct{ Order string }
	Ship         struct{ Order string }
	CancelOrder  struct{ Order string }
	ReleaseStock struct{ Order string }
	Refund       struct{ Order string }
)

func (Placed) EventName() string       { return "test.placed" }
func (Reserved) EventName() string     { return "test.reserved" }
func (Short) EventName() string        { return "test.short" }
func (Paid) EventName() string         { return "test.paid" }
func (PaymentDue) EventName() string   { return "test.payment-due" }
func (Ship) EventName() string         { return "test.ship" }
func (CancelOrder) EventName() string  { return "test.cancel-order" }
func (ReleaseStock) EventName() string { return "test.release-stock" }
func (Refund) EventName() string       { return "test.refund" }

// Fulfilment is the process's state.
type Fulfilment struct {
	Reserved bool `json:"reserved"`
	Paid     bool `json:"paid"`
}

// paymentWindow is how long an order waits for its payment.
const paymentWindow = 30 * time.Minute

// clock is a clock the tests advance by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// bundle is a database with a fulfilment process, its effects recorded in
// a table of the test's own.
type bundle struct {
	db      testdb.DB
	clock   *clock
	runner  *uow.Runner
	router  *dispatch.Router
	manager *process.Manager[Fulfilment]
	session *dispatchtest.Session
}

func (e Placed) order() string     { return e.Order }
func (e Reserved) order() string   { return e.Order }
func (e Short) order() string      { return e.Order }
func (e Paid) order() string       { return e.Order }
func (e PaymentDue) order() string { return e.Order }

func setup(t testing.TB, s testdb.Setup, busConcurrency int) bundle {
	t.Helper()
	clk := &clock{now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	db := testdb.Open(t, s, store.Options{Logger: quiet, Now: clk.Now})
	createEffects(t, db)
	b := wire(t, db, paymentWindow)
	b.clock = clk
	// A batch's Publish may take its time on a loaded machine (or under
	// the race detector); a timeout would only deliver it again.
	cfg := dispatchtest.Config{Relay: outbox.RelayConfig{LeaseDuration: 3 * time.Minute, PublishTimeout: time.Minute}}
	if busConcurrency > 0 {
		// Every delivery in a transaction of its own, so that the
		// deliveries of one process race each other, not the batches
		// they share transactions with.
		bus, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: busConcurrency, GroupSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Publisher = bus
	}
	b.session = dispatchtest.New(t, b.runner, b.router, cfg)
	return b
}

// createEffects creates the table the tests count outcomes in, apart from
// keel's own: a handler that ran twice leaves two rows.
func createEffects(t testing.TB, db testdb.DB) {
	t.Helper()
	if _, err := db.SQL().Exec("CREATE TABLE effects (order_id VARCHAR(100) NOT NULL, effect VARCHAR(100) NOT NULL, message_id VARCHAR(100) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
}

// wire builds the fulfilment process over db, whose effects table
// exists, with the given payment window.
func wire(t testing.TB, db testdb.DB, window time.Duration) bundle {
	t.Helper()
	runner, err := uow.New(db.Store, uow.Config{Logger: quiet, MaxAttempts: 50})
	if err != nil {
		t.Fatal(err)
	}
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := process.New[Fulfilment](router, process.Config{Name: "fulfilment"})
	if err != nil {
		t.Fatal(err)
	}
	process.Start(m, Placed.order, func(ctx context.Context, p *process.Process[Fulfilment], e Placed) error {
		p.Step("place order", CancelOrder(e))
		p.Schedule("payment", p.Now().Add(window), PaymentDue(e))
		return nil
	})
	process.On(m, Reserved.order, func(ctx context.Context, p *process.Process[Fulfilment], e Reserved) error {
		p.State.Reserved = true
		p.Step("reserve stock", ReleaseStock(e))
		if p.State.Paid {
			p.Send(Ship(e))
			p.Complete()
		}
		return nil
	})
	process.On(m, Short.order, func(ctx context.Context, p *process.Process[Fulfilment], e Short) error {
		p.Compensate("out of stock")
		return nil
	})
	process.On(m, Paid.order, func(ctx context.Context, p *process.Process[Fulfilment], e Paid) error {
		p.State.Paid = true
		p.Cancel("payment")
		p.Step("take payment", Refund(e))
		if p.State.Reserved {
			p.Send(Ship(e))
			p.Complete()
		}
		return nil
	})
	process.On(m, PaymentDue.order, func(ctx context.Context, p *process.Process[Fulfilment], e PaymentDue) error {
		p.Compensate("unpaid")
		return nil
	})
	record := func(ctx context.Context, tx *uow.Tx, order, effect string) error {
		m, ok := dispatch.MessageFrom(ctx)
		if !ok {
			return errors.New("no message in the handler's context")
		}
		_, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind("INSERT INTO effects (order_id, effect, message_id) VALUES (?, ?, ?)"), order, effect, m.ID)
		return err
	}
	dispatch.Handle(router, "effects.ship", func(ctx context.Context, tx *uow.Tx, e Ship) error { return record(ctx, tx, e.Order, "ship") })
	dispatch.Handle(router, "effects.cancel", func(ctx context.Context, tx *uow.Tx, e CancelOrder) error {
		return record(ctx, tx, e.Order, "cancel")
	})
	dispatch.Handle(router, "effects.release", func(ctx context.Context, tx *uow.Tx, e ReleaseStock) error {
		return record(ctx, tx, e.Order, "release")
	})
	dispatch.Handle(router, "effects.refund", func(ctx context.Context, tx *uow.Tx, e Refund) error { return record(ctx, tx, e.Order, "refund") })

	return bundle{db: db, runner: runner, router: router, manager: m}
}

// emit commits events as messages keyed by key, in one transaction.
func (b bundle) emit(t testing.TB, key string, events ...aggregate.Event) {
	t.Helper()
	b.emitEach(t, 1, func(int) (string, []aggregate.Event) { return key, events })
}

// emitEach commits the events of n senders, each keyed by its key, in one
// transaction.
func (b bundle) emitEach(t testing.TB, n int, sender func(i int) (key string, events []aggregate.Event)) {
	t.Helper()
	if err := b.runner.Do(t.Context(), func(ctx context.Context, tx *uow.Tx) error {
		for i := range n {
			key, events := sender(i)
			for _, e := range events {
				payload, err := aggregate.Encode(e)
				if err != nil {
					return err
				}
				tx.Enqueue(outbox.Message{Name: e.EventName(), Key: key, Payload: payload})
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// effects returns the effects recorded for an order, in the order
// recorded.
func (b bundle) effects(t testing.TB, order string) []string {
	t.Helper()
	rows, err := b.db.SQL().Query(b.db.Dialect().Rebind("SELECT effect FROM effects WHERE order_id = ? ORDER BY message_id"), order)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
