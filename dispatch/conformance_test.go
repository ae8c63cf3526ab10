package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/publishertest"
	"github.com/keel-go/keel/uow"
)

// failHeader, on a message, makes busHarness's handler fail it: "permanent"
// with an error wrapping outbox.ErrPermanent, "transient" with a plain one.
const failHeader = "conformance-fail"

// busHarness is a Bus over a Router with one handler, which records each
// message it takes in the arrivals table, in the unit of work that also
// writes the message's inbox row: a message has arrived once that commits.
type busHarness struct {
	db      testdb.DB
	bus     *dispatch.Bus
	arrival atomic.Int64 // orders the arrivals: per key, handlers run one after another
}

func newBusHarness(t *testing.T, db testdb.DB) *busHarness {
	t.Helper()
	runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec("CREATE TABLE arrivals (arrival BIGINT NOT NULL, id TEXT NOT NULL, msg_key TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	h := &busHarness{db: db}
	insert := db.Dialect().Rebind("INSERT INTO arrivals (arrival, id, msg_key, name, payload) VALUES (?, ?, ?, ?, ?)")
	dispatch.Handle(router, "conformance.record", func(ctx context.Context, tx *uow.Tx, e publishertest.Event) error {
		m, _ := dispatch.MessageFrom(ctx)
		switch m.Headers[failHeader] {
		case "permanent":
			return fmt.Errorf("conformance: %s refused on demand (%w)", m.ID, outbox.ErrPermanent)
		case "transient":
			return errors.New("conformance: failing on demand")
		}
		_, err := tx.ExecContext(ctx, insert, h.arrival.Add(1), m.ID, m.PartitionKey(), m.Name, string(m.Payload))
		return err
	})
	if h.bus, err = dispatch.NewBus(router, dispatch.BusConfig{Concurrency: 4}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *busHarness) Publisher() outbox.Publisher { return h.bus }

func (h *busHarness) Delivered(ctx context.Context) ([]outbox.Message, error) {
	rows, err := h.db.SQL().QueryContext(ctx, "SELECT id, msg_key, name, payload FROM arrivals ORDER BY arrival")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []outbox.Message
	for rows.Next() {
		var m outbox.Message
		var payload string
		if err := rows.Scan(&m.ID, &m.Key, &m.Name, &payload); err != nil {
			return nil, err
		}
		m.Payload = []byte(payload)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (h *busHarness) FailPermanently(m outbox.Message) outbox.Message {
	return withHeader(m, failHeader, "permanent")
}

func (h *busHarness) FailTransiently(m outbox.Message) outbox.Message {
	return withHeader(m, failHeader, "transient")
}

func withHeader(m outbox.Message, k, v string) outbox.Message {
	m.Headers = maps.Clone(m.Headers)
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	m.Headers[k] = v
	return m
}

// TestBusConformance runs the outbox.Publisher conformance suite against a
// Bus delivering to a Router with its inbox, on every setup. The handler
// fails on demand, permanently or for now. A Bus delivers nothing after
// its context ends, so it claims no late duplicates.
func TestBusConformance(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		h := newBusHarness(t, db)
		publishertest.Run(t, publishertest.Features{}, func(*testing.T) publishertest.Harness { return h })
	})
}
