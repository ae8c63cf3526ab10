package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
)

// BenchmarkDaemonDrain drains 100,000 prefilled rows to kfake through a
// "keel relay" process ("daemon", timed from starting the process to the
// outbox being empty) beside a relay in the benchmark's own process with
// the same Publisher settings ("in-process", timed from Run to the outbox
// being empty), each on a fresh database and topic.
//
//	go test -run '^$' -bench DaemonDrain -benchtime 1x -count 3 ./cmd/keel/
func BenchmarkDaemonDrain(b *testing.B) {
	const rows = 100000
	for _, s := range []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPgx} {
		b.Run(s.Name, func(b *testing.B) {
			drain := func(b *testing.B, start func(db database, broker string) (stop func())) {
				var total time.Duration
				for range b.N {
					b.StopTimer()
					db := openDatabase(b, s)
					if err := db.st.Migrate(context.Background()); err != nil {
						b.Fatal(err)
					}
					testdb.FillOutbox(b, db.db, rows, 0)
					_, broker := testkafka.Cluster(b, kfake.SeedTopics(8, "events"))
					ob, err := outbox.New(db.st)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					t0 := time.Now()
					stop := start(db, broker)
					for pending(b, ob) > 0 {
						time.Sleep(2 * time.Millisecond)
					}
					total += time.Since(t0)
					b.StopTimer()
					stop()
				}
				b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
			}
			b.Run("daemon", func(b *testing.B) {
				drain(b, func(db database, broker string) func() {
					cmd := keelCmd(context.Background(), "relay", "--dsn", db.dsn, "--brokers", broker, "--topic", "events", "--log-level", "error")
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					return func() {
						_ = cmd.Process.Signal(syscall.SIGTERM)
						_ = cmd.Wait()
					}
				})
			})
			b.Run("in-process", func(b *testing.B) {
				drain(b, func(db database, broker string) func() {
					pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{broker}, Topic: "events"})
					if err != nil {
						b.Fatal(err)
					}
					r, err := outbox.NewRelay(db.st, pub, outbox.RelayConfig{Logger: testdb.Logger()})
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan struct{})
					go func() { defer close(done); _ = r.Run(ctx) }()
					return func() { cancel(); <-done; pub.Close() }
				})
			})
		})
	}
}
