package uow_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// Audited is recorded by the handlers of TestHandlerMetadata.
type Audited struct {
	Of string `json:"of"`
}

func (Audited) EventName() string { return "account.audited" }

// TestHandlerMetadata guards how a unit stamps metadata on events now that
// aggregate no longer exports SetVersion, Restore, MarkCommitted or Pending
// and the unit reaches pending events only through internal/aggstate: each
// event gets its metadata exactly once, when first seen. The command's own
// events take the unit's (from ctx), and keep their empty causation though
// handlers run after them; an event recorded with RecordWith keeps its own
// ids; an event recorded by an in-transaction handler is caused by the
// event handled and shares its correlation and headers, two rounds deep.
func TestHandlerMetadata(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		// Two handlers of the opening each credit an account of their own;
		// every credit is then audited on an account of its own.
		credit := func(prefix string, amount int64) uow.HandlerFunc[Opened] {
			return func(ctx context.Context, tx *uow.Tx, e Opened) error {
				env, _ := uow.EnvelopeFrom(ctx)
				a := &Account{Owner: e.Owner}
				a.Init("account", prefix+env.AggregateID)
				_ = a.Deposit(amount)
				return b.accounts.Save(ctx, tx, a)
			}
		}
		uow.Handle(b.runner, "welcome", credit("bonus-", 10))
		uow.Handle(b.runner, "gift", credit("gift-", 5))
		uow.Handle(b.runner, "audit", func(ctx context.Context, tx *uow.Tx, e Deposited) error {
			env, _ := uow.EnvelopeFrom(ctx)
			a := &Account{}
			a.Init("account", "audit-"+env.AggregateID)
			a.Record(Audited{Of: env.ID})
			return b.accounts.Save(ctx, tx, a)
		})
		var written []outbox.Message
		b.runner.AfterCommit(func(_ context.Context, msgs []outbox.Message) { written = msgs })

		const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ctx := aggregate.WithMetadata(context.Background(), aggregate.Metadata{
			CorrelationID: "corr-1",
			Headers:       map[string]string{"traceparent": traceparent},
		})
		err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			a := OpenAccount("m-1", "ada")
			a.RecordWith(Audited{Of: "manual"}, aggregate.Metadata{CorrelationID: "own-corr", CausationID: "own-cause"})
			return b.accounts.Save(ctx, tx, a)
		})
		if err != nil {
			t.Fatal(err)
		}

		// Name each message by aggregate and event, and each causation by
		// the message it names.
		type row struct{ Message, Correlation, Causation, Traceparent string }
		names := map[string]string{}
		for _, m := range written {
			names[m.ID] = m.AggregateID + " " + strings.TrimPrefix(m.Name, "account.")
		}
		var got []row
		for _, m := range written {
			cause, ok := names[m.CausationID]
			if !ok {
				cause = m.CausationID
			}
			got = append(got, row{names[m.ID], m.CorrelationID, cause, m.Headers["traceparent"]})
		}
		want := []row{
			{"m-1 opened", "corr-1", "", traceparent},
			{"m-1 audited", "own-corr", "own-cause", traceparent},
			{"bonus-m-1 deposited", "corr-1", "m-1 opened", traceparent},
			{"gift-m-1 deposited", "corr-1", "m-1 opened", traceparent},
			{"audit-bonus-m-1 audited", "corr-1", "bonus-m-1 deposited", traceparent},
			{"audit-gift-m-1 audited", "corr-1", "gift-m-1 deposited", traceparent},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("messages written (-want +got):\n%s", diff)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE correlation_id = ?", "corr-1"); n != 5 {
			t.Errorf("outbox rows correlated to corr-1 = %d, want 5", n)
		}
	})
}
