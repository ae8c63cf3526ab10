package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// BenchmarkDrainToBus drains 100,000 outbox rows through the in-process
// path: a relay hands batches of 1,000 to a Bus with its defaults, which
// runs one handler that does nothing, with its inbox row. Beside it runs a
// hand-written database/sql loop doing the same work with nothing keel
// adds: in one transaction, select 1,000 pending rows in seq order, decode
// their payloads, insert their inbox rows in one statement skipping those
// present, delete the rows by seq, commit.
//
//	go test -run '^$' -bench BenchmarkDrainToBus -benchtime 1x ./dispatch/
func BenchmarkDrainToBus(b *testing.B) {
	const rows, keys = 100000, 1000
	for _, s := range testdb.Setups {
		b.Run(s.Name, func(b *testing.B) {
			db := testdb.Open(b, s)
			idleConns(db)
			bd := setup(b, db)
			dispatch.Handle(bd.router, "bench", func(context.Context, *uow.Tx, OrderPaid) error { return nil })
			bus, err := dispatch.NewBus(bd.router, dispatch.BusConfig{})
			if err != nil {
				b.Fatal(err)
			}
			relay, err := outbox.NewRelay(db.Store, bus, outbox.RelayConfig{Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			inboxRows := func() int { return testdb.Count(b, db, "SELECT COUNT(*) FROM "+db.Table("inbox")) }

			b.Run("bus", func(b *testing.B) {
				var total time.Duration
				for range b.N {
					before := inboxRows()
					fillPaid(b, bd, rows, keys)
					start := time.Now()
					n, err := relay.Drain(ctx)
					total += time.Since(start)
					if err != nil || n != rows {
						b.Fatalf("Drain = %d, %v", n, err)
					}
					if got := inboxRows() - before; got != rows {
						b.Fatalf("inbox rows written = %d, want %d", got, rows)
					}
				}
				b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
			})
			b.Run("baseline", func(b *testing.B) {
				var total time.Duration
				for range b.N {
					before := inboxRows()
					fillPaid(b, bd, rows, keys)
					start := time.Now()
					n := 0
					for {
						k, err := baselineInboxBatch(ctx, db)
						if err != nil {
							b.Fatal(err)
						}
						if k == 0 {
							break
						}
						n += k
					}
					total += time.Since(start)
					if n != rows {
						b.Fatalf("baseline drained %d", n)
					}
					if got := inboxRows() - before; got != rows {
						b.Fatalf("inbox rows written = %d, want %d", got, rows)
					}
				}
				b.ReportMetric(float64(rows*b.N)/total.Seconds(), "msgs/s")
			})
		})
	}
}

// fillPaid enqueues n order.paid messages over keys partition keys, in
// transactions of 10,000.
func fillPaid(b *testing.B, bd bundle, n, keys int) {
	b.Helper()
	ctx := context.Background()
	ob := bd.runner.Outbox()
	for start := 0; start < n; start += 10000 {
		msgs := make([]outbox.Message, min(10000, n-start))
		for i := range msgs {
			k := (start + i) % keys
			payload, _ := json.Marshal(OrderPaid{Order: fmt.Sprint("o-", start+i), Customer: fmt.Sprint("cust-", k), Amount: 1000})
			msgs[i] = outbox.Message{ID: aggregate.NewMessageID(), Name: "order.paid", Key: fmt.Sprintf("key-%04d", k), Payload: payload}
		}
		tx, err := bd.db.SQL().BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ob.EnqueueTx(ctx, tx, msgs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// baselineInboxBatch is the loop body a person would write by hand for a
// batched inbox, with no leases, per-key order, savepoints or failure
// handling. It returns how many rows it handled.
func baselineInboxBatch(ctx context.Context, db testdb.DB) (int, error) {
	outboxTable, inbox := db.Table("outbox"), db.Table("inbox")
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT seq, id, topic, partition_key, name, aggregate_type, aggregate_id, aggregate_version, payload, headers,
       correlation_id, causation_id, occurred_at, created_at, attempts
FROM `+outboxTable+` WHERE state = 0 ORDER BY seq LIMIT 1000`)
	if err != nil {
		return 0, err
	}
	var seqs []int64
	var ids []string
	for rows.Next() {
		var m outbox.Message
		var headers string
		var occurred, created any
		if err := rows.Scan(&m.Seq, &m.ID, &m.Topic, &m.Key, &m.Name, &m.AggregateType, &m.AggregateID, &m.AggregateVersion,
			&m.Payload, &headers, &m.CorrelationID, &m.CausationID, &occurred, &created, &m.Attempts); err != nil {
			rows.Close()
			return 0, err
		}
		var e OrderPaid
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			rows.Close()
			return 0, err
		}
		seqs = append(seqs, m.Seq)
		ids = append(ids, m.ID)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	d := db.Dialect()
	now := d.Time(time.Now())
	var stmts []struct {
		q    string
		args []any
	}
	add := func(q string, args ...any) {
		stmts = append(stmts, struct {
			q    string
			args []any
		}{q, args})
	}
	switch {
	case db.Setup.IsPostgres():
		add("INSERT INTO "+inbox+" (handler, message_id, processed_at) SELECT 'bench', unnest($1::text[]), $2 ON CONFLICT DO NOTHING", d.Strings(ids), now)
		add("DELETE FROM "+outboxTable+" WHERE seq = ANY($1::bigint[])", d.Int64s(seqs))
	case db.Setup.IsMySQL():
		ins, del := make([]any, 0, 3*len(ids)), make([]any, len(seqs))
		for i, id := range ids {
			ins = append(ins, "bench", id, now)
			del[i] = seqs[i]
		}
		add("INSERT IGNORE INTO "+inbox+" (handler, message_id, processed_at) VALUES "+strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(ids)), ", "), ins...)
		add("DELETE FROM "+outboxTable+" WHERE seq IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", ")+")", del...)
	default:
		add("INSERT INTO "+inbox+" (handler, message_id, processed_at) SELECT 'bench', value, ? FROM json_each(?) WHERE true ON CONFLICT DO NOTHING", now, d.Strings(ids))
		add("DELETE FROM "+outboxTable+" WHERE seq IN (SELECT value FROM json_each(?))", d.Int64s(seqs))
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			return 0, err
		}
	}
	return len(seqs), tx.Commit()
}

// idleConns lets the handle keep a connection per bus worker, except over
// a pgxpool: connections database/sql keeps idle stay taken from the pool,
// and workers waiting inside the pool for one would wait for ever.
func idleConns(db testdb.DB) {
	if db.Setup.Driver != "pgx" {
		db.SQL().SetMaxIdleConns(16)
	}
}
