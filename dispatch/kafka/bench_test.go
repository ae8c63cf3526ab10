package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// Run with, for example:
//
//	KEEL_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	    go test -run '^$' -bench . -benchtime 3x ./dispatch/kafka/
//
// PostgreSQL benchmarks skip when KEEL_TEST_POSTGRES is unset. The broker is
// kfake in the same process, reached over loopback TCP, storing every
// record; it shares the machine's cores with the relay and the database.

const (
	benchRows       = 100000
	benchKeys       = 1000
	benchPartitions = 16
)

// BenchmarkDrainToKafka relays 100,000 prefilled outbox rows to Kafka
// through the Publisher, beside a hand-written loop doing the same work
// without keel: select 1,000 pending rows in seq order, write them with one
// kafka-go WriteMessages call (acks=all), delete them by seq, commit.
func BenchmarkDrainToKafka(b *testing.B) {
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			_, addr := cluster(b, kfake.SeedTopics(benchPartitions, "bench"))

			b.Run("relay", func(b *testing.B) {
				pub := newPublisher(b, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "bench"})
				r, err := outbox.NewRelay(db.Store, pub, outbox.RelayConfig{Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				var total time.Duration
				for range b.N {
					testdb.FillOutbox(b, db, benchRows, 0)
					start := time.Now()
					n, err := r.Drain(context.Background())
					total += time.Since(start)
					if err != nil || n != benchRows {
						b.Fatalf("Drain = %d, %v", n, err)
					}
				}
				b.ReportMetric(float64(benchRows*b.N)/total.Seconds(), "msgs/s")
			})

			b.Run("baseline", func(b *testing.B) {
				w := &kafkago.Writer{
					Addr: kafkago.TCP(addr), Topic: "bench", Balancer: kafkago.Murmur2Balancer{},
					RequiredAcks: kafkago.RequireAll, BatchSize: 1000, BatchTimeout: time.Millisecond,
				}
				defer w.Close()
				var total time.Duration
				for range b.N {
					testdb.FillOutbox(b, db, benchRows, 0)
					start := time.Now()
					n := baselineDrain(b, db, w)
					total += time.Since(start)
					if n != benchRows {
						b.Fatalf("baseline drained %d", n)
					}
				}
				b.ReportMetric(float64(benchRows*b.N)/total.Seconds(), "msgs/s")
			})
		})
	}
}

// BenchmarkPublish measures the Publisher alone: 100,000 messages in
// batches of 1,000, no database.
func BenchmarkPublish(b *testing.B) {
	_, addr := cluster(b, kfake.SeedTopics(benchPartitions, "bench"))
	pub := newPublisher(b, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "bench"})
	batch := make([]outbox.Message, 1000)
	for i := range batch {
		batch[i] = outbox.Message{
			ID: fmt.Sprintf("m-%d", i), Name: "bench.event", Key: fmt.Sprintf("key-%04d", i%benchKeys),
			AggregateVersion: int64(i), Payload: make([]byte, 100), OccurredAt: time.Now(),
		}
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for range benchRows / len(batch) {
			if err := pub.Publish(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/time.Since(start).Seconds(), "msgs/s")
}

// baselineDrain is the simplest correct loop a person would write by hand:
// no leases, no per-key holding, no failure handling beyond giving up.
func baselineDrain(b testing.TB, db testdb.DB, w *kafkago.Writer) int {
	ctx := context.Background()
	sel := `SELECT seq, id, partition_key, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id
FROM keel_outbox WHERE state = 0 ORDER BY seq LIMIT 1000`
	// Each dialect's list parameter, as a person would write it by hand.
	del := "DELETE FROM keel_outbox WHERE seq IN (SELECT value FROM json_each(?))"
	if db.Setup.IsPostgres() {
		del = "DELETE FROM keel_outbox WHERE seq = ANY($1::bigint[])"
	}
	total := 0
	for {
		tx, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		rows, err := tx.QueryContext(ctx, sel)
		if err != nil {
			b.Fatal(err)
		}
		var seqs []int64
		var recs []kafkago.Message
		for rows.Next() {
			var (
				seq                                           int64
				id, key, name, aggType, aggID, headers, c, ca string
				version                                       int64
				payload                                       []byte
			)
			if err := rows.Scan(&seq, &id, &key, &name, &aggType, &aggID, &version, &payload, &headers, &c, &ca); err != nil {
				b.Fatal(err)
			}
			seqs = append(seqs, seq)
			recs = append(recs, kafkago.Message{Key: []byte(key), Value: payload, Headers: []kafkago.Header{
				{Key: "message-id", Value: []byte(id)},
				{Key: "name", Value: []byte(name)},
				{Key: "aggregate-version", Value: []byte(strconv.FormatInt(version, 10))},
			}})
		}
		if err := rows.Close(); err != nil {
			b.Fatal(err)
		}
		if len(seqs) == 0 {
			_ = tx.Rollback()
			return total
		}
		if err := w.WriteMessages(ctx, recs...); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, del, db.Dialect().Int64s(seqs)); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		total += len(seqs)
	}
}
