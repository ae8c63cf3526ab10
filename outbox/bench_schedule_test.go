package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// stamps is a Publisher noting when each message id was published.
type stamps struct {
	mu sync.Mutex
	at map[string]time.Time
	ch chan struct{}
}

func newStamps() *stamps { return &stamps{at: map[string]time.Time{}, ch: make(chan struct{}, 1)} }

func (s *stamps) Publish(_ context.Context, batch []outbox.Message) error {
	now := time.Now()
	s.mu.Lock()
	for _, m := range batch {
		s.at[m.ID] = now
	}
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return nil
}

// wait waits until id was published and returns when.
func (s *stamps) wait(b *testing.B, id string) time.Time {
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		at, ok := s.at[id]
		s.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-s.ch:
		case <-deadline:
			b.Fatalf("%s was not published within 30s", id)
		}
	}
}

// BenchmarkTimerLatency schedules one message at a time, due 200 ms out,
// on an idle relay, and measures how late it was published after its due
// time ("scheduled"). Beside it, the same wait written by hand
// ("baseline"): a Go timer that enqueues the message at the due time, for
// the relay to publish at once. Reported: the median, the 99th percentile
// and the worst lateness, in milliseconds.
//
//	go test -run '^$' -bench TimerLatency -benchtime 20x ./outbox/
func BenchmarkTimerLatency(b *testing.B) {
	const ahead = 200 * time.Millisecond
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			ob := newOutbox(b, db.Store)
			pub := newStamps()
			r := runRelay(b, newRelay(b, db.Store, pub, outbox.RelayConfig{}))
			defer r.Stop()
			report := func(b *testing.B, late []time.Duration) {
				slices.Sort(late)
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
				b.ReportMetric(ms(late[len(late)/2]), "p50-ms")
				b.ReportMetric(ms(late[min(len(late)-1, len(late)*99/100)]), "p99-ms")
				b.ReportMetric(ms(late[len(late)-1]), "max-ms")
			}
			b.Run("scheduled", func(b *testing.B) {
				var late []time.Duration
				for i := 0; b.Loop(); i++ {
					m := outbox.Message{ID: fmt.Sprint(b.Name(), "-", i), Name: "timer", Key: "k", Payload: []byte("{}")}
					m.NotBefore = time.Now().Add(ahead)
					if err := ob.Enqueue(context.Background(), m); err != nil {
						b.Fatal(err)
					}
					at := pub.wait(b, m.ID)
					if at.Before(m.NotBefore) {
						b.Fatalf("published %v early", m.NotBefore.Sub(at))
					}
					late = append(late, at.Sub(m.NotBefore))
				}
				report(b, late)
			})
			b.Run("baseline", func(b *testing.B) {
				var late []time.Duration
				for i := 0; b.Loop(); i++ {
					m := outbox.Message{ID: fmt.Sprint(b.Name(), "-", i), Name: "timer", Key: "k", Payload: []byte("{}")}
					due := time.Now().Add(ahead)
					time.AfterFunc(time.Until(due), func() {
						if err := ob.Enqueue(context.Background(), m); err != nil {
							panic(err)
						}
					})
					late = append(late, pub.wait(b, m.ID).Sub(due))
				}
				report(b, late)
			})
		})
	}
}

// BenchmarkClaimWithScheduled measures what a backlog of timers costs the
// delivery of due messages: draining 1,000 pending rows from an outbox
// whose store also holds 1,000,000 messages scheduled for next year, over
// the same drain with no timers. Drains alternate between the two stores.
//
//	go test -run '^$' -bench ClaimWithScheduled -benchtime 1x -count 3 ./outbox/
func BenchmarkClaimWithScheduled(b *testing.B) {
	const pending, scheduled, rounds = 1000, 1000000, 15
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			busy, idle := testdb.Open(b, s), testdb.Open(b, s)
			testdb.FillScheduled(b, busy, scheduled, time.Now().AddDate(1, 0, 0))
			drain := func(db testdb.DB) time.Duration {
				testdb.FillOutbox(b, db, pending, 0)
				r := newRelay(b, db.Store, nopPublisher, outbox.RelayConfig{})
				start := time.Now()
				n, err := r.Drain(context.Background())
				took := time.Since(start)
				if err != nil || n != pending {
					b.Fatalf("Drain = %d, %v", n, err)
				}
				return took
			}
			for range b.N {
				var withTimers, without []time.Duration
				for range rounds {
					withTimers = append(withTimers, drain(busy))
					without = append(without, drain(idle))
				}
				slices.Sort(withTimers)
				slices.Sort(without)
				b.ReportMetric(float64(withTimers[rounds/2])/float64(without[rounds/2]), "ratio")
				b.ReportMetric(float64(withTimers[rounds/2])/float64(time.Millisecond), "timers-ms/drain")
				b.ReportMetric(float64(without[rounds/2])/float64(time.Millisecond), "none-ms/drain")
			}
		})
	}
}
