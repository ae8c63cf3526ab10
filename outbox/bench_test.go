package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// Run with, for example:
//
//	KEEL_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	    go test -run '^$' -bench . -benchtime 1x ./outbox/
//
// PostgreSQL benchmarks skip when KEEL_TEST_POSTGRES is unset.

var nopPublisher = outbox.PublisherFunc(func(context.Context, []outbox.Message) error { return nil })

// BenchmarkDrain relays 100,000 prefilled rows to a publisher that does
// nothing, beside a hand-written database/sql loop doing the same work:
// select 1,000 pending rows in seq order, delete them by seq, commit.
func BenchmarkDrain(b *testing.B) {
	const rows = 100000
	for _, d := range testdb.Dialects {
		b.Run(d, func(b *testing.B) {
			db := testdb.Open(b, d)
			b.Run("relay", func(b *testing.B) {
				r := newRelay(b, db, nopPublisher, outbox.RelayConfig{})
				var total time.Duration
				for range b.N {
					testdb.FillOutbox(b, db, d, rows, 0)
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
					testdb.FillOutbox(b, db, d, rows, 0)
					start := time.Now()
					n := baselineDrain(b, db, d)
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

// baselineDrain is the simplest correct loop a person would write by hand,
// with no leases, ordering per key or failure handling.
func baselineDrain(b *testing.B, db *sql.DB, d string) int {
	ctx := context.Background()
	sel := `SELECT seq, id, topic, partition_key, name, aggregate_type, aggregate_id, aggregate_version, payload, headers,
       correlation_id, causation_id, occurred_at, created_at, attempts
FROM keel_outbox WHERE state = 0 ORDER BY seq LIMIT 1000`
	del := "DELETE FROM keel_outbox WHERE seq = ANY($1::bigint[])"
	if d == "sqlite" {
		del = "DELETE FROM keel_outbox WHERE seq IN (SELECT value FROM json_each(?))"
	}
	total := 0
	for {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		rows, err := tx.QueryContext(ctx, sel)
		if err != nil {
			b.Fatal(err)
		}
		var seqs []int64
		for rows.Next() {
			var m outbox.Message
			var key, headers string
			var occurred, created any
			if err := rows.Scan(&m.Seq, &m.ID, &m.Topic, &key, &m.Name, &m.AggregateType, &m.AggregateID, &m.AggregateVersion,
				&m.Payload, &headers, &m.CorrelationID, &m.CausationID, &occurred, &created, &m.Attempts); err != nil {
				b.Fatal(err)
			}
			seqs = append(seqs, m.Seq)
		}
		if err := rows.Close(); err != nil {
			b.Fatal(err)
		}
		if len(seqs) == 0 {
			_ = tx.Rollback()
			return total
		}
		var arg any = pq.Int64Array(seqs)
		if d == "sqlite" {
			js, _ := json.Marshal(seqs)
			arg = string(js)
		}
		if _, err := tx.ExecContext(ctx, del, arg); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		total += len(seqs)
	}
}

// BenchmarkIdleLatency measures, for an idle relay, the time from an
// enqueue's commit returning to the publisher being called: woken in-process
// by Notify, and on PostgreSQL across connections by LISTEN/NOTIFY. Polling
// is set to an hour so only the wake-up can explain delivery.
func BenchmarkIdleLatency(b *testing.B) {
	cases := []struct{ dialect, wake string }{{"sqlite", "notify"}, {"postgres", "notify"}, {"postgres", "listen"}}
	for _, c := range cases {
		b.Run(c.dialect+"/"+c.wake, func(b *testing.B) {
			prefix := "lat" + randomSuffix() + "_"
			db, dsn := openDSN(b, c.dialect, outbox.Config{TablePrefix: prefix})
			called := make(chan time.Time, 1)
			pub := outbox.PublisherFunc(func(context.Context, []outbox.Message) error {
				called <- time.Now()
				return nil
			})
			cfg := outbox.RelayConfig{TablePrefix: prefix, MinPollInterval: time.Hour, MaxPollInterval: time.Hour}
			enqueueDB := db
			if c.wake == "listen" {
				cfg.ListenDSN = dsn
				enqueueDB = openExisting(b, c.dialect, dsn) // as another process
			}
			r := newRelay(b, db, pub, cfg)
			runRelay(b, r)
			if c.wake == "listen" {
				select {
				case <-outbox.Listening(r):
				case <-time.After(10 * time.Second):
					b.Fatal("listener did not start")
				}
			}
			eventually(b, 10*time.Second, "leases", func() bool {
				s, _ := r.Stats(context.Background())
				return s.Partitions == outbox.Partitions
			})
			ob := newOutbox(b, enqueueDB, outbox.Config{TablePrefix: prefix, DisableNotify: c.wake != "listen"})
			const samples = 300
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				for range samples {
					time.Sleep(2 * time.Millisecond) // idle again
					if err := ob.Enqueue(context.Background(), outbox.Message{Name: "ping", Key: "k", Payload: []byte{}}); err != nil {
						b.Fatal(err)
					}
					committed := time.Now()
					if c.wake == "notify" {
						r.Notify()
					}
					select {
					case at := <-called:
						lat = append(lat, at.Sub(committed))
					case <-time.After(10 * time.Second):
						b.Fatal("message not delivered")
					}
				}
			}
			slices.Sort(lat)
			ms := func(q float64) float64 {
				return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
		})
	}
}

// BenchmarkClaimHistory compares the cost of claiming 1,000 pending rows
// from a table holding 1,000,000 delivered rows kept for retention with the
// cost from a table holding only the 1,000 pending rows. Claims alternate
// between the two tables and the medians are compared, so load from other
// processes on the machine falls on both alike.
func BenchmarkClaimHistory(b *testing.B) {
	for _, d := range testdb.Dialects {
		b.Run(d, func(b *testing.B) {
			ctx := context.Background()
			small := testdb.Open(b, d)
			testdb.FillOutbox(b, small, d, 1000, 0)
			large := testdb.Open(b, d)
			testdb.FillOutbox(b, large, d, 1000000, 1)
			testdb.FillOutbox(b, large, d, 1000, 0)
			rs := newRelay(b, small, nopPublisher, outbox.RelayConfig{})
			rl := newRelay(b, large, nopPublisher, outbox.RelayConfig{})
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
			s, l := ts[len(ts)/2], tl[len(tl)/2]
			b.ReportMetric(float64(s)/1e6, "small-ms/claim")
			b.ReportMetric(float64(l)/1e6, "large-ms/claim")
			b.ReportMetric(float64(l)/float64(s), "ratio")
		})
	}
}
