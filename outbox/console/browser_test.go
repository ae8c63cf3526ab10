package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/console"
	"github.com/keel-go/keel/uow"
)

// EnvBrowser set to "required" makes the browser test fail, rather than
// skip, when Chromium is missing or cannot start. CI sets it.
const EnvBrowser = "KEEL_TEST_BROWSER"

// EnvArtifacts names a directory for the browser test's screenshots. If
// unset, they go to the test's temporary directory and are logged.
const EnvArtifacts = "KEEL_TEST_ARTIFACTS"

// OrderPaid is the event the browser test delivers.
type OrderPaid struct {
	Order string `json:"order"`
	Step  int    `json:"step"`
}

func (OrderPaid) EventName() string { return "order.paid" }

// chromium finds the browser, or skips (fails, under EnvBrowser=required).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(EnvBrowser) == "required" {
		t.Fatalf("%s=required but no Chromium is installed; install Debian's chromium and chromium-driver packages", EnvBrowser)
	}
	t.Skipf("no Chromium on PATH; install Debian's chromium package, or set %s=required to make this a failure", EnvBrowser)
	return ""
}

// browser starts headless Chromium and returns a context that drives a tab
// in it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser, which lives as long as ctx: no
	// deadline on it (chromedp's rule), but a watchdog that fails the test.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Chromium (%s) did not start: %v", path, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("Chromium (%s) did not start within a minute", path)
	}
	return ctx
}

// do runs browser steps with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value, with a deadline.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestBrowserRequeueKey drives the console in headless Chromium: messages
// parked by a failing handler show up grouped by key; requeueing one key
// through the page (and its confirmation) gets that key's messages
// delivered in order, while the other parked key stays parked.
func TestBrowserRequeueKey(t *testing.T) {
	for _, s := range []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPgx} {
		t.Run(s.Name, func(t *testing.T) {
			testdb.Require(t, s)
			ctx := browser(t)
			db := testdb.Open(t, s)
			testBrowserRequeueKey(t, ctx, db)
		})
	}
}

func testBrowserRequeueKey(t *testing.T, bctx context.Context, db testdb.DB) {
	runner, err := uow.New(db.Store, uow.Config{Logger: testdb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	reg := aggregate.NewRegistry().MustRegister(OrderPaid{})
	router, err := dispatch.NewRouter(runner, reg, dispatch.RouterConfig{Logger: testdb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	// The ledger is down for orders 2 and 3: their first messages fail
	// and, with one attempt allowed, are parked; the later messages of
	// their keys wait behind them.
	var (
		down     sync.Map // order -> true while the ledger fails it
		mu       sync.Mutex
		ledger   = map[string][]int{} // order -> steps applied, in order
		failures atomic.Int32
	)
	down.Store("order-2", true)
	down.Store("order-3", true)
	dispatch.Handle(router, "ledger", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
		if _, ok := down.Load(e.Order); ok {
			failures.Add(1)
			return fmt.Errorf("ledger unavailable for %s (step %d): %w", e.Order, e.Step, errors.ErrUnsupported)
		}
		mu.Lock()
		ledger[e.Order] = append(ledger[e.Order], e.Step)
		mu.Unlock()
		return nil
	})
	steps := func(order string) []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ledger[order])
	}
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(db.Store, bus, outbox.RelayConfig{
		ID: "relay-browser", Logger: testdb.Logger(), LeaseDuration: 3 * time.Second,
		MaxAttempts: 1, MaxPollInterval: 200 * time.Millisecond, Retention: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	ob, err := outbox.New(db.Store)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for _, order := range []string{"order-1", "order-2", "order-3"} {
		for step := 1; step <= 3; step++ {
			msgs = append(msgs, outbox.Message{
				ID: fmt.Sprintf("%s-step-%d", order, step), Key: order, Name: "order.paid",
				Payload: fmt.Appendf(nil, `{"order":%q,"step":%d}`, order, step),
			})
		}
	}
	if err := ob.Enqueue(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	testdb.Eventually(t, 20*time.Second, "order-1 delivered and orders 2 and 3 parked", func() bool {
		s, err := ob.Stats(context.Background())
		return err == nil && s.Parked == 2 && len(steps("order-1")) == 3
	})

	con, err := console.New(db.Store, console.Options{Title: "browser test", Refresh: time.Second, Logger: testdb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", con))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base := srv.URL + "/ops"

	// The parked page groups the messages by key.
	do(t, bctx, "open the parked page",
		chromedp.Navigate(base+"/parked"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-key="order-2"]`)),
	)
	order2 := get(t, bctx, "read order-2's count", chromedp.Text(chromedp.CSS(`tr[data-key="order-2"] td[data-count]`)))
	order3 := get(t, bctx, "read order-3's count", chromedp.Text(chromedp.CSS(`tr[data-key="order-3"] td[data-count]`)))
	if order2 != "1" || order3 != "1" {
		t.Fatalf("parked by key: order-2 %q, order-3 %q; want 1 each", order2, order3)
	}

	// The ledger is back for order 2; requeue its key from the page.
	down.Delete("order-2")
	do(t, bctx, "requeue key order-2",
		chromedp.Click(chromedp.CSS(`tr[data-key="order-2"] button[data-action="requeue-key"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-action="confirm"]`)),
		chromedp.Click(chromedp.CSS(`button[data-action="confirm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-result="done"]`)),
	)
	result := get(t, bctx, "read the result", chromedp.Text(chromedp.CSS(`[data-result="done"]`)))
	if !strings.Contains(result, "Requeued 1 message of key order-2") {
		t.Fatalf("the requeue reported %q", result)
	}
	testdb.Eventually(t, 20*time.Second, "order-2 delivered", func() bool { return len(steps("order-2")) == 3 })
	if got := steps("order-2"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("order-2's steps applied as %v, want [1 2 3] in order", got)
	}
	if got := steps("order-3"); len(got) != 0 {
		t.Fatalf("order-3, still parked, had steps %v applied", got)
	}
	if rec, err := ob.Lookup(context.Background(), "order-3-step-1"); err != nil || rec.State != outbox.StateParked {
		t.Fatalf("order-3-step-1 is %v (%v), want still parked", rec.State, err)
	}

	// The overview refreshes itself and shows the relay; keep a
	// screenshot of it.
	do(t, bctx, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-relay="relay-browser"]`)),
	)
	get(t, bctx, "wait for the overview to refresh itself",
		chromedp.Poll[bool](`document.getElementById("refresh-status").textContent.startsWith("Updated")`, chromedp.WithPollingTimeout(10*time.Second)))
	parked := get(t, bctx, "read the parked count", chromedp.Text(chromedp.CSS(`[data-stat="parked"]`)))
	if strings.TrimSpace(parked) != "1" {
		t.Fatalf("the overview shows %q parked, want 1", parked)
	}
	shot := get(t, bctx, "take a screenshot", chromedp.FullScreenshot(100))
	dir := os.Getenv(EnvArtifacts)
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "console-overview-"+db.Setup.Name+".png")
	if err := os.WriteFile(name, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the overview: %s", name)
}
