package dispatch_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

var errFlaky = errors.New("flaky downstream")

// TestRedeliveryRunsOnlyFailedHandlers: one event, two handlers, the second
// failing on the first delivery. The first commits on its own; redelivery
// runs only the second; each effect happens exactly once.
func TestRedeliveryRunsOnlyFailedHandlers(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls [2]atomic.Int32
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			calls[0].Add(1)
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		dispatch.Handle(b.router, "points", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			n := calls[1].Add(1)
			if err := b.effect(ctx, tx, "points", e.Order); err != nil {
				return err
			}
			if n == 1 {
				return errFlaky // after its effect: the rollback must undo it
			}
			return nil
		})
		ctx := context.Background()
		m := paid(t, "o-1", "cust-1")

		err := b.router.Deliver(ctx, m)
		var de *dispatch.DeliveryError
		if !errors.As(err, &de) {
			t.Fatalf("first delivery: got %v, want a *DeliveryError", err)
		}
		if diff := cmp.Diff([]string{"points"}, de.Handlers()); diff != "" {
			t.Errorf("failed handlers (-want +got):\n%s", diff)
		}
		if de.MessageID != m.ID || de.Event != "order.paid" {
			t.Errorf("DeliveryError names %s %s, want %s order.paid", de.MessageID, de.Event, m.ID)
		}
		if !errors.Is(err, errFlaky) {
			t.Errorf("error %v does not wrap the handler's error", err)
		}
		var he *uow.HandlerError
		if !errors.As(err, &he) || he.Handler != "points" {
			t.Errorf("errors.As HandlerError: %+v", he)
		}
		if !strings.Contains(err.Error(), `"points"`) {
			t.Errorf("error %q does not name the handler", err)
		}
		if errors.Is(err, outbox.ErrPermanent) {
			t.Error("a plain handler error must not be permanent")
		}
		if got := b.effects(t, "receipt", m.ID); got != 1 {
			t.Errorf("receipt effects after first delivery = %d, want 1", got)
		}
		if got := b.effects(t, "points", m.ID); got != 0 {
			t.Errorf("points effects after a failed run = %d, want 0 (rolled back)", got)
		}
		if got := b.inboxRows(t, m.ID); got != 1 {
			t.Errorf("inbox rows = %d, want 1 (receipt only)", got)
		}

		if err := b.router.Deliver(ctx, m); err != nil {
			t.Fatalf("redelivery: %v", err)
		}
		if err := b.router.Deliver(ctx, m); err != nil {
			t.Fatalf("third delivery: %v", err)
		}
		if got := b.effects(t, "receipt", m.ID); got != 1 {
			t.Errorf("receipt effects = %d, want exactly 1", got)
		}
		if got := b.effects(t, "points", m.ID); got != 1 {
			t.Errorf("points effects = %d, want exactly 1", got)
		}
		if c0, c1 := calls[0].Load(), calls[1].Load(); c0 != 1 || c1 != 2 {
			t.Errorf("handler calls = receipt %d, points %d; want 1 and 2", c0, c1)
		}
		if got := b.inboxRows(t, m.ID); got != 2 {
			t.Errorf("inbox rows = %d, want 2", got)
		}
	})
}

// TestDuplicateDelivery: the same message delivered again, and by several
// deliverers at once, takes effect once.
func TestDuplicateDelivery(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls atomic.Int32
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			calls.Add(1)
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		ctx := context.Background()

		t.Run("sequential", func(t *testing.T) {
			m := paid(t, "o-seq", "k")
			for i := range 3 {
				if err := b.router.Deliver(ctx, m); err != nil {
					t.Fatalf("delivery %d: %v", i+1, err)
				}
			}
			if got := b.effects(t, "receipt", m.ID); got != 1 {
				t.Errorf("effects = %d, want 1", got)
			}
		})

		t.Run("concurrent", func(t *testing.T) {
			m := paid(t, "o-conc", "k")
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Go(func() { errs <- b.router.Deliver(ctx, m) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("concurrent delivery: %v", err)
				}
			}
			if got := b.effects(t, "receipt", m.ID); got != 1 {
				t.Errorf("effects = %d, want 1", got)
			}
		})
	})
}

// TestHandlerUnitOfWork: a handler that loads and saves an aggregate through
// tx commits the change, the event it records and its inbox row together,
// and a failing handler leaves none of them.
func TestHandlerUnitOfWork(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		ctx := context.Background()
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return b.cards.Save(ctx, tx, NewCard("cust-1"))
		}); err != nil {
			t.Fatal(err)
		}
		var seen outbox.Message
		dispatch.Handle(b.router, "loyalty.award", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			seen, _ = dispatch.MessageFrom(ctx)
			card, err := b.cards.Get(ctx, tx, e.Customer)
			if err != nil {
				return err
			}
			card.Award(e.Amount / 100)
			if err := b.cards.Save(ctx, tx, card); err != nil {
				return err
			}
			if e.Order == "o-fail" {
				return errFlaky // after the save: nothing may survive
			}
			return nil
		})
		points := func() int64 {
			t.Helper()
			var p int64
			err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				c, err := b.cards.Get(ctx, tx, "cust-1")
				p = c.Points
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		awarded := func(id string) (n int, corr, cause string) {
			t.Helper()
			rows, err := db.SQL().Query("SELECT correlation_id, causation_id FROM " + db.Table("outbox") + " WHERE name = 'card.points-awarded'")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var c, k string
				if err := rows.Scan(&c, &k); err != nil {
					t.Fatal(err)
				}
				if k == id {
					n, corr, cause = n+1, c, k
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return n, corr, cause
		}

		m := paid(t, "o-1", "1") // customer "cust-1"
		if err := b.router.Deliver(ctx, m); err != nil {
			t.Fatal(err)
		}
		if got := points(); got != 10 {
			t.Errorf("points = %d, want 10", got)
		}
		if got := b.inboxRows(t, m.ID); got != 1 {
			t.Errorf("inbox rows = %d, want 1", got)
		}
		n, corr, cause := awarded(m.ID)
		if n != 1 || corr != m.CorrelationID || cause != m.ID {
			t.Errorf("recorded event: %d rows, correlation %q, causation %q; want 1, %q, %q", n, corr, cause, m.CorrelationID, m.ID)
		}
		if seen.ID != m.ID || seen.Key != m.Key || seen.Headers["traceparent"] == "" {
			t.Errorf("MessageFrom in the handler gave %+v", seen)
		}

		// Redelivery: no second award, no second event.
		if err := b.router.Deliver(ctx, m); err != nil {
			t.Fatal(err)
		}
		if got := points(); got != 10 {
			t.Errorf("points after redelivery = %d, want 10", got)
		}
		if n, _, _ := awarded(m.ID); n != 1 {
			t.Errorf("events after redelivery = %d, want 1", n)
		}

		bad := paid(t, "o-fail", "1")
		if err := b.router.Deliver(ctx, bad); !errors.Is(err, errFlaky) {
			t.Fatalf("failing handler: got %v, want errFlaky", err)
		}
		if got := points(); got != 10 {
			t.Errorf("points after a failed handler = %d, want 10", got)
		}
		if got := b.inboxRows(t, bad.ID); got != 0 {
			t.Errorf("inbox rows of the failed message = %d, want 0", got)
		}
		if n, _, _ := awarded(bad.ID); n != 0 {
			t.Errorf("events of the failed handler = %d, want 0", n)
		}
	})
}

// TestCorrelationDefaultsToMessageID: a message without a correlation id
// starts a chain of its own.
func TestCorrelationDefaultsToMessageID(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var md aggregate.Metadata
		dispatch.Handle(b.router, "peek", func(ctx context.Context, _ *uow.Tx, _ OrderPaid) error {
			md, _ = aggregate.MetadataFrom(ctx)
			return nil
		})
		m := paid(t, "o-1", "k")
		m.CorrelationID = ""
		if err := b.router.Deliver(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if md.CorrelationID != m.ID || md.CausationID != m.ID {
			t.Errorf("metadata %+v, want correlation and causation %s", md, m.ID)
		}
	})
}

// TestNoHandler: a message nobody subscribed to is a successful no-op, even
// when the registry does not know it.
func TestNoHandler(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		for _, name := range []string{"card.points-awarded", "some.other-service.event"} {
			m := outbox.Message{ID: aggregate.NewMessageID(), Name: name, Payload: []byte(`{`)}
			if err := b.router.Deliver(context.Background(), m); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if got := testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("inbox")); got != 0 {
			t.Errorf("inbox rows = %d, want 0", got)
		}
	})
}

// TestPermanentFailures: messages no retry can fix fail before any handler
// runs, with errors a relay parks at once.
func TestPermanentFailures(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls atomic.Int32
		dispatch.Handle(b.router, "counting", func(context.Context, *uow.Tx, OrderPaid) error {
			calls.Add(1)
			return nil
		})
		ctx := context.Background()

		t.Run("malformed payload", func(t *testing.T) {
			m := paid(t, "o-1", "k")
			m.Payload = []byte(`{"amount": "ten"}`)
			if err := b.router.Deliver(ctx, m); !errors.Is(err, outbox.ErrPermanent) {
				t.Fatalf("got %v, want ErrPermanent", err)
			}
		})

		for _, tc := range []struct{ name, id, want string }{
			{"no id", "", "no id"},
			{"id over 255 bytes", strings.Repeat("x", 256), "256 bytes long"},
			{"id not UTF-8", "msg-\xff", "not valid UTF-8"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m := paid(t, "o-1", "k")
				m.ID = tc.id
				err := b.router.Deliver(ctx, m)
				if !errors.Is(err, outbox.ErrPermanent) || !errors.Is(err, outbox.ErrInvalidMessage) {
					t.Fatalf("got %v, want ErrPermanent and ErrInvalidMessage", err)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not say %q", err, tc.want)
				}
			})
		}

		if n := calls.Load(); n != 0 {
			t.Errorf("handlers ran %d times, want 0", n)
		}
		if got := testdb.Count(t, db, "SELECT COUNT(*) FROM "+db.Table("inbox")); got != 0 {
			t.Errorf("inbox rows = %d, want 0", got)
		}
	})
}

// TestHandlerPermanentError: a handler that reports a permanent failure
// makes the delivery permanent, while its sibling's effect stays.
func TestHandlerPermanentError(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		dispatch.Handle(b.router, "strict", func(context.Context, *uow.Tx, OrderPaid) error {
			return errors.Join(errors.New("amount exceeds the card limit"), outbox.ErrPermanent)
		})
		m := paid(t, "o-1", "k")
		err := b.router.Deliver(context.Background(), m)
		if !errors.Is(err, outbox.ErrPermanent) {
			t.Fatalf("got %v, want ErrPermanent", err)
		}
		if got := b.effects(t, "receipt", m.ID); got != 1 {
			t.Errorf("receipt effects = %d, want 1", got)
		}
	})
}

// TestHandlerPanic: a panicking handler fails like an erroring one and runs
// again on redelivery.
func TestHandlerPanic(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls atomic.Int32
		dispatch.Handle(b.router, "fragile", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			if err := b.effect(ctx, tx, "fragile", e.Order); err != nil {
				return err
			}
			if calls.Add(1) == 1 {
				panic("nil map somewhere")
			}
			return nil
		})
		m := paid(t, "o-1", "k")
		err := b.router.Deliver(context.Background(), m)
		if err == nil || !strings.Contains(err.Error(), "panicked: nil map somewhere") {
			t.Fatalf("got %v, want the panic as an error", err)
		}
		if got := b.inboxRows(t, m.ID); got != 0 {
			t.Errorf("inbox rows after the panic = %d, want 0", got)
		}
		if err := b.router.Deliver(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if got := b.effects(t, "fragile", m.ID); got != 1 {
			t.Errorf("effects = %d, want 1", got)
		}
	})
}

// TestHandlerTimeout: a handler that overruns HandlerTimeout fails with an
// error saying so, and leaves no inbox row.
func TestHandlerTimeout(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		router, err := dispatch.NewRouter(b.runner, b.reg, dispatch.RouterConfig{HandlerTimeout: 50 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		dispatch.Handle(router, "slow", func(ctx context.Context, _ *uow.Tx, _ OrderPaid) error {
			<-ctx.Done()
			return ctx.Err()
		})
		m := paid(t, "o-1", "k")
		start := time.Now()
		err = router.Deliver(context.Background(), m)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "HandlerTimeout") {
			t.Fatalf("got %v, want a HandlerTimeout error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("delivery took %v", d)
		}
		if got := b.inboxRows(t, m.ID); got != 0 {
			t.Errorf("inbox rows = %d, want 0", got)
		}
	})
}

// TestRegistrationMistakes: Handle panics, like http.HandleFunc, on
// mistakes that can only be programming errors.
func TestRegistrationMistakes(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.Open(t, testdb.SQLiteModernc))
	nop := func(context.Context, *uow.Tx, OrderPaid) error { return nil }
	dispatch.Handle(b.router, "taken", nop)
	// A router whose Registry has OrderPaid in pointer form.
	byPointer, err := dispatch.NewRouter(b.runner, aggregate.NewRegistry().MustRegister(&OrderPaid{}), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		want     []string
		register func()
	}{
		{"empty name", []string{"empty handler name"}, func() { dispatch.Handle(b.router, "", nop) }},
		{"blank name", []string{"empty handler name"}, func() { dispatch.Handle(b.router, "  ", nop) }},
		{"name over 255 bytes", []string{"handler name is 256 bytes long; the limit is 255"}, func() {
			dispatch.Handle(b.router, strings.Repeat("h", 256), nop)
		}},
		{"name not UTF-8", []string{"handler name", "not valid UTF-8"}, func() { dispatch.Handle(b.router, "mail-\xff", nop) }},
		{"duplicate name", []string{`"taken" is already registered (for order.paid)`}, func() {
			dispatch.Handle(b.router, "taken", func(context.Context, *uow.Tx, PointsAwarded) error { return nil })
		}},
		{"nil function", []string{"nil function"}, func() { dispatch.Handle[OrderPaid](b.router, "nil-fn", nil) }},
		{"nil router", []string{"nil *Router"}, func() { dispatch.Handle(nil, "x", nop) }},
		{"interface type", []string{"use a concrete event type"}, func() {
			dispatch.Handle(b.router, "any-event", func(context.Context, *uow.Tx, aggregate.Event) error { return nil })
		}},
		{"pointer handler, struct registered", []string{
			`handler "by-pointer" takes *dispatch_test.OrderPaid`,
			`decodes "order.paid" as dispatch_test.OrderPaid`,
			"change the handler to take dispatch_test.OrderPaid",
		}, func() {
			dispatch.Handle(b.router, "by-pointer", func(context.Context, *uow.Tx, *OrderPaid) error { return nil })
		}},
		{"struct handler, pointer registered", []string{
			`handler "by-value" takes dispatch_test.OrderPaid`,
			`decodes "order.paid" as *dispatch_test.OrderPaid`,
			"change the handler to take *dispatch_test.OrderPaid",
		}, func() { dispatch.Handle(byPointer, "by-value", nop) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil {
					t.Fatal("Handle did not panic")
				}
				msg, _ := p.(string)
				for _, want := range tc.want {
					if !strings.Contains(msg, want) {
						t.Errorf("panic %q does not contain %q", p, want)
					}
				}
			}()
			tc.register()
		})
	}
	if diff := cmp.Diff([]string{"taken"}, b.router.Handlers("order.paid")); diff != "" {
		t.Errorf("handlers after the failed registrations (-want +got):\n%s", diff)
	}
	if got := byPointer.Handlers("order.paid"); len(got) != 0 {
		t.Errorf("handlers of the pointer router after the failed registration: %v", got)
	}
	// The panics left both registries as they were.
	if typ, _ := b.reg.Type("order.paid"); typ != reflect.TypeFor[OrderPaid]() {
		t.Errorf("registry now decodes order.paid as %v", typ)
	}

	// A name of exactly 255 bytes fits.
	dispatch.Handle(b.router, strings.Repeat("h", 255), nop)
	// uow.HandlerFunc values fit too: one function serves both kinds.
	var f uow.HandlerFunc[PointsAwarded] = func(context.Context, *uow.Tx, PointsAwarded) error { return nil }
	dispatch.Handle(b.router, "from-uow", f)
	uow.Handle(b.runner, "from-uow", f)
}

// Shipped and Returned are events that no Registry knows until Handle
// registers them, one in struct form and one in pointer form.
type Shipped struct {
	Order   string `json:"order"`
	Carrier string `json:"carrier"`
}

func (Shipped) EventName() string { return "order.shipped" }

type Returned struct {
	Order  string `json:"order"`
	Reason string `json:"reason"`
}

func (*Returned) EventName() string { return "order.returned" }

// TestHandleRegistersEvent: an event type the Registry does not know is
// registered by Handle, in the form the handler takes, and its messages
// decode into it.
func TestHandleRegistersEvent(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		reg := aggregate.NewRegistry()
		router, err := dispatch.NewRouter(b.runner, reg, dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu       sync.Mutex
			shipped  []Shipped
			returned []*Returned
		)
		dispatch.Handle(router, "ship", func(ctx context.Context, tx *uow.Tx, e Shipped) error {
			mu.Lock()
			defer mu.Unlock()
			shipped = append(shipped, e)
			return nil
		})
		dispatch.Handle(router, "return", func(ctx context.Context, tx *uow.Tx, e *Returned) error {
			mu.Lock()
			defer mu.Unlock()
			returned = append(returned, e)
			return nil
		})
		gotTypes := map[string]reflect.Type{}
		for _, name := range reg.Names() {
			gotTypes[name], _ = reg.Type(name)
		}
		wantTypes := map[string]reflect.Type{"order.shipped": reflect.TypeFor[Shipped](), "order.returned": reflect.TypeFor[*Returned]()}
		if diff := cmp.Diff(wantTypes, gotTypes, cmp.Comparer(func(a, b reflect.Type) bool { return a == b })); diff != "" {
			t.Errorf("registry after Handle (-want +got):\n%s", diff)
		}

		ctx := context.Background()
		for _, m := range []outbox.Message{
			{ID: aggregate.NewMessageID(), Name: "order.shipped", Key: "o-1", Payload: []byte(`{"order":"o-1","carrier":"dhl"}`)},
			{ID: aggregate.NewMessageID(), Name: "order.returned", Key: "o-1", Payload: []byte(`{"order":"o-1","reason":"too small"}`)},
		} {
			if err := router.Deliver(ctx, m); err != nil {
				t.Fatalf("deliver %s: %v", m.Name, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]Shipped{{Order: "o-1", Carrier: "dhl"}}, shipped); diff != "" {
			t.Errorf("shipped events (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]*Returned{{Order: "o-1", Reason: "too small"}}, returned); diff != "" {
			t.Errorf("returned events (-want +got):\n%s", diff)
		}
	})
}

// Renamed is an event type whose name changes after it is first asked:
// as if read from configuration that was reloaded while its handler was
// being registered. Handle then subscribes the handler under the first
// name and registers the type under the second, leaving the first name
// free in the Registry. It is the only way to make a Registry decode a
// subscribed name as another type than its handler takes, since a Registry
// never maps a name to a second type.
type Renamed struct {
	N int `json:"n"`
}

var (
	renamedMu    sync.Mutex // held while a test registers a Renamed handler
	renamedCalls atomic.Int32
)

func (Renamed) EventName() string {
	if renamedCalls.Add(1) == 1 {
		return "renamed.subscribed"
	}
	return "renamed.registered"
}

// Impostor takes the name a Renamed handler is subscribed under.
type Impostor struct {
	N string `json:"n"`
}

func (Impostor) EventName() string { return "renamed.subscribed" }

// TestRegistryChangedAfterHandle: when the Registry stops decoding a
// handler's messages into the type the handler takes, delivery fails with
// an error wrapping outbox.ErrPermanent: first an unknown name, then a
// name registered to another type. A relay parks such a message after one
// attempt instead of retrying it for hours.
func TestRegistryChangedAfterHandle(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		var calls atomic.Int32
		renamedMu.Lock()
		renamedCalls.Store(0)
		dispatch.Handle(b.router, "renamed", func(context.Context, *uow.Tx, Renamed) error {
			calls.Add(1)
			return nil
		})
		renamedMu.Unlock()
		if diff := cmp.Diff([]string{"renamed"}, b.router.Handlers("renamed.subscribed")); diff != "" {
			t.Fatalf("handlers of renamed.subscribed (-want +got):\n%s", diff)
		}
		ctx := context.Background()
		msg := func() outbox.Message {
			return outbox.Message{ID: aggregate.NewMessageID(), Name: "renamed.subscribed", Key: "r", Payload: []byte(`{"n":1}`)}
		}

		t.Run("unknown event", func(t *testing.T) {
			m := msg()
			err := b.router.Deliver(ctx, m)
			if !errors.Is(err, aggregate.ErrUnknownEvent) || !errors.Is(err, outbox.ErrPermanent) {
				t.Fatalf("got %v, want an error matching ErrUnknownEvent and ErrPermanent", err)
			}
			if !strings.Contains(err.Error(), "renamed.subscribed") || !strings.Contains(err.Error(), m.ID) {
				t.Errorf("error %q names neither the event nor the message", err)
			}
		})

		if err := b.reg.Register(Impostor{}); err != nil {
			t.Fatal(err)
		}
		t.Run("decoded as another type", func(t *testing.T) {
			m := msg()
			m.Payload = []byte(`{"n":"one"}`)
			err := b.router.Deliver(ctx, m)
			if !errors.Is(err, outbox.ErrPermanent) {
				t.Fatalf("got %v, want an error matching ErrPermanent", err)
			}
			var he *uow.HandlerError
			if !errors.As(err, &he) || he.Handler != "renamed" || he.MessageID != m.ID {
				t.Fatalf("got %v, want the renamed handler's HandlerError for %s", err, m.ID)
			}
			for _, want := range []string{"takes dispatch_test.Renamed", "as dispatch_test.Impostor"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got := b.inboxRows(t, m.ID); got != 0 {
				t.Errorf("inbox rows = %d, want 0", got)
			}
		})

		t.Run("parked by a relay", func(t *testing.T) {
			ob := startRelay(t, b).Outbox()
			m := msg()
			m.Payload = []byte(`{"n":"two"}`)
			if err := ob.Enqueue(ctx, m); err != nil {
				t.Fatal(err)
			}
			var parked []outbox.ParkedMessage
			testdb.Eventually(t, 10*time.Second, "the message to be parked", func() bool {
				var err error
				if parked, err = ob.Parked(ctx, outbox.ParkedQuery{}); err != nil {
					t.Fatal(err)
				}
				return len(parked) == 1
			})
			if p := parked[0]; p.ID != m.ID || p.Attempts != 1 || !strings.Contains(p.LastError, "dispatch_test.Impostor") {
				t.Errorf("parked %s after %d attempts with %q; want %s after 1, naming the decoded type", p.ID, p.Attempts, p.LastError, m.ID)
			}
		})

		if n := calls.Load(); n != 0 {
			t.Errorf("the handler ran %d times, want 0", n)
		}
	})
}

// TestConfigErrors: constructors and PruneInbox reject arguments they
// cannot use with errors naming the field and the fix.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.Open(t, testdb.SQLiteModernc))
	for _, tc := range []struct {
		name, want string
		call       func() error
	}{
		{"nil runner", "nil *uow.Runner", func() error {
			_, err := dispatch.NewRouter(nil, b.reg, dispatch.RouterConfig{})
			return err
		}},
		{"nil registry", "nil *aggregate.Registry", func() error {
			_, err := dispatch.NewRouter(b.runner, nil, dispatch.RouterConfig{})
			return err
		}},
		{"negative timeout", "RouterConfig.HandlerTimeout is -1s", func() error {
			_, err := dispatch.NewRouter(b.runner, b.reg, dispatch.RouterConfig{HandlerTimeout: -time.Second})
			return err
		}},
		{"nil router", "nil *Router", func() error {
			_, err := dispatch.NewBus(nil, dispatch.BusConfig{})
			return err
		}},
		{"negative concurrency", "BusConfig.Concurrency is -2", func() error {
			_, err := dispatch.NewBus(b.router, dispatch.BusConfig{Concurrency: -2})
			return err
		}},
		{"zero prune window", "olderThan is 0s", func() error {
			_, err := b.router.PruneInbox(context.Background(), 0, 10)
			return err
		}},
		{"negative prune batch", "batch is -1", func() error {
			_, err := b.router.PruneInbox(context.Background(), time.Hour, -1)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, store.ErrInvalidConfig) {
				t.Fatalf("got %v, want store.ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	if _, err := dispatch.NewBus(b.router, dispatch.BusConfig{}); err != nil {
		t.Errorf("zero BusConfig: %v", err)
	}
}

// TestNotMigrated: without keel's tables, delivery and pruning fail with
// store.ErrNotMigrated, naming the inbox table.
func TestNotMigrated(t *testing.T) {
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		t.Parallel()
		db := testdb.OpenEmpty(t, s)
		runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		reg := aggregate.NewRegistry().MustRegister(OrderPaid{})
		router, err := dispatch.NewRouter(runner, reg, dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatalf("NewRouter must not touch the database: %v", err)
		}
		dispatch.Handle(router, "h", func(context.Context, *uow.Tx, OrderPaid) error { return nil })
		err = router.Deliver(context.Background(), paid(t, "o-1", "k"))
		if !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("Deliver: got %v, want ErrNotMigrated", err)
		}
		if err != nil && !strings.Contains(err.Error(), "keel_inbox") {
			t.Errorf("Deliver error %q does not name the table", err)
		}
		if _, err := router.PruneInbox(context.Background(), time.Hour, 0); !errors.Is(err, store.ErrNotMigrated) {
			t.Errorf("PruneInbox: got %v, want ErrNotMigrated", err)
		}
	})
}

// TestTablePrefix: the router uses the inbox of its store's prefix, in a
// database that also has keel's tables under the default prefix.
func TestTablePrefix(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		ctx := context.Background()
		shop, err := store.Open(db.SQL(), db.Dialect(), store.Options{TablePrefix: "shop_", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := shop.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		runner, err := uow.New(shop, uow.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(OrderPaid{}), dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		dispatch.Handle(router, "h", func(context.Context, *uow.Tx, OrderPaid) error { return nil })
		if err := router.Deliver(ctx, paid(t, "o-1", "k")); err != nil {
			t.Fatal(err)
		}
		if got := testdb.Count(t, db, "SELECT COUNT(*) FROM shop_inbox"); got != 1 {
			t.Errorf("shop_inbox rows = %d, want 1", got)
		}
		if got := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_inbox"); got != 0 {
			t.Errorf("keel_inbox rows = %d, want 0", got)
		}
	})
}

// TestPruneInbox deletes only rows older than the window, in batches, and
// shows what pruning costs: a redelivery after it runs the handler again.
func TestPruneInbox(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		ctx := context.Background()
		inbox := db.Table("inbox")
		age := db.Dialect().Rebind("UPDATE " + inbox + " SET processed_at = ? WHERE message_id = ?")
		var msgs []outbox.Message
		for i := range 7 {
			m := paid(t, "o", "k")
			msgs = append(msgs, m)
			if err := b.router.Deliver(ctx, m); err != nil {
				t.Fatal(err)
			}
			if i < 5 { // age the first five by two days
				if _, err := db.SQL().Exec(age, db.Dialect().Time(time.Now().Add(-48*time.Hour)), m.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		n, err := b.router.PruneInbox(ctx, 24*time.Hour, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n != 5 {
			t.Errorf("pruned %d rows, want 5", n)
		}
		if got := testdb.Count(t, db, "SELECT COUNT(*) FROM "+inbox); got != 2 {
			t.Errorf("inbox rows left = %d, want 2", got)
		}
		if n, err := b.router.PruneInbox(ctx, 24*time.Hour, 0); err != nil || n != 0 {
			t.Errorf("second prune: %d, %v; want 0, nil", n, err)
		}
		// Inside the window: deduplicated. Outside it: forgotten.
		for _, m := range []outbox.Message{msgs[6], msgs[0]} {
			if err := b.router.Deliver(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if got := b.effects(t, "receipt", msgs[6].ID); got != 1 {
			t.Errorf("effects of a message inside the window = %d, want 1", got)
		}
		if got := b.effects(t, "receipt", msgs[0].ID); got != 2 {
			t.Errorf("effects of a pruned message redelivered = %d, want 2", got)
		}
	})
}
