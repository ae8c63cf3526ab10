package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// BenchmarkDeliver measures messages per second through a Bus to one
// trivial handler (one INSERT) with its inbox row, against a hand-written
// database/sql loop doing the same work per message: BEGIN, INSERT the
// inbox row ON CONFLICT DO NOTHING, INSERT the effect, COMMIT. Messages
// spread over 16 partition keys and go out in batches of 500, as a relay
// would send them.
//
//	KEEL_TEST_POSTGRES=postgres://... go test -run '^$' -bench Deliver ./dispatch/
func BenchmarkDeliver(b *testing.B) {
	const keys, batchSize = 16, 500
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			b.Run("sql-baseline", func(b *testing.B) {
				db := benchDB(b, s)
				d := db.Dialect()
				insertInbox := d.Rebind("INSERT INTO keel_inbox (handler, message_id, processed_at) VALUES (?, ?, ?) ON CONFLICT (handler, message_id) DO NOTHING")
				insertEffect := d.Rebind("INSERT INTO effects (handler, message_id, note) VALUES (?, ?, ?)")
				now := func() any { return d.Time(time.Now()) }
				msgs := benchMessages(b, b.N, keys)
				ctx := context.Background()
				b.ResetTimer()
				for i := range msgs {
					m := &msgs[i]
					tx, err := db.SQL().BeginTx(ctx, nil)
					if err != nil {
						b.Fatal(err)
					}
					res, err := tx.ExecContext(ctx, insertInbox, "effect", m.ID, now())
					if err != nil {
						b.Fatal(err)
					}
					if n, _ := res.RowsAffected(); n == 1 {
						if _, err := tx.ExecContext(ctx, insertEffect, "effect", m.ID, ""); err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})

			// Concurrency 0 is the dialect's default.
			for _, conc := range []int{1, 0, 8} {
				label := fmt.Sprint(conc)
				if conc == 0 {
					label = fmt.Sprintf("default(%d)", s.StoreDialect().Writers())
				}
				b.Run("bus-concurrency-"+label, func(b *testing.B) {
					db := benchDB(b, s)
					bd := benchBundle(b, db)
					dispatch.Handle(bd.router, "effect", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
						return bd.effect(ctx, tx, "effect", "")
					})
					bus, err := dispatch.NewBus(bd.router, dispatch.BusConfig{Concurrency: conc})
					if err != nil {
						b.Fatal(err)
					}
					msgs := benchMessages(b, b.N, keys)
					ctx := context.Background()
					b.ResetTimer()
					for start := 0; start < len(msgs); start += batchSize {
						if err := bus.Publish(ctx, msgs[start:min(start+batchSize, len(msgs))]); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
					b.StopTimer()
					if got := testdb.Count(b, db, "SELECT COUNT(*) FROM effects"); got != b.N {
						b.Fatalf("effects = %d, want %d", got, b.N)
					}
				})
			}
		})
	}
}

// benchDB opens a fresh migrated database with an effects table, and
// allows enough connections for the bus's workers.
func benchDB(b *testing.B, s testdb.Setup) testdb.DB {
	b.Helper()
	db := testdb.Open(b, s)
	if _, err := db.SQL().Exec("CREATE TABLE effects (handler TEXT NOT NULL, message_id TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')"); err != nil {
		b.Fatal(err)
	}
	idleConns(db)
	return db
}

// benchBundle is setup for a database that already has its effects table.
func benchBundle(b *testing.B, db testdb.DB) bundle {
	b.Helper()
	if _, err := db.SQL().Exec("DROP TABLE effects"); err != nil {
		b.Fatal(err)
	}
	return setup(b, db)
}

func benchMessages(b *testing.B, n, keys int) []outbox.Message {
	b.Helper()
	payload := []byte(`{"order":"o-1","customer":"c-1","amount":1000}`)
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{
			ID:      aggregate.NewMessageID(),
			Name:    "order.paid",
			Key:     fmt.Sprintf("key-%d", i%keys),
			Payload: payload,
		}
	}
	return msgs
}
