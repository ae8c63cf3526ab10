package uow_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// BenchmarkCommit measures one command end to end: load an account, deposit
// into it, and commit the new state with one outbox event. The baseline
// sub-benchmark does the same statements by hand with database/sql (select,
// versioned update, outbox insert, commit) against the same tables, so the
// two figures of one run compare directly.
func BenchmarkCommit(b *testing.B) {
	for _, setup := range testdb.Setups {
		b.Run(setup.Name, func(b *testing.B) {
			db := testdb.Open(b, setup)
			bu := setupBench(b, db)
			b.Run("keel", func(b *testing.B) { depositLoop(b, bu) })
			if setup.IsPostgres() {
				// The same command without the commit-time NOTIFY that wakes
				// relays in other processes, to show what it costs: a second
				// store on the same database, with DisableNotify.
				quietDB := testdb.Reopen(b, setup, db.DSN, store.Options{DisableNotify: true, Logger: testdb.Logger()})
				quiet := bundleFor(b, quietDB)
				b.Run("keel-nonotify", func(b *testing.B) { depositLoop(b, quiet) })
			}
			// The same command with OpenTelemetry's SDK recording every span
			// (to an exporter that drops them) and every metric (into a
			// reader never collected): what tracing and metrics cost.
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
			// A second store over the same handle, so that both commit
			// through the same connections (and, on SQLite, the same page
			// caches).
			tracedStore, err := store.Open(db.SQL(), db.Dialect(), store.Options{TracerProvider: tp, MeterProvider: mp, Logger: testdb.Logger()})
			if err != nil {
				b.Fatal(err)
			}
			traced := bundleFor(b, testdb.DB{Store: tracedStore, Setup: db.Setup, DSN: db.DSN})
			b.Run("keel-otel", func(b *testing.B) { depositLoop(b, traced) })
			// Both in the same iterations: the ratio of their times.
			b.Run("otel-paired", func(b *testing.B) { pairedLoop(b, bu, traced, "otel/plain") })
			b.Run("baseline", func(b *testing.B) {
				base := newBaseline(db)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := base.deposit(ctx, db.SQL(), "bench-1", 1); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
		})
	}
}

// hotWriters is how many goroutines BenchmarkHotAggregate runs at once, all
// depositing into one account.
const hotWriters = 32

// BenchmarkHotAggregate measures deposits into one account from 32
// goroutines at once, a hot aggregate, reporting deposits/s:
//
//   - default: Do with a plain Get and the default Config, whose
//     LockAfterConflict policy reads optimistically first and locks the
//     account in the retry after a conflict;
//   - getforupdate: Do with GetForUpdate, which locks on every attempt, the
//     figure default is held to (at least 0.9x);
//   - neverlock: Do with a plain Get under NeverLock, optimistic on every
//     attempt, as before the policy existed; calls that run out of attempts
//     are counted (gaveup/op) rather than failing the benchmark;
//   - baseline: the same statements by hand with database/sql, the account
//     read with the dialect's FOR UPDATE, one attempt each.
//
// Run it with -benchtime 3200x for 32 writers making 100 deposits each. The
// handle opens hotWriters connections before the first variant and keeps
// them idle between deposits, so that no variant pays for connecting.
func BenchmarkHotAggregate(b *testing.B) {
	for _, setup := range testdb.Setups {
		b.Run(setup.Name, func(b *testing.B) {
			db := testdb.Open(b, setup)
			if setup.Driver == "pgx" {
				// pgxpool keeps at most four connections unless told
				// otherwise; give it one per writer, as the other drivers
				// have.
				u, err := url.Parse(db.DSN)
				if err != nil {
					b.Fatal(err)
				}
				q := u.Query()
				q.Set("pool_max_conns", strconv.Itoa(hotWriters))
				u.RawQuery = q.Encode()
				db = testdb.Reopen(b, setup, u.String())
			}
			warmPool(b, db.SQL(), hotWriters)
			def := bundleFor(b, db)
			never := bundleWith(b, db, uow.Config{Contention: uow.NeverLock})
			ctx := context.Background()
			for _, id := range []string{"hot-warmup", "hot-default", "hot-getforupdate", "hot-neverlock", "hot-baseline"} {
				if err := def.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
					return def.accounts.Save(ctx, tx, OpenAccount(id, "bench"))
				}); err != nil {
					b.Fatal(err)
				}
			}
			var runs atomic.Int64 // runs of fn, reported per deposit
			deposit := func(bu bundle, id string, get func(context.Context, repository.Querier, string) (*Account, error)) func() error {
				return func() error {
					return bu.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
						runs.Add(1)
						a, err := get(ctx, tx, id)
						if err != nil {
							return err
						}
						if err := a.Deposit(1); err != nil {
							return err
						}
						return bu.accounts.Save(ctx, tx, a)
					})
				}
			}
			// Warm every connection (schema, page cache, log) on another
			// account, so that the first variant measured does not pay for it.
			warm := deposit(def, "hot-warmup", def.accounts.GetForUpdate)
			var wg sync.WaitGroup
			for range hotWriters {
				wg.Go(func() {
					for range 10 {
						if err := warm(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.Run("default", func(b *testing.B) {
				runs.Store(0)
				runHot(b, deposit(def, "hot-default", def.accounts.Get), false)
				b.ReportMetric(float64(runs.Load())/float64(b.N), "runs/op")
			})
			b.Run("getforupdate", func(b *testing.B) {
				runs.Store(0)
				runHot(b, deposit(def, "hot-getforupdate", def.accounts.GetForUpdate), false)
				b.ReportMetric(float64(runs.Load())/float64(b.N), "runs/op")
			})
			b.Run("neverlock", func(b *testing.B) {
				runs.Store(0)
				runHot(b, deposit(never, "hot-neverlock", never.accounts.Get), true)
				b.ReportMetric(float64(runs.Load())/float64(b.N), "runs/op")
			})
			b.Run("baseline", func(b *testing.B) {
				base := newBaseline(db)
				base.load += db.Dialect().ForUpdate()
				runHot(b, func() error { return base.deposit(ctx, db.SQL(), "hot-baseline", 1) }, false)
			})
		})
	}
}

// warmPool opens n connections at once and keeps them idle in db's pool,
// so that the first sub-benchmark does not pay for opening them.
func warmPool(b *testing.B, db *sql.DB, n int) {
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.PingContext(context.Background()); err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Close()
	}
}

// depositLoop runs BenchmarkCommit's command through bu: load bench-1,
// deposit 1, save, commit.
func depositLoop(b *testing.B, bu bundle) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := depositOnce(ctx, bu); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// depositOnce runs BenchmarkCommit's command once through bu.
func depositOnce(ctx context.Context, bu bundle) error {
	return bu.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		a, err := bu.accounts.Get(ctx, tx, "bench-1")
		if err != nil {
			return err
		}
		if err := a.Deposit(1); err != nil {
			return err
		}
		return bu.accounts.Save(ctx, tx, a)
	})
}

// pairedLoop runs BenchmarkCommit's command through a and b in turn, each
// iteration once through each (which goes first alternates), and reports
// the time through b over the time through a: a ratio that changes in
// machine load and commit latency reach both sides of alike.
func pairedLoop(tb *testing.B, a, b bundle, metric string) {
	ctx := context.Background()
	var ta, tbTime time.Duration
	i := 0
	for tb.Loop() {
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		t0 := time.Now()
		if err := depositOnce(ctx, first); err != nil {
			tb.Fatal(err)
		}
		t1 := time.Now()
		if err := depositOnce(ctx, second); err != nil {
			tb.Fatal(err)
		}
		t2 := time.Now()
		if i%2 == 0 {
			ta, tbTime = ta+t1.Sub(t0), tbTime+t2.Sub(t1)
		} else {
			tbTime, ta = tbTime+t1.Sub(t0), ta+t2.Sub(t1)
		}
		i++
	}
	tb.ReportMetric(float64(tbTime)/float64(ta), metric)
}

// runHot makes b.N deposits from hotWriters goroutines and reports
// deposits/s. A failed deposit fails the benchmark unless giveUp is set, when
// failures that ran out of attempts on a conflict are counted instead.
func runHot(b *testing.B, deposit func() error, giveUp bool) {
	var next, gaveUp atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range hotWriters {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				err := deposit()
				switch {
				case err == nil:
				case giveUp && errors.Is(err, repository.ErrConflict):
					gaveUp.Add(1)
				default:
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deposits/s")
	if giveUp {
		b.ReportMetric(float64(gaveUp.Load())/float64(b.N), "gaveup/op")
	}
}

func setupBench(b *testing.B, db testdb.DB) bundle {
	bu := bundleFor(b, db)
	if err := bu.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
		return bu.accounts.Save(ctx, tx, OpenAccount("bench-1", "bench"))
	}); err != nil {
		b.Fatal(err)
	}
	return bu
}

// baseline is the hand-written database/sql version of one deposit.
type baseline struct {
	d                   store.Dialect
	load, update, event string
}

func newBaseline(db testdb.DB) baseline {
	d := db.Dialect()
	return baseline{
		d:      d,
		load:   d.Rebind("SELECT version, state FROM " + db.Table("aggregates") + " WHERE aggregate_type = ? AND aggregate_id = ?"),
		update: d.Rebind("UPDATE " + db.Table("aggregates") + " SET state = ?, version = ?, updated_at = ? WHERE aggregate_type = ? AND aggregate_id = ? AND version = ?"),
		event: d.Rebind("INSERT INTO " + db.Table("outbox") + " (id, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at, created_at) " +
			"VALUES (?, '', ?, ?, ?, 'account', ?, ?, ?, '', '', '', ?, ?)"),
	}
}

func (bl baseline) deposit(ctx context.Context, db *sql.DB, id string, amount int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int64
	var state []byte
	if err := tx.QueryRowContext(ctx, bl.load, "account", id).Scan(&version, &state); err != nil {
		return err
	}
	var acct struct {
		Owner   string `json:"owner"`
		Balance int64  `json:"balance"`
	}
	if err := json.Unmarshal(state, &acct); err != nil {
		return err
	}
	acct.Balance += amount
	now := time.Now().UTC()
	newState, err := json.Marshal(acct)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, bl.update, string(newState), version+1, bl.d.Time(now), "account", id, version)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("conflict")
	}
	payload, err := json.Marshal(Deposited{Amount: amount, At: now})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, bl.event, aggregate.NewMessageID(), id, outbox.PartitionOf(id), "account.deposited",
		id, version+1, payload, bl.d.Time(now), bl.d.Time(now)); err != nil {
		return err
	}
	return tx.Commit()
}
