package process_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// Tick advances a counter: a process's, or the baseline's aggregate.
type Tick struct{ ID string }

func (Tick) EventName() string { return "bench.tick" }

// Begin starts a counting process.
type Begin struct{ ID string }

func (Begin) EventName() string { return "bench.begin" }

// Count is the process's state.
type Count struct{ Ticks int }

// counter is the baseline's aggregate: the same state, in a document.
type counter struct {
	aggregate.Root
	Ticks int
}

// BenchmarkProcessStep measures events per second that advance existing
// processes through a Bus (load the process, run its handler, save it,
// with the delivery's inbox row), beside the same work written as a
// plain dispatch.Handle handler on a document aggregate: load, change,
// save, with its inbox row. The difference is what the process layer
// costs. Each event advances another of b.N processes, created before the
// timer starts; events go out in batches of 500, as a relay sends them.
//
//	KEEL_TEST_POSTGRES=postgres://... go test -run '^$' -bench ProcessStep ./dispatch/process/
func BenchmarkProcessStep(b *testing.B) {
	const batch = 500
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			b.Run("handler-baseline", func(b *testing.B) {
				db := testdb.Open(b, s, store.Options{Logger: quiet})
				runner, router := benchRouter(b, db)
				counters, err := repository.NewDocument(db.Store, repository.DocumentConfig[*counter]{Type: "counter", New: func() *counter { return new(counter) }})
				if err != nil {
					b.Fatal(err)
				}
				dispatch.Handle(router, "bench.count", func(ctx context.Context, tx *uow.Tx, e Tick) error {
					c, err := counters.Get(ctx, tx, e.ID)
					if err != nil {
						return err
					}
					c.Ticks++
					return counters.Save(ctx, tx, c)
				})
				for start := 0; start < b.N; start += batch {
					if err := runner.Do(b.Context(), func(ctx context.Context, tx *uow.Tx) error {
						for i := start; i < min(start+batch, b.N); i++ {
							c := &counter{}
							c.Init("counter", fmt.Sprintf("c%d", i))
							if err := counters.Save(ctx, tx, c); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
				benchDeliver(b, router, "c", batch)
			})
			b.Run("process", func(b *testing.B) {
				db := testdb.Open(b, s, store.Options{Logger: quiet})
				_, router := benchRouter(b, db)
				m, err := process.New[Count](router, process.Config{Name: "count"})
				if err != nil {
					b.Fatal(err)
				}
				process.Start(m, func(e Begin) string { return e.ID }, func(ctx context.Context, p *process.Process[Count], e Begin) error { return nil })
				process.On(m, func(e Tick) string { return e.ID }, func(ctx context.Context, p *process.Process[Count], e Tick) error {
					p.State.Ticks++
					return nil
				})
				bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
				if err != nil {
					b.Fatal(err)
				}
				begins := messages(b.N, "c", Begin{}.EventName())
				for start := 0; start < len(begins); start += batch {
					if err := bus.Publish(b.Context(), begins[start:min(start+batch, len(begins))]); err != nil {
						b.Fatal(err)
					}
				}
				benchDeliver(b, router, "c", batch)
			})
		})
	}
}

func benchRouter(b *testing.B, db testdb.DB) (*uow.Runner, *dispatch.Router) {
	runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return runner, router
}

// messages returns n messages named name, each for another id, on 16 keys.
func messages(n int, prefix, name string) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{
			ID:      aggregate.NewMessageID(),
			Name:    name,
			Key:     fmt.Sprintf("key-%d", i%16),
			Payload: fmt.Appendf(nil, `{"ID":"%s%d"}`, prefix, i),
		}
	}
	return msgs
}

// benchDeliver times b.N ticks through a Bus over router.
func benchDeliver(b *testing.B, router *dispatch.Router, prefix string, batch int) {
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ticks := messages(b.N, prefix, Tick{}.EventName())
	b.ResetTimer()
	for start := 0; start < len(ticks); start += batch {
		if err := bus.Publish(b.Context(), ticks[start:min(start+batch, len(ticks))]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
