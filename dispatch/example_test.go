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
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
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

// exampleDB opens a SQLite database in a temporary directory with keel's
// tables. _txlock=immediate makes every transaction take the write lock at
// BEGIN, so concurrent writers wait their turn instead of failing.
func exampleDB() (db *sql.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL&_txlock=immediate&_busy_timeout=5000")
	if err != nil {
		log.Fatal(err)
	}
	if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// exampleRouter returns a runner and a router over db, with the example's
// events registered.
func exampleRouter(db *sql.DB) (*uow.Runner, *dispatch.Router) {
	runner, err := uow.New(db, uow.Config{})
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
	db, cleanup := exampleDB()
	defer cleanup()

	runner, router := exampleRouter(db)
	orders, err := repository.NewDocument(db, repository.DocumentConfig[*Order]{
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
	relay, err := outbox.NewRelay(db, bus, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	// A long-running service calls relay.Run and wakes it after each commit:
	//	runner.AfterCommit(func(context.Context, []outbox.Message) { relay.Notify() })
	//	go relay.Run(ctx)

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
	// Output:
	// receipt for o-1: 2500 cents
	// delivered 1 <nil>
}

// Two handlers react to one event. The second fails on the first delivery;
// the redelivery runs only it, and a third delivery runs nothing.
func ExampleHandle() {
	ctx := context.Background()
	db, cleanup := exampleDB()
	defer cleanup()
	_, router := exampleRouter(db)

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
	db, cleanup := exampleDB()
	defer cleanup()
	_, router := exampleRouter(db)

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
	db, cleanup := exampleDB()
	defer cleanup()
	_, router := exampleRouter(db)

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
			fmt.Printf("%s: held back %v, error %v\n", batch[i].ID, errors.Is(err, dispatch.ErrHeldBack), err != nil)
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
	db, cleanup := exampleDB()
	defer cleanup()
	_, router := exampleRouter(db)

	dispatch.Handle(router, "noop", func(context.Context, *uow.Tx, OrderPaid) error { return nil })
	if err := router.Deliver(ctx, outbox.Message{ID: "msg-1", Name: "order.paid", Payload: []byte(`{}`)}); err != nil {
		log.Fatal(err)
	}

	n, err := router.PruneInbox(ctx, 7*24*time.Hour, 0)
	fmt.Println("pruned", n, err)
	// Output:
	// pruned 0 <nil>
}
