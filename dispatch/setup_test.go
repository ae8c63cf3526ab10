package dispatch_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
	db     *sql.DB
	runner *uow.Runner
	reg    *aggregate.Registry
	router *dispatch.Router
	cards  *repository.Document[*Card]
	orders *repository.Document[*Order]
	ph     func(int) string // placeholder style of the dialect
}

func setup(t testing.TB, db *sql.DB) bundle {
	t.Helper()
	runner, err := uow.New(db, uow.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	reg := aggregate.NewRegistry().MustRegister(OrderPaid{}, PointsAwarded{})
	router, err := dispatch.NewRouter(runner, reg, dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cards, err := repository.NewDocument(db, repository.DocumentConfig[*Card]{
		Type: "card",
		New:  func() *Card { return &Card{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	orders, err := repository.NewDocument(db, repository.DocumentConfig[*Order]{
		Type: "order",
		New:  func() *Order { return &Order{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	// No key: a handler that ran twice leaves two rows.
	if _, err := db.Exec("CREATE TABLE effects (handler TEXT NOT NULL, message_id TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')"); err != nil {
		t.Fatal(err)
	}
	ph := func(int) string { return "?" }
	if runner.Outbox().Dialect() == "postgres" {
		ph = func(i int) string { return fmt.Sprintf("$%d", i) }
	}
	return bundle{db: db, runner: runner, reg: reg, router: router, cards: cards, orders: orders, ph: ph}
}

// effect inserts a row into effects through tx: the observable side of a
// handler, which commits or rolls back with its inbox row.
func (b bundle) effect(ctx context.Context, tx *uow.Tx, handler, note string) error {
	m, ok := dispatch.MessageFrom(ctx)
	if !ok {
		return errors.New("no message in the handler's context")
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO effects (handler, message_id, note) VALUES ("+b.ph(1)+", "+b.ph(2)+", "+b.ph(3)+")", handler, m.ID, note)
	return err
}

// effects counts the effect rows of a handler, for one message or (id "")
// for all.
func (b bundle) effects(t testing.TB, handler, id string) int {
	t.Helper()
	q, args := "SELECT COUNT(*) FROM effects WHERE handler = "+b.ph(1), []any{handler}
	if id != "" {
		q += " AND message_id = " + b.ph(2)
		args = append(args, id)
	}
	return count(t, b.db, q, args...)
}

// inboxRows counts the inbox rows of a message.
func (b bundle) inboxRows(t testing.TB, id string) int {
	t.Helper()
	return count(t, b.db, "SELECT COUNT(*) FROM keel_inbox WHERE message_id = "+b.ph(1), id)
}

func count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
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

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
