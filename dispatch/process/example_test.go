package process_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
	"github.com/keel-go/keel/uow"
)

// The events of a trial subscription: it starts, and unless the customer
// subscribes within the trial, a reminder falls due and the trial ends.
type (
	TrialStarted struct{ Customer string }
	Subscribed   struct{ Customer string }
	TrialOver    struct{ Customer string }
	EndTrial     struct{ Customer string }
)

func (TrialStarted) EventName() string { return "trial.started" }
func (Subscribed) EventName() string   { return "trial.subscribed" }
func (TrialOver) EventName() string    { return "trial.over" }
func (EndTrial) EventName() string     { return "accounts.end-trial" }

// Trial is the process's own state.
type Trial struct {
	Started time.Time
}

// Example runs a process with a timeout, on a store whose clock the
// example moves on by hand, as a test would.
func Example() {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	dir, err := os.MkdirTemp("", "keel-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "keel.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(db, sqlite.Dialect(), store.Options{Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	runner, err := uow.New(st, uow.Config{})
	if err != nil {
		log.Fatal(err)
	}
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{})
	if err != nil {
		log.Fatal(err)
	}

	trials, err := process.New[Trial](router, process.Config{Name: "trial"})
	if err != nil {
		log.Fatal(err)
	}
	customer := func(e TrialStarted) string { return e.Customer }
	process.Start(trials, customer, func(ctx context.Context, p *process.Process[Trial], e TrialStarted) error {
		p.State.Started = p.Now()
		p.Schedule("trial", p.Now().Add(14*24*time.Hour), TrialOver(e))
		return nil
	})
	process.On(trials, func(e Subscribed) string { return e.Customer }, func(ctx context.Context, p *process.Process[Trial], e Subscribed) error {
		p.Cancel("trial")
		p.Complete()
		return nil
	})
	process.On(trials, func(e TrialOver) string { return e.Customer }, func(ctx context.Context, p *process.Process[Trial], e TrialOver) error {
		p.Send(EndTrial(e))
		p.Complete()
		return nil
	})
	dispatch.Handle(router, "accounts.end-trial", func(ctx context.Context, tx *uow.Tx, e EndTrial) error {
		fmt.Printf("trial of %s ended on %s\n", e.Customer, clock().Format(time.DateOnly))
		return nil
	})

	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	emit := func(events ...aggregate.Event) {
		if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			for _, e := range events {
				payload, err := aggregate.Encode(e)
				if err != nil {
					return err
				}
				tx.Enqueue(outbox.Message{Name: e.EventName(), Payload: payload})
			}
			return nil
		}); err != nil {
			log.Fatal(err)
		}
		if _, err := relay.Drain(ctx); err != nil {
			log.Fatal(err)
		}
	}

	emit(TrialStarted{"ada"}, TrialStarted{"bob"})
	emit(Subscribed{"ada"})
	running, err := trials.List(ctx, process.ListOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range running {
		fmt.Printf("%s: %s, next timeout %s\n", p.ID, p.Status, p.NextTimeout.Format(time.DateOnly))
	}

	mu.Lock()
	now = now.Add(15 * 24 * time.Hour)
	mu.Unlock()
	if _, err := relay.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	all, err := trials.List(ctx, process.ListOptions{All: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range all {
		fmt.Printf("%s: %s\n", p.ID, p.Status)
	}
	// Output:
	// bob: running, next timeout 2030-01-15
	// trial of bob ended on 2030-01-16
	// ada: completed
	// bob: completed
}
