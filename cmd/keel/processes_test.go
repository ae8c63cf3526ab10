package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

type (
	tripBooked    struct{ Trip string }
	tripCancelled struct{ Trip string }
	tripReminder  struct{ Trip string }
)

func (tripBooked) EventName() string    { return "trip.booked" }
func (tripCancelled) EventName() string { return "trip.cancelled" }
func (tripReminder) EventName() string  { return "trip.reminder" }

// TestProcesses lists running and ended processes, in text and in JSON.
func TestProcesses(t *testing.T) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) {
			db := freshDatabase(t, s)
			ok(t, "migrate", "--dsn", db.dsn)
			dsn := []string{"--dsn", db.dsn}
			if out := ok(t, append([]string{"processes"}, dsn...)...); !strings.Contains(out, "no running processes") {
				t.Fatalf("processes on an empty store printed:\n%s", out)
			}

			runner, err := uow.New(db.st, uow.Config{Logger: discardLogger})
			if err != nil {
				t.Fatal(err)
			}
			router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{})
			if err != nil {
				t.Fatal(err)
			}
			trips, err := process.New[struct{ Seats int }](router, process.Config{Name: "trip"})
			if err != nil {
				t.Fatal(err)
			}
			process.Start(trips, func(e tripBooked) string { return e.Trip }, func(ctx context.Context, p *process.Process[struct{ Seats int }], e tripBooked) error {
				p.State.Seats = 2
				p.Schedule("reminder", p.Now().Add(48*time.Hour), tripReminder(e))
				return nil
			})
			process.On(trips, func(e tripCancelled) string { return e.Trip }, func(ctx context.Context, p *process.Process[struct{ Seats int }], e tripCancelled) error {
				p.Compensate("cancelled by the customer")
				return nil
			})
			bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
			if err != nil {
				t.Fatal(err)
			}
			relay, err := outbox.NewRelay(db.st, bus, outbox.RelayConfig{Logger: discardLogger})
			if err != nil {
				t.Fatal(err)
			}
			if err := runner.Do(t.Context(), func(ctx context.Context, tx *uow.Tx) error {
				for _, e := range []aggregate.Event{tripBooked{"lisbon"}, tripBooked{"oslo"}, tripCancelled{"oslo"}} {
					payload, err := aggregate.Encode(e)
					if err != nil {
						return err
					}
					tx.Enqueue(outbox.Message{Name: e.EventName(), Key: "trips", Payload: payload})
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := relay.Drain(t.Context()); err != nil {
				t.Fatal(err)
			}

			out := ok(t, append([]string{"processes"}, dsn...)...)
			if !strings.Contains(out, "lisbon") || strings.Contains(out, "oslo") || !strings.Contains(out, "Seats") {
				t.Fatalf("processes printed:\n%s\nwant the running lisbon with its state, not the ended oslo", out)
			}
			out = ok(t, append([]string{"processes", "--all", "--type", "trip"}, dsn...)...)
			if !strings.Contains(out, "oslo") || !strings.Contains(out, "compensated (cancelled by the customer)") {
				t.Fatalf("processes --all printed:\n%s\nwant oslo compensated", out)
			}
			var list []processJSON
			decode(t, &list, append([]string{"processes", "--all", "--limit", "1", "--type", "trip"}, dsn...)...)
			if len(list) != 1 || list[0].ID != "lisbon" || list[0].NextTimeout == nil || list[0].Status != process.Running {
				t.Fatalf("processes --json = %+v; want lisbon, running, with its next timeout", list)
			}
			var next []processJSON
			decode(t, &next, append([]string{"processes", "--all", "--type", "trip", "--after", "lisbon"}, dsn...)...)
			if len(next) != 1 || next[0].ID != "oslo" || next[0].Reason != "cancelled by the customer" || next[0].NextTimeout != nil {
				t.Fatalf("the next page = %+v; want oslo, compensated, without a timer", next)
			}
			fails(t, 2, []string{"--after needs --type"}, append([]string{"processes", "--after", "x"}, dsn...)...)
		})
	}
}
