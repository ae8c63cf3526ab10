package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// Run with, for example:
//
//	KEEL_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	KEEL_TEST_MYSQL='root@tcp(127.0.0.1:3306)/test' \
//	    go test -run '^$' -bench . -benchtime 1x ./outbox/
//
// Every benchmark runs once per setup (sqlite-mattn, sqlite-modernc,
// postgres-pq, postgres-pgx, mariadb); PostgreSQL setups skip when
// KEEL_TEST_POSTGRES is unset, MariaDB when KEEL_TEST_MYSQL is.

var nopPublisher = outbox.PublisherFunc(func(context.Context, []outbox.Message) error { return nil })

// BenchmarkDrain relays 100,000 prefilled rows to a publisher that does
// nothing, beside a hand-written database/sql loop doing the same work:
// select 1,000 pending rows in seq order, delete them by seq, commit.
func BenchmarkDrain(b *testing.B) {
	const rows = 100000
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			b.Run("relay", func(b *testing.B) {
				r := newRelay(b, db.Store, nopPublisher, outbox.RelayConfig{})
				var total time.Duration
				for range b.N {
					testdb.FillOutbox(b, db, rows, 0)
					start := time.Now()
					n, err := r.Drain(context.Background())
					total += time.Since(start)
					if err != nil || n != rows {
						b.Fatalf("Drain = %d, %v", n, err)
					}
				}
				b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
			})
			b.Run("baseline", func(b *testing.B) {
				var total time.Duration
				for range b.N {
					testdb.FillOutbox(b, db, rows, 0)
					start := time.Now()
					n := baselineDrain(b, db)
					total += time.Since(start)
					if n != rows {
						b.Fatalf("baseline drained %d", n)
					}
				}
				b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
			})
		})
	}
}

// baselineDrain drains the outbox with baselineBatch.
func baselineDrain(b *testing.B, db testdb.DB) int {
	total := 0
	for {
		n, err := baselineBatch(context.Background(), db, func([]outbox.Message) {})
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

// baselineBatch is the simplest correct loop body a person would write by
// hand, with no leases, ordering per key or failure handling: in one
// transaction, select up to 1,000 pending rows in seq order, publish them,
// delete them by seq and commit. It returns how many rows it handled.
func baselineBatch(ctx context.Context, db testdb.DB, publish func([]outbox.Message)) (int, error) {
	table := db.Table("outbox")
	sel := `SELECT seq, id, topic, partition_key, name, aggregate_type, aggregate_id, aggregate_version, payload, headers,
       correlation_id, causation_id, occurred_at, created_at, attempts
FROM ` + table + ` WHERE state = 0 ORDER BY seq LIMIT 1000`
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, sel)
	if err != nil {
		return 0, err
	}
	var msgs []outbox.Message
	var seqs []int64
	for rows.Next() {
		var m outbox.Message
		var headers string
		var occurred, created any
		if err := rows.Scan(&m.Seq, &m.ID, &m.Topic, &m.Key, &m.Name, &m.AggregateType, &m.AggregateID, &m.AggregateVersion,
			&m.Payload, &headers, &m.CorrelationID, &m.CausationID, &occurred, &created, &m.Attempts); err != nil {
			rows.Close()
			return 0, err
		}
		msgs = append(msgs, m)
		seqs = append(seqs, m.Seq)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	publish(msgs)
	del, args := baselineDelete(db, table, seqs)
	if _, err := tx.ExecContext(ctx, del, args...); err != nil {
		return 0, err
	}
	return len(seqs), tx.Commit()
}

// baselineDelete is the DELETE of baselineBatch. On PostgreSQL and SQLite
// the list travels as one parameter, as the relay's does. On MySQL a person
// writes the seqs as a plain IN list, one placeholder each: with the
// driver's interpolateParams it is one round trip, and the server reads an
// IN list of constants through the primary key, locking only those rows.
func baselineDelete(db testdb.DB, table string, seqs []int64) (string, []any) {
	switch {
	case db.Setup.IsPostgres():
		return "DELETE FROM " + table + " WHERE seq = ANY($1::bigint[])", []any{db.Dialect().Int64s(seqs)}
	case db.Setup.IsMySQL():
		args := make([]any, len(seqs))
		for i, seq := range seqs {
			args[i] = seq
		}
		return "DELETE FROM " + table + " WHERE seq IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", ") + ")", args
	}
	return "DELETE FROM " + table + " WHERE seq IN (SELECT value FROM json_each(?))", []any{db.Dialect().Int64s(seqs)}
}

// BenchmarkIdleLatency measures, for an idle consumer, the time from an
// enqueue's commit returning to the publisher being called: woken
// in-process by the store's own notification ("notify"), and on PostgreSQL
// across connections by the store's Listener ("listen"). The relay runs
// beside a baseline that waits on the same wake-up (a Store subscription)
// and then runs baselineBatch. Polling is set to an hour so only the
// wake-up can explain delivery.
func BenchmarkIdleLatency(b *testing.B) {
	for _, s := range testdb.Setups {
		wakes := []string{"notify"}
		if s.IsPostgres() {
			wakes = append(wakes, "listen")
		}
		for _, wake := range wakes {
			b.Run(s.Name+"/"+wake, func(b *testing.B) {
				prefix := "lat" + randomSuffix() + "_"
				base := testdb.Open(b, s, quietOptions(store.Options{TablePrefix: prefix, DisableNotify: wake == "notify"}))
				ob := newOutbox(b, base.Store)
				// enqueue commits a message and returns when the commit
				// returned; then it wakes this process's consumers, as a unit
				// of work does.
				enqueue := func() (time.Time, error) {
					ctx := context.Background()
					tx, err := base.SQL().BeginTx(ctx, nil)
					if err != nil {
						return time.Time{}, err
					}
					defer func() { _ = tx.Rollback() }()
					if err := ob.EnqueueTx(ctx, tx, outbox.Message{Name: "ping", Key: "k", Payload: []byte{}}); err != nil {
						return time.Time{}, err
					}
					if err := tx.Commit(); err != nil {
						return time.Time{}, err
					}
					committed := time.Now()
					base.Notify()
					return committed, nil
				}
				// consumer returns the store a consumer runs on: the
				// enqueuing store itself, or, to be woken by the Listener,
				// another handle as another process would have.
				consumer := func(b *testing.B) (testdb.DB, <-chan struct{}) {
					if wake == "notify" {
						ready := make(chan struct{})
						close(ready)
						return base, ready
					}
					return openListening(b, s, base.DSN, store.Options{TablePrefix: prefix})
				}
				b.Run("relay", func(b *testing.B) {
					db, ready := consumer(b)
					called := make(chan time.Time, 1)
					pub := outbox.PublisherFunc(func(context.Context, []outbox.Message) error {
						called <- time.Now()
						return nil
					})
					r := newRelay(b, db.Store, pub, outbox.RelayConfig{MinPollInterval: time.Hour, MaxPollInterval: time.Hour})
					run := runRelay(b, r)
					defer run.Stop()
					waitReady(b, ready)
					holdsAll(b, r)
					reportLatency(b, idleLatency(b, enqueue, called))
				})
				b.Run("baseline", func(b *testing.B) {
					db, ready := consumer(b)
					called := make(chan time.Time, 1)
					wakeUp, unsubscribe := db.Subscribe()
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan struct{})
					go func() {
						defer close(done)
						for {
							select {
							case <-ctx.Done():
								return
							case <-wakeUp:
							}
							for {
								n, err := baselineBatch(ctx, db, func([]outbox.Message) { called <- time.Now() })
								if err != nil && ctx.Err() == nil {
									b.Error(err)
								}
								if err != nil || n == 0 {
									break
								}
							}
						}
					}()
					defer func() { cancel(); <-done; unsubscribe() }()
					waitReady(b, ready)
					reportLatency(b, idleLatency(b, enqueue, called))
				})
			})
		}
	}
}

// idleLatency enqueues 300 messages per iteration, each after the consumer
// went idle again, and returns the delays from enqueue to publish.
func idleLatency(b *testing.B, enqueue func() (time.Time, error), called <-chan time.Time) []time.Duration {
	const samples = 300
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		for range samples {
			time.Sleep(2 * time.Millisecond) // idle again
			committed, err := enqueue()
			if err != nil {
				b.Fatal(err)
			}
			select {
			case at := <-called:
				lat = append(lat, at.Sub(committed))
			case <-time.After(10 * time.Second):
				b.Fatal("message not delivered")
			}
		}
	}
	b.StopTimer()
	return lat
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// BenchmarkClaimHistory compares the cost of claiming 1,000 pending rows
// from a table holding 1,000,000 delivered rows kept for retention with the
// cost from a table holding only the 1,000 pending rows. Claims alternate
// between the two tables and the medians are compared, so load from other
// processes on the machine falls on both alike.
func BenchmarkClaimHistory(b *testing.B) {
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			ctx := context.Background()
			small := testdb.Open(b, s)
			testdb.FillOutbox(b, small, 1000, 0)
			large := testdb.Open(b, s)
			testdb.FillOutbox(b, large, 1000000, 1)
			testdb.FillOutbox(b, large, 1000, 0)
			rs := newRelay(b, small.Store, nopPublisher, outbox.RelayConfig{})
			rl := newRelay(b, large.Store, nopPublisher, outbox.RelayConfig{})
			claim := func(r *outbox.Relay) time.Duration {
				start := time.Now()
				n, err := outbox.ClaimAll(ctx, r)
				if err != nil || n != 1000 {
					b.Fatalf("claim = %d, %v", n, err)
				}
				return time.Since(start)
			}
			for range 10 { // warm caches
				claim(rs)
				claim(rl)
			}
			b.ResetTimer()
			var ts, tl []time.Duration
			for range b.N {
				for range 200 {
					ts = append(ts, claim(rs))
					tl = append(tl, claim(rl))
				}
			}
			slices.Sort(ts)
			slices.Sort(tl)
			sm, l := ts[len(ts)/2], tl[len(tl)/2]
			b.ReportMetric(float64(sm)/1e6, "small-ms/claim")
			b.ReportMetric(float64(l)/1e6, "large-ms/claim")
			b.ReportMetric(float64(l)/float64(sm), "ratio")
		})
	}
}

// BenchmarkSlowKey relays 100,000 rows over 50,000 keys, one row in every
// 5,000 of them of a key whose publish takes 50ms per message (1s in all),
// all others instant, and reports the overall rate (msgs/s) and the rate at
// which the other keys' messages were published (others-msgs/s: their
// count over the time until the last of them was published).
// "pipelined" is a relay with the default two batches in flight;
// "sequential" is the same relay with MaxInFlight 1, where every batch
// holding a slow message makes the others wait, so the run takes the slow
// key's time plus the others'; "baseline" is baselineBatch in a loop with
// the same publisher. Pipelined, the run takes about the longer of the two.
func BenchmarkSlowKey(b *testing.B) {
	const (
		rows  = 100000
		every = 5000
		delay = 50 * time.Millisecond
	)
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			ob := newOutbox(b, db.Store)
			fill := func() {
				chunk := make([]outbox.Message, 0, 1000)
				for i := range rows {
					key := fmt.Sprintf("key-%05d", i%50000)
					if i%every == every/2 {
						key = "slow"
					}
					chunk = append(chunk, outbox.Message{Name: "bench.event", Key: key, AggregateVersion: int64(i), Payload: make([]byte, 100)})
					if len(chunk) == cap(chunk) {
						if err := ob.Enqueue(context.Background(), chunk...); err != nil {
							b.Fatal(err)
						}
						chunk = chunk[:0]
					}
				}
			}
			// run delivers the outbox through a publisher that sleeps on the
			// slow key, and returns when the others and all were published.
			run := func(b *testing.B, deliver func(pub outbox.Publisher) int) (others, all time.Duration) {
				var mu sync.Mutex
				fast := 0
				var start, lastFast time.Time
				pub := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
					n := 0
					for i := range batch {
						if batch[i].Key != "slow" {
							n++
							continue
						}
						select {
						case <-time.After(delay):
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					mu.Lock()
					if fast += n; fast == rows-rows/every {
						lastFast = time.Now()
					}
					mu.Unlock()
					return nil
				})
				start = time.Now()
				if n := deliver(pub); n != rows {
					b.Fatalf("delivered %d of %d", n, rows)
				}
				return lastFast.Sub(start), time.Since(start)
			}
			report := func(b *testing.B, others, all time.Duration) {
				b.ReportMetric(float64((rows-rows/every)*b.N)/others.Seconds(), "others-msgs/s")
				b.ReportMetric(float64(rows*b.N)/all.Seconds(), "msgs/s")
			}
			for _, mode := range []struct {
				name     string
				inFlight int
			}{{"pipelined", 0}, {"sequential", 1}} {
				b.Run(mode.name, func(b *testing.B) {
					var others, all time.Duration
					for range b.N {
						fill()
						o, a := run(b, func(pub outbox.Publisher) int {
							r := newRelay(b, db.Store, pub, outbox.RelayConfig{MaxInFlight: mode.inFlight})
							n, err := r.Drain(context.Background())
							if err != nil {
								b.Fatal(err)
							}
							return n
						})
						others, all = others+o, all+a
					}
					report(b, others, all)
				})
			}
			b.Run("baseline", func(b *testing.B) {
				var others, all time.Duration
				for range b.N {
					fill()
					o, a := run(b, func(pub outbox.Publisher) int {
						total := 0
						for {
							n, err := baselineBatch(context.Background(), db, func(msgs []outbox.Message) {
								_ = pub.Publish(context.Background(), msgs)
							})
							if err != nil {
								b.Fatal(err)
							}
							if n == 0 {
								return total
							}
							total += n
						}
					})
					others, all = others+o, all+a
				}
				report(b, others, all)
			})
		})
	}
}

// BenchmarkClaimPrepared compares the relay's claim of 1,000 rows from
// 100,000 pending ones run as a statement prepared once (as the relay runs
// it) and run from its text on every call (as it ran before). Claims
// alternate between the two and the medians are compared. pgx's
// database/sql driver caches prepared statements per connection by itself,
// so on postgres-pgx both are prepared; lib/pq prepares an unnamed
// statement on every call of the second kind, which PostgreSQL plans anew.
func BenchmarkClaimPrepared(b *testing.B) {
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			ctx := context.Background()
			db := testdb.Open(b, s)
			testdb.FillOutbox(b, db, 100000, 0)
			r := newRelay(b, db.Store, nopPublisher, outbox.RelayConfig{})
			query, args := outbox.ClaimStatement(r)
			st, err := db.SQL().PrepareContext(ctx, query)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			claim := func(run func() (*sql.Rows, error)) time.Duration {
				start := time.Now()
				rows, err := run()
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if err := rows.Close(); err != nil || n != 1000 {
					b.Fatalf("claim = %d, %v", n, err)
				}
				return time.Since(start)
			}
			prepared := func() (*sql.Rows, error) { return st.QueryContext(ctx, args...) }
			text := func() (*sql.Rows, error) { return db.SQL().QueryContext(ctx, query, args...) }
			for range 10 { // warm caches, and past PostgreSQL's five custom plans
				claim(prepared)
				claim(text)
			}
			b.ResetTimer()
			var tp, tt []time.Duration
			for range b.N {
				for i := range 200 {
					// Either goes first by turns: the second of a pair finds
					// the pages the first just read.
					if i%2 == 0 {
						tp = append(tp, claim(prepared))
						tt = append(tt, claim(text))
					} else {
						tt = append(tt, claim(text))
						tp = append(tp, claim(prepared))
					}
				}
			}
			slices.Sort(tp)
			slices.Sort(tt)
			p, t := tp[len(tp)/2], tt[len(tt)/2]
			b.ReportMetric(float64(p)/1e6, "prepared-ms/claim")
			b.ReportMetric(float64(t)/1e6, "text-ms/claim")
			b.ReportMetric(float64(t)/float64(p), "ratio")
		})
	}
}
