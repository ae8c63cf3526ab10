package process

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
)

// ErrNotStarted is returned by the handler of an event registered with On
// for a process that has no stored state: the event arrived before the
// one that starts the process, or names a process that never started. It
// is an ordinary failure, so a relay delivers the event again with
// backoff, and parks it, visible to operators, if the process never
// starts.
var ErrNotStarted = errors.New("keel: process not started")

// TypePrefix begins the aggregate type under which a process type's
// instances are stored: a Manager named "order-fulfilment" stores them as
// aggregates of type "process:order-fulfilment".
const TypePrefix = "process:"

// Config configures a Manager.
type Config struct {
	// Name names the process type, such as "order-fulfilment". It keys the
	// stored instances (as the aggregate type TypePrefix+Name) and the
	// handlers' inbox rows, so it must not change between releases.
	// Required; letters, digits, '.', '-' and '_', at most 100 bytes.
	Name string
	// Logger receives the events a process absorbs (after it ended, or a
	// timeout that was cancelled or replaced) at Debug level. If nil, the
	// router's runner's logger is used.
	Logger *slog.Logger
}

// Manager runs the instances of one process type, whose state is P: it
// loads the instance an event is for, runs the handler registered for the
// event (see Start and On) and saves the instance, with the messages the
// handler sent, in the router's unit of work for that delivery. Create it
// with New, register its handlers before messages arrive, and share it; it
// is safe for concurrent use.
type Manager[P any] struct {
	name   string
	typ    string
	router *dispatch.Router
	st     *store.Store
	ob     *outbox.Outbox
	repo   *repository.Document[*instance[P]]
	log    *slog.Logger

	mu     sync.Mutex
	events map[string]bool // event names with a handler of this manager
}

// New returns a Manager for processes of type P whose handlers run
// through router: each delivery of an event to a process is one of the
// router's units of work, with its inbox row, so it takes effect once, and
// two deliveries to one process at once are serialised by the instance's
// version and retried. P is the process's own state, stored as JSON with
// encoding/json (its exported fields, or its MarshalJSON result). New
// does not touch the database.
func New[P any](router *dispatch.Router, cfg Config) (*Manager[P], error) {
	if router == nil {
		return nil, dialect.Invalid("process.New: nil *dispatch.Router; pass the router from dispatch.NewRouter")
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	runner := router.Runner()
	typ := TypePrefix + cfg.Name
	repo, err := repository.NewDocument(runner.Store(), repository.DocumentConfig[*instance[P]]{
		Type: typ,
		New:  func() *instance[P] { return new(instance[P]) },
	})
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = runner.Logger()
	}
	return &Manager[P]{
		name:   cfg.Name,
		typ:    typ,
		router: router,
		st:     runner.Store(),
		ob:     runner.Outbox(),
		repo:   repo,
		log:    log,
		events: map[string]bool{},
	}, nil
}

// checkName validates a process type's name.
func checkName(name string) error {
	if name == "" {
		return dialect.Invalid("process.Config.Name is empty; name the process type, such as \"order-fulfilment\"")
	}
	if len(name) > 100 {
		return dialect.Invalid("process.Config.Name %s is %d bytes; the limit is 100", dialect.Quote(name), len(name))
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}); i >= 0 {
		return dialect.Invalid("process.Config.Name %s has %q at byte %d; use letters, digits, '.', '-' and '_'", dialect.Quote(name), name[i:i+1], i)
	}
	return nil
}

// Name returns the process type's name, from Config.Name.
func (m *Manager[P]) Name() string { return m.name }

// AggregateType returns the aggregate type the process's instances are
// stored under: TypePrefix followed by its name.
func (m *Manager[P]) AggregateType() string { return m.typ }

// claim records that the manager handles event, and panics if it already
// does: one process type reacts to an event in one way.
func (m *Manager[P]) claim(fn, event string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.events[event] {
		panic(fmt.Sprintf("keel: process.%s: process %q already has a handler for %q; one process type reacts to an event once, so put both reactions in one handler", fn, m.name, event))
	}
	m.events[event] = true
}
