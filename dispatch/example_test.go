package dispatch_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/uow"
)

// OrderPaid is recorded when an order is paid; most examples and tests
// deliver it.
type OrderPaid struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
}

func (OrderPaid) EventName() string { return "order.paid" }

// Order is the aggregate whose payment starts the asynchronous chain.
type Order struct {
	aggregate.Root
	Customer string `json:"customer"`
	Paid     bool   `json:"paid"`
}

func PlaceOrder(id, customer string) *Order {
	o := &Order{Customer: customer}
	o.Init("order", id)
	return o
}

func (o *Order) Pay(amount int64) {
	o.Paid = true
	o.Record(OrderPaid{Order: o.ID(), Customer: o.Customer, Amount: amount})
}

// Card is a loyalty card: the aggregate an asynchronous handler changes.
type Card struct {
	aggregate.Root
	Points int64 `json:"points"`
}

// PointsAwarded is recorded by Card.Award.
type PointsAwarded struct {
	Points int64 `json:"points"`
}

func (PointsAwarded) EventName() string { return "card.points-awarded" }

func NewCard(id string) *Card {
	c := &Card{}
	c.Init("card", id)
	return c
}

func (c *Card) Award(points int64) {
	c.Points += points
	c.Record(PointsAwarded{Points: points})
}

// exampleStore opens a SQLite database in a temporary directory, through
// the pure-Go driver, and creates keel's tables. sqlite.FileDSN adds the
// options keel recommends: among them, transactions that take the write
// lock at BEGIN, so concurrent writers wait their turn instead of failing.
func exampleStore() (st *store.Store, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(db, sqlite.Dialect(), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return st, func() { db.Close(); os.RemoveAll(dir) }
}

// exampleRouter returns a runner and a router over st, with the example's
// events registered.
func exampleRouter(st *store.Store) (*uow.Runner, *dispatch.Router) {
	runner, err := uow.New(st, uow.Config{})
	if err != nil {
		log.Fatal(err)
	}
	registry := aggregate.NewRegistry().MustRegister(OrderPaid{}, PointsAwarded{})
	router, err := dispatch.NewRouter(runner, registry, dispatch.RouterConfig{})
	if err != nil {
		log.Fatal(err)
	}
	return runner, router
}

// A command pays an order; after the commit a relay carries the recorded
// event to the bus, which runs the handler subscribed to it.
func Example() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()

	runner, router := exampleRouter(st)
	orders, err := repository.NewDocument(st, repository.DocumentConfig[*Order]{
		Type: "order",
		New:  func() *Order { return new(Order) },
	})
	if err != nil {
		log.Fatal(err)
	}

	dispatch.Handle(router, "mail.receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		fmt.Printf("receipt for %s: %d cents\n", e.Order, e.Amount)
		return nil
	})

	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	// A service runs the relay for good, with go relay.Run(ctx); each unit
	// of work that writes messages wakes it when it commits. Here Drain
	// delivers what is there and returns.

	err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		o := PlaceOrder("o-1", "cust-1")
		o.Pay(2500)
		return orders.Save(ctx, tx, o)
	})
	if err != nil {
		log.Fatal(err)
	}

	n, err := relay.Drain(ctx)
	fmt.Println("delivered", n, err)
	stats, err := relay.Outbox().Stats(ctx)
	fmt.Println("pending", stats.Pending, "parked", stats.Parked, err)
	// Output:
	// receipt for o-1: 2500 cents
	// delivered 1 <nil>
	// pending 0 parked 0 <nil>
}

// Two handlers react to one event. The second fails on the first delivery;
// the redelivery runs only it, and a third delivery runs nothing.
func ExampleHandle() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	_, router := exampleRouter(st)

	dispatch.Handle(router, "loyalty.award", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		fmt.Println("award", e.Amount/100, "points")
		return nil
	})
	mailDown := true
	dispatch.Handle(router, "mail.receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		if mailDown {
			mailDown = false
			return errors.New("mail server down")
		}
		fmt.Println("receipt sent")
		return nil
	})

	m := outbox.Message{ID: "msg-1", Name: "order.paid", Payload: []byte(`{"order":"o-1","amount":2500}`)}
	err := router.Deliver(ctx, m)
	fmt.Println(err)
	var de *dispatch.DeliveryError
	if errors.As(err, &de) {
		fmt.Println("failed:", de.Handlers())
	}

	fmt.Println(router.Deliver(ctx, m))
	fmt.Println(router.Deliver(ctx, m))
	// Output:
	// award 25 points
	// keel: handler "mail.receipt" failed on order.paid (msg-1): mail server down
	// failed: [mail.receipt]
	// receipt sent
	// <nil>
	// <nil>
}

// A handler reads the message it handles. Events it records are caused by
// that message and share its correlation id.
func ExampleMessageFrom() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	_, router := exampleRouter(st)

	dispatch.Handle(router, "audit", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		m, _ := dispatch.MessageFrom(ctx)
		md, _ := aggregate.MetadataFrom(ctx)
		fmt.Println("message", m.ID, "key", m.Key)
		fmt.Println("new events: correlation", md.CorrelationID, "causation", md.CausationID)
		return nil
	})

	err := router.Deliver(ctx, outbox.Message{
		ID:            "msg-7",
		Name:          "order.paid",
		Key:           "o-7",
		CorrelationID: "req-42",
		Payload:       []byte(`{"order":"o-7"}`),
	})
	fmt.Println(err)
	// Output:
	// message msg-7 key o-7
	// new events: correlation req-42 causation msg-7
	// <nil>
}

// A failed message holds back the later messages of its key in the batch,
// and only those.
func ExampleBus_Publish() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	_, router := exampleRouter(st)

	dispatch.Handle(router, "ship", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		if e.Order == "a-1" {
			return errors.New("warehouse closed")
		}
		fmt.Println("shipped", e.Order)
		return nil
	})
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{Concurrency: 1})
	if err != nil {
		log.Fatal(err)
	}

	var batch []outbox.Message
	for _, order := range []string{"a-1", "b-1", "a-2"} {
		batch = append(batch, outbox.Message{
			ID:      "msg-" + order,
			Name:    "order.paid",
			Key:     order[:1], // orders a-1 and a-2 share a key
			Payload: fmt.Appendf(nil, `{"order":%q}`, order),
		})
	}
	err = bus.Publish(ctx, batch)
	var be *outbox.BatchError
	if errors.As(err, &be) {
		for i, err := range be.Errs {
			fmt.Printf("%s: held back %v, error %v\n", batch[i].ID, errors.Is(err, outbox.ErrHeldBack), err != nil)
		}
	}
	// Output:
	// shipped b-1
	// msg-a-1: held back false, error true
	// msg-b-1: held back false, error false
	// msg-a-2: held back true, error true
}

// The inbox keeps one row per handler and message. Prune rows older than
// the longest time a redelivery can take, here a week, from a scheduled job.
func ExampleRouter_PruneInbox() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	_, router := exampleRouter(st)

	dispatch.Handle(router, "noop", func(context.Context, *uow.Tx, OrderPaid) error { return nil })
	if err := router.Deliver(ctx, outbox.Message{ID: "msg-1", Name: "order.paid", Payload: []byte(`{}`)}); err != nil {
		log.Fatal(err)
	}

	n, err := router.PruneInbox(ctx, 7*24*time.Hour, 0)
	fmt.Println("pruned", n, err)
	// Output:
	// pruned 0 <nil>
}

// Deliver reports a database without keel's tables with an error matching
// store.ErrNotMigrated; run Store.Migrate, or apply Store.Migrations with
// your migration tool.
func ExampleRouter_Deliver_notMigrated() {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "empty.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(db, sqlite.Dialect(), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	_, router := exampleRouter(st)
	dispatch.Handle(router, "noop", func(context.Context, *uow.Tx, OrderPaid) error { return nil })

	err = router.Deliver(context.Background(), outbox.Message{ID: "msg-1", Name: "order.paid", Payload: []byte(`{}`)})
	fmt.Println("not migrated:", errors.Is(err, store.ErrNotMigrated))
	fmt.Println("after Migrate:", st.Migrate(context.Background()), router.Deliver(context.Background(), outbox.Message{ID: "msg-1", Name: "order.paid", Payload: []byte(`{}`)}))
	// Output:
	// not migrated: true
	// after Migrate: <nil> <nil>
}

// A batch handler takes the messages a transaction delivers at once, here
// to write one row per order in a single statement.
func ExampleHandleBatch() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	_, router := exampleRouter(st)
	if _, err := st.DB().Exec("CREATE TABLE revenue (order_id TEXT PRIMARY KEY, amount INTEGER NOT NULL)"); err != nil {
		log.Fatal(err)
	}

	dispatch.HandleBatch(router, "reports.revenue", func(ctx context.Context, tx *uow.Tx, es []OrderPaid) error {
		fmt.Println("revenue of", len(es), "orders")
		query := "INSERT INTO revenue (order_id, amount) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?), ", len(es)), ", ")
		args := make([]any, 0, 2*len(es))
		for _, e := range es {
			args = append(args, e.Order, e.Amount)
		}
		_, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind(query), args...)
		return err
	})

	var batch []outbox.Message
	for i, amount := range []int{2500, 1200, 800} {
		batch = append(batch, outbox.Message{
			ID:      fmt.Sprint("msg-", i),
			Name:    "order.paid",
			Key:     fmt.Sprint("o-", i),
			Payload: fmt.Appendf(nil, `{"order":"o-%d","amount":%d}`, i, amount),
		})
	}
	fmt.Println(router.DeliverBatch(ctx, batch))
	fmt.Println(router.DeliverBatch(ctx, batch)) // a redelivery: nothing left to do

	var total int
	if err := st.DB().QueryRow("SELECT SUM(amount) FROM revenue").Scan(&total); err != nil {
		log.Fatal(err)
	}
	fmt.Println("total", total)
	// Output:
	// revenue of 3 orders
	// <nil>
	// <nil>
	// total 4500
}
