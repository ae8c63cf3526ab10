package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/telemetry"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// RouterConfig configures a Router. The zero value is ready to use.
type RouterConfig struct {
	// HandlerTimeout bounds one handler's run on one message, its retries
	// included (and, when the message is delivered alone, its inbox write
	// and commit). A handler that overruns fails
	// with context.DeadlineExceeded and runs again on redelivery. If zero,
	// only the context passed to Deliver bounds it.
	HandlerTimeout time.Duration
	// Logger receives handler panics at Error level and skipped duplicates
	// at Debug level. If nil, the runner's logger is used.
	Logger *slog.Logger
}

func (c RouterConfig) withDefaults(log *slog.Logger) (RouterConfig, error) {
	if c.HandlerTimeout < 0 {
		return c, dialect.Invalid("RouterConfig.HandlerTimeout is %v; use a positive duration, or 0 for no limit beyond the caller's context", c.HandlerTimeout)
	}
	if c.Logger == nil {
		c.Logger = log
	}
	return c, nil
}

// Router holds the asynchronous handlers of an application and runs them
// for delivered messages, each handler on each message as a unit of work
// with an inbox row that makes its effect happen once per message; the
// units of many messages share a transaction (see DeliverBatch). The in-process Bus and
// keel's Kafka consumer both deliver through a Router.
//
// A Router is safe for concurrent use. Register handlers with Handle before
// messages arrive: a message delivered before its handler existed is not
// replayed to it.
type Router struct {
	runner *uow.Runner
	reg    *aggregate.Registry
	cfg    RouterConfig
	d      dialect.Dialect
	inbox  string // inbox table name

	sql         dialect.SQL // rendered for the store's prefix
	insertInbox string
	tel         *telemetry.Telemetry

	mu       sync.RWMutex
	handlers map[string][]*handler // event name -> handlers, in registration order
	names    map[string]string     // handler name -> event name
}

// handler is one registered handler with its event type erased.
type handler struct {
	name  string
	event string
	fn    func(ctx context.Context, tx *uow.Tx, e aggregate.Event) error
	batch func(ctx context.Context, tx *uow.Tx, evs []aggregate.Event) error // nil unless registered with HandleBatch
	tel   handlerMetrics
}

// NewRouter returns a Router that runs handlers through runner's units of
// work, so their transactions, retries, in-transaction handlers and outbox
// writes are runner's, and decodes message payloads with reg. The inbox is
// the one of runner's store. NewRouter does not touch the database; a
// missing inbox table is reported by the first delivery, as an error
// wrapping store.ErrNotMigrated.
func NewRouter(runner *uow.Runner, reg *aggregate.Registry, cfg RouterConfig) (*Router, error) {
	if runner == nil {
		return nil, dialect.Invalid("dispatch.NewRouter: nil *uow.Runner; pass the runner from uow.New")
	}
	if reg == nil {
		return nil, dialect.Invalid("dispatch.NewRouter: nil *aggregate.Registry; pass the registry your event types are registered in, or aggregate.NewRegistry()")
	}
	cfg, err := cfg.withDefaults(runner.Logger())
	if err != nil {
		return nil, err
	}
	st := runner.Store()
	d := st.Dialect()
	inbox := st.Table("inbox")
	return &Router{
		sql:         dialect.Render(d, d.SQL(), st.TablePrefix()),
		runner:      runner,
		reg:         reg,
		cfg:         cfg,
		d:           d,
		inbox:       inbox,
		handlers:    map[string][]*handler{},
		names:       map[string]string{},
		insertInbox: d.Rebind(d.InsertIfAbsent(inbox, []string{"handler", "message_id", "processed_at"}, []string{"handler", "message_id"})),
		tel:         telemetry.For(st.Options().TracerProvider, st.Options().MeterProvider),
	}, nil
}

// Handle registers fn to run, after commit, for every message named like E
// that the router delivers: the asynchronous counterpart of uow.Handle, with
// the same shape, so one function can serve as either. fn runs as a unit of
// work of its own, in a savepoint when it shares its transaction with other
// messages, whose inbox row (name, message id) commits with it; when
// that row already exists the handler took effect on an earlier delivery
// and is skipped. Events fn records through tx are caused by the message:
// they carry its correlation id, and its id as their causation id.
//
// name identifies the handler in the inbox, so it must be non-empty, unique
// within the router, and stable across releases: renaming a handler makes
// it run again for messages redelivered within the dedupe window.
//
// The router's Registry decodes messages for fn: if E's event name is not
// registered yet, Handle registers E; if it is registered in the other
// form (a struct where fn takes a pointer, or the reverse), Handle panics,
// since every message would fail to reach fn.
//
// Like http.HandleFunc, Handle panics on a mistake that can only be a
// programming error found at start-up: a nil router or function, an empty,
// overlong or duplicate name, an E without a fixed event name, or an E the
// Registry decodes as another type.
func Handle[E aggregate.Event](r *Router, name string, fn func(ctx context.Context, tx *uow.Tx, e E) error) {
	if r == nil {
		panic("keel: dispatch.Handle: nil *Router")
	}
	if fn == nil {
		panic(fmt.Sprintf("keel: dispatch.Handle: nil function for handler %q", name))
	}
	event, want := eventName[E](name), reflect.TypeFor[E]()
	register[E](r, name, event, func(ctx context.Context, tx *uow.Tx, ev aggregate.Event) error {
		e, ok := ev.(E)
		if !ok {
			return wrongType(name, event, want, ev)
		}
		return fn(ctx, tx, e)
	}, nil)
}

// wrongType is the error of a handler given an event of another type than
// it takes. Handle checked the Registry, which never maps a name to a
// second type; only an event type whose EventName changes can get here
// (TestRegistryChangedAfterHandle), and no retry helps.
func wrongType(name, event string, want reflect.Type, ev aggregate.Event) error {
	return fmt.Errorf("keel: handler %q takes %s but the registry decoded %q as %T (%w)", name, want, event, ev, outbox.ErrPermanent)
}

// register checks a handler of E, whose event name is event, and adds it
// to r: fn runs it on one message, batch (nil for a handler of one message)
// on many.
func register[E aggregate.Event](r *Router, name, event string, fn func(ctx context.Context, tx *uow.Tx, ev aggregate.Event) error, batch func(ctx context.Context, tx *uow.Tx, evs []aggregate.Event) error) {
	if strings.TrimSpace(name) == "" {
		panic("keel: dispatch.Handle: empty handler name; names key the inbox, so give each handler a stable one such as \"billing.send-receipt\"")
	}
	if err := dialect.CheckText("dispatch.Handle: handler name", name, dialect.MaxIDBytes); err != nil {
		panic(fmt.Sprintf("keel: %v", err))
	}
	want := reflect.TypeFor[E]()
	if got, ok := r.reg.Type(event); !ok {
		var zero E
		if err := r.reg.Register(zero); err != nil {
			panic(fmt.Sprintf("keel: dispatch.Handle: handler %q: %v", name, err))
		}
	} else if got != want {
		panic(fmt.Sprintf("keel: dispatch.Handle: handler %q takes %s but the router's Registry decodes %q as %s; register the event in the form the handler takes, or change the handler to take %s", name, want, event, got, got))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.names[name]; ok {
		panic(fmt.Sprintf("keel: dispatch.Handle: handler name %q is already registered (for %s); names key the inbox, so each handler needs its own", name, prev))
	}
	r.names[name] = event
	r.handlers[event] = append(r.handlers[event], &handler{name: name, event: event, fn: fn, batch: batch})
}

// eventName is aggregate.NameOf with the mistakes a generic call can make
// turned into clear panics.
func eventName[E aggregate.Event](handlerName string) string {
	if reflect.TypeFor[E]().Kind() == reflect.Interface {
		panic(fmt.Sprintf("keel: dispatch.Handle: handler %q takes the interface %s; use a concrete event type", handlerName, reflect.TypeFor[E]()))
	}
	event := aggregate.NameOf[E]()
	if event == "" {
		panic(fmt.Sprintf("keel: dispatch.Handle: handler %q takes %s, whose EventName is empty", handlerName, reflect.TypeFor[E]()))
	}
	return event
}

// subscribers returns the handlers of an event name.
func (r *Router) subscribers(event string) []*handler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.handlers[event]
}

// Handlers returns the names of the handlers registered for an event name,
// in the order they run.
func (r *Router) Handlers(event string) []string {
	hs := r.subscribers(event)
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.name
	}
	return names
}

// Runner returns the unit-of-work runner the Router runs its handlers
// through, and so its store and outbox.
func (r *Router) Runner() *uow.Runner { return r.runner }
