package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/uow"
)

// quiet discards logs; set KEEL_TEST_LOG=1 to see them.
var quiet = testdb.Logger()

// bundle is what most tests need: a runner, a registry, a router and a
// repository of cards over one database, with an effects table.
type bundle struct {
	db     testdb.DB
	runner *uow.Runner
	reg    *aggregate.Registry
	router *dispatch.Router
	cards  *repository.Document[*Card]
	orders *repository.Document[*Order]
}

func setup(t testing.TB, db testdb.DB) bundle {
	t.Helper()
	runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	reg := aggregate.NewRegistry().MustRegister(OrderPaid{}, PointsAwarded{})
	router, err := dispatch.NewRouter(runner, reg, dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cards, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Card]{
		Type: "card",
		New:  func() *Card { return &Card{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	orders, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Order]{
		Type: "order",
		New:  func() *Order { return &Order{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	// No key: a handler that ran twice leaves two rows.
	if _, err := db.SQL().Exec("CREATE TABLE effects (handler TEXT NOT NULL, message_id TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')"); err != nil {
		t.Fatal(err)
	}
	return bundle{db: db, runner: runner, reg: reg, router: router, cards: cards, orders: orders}
}

// effect inserts a row into effects through tx: the observable side of a
// handler, which commits or rolls back with its inbox row.
func (b bundle) effect(ctx context.Context, tx *uow.Tx, handler, note string) error {
	m, ok := dispatch.MessageFrom(ctx)
	if !ok {
		return errors.New("no message in the handler's context")
	}
	_, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind("INSERT INTO effects (handler, message_id, note) VALUES (?, ?, ?)"), handler, m.ID, note)
	return err
}

// effects counts the effect rows of a handler, for one message or (id "")
// for all.
func (b bundle) effects(t testing.TB, handler, id string) int {
	t.Helper()
	if id == "" {
		return testdb.Count(t, b.db, "SELECT COUNT(*) FROM effects WHERE handler = ?", handler)
	}
	return testdb.Count(t, b.db, "SELECT COUNT(*) FROM effects WHERE handler = ? AND message_id = ?", handler, id)
}

// inboxRows counts the inbox rows of a message.
func (b bundle) inboxRows(t testing.TB, id string) int {
	t.Helper()
	return testdb.Count(t, b.db, "SELECT COUNT(*) FROM "+b.db.Table("inbox")+" WHERE message_id = ?", id)
}

// paid returns an order.paid message as a relay would hand it over.
func paid(t testing.TB, order, key string) outbox.Message {
	t.Helper()
	payload, err := json.Marshal(OrderPaid{Order: order, Customer: "cust-" + key, Amount: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Message{
		ID:            aggregate.NewMessageID(),
		Name:          "order.paid",
		Key:           key,
		Payload:       payload,
		CorrelationID: "corr-" + order,
		CausationID:   "cmd-" + order,
		Headers:       map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		OccurredAt:    time.Now().UTC(),
	}
}
