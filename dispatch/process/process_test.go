package process_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

func TestPaidAndReservedShipsOnce(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		b.emit(t, "o1", Placed{"o1"})
		b.session.Settle()
		b.emit(t, "o1", Reserved{"o1"})
		b.session.Settle()
		b.emit(t, "pay-1", Paid{"o1"})
		b.session.Settle()
		if diff := cmp.Diff([]string{"ship"}, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects (-want +got):\n%s", diff)
		}
		// The timeout was cancelled: it never fires, however late it gets.
		b.clock.Advance(2 * paymentWindow)
		b.session.Settle()
		// Events after the end are absorbed, not errors.
		b.emit(t, "o1", Short{"o1"})
		b.emit(t, "pay-2", Paid{"o1"})
		b.session.Settle()
		b.session.RequireNoErrors()
		b.session.RequireNothingParked()
		if diff := cmp.Diff([]string{"ship"}, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects after the end (-want +got):\n%s", diff)
		}
		if n := testdb.Count(t, b.db, "SELECT COUNT(*) FROM "+b.db.Table("scheduled")); n != 0 {
			t.Fatalf("%d scheduled messages left; the cancelled timer should be gone", n)
		}
		infos, err := b.manager.List(t.Context(), process.ListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 1 || infos[0].Status != process.Completed || len(infos[0].Timers) != 0 {
			t.Fatalf("List = %+v; want one completed process without timers", infos)
		}
	})
}

func TestTimerFiresOnTimeAndOnce(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		b.emit(t, "o1", Placed{"o1"}, Reserved{"o1"})
		b.session.Settle()
		b.clock.Advance(paymentWindow - time.Second)
		b.session.Settle()
		if got := b.effects(t, "o1"); len(got) != 0 {
			t.Fatalf("effects a second before the timeout: %v; want none", got)
		}
		b.clock.Advance(time.Second)
		b.session.Settle()
		// Compensation undoes the steps in reverse: the stock reserved
		// last is released first, then the order cancelled.
		want := []string{"release", "cancel"}
		if diff := cmp.Diff(want, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects at the timeout (-want +got):\n%s", diff)
		}
		b.clock.Advance(time.Hour)
		b.session.Settle()
		b.emit(t, "pay-1", Paid{"o1"})
		b.session.Settle()
		if diff := cmp.Diff(want, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects later (-want +got):\n%s", diff)
		}
		b.session.RequireNoErrors()
		infos, err := b.manager.List(t.Context(), process.ListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 1 || infos[0].Status != process.Compensated || infos[0].Reason != "unpaid" {
			t.Fatalf("List = %+v; want one process compensated as unpaid", infos)
		}
	})
}

func TestShortageCompensatesInReverse(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		b.emit(t, "o1", Placed{"o1"})
		b.emit(t, "pay-1", Paid{"o1"})
		b.session.Settle()
		b.emit(t, "o1", Short{"o1"})
		b.session.Settle()
		if diff := cmp.Diff([]string{"refund", "cancel"}, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects (-want +got):\n%s", diff)
		}
		b.clock.Advance(2 * paymentWindow)
		b.session.Settle()
		if diff := cmp.Diff([]string{"refund", "cancel"}, b.effects(t, "o1")); diff != "" {
			t.Fatalf("effects after the timeout's time (-want +got):\n%s", diff)
		}
	})
}

func TestEventBeforeStartIsRetried(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		err := b.router.Deliver(t.Context(), outbox.Message{ID: "m1", Name: Paid{}.EventName(), Payload: []byte(`{"Order":"nope"}`)})
		if !errors.Is(err, process.ErrNotStarted) || errors.Is(err, outbox.ErrPermanent) {
			t.Fatalf("Deliver = %v; want a retryable error wrapping ErrNotStarted", err)
		}
		if !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("error %q does not name the process", err)
		}
	})
}

// TestPaymentRacesTimeout delivers a payment and its order's timeout in
// the same instant, for many orders at once, through concurrent workers:
// each order ends one way, never both.
func TestPaymentRacesTimeout(t *testing.T) {
	orders := 1000
	if testing.Short() {
		orders = 100
	}
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 8)
		b.emitEach(t, orders, func(i int) (string, []aggregate.Event) {
			id := fmt.Sprintf("o%04d", i)
			return id, []aggregate.Event{Placed{id}, Reserved{id}}
		})
		b.session.Settle()
		start := time.Now()
		// The timeouts fall due and the payments commit in the same
		// instant; one relay round claims both, and the bus's workers
		// deliver them at once.
		b.clock.Advance(paymentWindow)
		b.emitEach(t, orders, func(i int) (string, []aggregate.Event) {
			id := fmt.Sprintf("o%04d", i)
			return "pay-" + id, []aggregate.Event{Paid{id}}
		})
		b.session.Settle()
		b.session.RequireNoErrors()
		b.session.RequireNothingParked()
		outcomes := map[string]int{}
		rows, err := b.db.SQL().Query("SELECT order_id, effect FROM effects")
		if err != nil {
			t.Fatal(err)
		}
		per := map[string][]string{}
		for rows.Next() {
			var o, e string
			if err := rows.Scan(&o, &e); err != nil {
				t.Fatal(err)
			}
			per[o] = append(per[o], e)
		}
		rows.Close()
		if len(per) != orders {
			t.Fatalf("%d orders have an outcome; want %d", len(per), orders)
		}
		for o, es := range per {
			slices.Sort(es)
			switch k := strings.Join(es, ","); k {
			case "ship", "cancel,release":
				outcomes[k]++
			default:
				t.Fatalf("order %s: effects %v; want ship alone, or release and cancel", o, es)
			}
		}
		t.Logf("%d orders: %v; the race delivered in %v", orders, outcomes, time.Since(start))
	})
}

func TestMisuseFailsTheHandler(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		b := setup(t, s, 0)
		m, err := process.New[Fulfilment](b.router, process.Config{Name: "misuse"})
		if err != nil {
			t.Fatal(err)
		}
		process.Start(m, func(e poke) string { return e.Order }, func(ctx context.Context, p *process.Process[Fulfilment], e poke) error {
			p.Complete()
			p.Schedule("late", p.Now(), Ship(e))
			return nil
		})
		err = b.router.Deliver(t.Context(), outbox.Message{ID: "m1", Name: poke{}.EventName(), Payload: []byte(`{"Order":"o1"}`)})
		var de *dispatch.DeliveryError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "already ended") {
			t.Fatalf("Deliver = %v; want the handler's misuse", err)
		}
	})
}

type poke struct{ Order string }

func (poke) EventName() string { return "test.poke" }
