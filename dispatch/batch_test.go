package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// groupOutcome is what became of one message of a batch delivered in one
// transaction.
type groupOutcome struct {
	Name     string
	Failed   bool // its BatchError entry is not nil
	Flaky    bool // the entry carries the handler's error
	Panicked bool // the entry reports the handler's panic
	HeldBack bool // the entry wraps outbox.ErrHeldBack
	Effects  int  // effect rows of the message
	Inbox    int  // inbox rows of the message
}

// TestGroupFailureHoldsOnlyItsKey: in one transaction, a failing message
// and a panicking one roll back to their savepoints; the later messages of
// their keys are held back, not run; every other message commits, with
// its inbox row. Redelivering the failed and held messages completes the
// batch, each effect once.
func TestGroupFailureHoldsOnlyItsKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var failing atomic.Bool
		failing.Store(true)
		calls := map[string]int{}
		var mu sync.Mutex
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			mu.Lock()
			calls[e.Order]++
			mu.Unlock()
			note := ""
			if db.Setup.IsPostgres() {
				// The transaction's id: one for the whole group.
				if err := tx.QueryRowContext(ctx, "SELECT txid_current()::text").Scan(&note); err != nil {
					return err
				}
			}
			if err := b.effect(ctx, tx, "record", note); err != nil {
				return err
			}
			if failing.Load() {
				switch e.Order {
				case "A2":
					return errFlaky // after its effect: the savepoint must undo it
				case "B2":
					panic("nil map somewhere")
				}
			}
			return nil
		})
		names := []string{"A1", "B1", "A2", "C1", "B2", "A3", "C2", "B3"}
		batch := make([]outbox.Message, len(names))
		for i, n := range names {
			batch[i] = paid(t, n, n[:1])
		}
		ctx := context.Background()

		err := b.router.DeliverBatch(ctx, batch)
		var be *outbox.BatchError
		if !errors.As(err, &be) || len(be.Errs) != len(batch) {
			t.Fatalf("got %v, want an *outbox.BatchError with %d entries", err, len(batch))
		}
		var got, want []groupOutcome
		for i, n := range names {
			e := be.Errs[i]
			got = append(got, groupOutcome{
				Name:     n,
				Failed:   e != nil,
				Flaky:    errors.Is(e, errFlaky),
				Panicked: e != nil && strings.Contains(e.Error(), "panicked: nil map somewhere"),
				HeldBack: errors.Is(e, outbox.ErrHeldBack),
				Effects:  b.effects(t, "record", batch[i].ID),
				Inbox:    b.inboxRows(t, batch[i].ID),
			})
			switch n {
			case "A2":
				want = append(want, groupOutcome{Name: n, Failed: true, Flaky: true})
			case "B2":
				want = append(want, groupOutcome{Name: n, Failed: true, Panicked: true})
			case "A3", "B3":
				want = append(want, groupOutcome{Name: n, Failed: true, HeldBack: true})
			default:
				want = append(want, groupOutcome{Name: n, Effects: 1, Inbox: 1})
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("outcome per message (-want +got):\n%s", diff)
		}
		mu.Lock()
		if calls["A3"] != 0 || calls["B3"] != 0 {
			t.Errorf("held-back messages ran: A3 %d, B3 %d times", calls["A3"], calls["B3"])
		}
		mu.Unlock()
		if db.Setup.IsPostgres() {
			if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT note) FROM effects"); n != 1 {
				t.Errorf("the group's effects were written by %d transactions, want 1", n)
			}
		}

		// The relay sends the failed messages and those held behind them.
		failing.Store(false)
		if err := b.router.DeliverBatch(ctx, []outbox.Message{batch[2], batch[4], batch[5], batch[7]}); err != nil {
			t.Fatal(err)
		}
		// And a duplicate of the whole batch changes nothing.
		if err := b.router.DeliverBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for i, n := range names {
			if got := b.effects(t, "record", batch[i].ID); got != 1 {
				t.Errorf("%s: effects = %d, want 1", n, got)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, n := range names {
			want := 1
			if n == "A2" || n == "B2" {
				want = 2
			}
			if calls[n] != want {
				t.Errorf("%s ran %d times, want %d", n, calls[n], want)
			}
		}
	})
}

// TestGroupConflictRetriedPerMessage: a handler whose save conflicts runs
// again alone, after its savepoint undid its first attempt; the other
// messages of the group are not run again, and the events each handler
// recorded reach the outbox once, caused by their message.
func TestGroupConflictRetriedPerMessage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		ctx := context.Background()
		var hooked [][]outbox.Message
		b.runner.AfterCommit(func(_ context.Context, msgs []outbox.Message) {
			hooked = append(hooked, msgs)
		})
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return b.cards.Save(ctx, tx, NewCard("cust-1"))
		}); err != nil {
			t.Fatal(err)
		}
		hooked = nil
		runs := map[string]int{}
		aggregates := db.Table("aggregates")
		dispatch.Handle(b.router, "loyalty.award", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			runs[e.Order]++
			card, err := b.cards.Get(ctx, tx, e.Customer)
			if err != nil {
				return err
			}
			if e.Order == "o-2" && runs[e.Order] == 1 {
				// Another writer saves the card between this load and the
				// save below.
				bump := tx.Store().Dialect().Rebind("UPDATE " + aggregates + " SET version = version + 1 WHERE aggregate_type = 'card' AND aggregate_id = ?")
				if _, err := tx.ExecContext(ctx, bump, e.Customer); err != nil {
					return err
				}
			}
			card.Award(e.Amount / 100)
			return b.cards.Save(ctx, tx, card)
		})
		var batch []outbox.Message
		for i := range 4 {
			batch = append(batch, paid(t, fmt.Sprintf("o-%d", i+1), "1")) // customer "cust-1"
		}
		if err := b.router.DeliverBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if len(hooked) != 1 || len(hooked[0]) != len(batch) {
			t.Errorf("AfterCommit hooks saw %d commits, want 1 with %d messages", len(hooked), len(batch))
		}
		if diff := cmp.Diff(map[string]int{"o-1": 1, "o-2": 2, "o-3": 1, "o-4": 1}, runs); diff != "" {
			t.Errorf("handler runs per message (-want +got):\n%s", diff)
		}
		var card *Card
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) (err error) {
			card, err = b.cards.Get(ctx, tx, "cust-1")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// The bump was rolled back with the first attempt: four saves.
		if card.Points != 40 || card.Version() != 5 {
			t.Errorf("card has %d points at version %d, want 40 at 5", card.Points, card.Version())
		}
		for _, m := range batch {
			if n := testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("outbox")+" WHERE name = 'card.points-awarded' AND causation_id = ?", m.ID); n != 1 {
				t.Errorf("events caused by %s = %d, want 1", m.ID, n)
			}
		}
	})
}

// TestGroupConcurrentWriter: on PostgreSQL, where each statement of a
// READ COMMITTED transaction reads the latest commits, a handler whose
// aggregate another transaction saved meanwhile is re-run inside the group
// and succeeds.
func TestGroupConcurrentWriter(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		if !db.Setup.IsPostgres() {
			t.Skip("SQLite's writers take turns, and InnoDB's REPEATABLE READ re-reads the transaction's snapshot")
		}
		t.Parallel()
		b := setup(t, db)
		ctx := context.Background()
		for _, id := range []string{"cust-1", "cust-2"} {
			if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				return b.cards.Save(ctx, tx, NewCard(id))
			}); err != nil {
				t.Fatal(err)
			}
		}
		var runs atomic.Int32
		dispatch.Handle(b.router, "loyalty.award", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			n := runs.Add(1)
			card, err := b.cards.Get(ctx, tx, e.Customer)
			if err != nil {
				return err
			}
			if e.Order == "o-2" && n == 2 {
				// A command commits on the same card, in its own
				// transaction, between this load and the save below.
				if err := b.runner.Do(context.WithoutCancel(ctx), func(ctx context.Context, tx *uow.Tx) error {
					c, err := b.cards.Get(ctx, tx, e.Customer)
					if err != nil {
						return err
					}
					c.Award(1)
					return b.cards.Save(ctx, tx, c)
				}); err != nil {
					return err
				}
			}
			card.Award(e.Amount / 100)
			return b.cards.Save(ctx, tx, card)
		})
		batch := []outbox.Message{paid(t, "o-1", "1"), paid(t, "o-2", "2"), paid(t, "o-3", "1")}
		if err := b.router.DeliverBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if n := runs.Load(); n != 4 {
			t.Errorf("handler ran %d times, want 4 (o-2 twice)", n)
		}
		for id, want := range map[string]int64{"cust-1": 20, "cust-2": 11} {
			var card *Card
			if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) (err error) {
				card, err = b.cards.Get(ctx, tx, id)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if card.Points != want {
				t.Errorf("%s has %d points, want %d", id, card.Points, want)
			}
		}
	})
}

// TestGroupPartlyDelivered: a group redelivered after some of its
// (handler, message) units took effect runs exactly the others, though all
// of its inbox rows are claimed in one statement.
func TestGroupPartlyDelivered(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var failing atomic.Bool
		failing.Store(true)
		var mu sync.Mutex
		calls := map[string]int{}
		for _, h := range []string{"receipt", "points"} {
			dispatch.Handle(b.router, h, func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
				mu.Lock()
				calls[h+"/"+e.Order]++
				mu.Unlock()
				if err := b.effect(ctx, tx, h, e.Order); err != nil {
					return err
				}
				if h == "points" && failing.Load() && (e.Order == "k1-2" || e.Order == "k2-1") {
					return errFlaky
				}
				return nil
			})
		}
		var batch []outbox.Message
		for i := range 3 {
			for k := range 3 {
				batch = append(batch, paid(t, fmt.Sprintf("k%d-%d", k, i), fmt.Sprint("k", k)))
			}
		}
		ctx := context.Background()
		if err := b.router.DeliverBatch(ctx, batch); err == nil {
			t.Fatal("first delivery succeeded; want points to fail on k1-2 and k2-1")
		}
		failing.Store(false)
		if err := b.router.DeliverBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			for _, h := range []string{"receipt", "points"} {
				if n := b.effects(t, h, m.ID); n != 1 {
					t.Errorf("%s on %s: effects = %d, want 1", h, m.Key, n)
				}
			}
			if n := b.inboxRows(t, m.ID); n != 2 {
				t.Errorf("%s: inbox rows = %d, want 2", m.Key, n)
			}
		}
		// k1-2 ran points twice; k2-1 ran points twice, and held back
		// k2-2, which ran both handlers only on the second delivery.
		want := map[string]int{}
		for i := range 3 {
			for k := range 3 {
				o := fmt.Sprintf("k%d-%d", k, i)
				want["receipt/"+o], want["points/"+o] = 1, 1
			}
		}
		want["points/k1-2"], want["points/k2-1"] = 2, 2
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("handler calls (-want +got):\n%s", diff)
		}
	})
}

// TestGroupConcurrentDuplicates: two deliverers racing with the same
// messages, in different orders, apply each effect once: a claim waits for
// rows another transaction is inserting, and finds them when it commits.
func TestGroupConcurrentDuplicates(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls atomic.Int32
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			calls.Add(1)
			return b.effect(ctx, tx, "record", e.Order)
		})
		ctx := context.Background()
		const rounds, size = 5, 40
		rng := rand.New(rand.NewPCG(3, 4))
		for r := range rounds {
			batch := make([]outbox.Message, size)
			for i := range batch {
				batch[i] = paid(t, fmt.Sprintf("r%d-%d", r, i), fmt.Sprint("k", i))
			}
			other := append([]outbox.Message(nil), batch...)
			rng.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for w, msgs := range [][]outbox.Message{batch, other} {
				wg.Go(func() { errs[w] = b.router.DeliverBatch(ctx, msgs) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("round %d: %v", r, err)
				}
			}
		}
		if n := b.effects(t, "record", ""); n != rounds*size {
			t.Errorf("effects = %d, want %d", n, rounds*size)
		}
		if n := calls.Load(); n != rounds*size {
			t.Errorf("handler ran %d times, want %d", n, rounds*size)
		}
	})
}

// TestGroupAbortedFallsBack: a handler that breaks the group's
// transaction (here, by ending its session) makes the group's messages go
// again one by one, so every other message still takes effect, once.
func TestGroupAbortedFallsBack(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		if !db.Setup.IsPostgres() && !db.Setup.IsMySQL() {
			t.Skip("an SQLite transaction has no session to end")
		}
		t.Parallel()
		b := setup(t, db)
		var killed atomic.Bool
		var calls atomic.Int32
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			calls.Add(1)
			if err := b.effect(ctx, tx, "record", e.Order); err != nil {
				return err
			}
			if e.Order == "B1" && !killed.Swap(true) {
				kill := "SELECT pg_terminate_backend(pg_backend_pid())"
				if db.Setup.IsMySQL() {
					var id int64
					if err := tx.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
						return err
					}
					kill = fmt.Sprintf("KILL %d", id)
				}
				_, err := tx.ExecContext(ctx, kill)
				return err
			}
			return nil
		})
		names := []string{"A1", "B1", "C1", "A2", "B2"}
		batch := make([]outbox.Message, len(names))
		for i, n := range names {
			batch[i] = paid(t, n, n[:1])
		}
		if err := b.router.DeliverBatch(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		for i, n := range names {
			if got := b.effects(t, "record", batch[i].ID); got != 1 {
				t.Errorf("%s: effects = %d, want 1", n, got)
			}
		}
		if n := calls.Load(); n < int32(len(names))+2 {
			t.Errorf("handler ran %d times; want the group's first two messages again, alone", n)
		}
	})
}

// TestHandleBatch: a batch handler gets the messages of a group in one
// call, in batch order, writes their effects in one statement, and on
// redelivery gets only those it has not taken effect for. When it fails,
// every message it was given fails for it, the first of each key with its
// error and the rest held back, while a handler of single messages still
// takes effect on the first of each key.
func TestHandleBatch(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var failing atomic.Bool
		var mu sync.Mutex
		var calls [][]string // the orders of each call of the batch handler
		dispatch.HandleBatch(b.router, "bulk", func(ctx context.Context, tx *uow.Tx, es []OrderPaid) error {
			msgs := dispatch.MessagesFrom(ctx)
			if len(msgs) != len(es) {
				return fmt.Errorf("%d messages for %d events", len(msgs), len(es))
			}
			orders := make([]string, len(es))
			args := make([]any, 0, 3*len(es))
			for i, e := range es {
				orders[i] = e.Order
				args = append(args, "bulk", msgs[i].ID, e.Order)
			}
			mu.Lock()
			calls = append(calls, orders)
			mu.Unlock()
			insert := "INSERT INTO effects (handler, message_id, note) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(es)), ", ")
			if _, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind(insert), args...); err != nil {
				return err
			}
			if failing.Load() {
				return errFlaky // after the insert: the savepoint must undo it
			}
			return nil
		})
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "record", e.Order)
		})
		ctx := context.Background()
		lastCall := func() []string {
			mu.Lock()
			defer mu.Unlock()
			if len(calls) == 0 {
				return nil
			}
			return calls[len(calls)-1]
		}

		first := []outbox.Message{paid(t, "A1", "A"), paid(t, "B1", "B"), paid(t, "A2", "A")}
		if err := b.router.DeliverBatch(ctx, first); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"A1", "B1", "A2"}, lastCall()); diff != "" {
			t.Errorf("first call (-want +got):\n%s", diff)
		}

		// A redelivery with new messages: only the new ones reach it.
		second := append(first, paid(t, "C1", "C"), paid(t, "A3", "A"))
		if err := b.router.DeliverBatch(ctx, second); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"C1", "A3"}, lastCall()); diff != "" {
			t.Errorf("call on redelivery (-want +got):\n%s", diff)
		}

		// A failure fails all of its messages for it.
		failing.Store(true)
		third := []outbox.Message{paid(t, "D1", "D"), paid(t, "E1", "E"), paid(t, "D2", "D")}
		err := b.router.DeliverBatch(ctx, third)
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("got %v, want an *outbox.BatchError", err)
		}
		type entry struct {
			Flaky, HeldBack bool
			Bulk, Record    int
		}
		var got []entry
		for i, m := range third {
			got = append(got, entry{errors.Is(be.Errs[i], errFlaky), errors.Is(be.Errs[i], outbox.ErrHeldBack), b.effects(t, "bulk", m.ID), b.effects(t, "record", m.ID)})
		}
		want := []entry{{Flaky: true, Record: 1}, {Flaky: true, Record: 1}, {HeldBack: true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after a failing batch handler (-want +got):\n%s", diff)
		}
		failing.Store(false)
		if err := b.router.DeliverBatch(ctx, third); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"D1", "E1", "D2"}, lastCall()); diff != "" {
			t.Errorf("call after the failure (-want +got):\n%s", diff)
		}

		// A message delivered alone reaches it in a slice of one.
		alone := paid(t, "F1", "F")
		if err := b.router.Deliver(ctx, alone); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"F1"}, lastCall()); diff != "" {
			t.Errorf("call for a single message (-want +got):\n%s", diff)
		}
		for _, m := range append(append(second, third...), alone) {
			for _, h := range []string{"bulk", "record"} {
				if n := b.effects(t, h, m.ID); n != 1 {
					t.Errorf("%s on %s: effects = %d, want 1", h, m.ID, n)
				}
			}
		}
	})
}

// TestGroupSameMessageTwice: a message that appears twice in one batch (a
// producer that sent it twice) takes effect once, and neither copy fails.
func TestGroupSameMessageTwice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		dispatch.Handle(b.router, "record", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "record", e.Order)
		})
		m, other := paid(t, "A1", "A"), paid(t, "B1", "B")
		if err := b.router.DeliverBatch(context.Background(), []outbox.Message{m, other, m}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{m.ID, other.ID} {
			if n := b.effects(t, "record", id); n != 1 {
				t.Errorf("effects of %s = %d, want 1", id, n)
			}
		}
	})
}
