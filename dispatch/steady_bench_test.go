package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// BenchmarkSteadyState runs W = 16 writer goroutines committing units of
// work (an order saved with its event, one outbox row each) for a few
// seconds, in three runs:
//
//   - writers: the writers alone, the reference for commits/s;
//
//   - relay: the same writers while a relay delivers to a Bus whose one
//     handler writes an effect row; it reports commits/s, deliveries/s and
//     the backlog left when the writers stop;
//
//   - paced: the writers held to 80% of the commit rate the first run
//     reached, with the relay running, reporting the 50th and 99th
//     percentile from an event's recording, just before its commit, to its
//     handler running;
//
//   - paced-relay: the same, held to 80% of the commit rate of the relay
//     run: the rate the writers sustain while their messages are delivered.
//     Where the relay's own commits slow the writers by more than a fifth
//     (a single disk shared by both), the paced run asks for more than the
//     database can commit with delivery running and measures a growing
//     queue; this one measures latency under a load it can sustain.
//
//     go test -run '^$' -bench BenchmarkSteadyState -benchtime 1x ./dispatch/
func BenchmarkSteadyState(b *testing.B) {
	const writers = 16
	const period = 5 * time.Second
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			var maxRate, relayRate float64
			b.Run("writers", func(b *testing.B) {
				for range b.N {
					st := newSteady(b, s)
					commits := st.write(b, writers, period, 0)
					maxRate = float64(commits) / period.Seconds()
				}
				b.ReportMetric(maxRate, "commits/s")
			})
			b.Run("relay", func(b *testing.B) {
				for range b.N {
					st := newSteady(b, s)
					stop := st.relay(b)
					commits := st.write(b, writers, period, 0)
					delivered := st.delivered.Load()
					stop()
					backlog := st.backlog(b)
					relayRate = float64(commits) / period.Seconds()
					b.ReportMetric(relayRate, "commits/s")
					b.ReportMetric(float64(delivered)/period.Seconds(), "deliveries/s")
					b.ReportMetric(float64(backlog), "backlog")
				}
			})
			paced := func(b *testing.B, rate float64) {
				if rate == 0 {
					b.Skip("the run it paces by did not measure a rate")
				}
				for range b.N {
					st := newSteady(b, s)
					stop := st.relay(b)
					commits := st.write(b, writers, period, 0.8*rate)
					// Let the last commits arrive before measuring.
					deadline := time.Now().Add(10 * time.Second)
					for st.delivered.Load() < commits && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
					}
					stop()
					lat := st.latencies()
					b.ReportMetric(float64(commits)/period.Seconds(), "commits/s")
					b.ReportMetric(percentile(lat, 0.50).Seconds()*1000, "p50-ms")
					b.ReportMetric(percentile(lat, 0.99).Seconds()*1000, "p99-ms")
				}
			}
			b.Run("paced", func(b *testing.B) { paced(b, maxRate) })
			b.Run("paced-relay", func(b *testing.B) { paced(b, relayRate) })
		})
	}
}

// steady is one run's database, writers and handler.
type steady struct {
	bd        bundle
	delivered atomic.Int64
	mu        sync.Mutex
	lat       []time.Duration
}

func newSteady(b *testing.B, s testdb.Setup) *steady {
	b.Helper()
	db := testdb.Open(b, s)
	idleConns(db)
	st := &steady{bd: setup(b, db)}
	dispatch.Handle(st.bd.router, "effect", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		if err := st.bd.effect(ctx, tx, "effect", ""); err != nil {
			return err
		}
		m, _ := dispatch.MessageFrom(ctx)
		st.mu.Lock()
		st.lat = append(st.lat, time.Since(m.OccurredAt))
		st.mu.Unlock()
		return nil
	})
	return st
}

// relay starts a relay delivering to a Bus with its defaults, counting
// deliveries from the inbox rows the handler's units commit; the returned
// function stops it.
func (st *steady) relay(b *testing.B) (stop func()) {
	b.Helper()
	bus, err := dispatch.NewBus(st.bd.router, dispatch.BusConfig{})
	if err != nil {
		b.Fatal(err)
	}
	relay, err := outbox.NewRelay(st.bd.db.Store, bus, outbox.RelayConfig{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	counting := make(chan struct{})
	go func() {
		defer close(counting)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				var n int64
				if err := st.bd.db.SQL().QueryRow("SELECT COUNT(*) FROM effects").Scan(&n); err == nil {
					st.delivered.Store(n)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-counting
		if err := <-done; err != nil {
			b.Errorf("relay: %v", err)
		}
		var n int64
		if err := st.bd.db.SQL().QueryRow("SELECT COUNT(*) FROM effects").Scan(&n); err == nil {
			st.delivered.Store(n)
		}
	}
}

// write runs w writers for d, each committing units that place and pay an
// order; a positive rate (commits per second, over all writers) paces
// them. It returns how many units committed.
func (st *steady) write(b *testing.B, w int, d time.Duration, rate float64) int64 {
	var commits atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for g := range w {
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; time.Now().Before(end); i++ {
				if rate > 0 {
					// Writer g's i-th commit is due at start + (i*w+g)/rate.
					due := start.Add(time.Duration(float64(i*w+g) / rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					if !time.Now().Before(end) {
						return
					}
				}
				err := st.bd.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
					o := PlaceOrder(fmt.Sprintf("o-%d-%d", g, i), fmt.Sprint("cust-", g))
					o.Pay(1000)
					return st.bd.orders.Save(ctx, tx, o)
				})
				if err != nil {
					b.Error(err)
					return
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	return commits.Load()
}

// backlog counts the outbox rows not delivered yet.
func (st *steady) backlog(b *testing.B) int {
	return testdb.Count(b, st.bd.db, "SELECT COUNT(*) FROM "+st.bd.db.Table("outbox")+" WHERE state = 0")
}

func (st *steady) latencies() []time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	lat := slices.Clone(st.lat)
	slices.Sort(lat)
	return lat
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}
