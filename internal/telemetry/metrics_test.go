package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

type counter struct {
	aggregate.Root
	N int `json:"n"`
}

type bumped struct{}

func (bumped) EventName() string { return "counter.bumped" }

func (c *counter) bump() { c.N++; c.Record(bumped{}) }

// collect reads every metric of the reader as name{attr=value,...} → value
// (sums and gauges) or → count (histograms).
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(name string, attrs attribute.Set) string {
		if e := attrs.Encoded(attribute.DefaultEncoder()); e != "" {
			return name + "{" + e + "}"
		}
		return name
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)+" count"] = float64(p.Count)
				}
			}
		}
	}
	return out
}

// TestMetrics runs a known workload and reads the metrics back through the
// SDK's manual reader: n messages delivered and m parked, k conflicts
// retried and one unit that gave up, a handler that failed.
func TestMetrics(t *testing.T) {
	const n, m, k = 7, 3, 2
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		db = testdb.Reopen(t, db.Setup, db.DSN, store.Options{MeterProvider: mp, Logger: testdb.Logger()})
		st := db.Store
		ctx := context.Background()
		runner, err := uow.New(st, uow.Config{Logger: testdb.Logger(), MaxAttempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		counters, err := repository.NewDocument(st, repository.DocumentConfig[*counter]{Type: "counter", New: func() *counter { return &counter{} }})
		if err != nil {
			t.Fatal(err)
		}

		// n + m units of one message each; the m messages named "poison"
		// fail for good.
		for i := range n + m {
			name := "ok"
			if i >= n {
				name = "poison"
			}
			if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				tx.Enqueue(outbox.Message{Name: name, Key: fmt.Sprint("key-", i), Payload: []byte(`{}`)})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		// One counter, created, then k units that each save a stale copy on
		// their first attempt: one conflict each, retried once.
		if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			c := &counter{}
			c.Init("counter", "c-1")
			return counters.Save(ctx, tx, c)
		}); err != nil {
			t.Fatal(err)
		}
		bump := func(c *counter) error {
			return runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				c.bump()
				return counters.Save(ctx, tx, c)
			})
		}
		for range k {
			stale, err := counters.Get(ctx, st.DB(), "c-1")
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := counters.Get(ctx, st.DB(), "c-1")
			if err != nil {
				t.Fatal(err)
			}
			if err := bump(fresh); err != nil {
				t.Fatal(err)
			}
			attempts := 0
			if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				attempts++
				c := stale
				if attempts > 1 {
					if c, err = counters.Get(ctx, tx, "c-1"); err != nil {
						return err
					}
				}
				c.bump()
				return counters.Save(ctx, tx, c)
			}); err != nil {
				t.Fatal(err)
			}
		}
		// A unit that conflicts on each of its 3 attempts and gives up.
		stale, err := counters.Get(ctx, st.DB(), "c-1")
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := counters.Get(ctx, st.DB(), "c-1")
		if err := bump(fresh); err != nil {
			t.Fatal(err)
		}
		err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			c := *stale
			c.bump()
			return counters.Save(ctx, tx, &c)
		})
		if !errors.Is(err, repository.ErrConflict) {
			t.Fatalf("the stale unit returned %v, want a conflict", err)
		}

		pub := outbox.PublisherFunc(func(_ context.Context, batch []outbox.Message) error {
			errs := make([]error, len(batch))
			failed := false
			for i, msg := range batch {
				if msg.Name == "poison" {
					errs[i], failed = fmt.Errorf("cannot publish %s: %w", msg.ID, outbox.ErrPermanent), true
				}
			}
			if failed {
				return &outbox.BatchError{Errs: errs}
			}
			return nil
		})
		relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{ID: "metrics-relay", Logger: testdb.Logger(), MaxPollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		relayAttr := "keel.relay.id=metrics-relay"
		outcome := func(o string) string { return "keel.relay.messages{keel.outcome=" + o + "," + relayAttr + "}" }
		// The outbox's counts change when a batch settles; the relay's
		// counters right after, when it reports the batch.
		var got map[string]float64
		testdb.Eventually(t, 20*time.Second, "the relay to deliver and park everything", func() bool {
			got = collect(t, reader)
			return got["keel.outbox.pending"] == 0 && got["keel.outbox.parked"] == m &&
				got[outcome("delivered")]+got[outcome("parked")] == n+m+2*k+1
		})
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// 1 + n + m units wrote messages, 1 created the counter, k bumped it
		// fresh and k more after a conflict, and 1 more fresh bump.
		want := map[string]float64{
			"keel.uow.committed":                           float64(n + m + 1 + 2*k + 1),
			"keel.uow.conflicts":                           float64(k + 3),
			"keel.uow.retries{keel.retry.reason=conflict}": float64(k + 2),
			"keel.uow.gave_up":                             1,
			outcome("delivered"):                           float64(n + 2*k + 1),
			outcome("parked"):                              m,
			"keel.outbox.pending":                          0,
			"keel.outbox.retrying":                         0,
			"keel.outbox.parked":                           m,
		}
		gotSome := map[string]float64{}
		for name := range want {
			gotSome[name] = got[name]
		}
		if diff := cmp.Diff(want, gotSome); diff != "" {
			t.Errorf("metrics (-want +got):\n%s\nall: %v", diff, got)
		}
		if got["keel.relay.batches{"+relayAttr+"}"] < 1 || got["keel.relay.batch.duration{"+relayAttr+"} count"] < 1 {
			t.Errorf("no batches recorded: %v", got)
		}
		for name := range got {
			if !strings.HasPrefix(name, "keel.") {
				t.Errorf("metric %q is not in keel's namespace", name)
			}
		}
	})
}
