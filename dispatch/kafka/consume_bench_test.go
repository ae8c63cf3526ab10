package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// BenchmarkConsumeWithInbox consumes 20,000 records from kfake into a
// Router whose one handler does nothing but has its inbox row, through a
// Consumer with BatchSize 500, beside a hand-written kafka-go loop doing
// the same work without keel: fetch the records the reader holds, up to
// 500, insert their inbox rows in one statement skipping those present,
// commit, then commit the offsets. Each run uses a new consumer group and
// ends when the inbox holds every record.
//
//	go test -run '^$' -bench BenchmarkConsumeWithInbox -benchtime 1x ./dispatch/kafka/
func BenchmarkConsumeWithInbox(b *testing.B) {
	const records, batch = 20000, 500
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			_, addr := cluster(b, kfake.SeedTopics(benchPartitions, "bench"))
			pub := newPublisher(b, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "bench"})
			msgs := make([]outbox.Message, records)
			for i := range msgs {
				msgs[i] = msg(fmt.Sprintf("k%d", i%benchKeys), int64(i/benchKeys+1))
			}
			for start := 0; start < records; start += 1000 {
				if err := pub.Publish(context.Background(), msgs[start:start+1000]); err != nil {
					b.Fatal(err)
				}
			}
			inbox := db.Table("inbox")
			group := 0
			// drained waits until the inbox holds every record of handler.
			drained := func(handler string) {
				for testdb.Count(b, db, "SELECT COUNT(*) FROM "+inbox+" WHERE handler = ?", handler) < records {
					time.Sleep(5 * time.Millisecond)
				}
			}

			b.Run("consumer", func(b *testing.B) {
				var total time.Duration
				for range b.N {
					group++
					handler := fmt.Sprint("noop-", group)
					runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(testEvent{}), dispatch.RouterConfig{Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					dispatch.Handle(router, handler, func(context.Context, *uow.Tx, testEvent) error { return nil })
					c := newConsumer(b, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: fmt.Sprint("g", group), Topics: []string{"bench"}, BatchSize: batch}, router)
					start := time.Now()
					stop := runConsumer(b, c)
					drained(handler)
					total += time.Since(start)
					stop()
				}
				b.ReportMetric(float64(records*b.N)/total.Seconds(), "msgs/s")
			})
			b.Run("baseline", func(b *testing.B) {
				var total time.Duration
				for range b.N {
					group++
					handler := fmt.Sprint("noop-", group)
					ctx, cancel := context.WithCancel(context.Background())
					r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, GroupID: fmt.Sprint("g", group), GroupTopics: []string{"bench"},
						StartOffset: kafkago.FirstOffset, MaxWait: 50 * time.Millisecond, QueueCapacity: batch})
					done := make(chan error, 1)
					start := time.Now()
					go func() { done <- baselineConsume(ctx, db, r, handler, batch) }()
					drained(handler)
					total += time.Since(start)
					cancel()
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					r.Close()
				}
				b.ReportMetric(float64(records*b.N)/total.Seconds(), "msgs/s")
			})
		})
	}
}

// baselineConsume is the loop a person would write by hand: fetch one
// record, then those the reader already holds, up to size; insert their
// inbox rows in one statement, skipping those present; commit; commit the
// offsets. It returns nil when ctx ends.
func baselineConsume(ctx context.Context, db testdb.DB, r *kafkago.Reader, handler string, size int) error {
	d := db.Dialect()
	inbox := db.Table("inbox")
	for {
		km, err := r.FetchMessage(ctx)
		if err != nil {
			return nil
		}
		batch := []kafkago.Message{km}
		for len(batch) < size {
			fctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			km, err := r.FetchMessage(fctx)
			cancel()
			if err != nil {
				break
			}
			batch = append(batch, km)
		}
		ids := make([]string, len(batch))
		for i, km := range batch {
			ids[i] = kafka.FromRecord(km).ID
		}
		now := d.Time(time.Now())
		var query string
		var args []any
		switch {
		case db.Setup.IsPostgres():
			query, args = "INSERT INTO "+inbox+" (handler, message_id, processed_at) SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING", []any{handler, d.Strings(ids), now}
		case db.Setup.IsMySQL():
			query = "INSERT IGNORE INTO " + inbox + " (handler, message_id, processed_at) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(ids)), ", ")
			for _, id := range ids {
				args = append(args, handler, id, now)
			}
		default:
			query, args = "INSERT INTO "+inbox+" (handler, message_id, processed_at) SELECT ?, value, ? FROM json_each(?) WHERE true ON CONFLICT DO NOTHING", []any{handler, now, d.Strings(ids)}
		}
		tx, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			return nil
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			_ = tx.Rollback()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := tx.Commit(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := r.CommitMessages(ctx, batch...); err != nil && ctx.Err() == nil {
			return err
		}
	}
}
