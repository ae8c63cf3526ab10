package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
)

const daemonRows = 50000

// daemon is a running "keel relay" process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   chan string // the /metrics address, from its log
	exited chan error
	logs   *strings.Builder
}

// startDaemon starts "keel relay" publishing to the kfake broker at broker.
// A short lease lets the next daemon take over soon after a SIGKILL; a
// long one gives a batch in flight at a SIGTERM time to finish (its
// publish timeout is a third of it) on a loaded machine.
func startDaemon(t *testing.T, dsn, broker, id string, lease time.Duration) *daemon {
	t.Helper()
	cmd := keelCmd(context.Background(), "relay", "--dsn", dsn, "--brokers", broker, "--topic", "events",
		"--http", "127.0.0.1:0", "--id", id, "--lease", lease.String(), "--batch-size", "500")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, addr: make(chan string, 1), exited: make(chan error, 1), logs: &strings.Builder{}}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		for line := range lines {
			d.logs.WriteString(line + "\n")
			var entry struct {
				Msg  string
				Addr string
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Addr != "" && strings.HasPrefix(entry.Msg, "keel: serving /metrics") {
				d.addr <- entry.Addr
			}
		}
		d.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return d
}

// metricsAddr waits for the daemon to say where it serves /metrics.
func (d *daemon) metricsAddr() string {
	d.t.Helper()
	select {
	case a := <-d.addr:
		return a
	case err := <-d.exited:
		d.t.Fatalf("relay exited early: %v\n%s", err, d.logs)
	case <-time.After(30 * time.Second):
		d.t.Fatalf("relay did not start serving\n%s", d.logs)
	}
	return ""
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case err := <-d.exited:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			d.t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		d.t.Fatalf("relay did not exit within %v\n%s", timeout, d.logs)
	}
	return -1
}

var sample = regexp.MustCompile(`(?m)^([a-z_]+)(\{[^}]*\})? (\S+)$`)

// series is one scrape: name{labels} → value.
type series map[string]float64

// sum adds the values of the series of metric name whose labels include
// every one of labels (such as `keel_outcome="delivered"`).
func (s series) sum(name string, labels ...string) float64 {
	total := 0.0
	for k, v := range s {
		n, ls, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(ls, l)
		}
		if match {
			total += v
		}
	}
	return total
}

// scrape reads /metrics over HTTP into name{labels} → value.
func scrape(t *testing.T, addr string) series {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	out := series{}
	for _, m := range sample.FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", m[0], err)
		}
		out[m[1]+m[2]] = v
	}
	return out
}

// waitDelivered scrapes until the daemon has delivered at least n messages
// and returns the last scrape.
func waitDelivered(t *testing.T, addr string, n float64) series {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := scrape(t, addr)
		if deliveredCount(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v after a minute, want %v", deliveredCount(m), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkTopic reads the topic and checks that every filled row was
// published at least once, and that each key's first deliveries came in
// outbox order.
func deliveredCount(m series) float64 {
	return m.sum("keel_relay_messages_total", `keel_outcome="delivered"`)
}

func checkTopic(t *testing.T, broker string) (dups int) {
	t.Helper()
	recs := testkafka.ReadTopic(t, broker, "events")
	seen := map[string]bool{}
	last := map[string]int{} // key → highest version seen first time
	for _, r := range recs {
		id, ok := testkafka.Header(r, kafka.HeaderMessageID)
		if !ok {
			t.Fatalf("record without %s", kafka.HeaderMessageID)
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		// FillOutbox numbers rows tag+i with aggregate_version i.
		v, err := strconv.Atoi(id[strings.LastIndex(id, "-")+1:])
		if err != nil {
			t.Fatalf("id %q", id)
		}
		if v < last[string(r.Key)] {
			t.Errorf("key %s: row %d published after row %d", r.Key, v, last[string(r.Key)])
		}
		last[string(r.Key)] = v
	}
	if len(seen) != daemonRows {
		t.Errorf("%d distinct messages on the topic, want %d", len(seen), daemonRows)
	}
	t.Logf("%d records, %d distinct messages, %d duplicates", len(recs), len(seen), dups)
	return dups
}

func pending(t testing.TB, ob *outbox.Outbox) int64 {
	t.Helper()
	s, err := ob.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Pending
}

// TestRelayDaemon drains 50,000 rows to kfake through "keel relay"
// processes: /metrics shows the drain progress; a SIGTERM mid-drain exits 0
// with the leases handed back and a second daemon finishes; a SIGKILL
// mid-drain loses nothing either, once its leases expire.
func TestRelayDaemon(t *testing.T) {
	for _, s := range []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPgx} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			t.Run(fmt.Sprintf("%s/%v", s.Name, sig), func(t *testing.T) {
				db := freshDatabase(t, s)
				if err := db.st.Migrate(context.Background()); err != nil {
					t.Fatal(err)
				}
				testdb.FillOutbox(t, db.db, daemonRows, 0)
				_, broker := testkafka.Cluster(t, kfake.SeedTopics(8, "events"))
				ob, err := outbox.New(db.st)
				if err != nil {
					t.Fatal(err)
				}

				lease := 15 * time.Second
				if sig == syscall.SIGKILL {
					lease = 3 * time.Second
				}
				first := startDaemon(t, db.dsn, broker, "first", lease)
				addr := first.metricsAddr()
				before := waitDelivered(t, addr, 1)
				after := waitDelivered(t, addr, 10000)
				if deliveredCount(after) <= deliveredCount(before) || after.sum("keel_relay_batches_total", `keel_relay_id="first"`) < 2 ||
					after.sum("keel_relay_partitions", `keel_relay_id="first"`) != 64 ||
					after.sum("keel_outbox_pending") >= before.sum("keel_outbox_pending") ||
					after.sum("keel_relay_batch_duration_seconds_count") < 2 {
					t.Errorf("/metrics shows no progress: before %v, after %v", before, after)
				}
				if err := first.cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				code := first.wait(30 * time.Second)
				left := pending(t, ob)
				if left == 0 {
					t.Fatalf("the drain ended before the %v; nothing left to test", sig)
				}
				leases, err := ob.Leases(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				held := 0
				for _, l := range leases {
					if l.Held(time.Now()) {
						held++
					}
				}
				if sig == syscall.SIGTERM {
					if code != 0 {
						t.Errorf("after SIGTERM the relay exited %d, want 0\n%s", code, first.logs)
					}
					if held != 0 {
						t.Errorf("after SIGTERM %d leases are still held", held)
					}
					if !strings.Contains(first.logs.String(), "leases are handed back") {
						t.Errorf("the relay did not log its exit:\n%s", first.logs)
					}
				}
				t.Logf("%v with %d of %d rows left; %d leases held after", sig, left, daemonRows, held)

				second := startDaemon(t, db.dsn, broker, "second", lease)
				second.metricsAddr()
				testdb.Eventually(t, 90*time.Second, "the second relay to finish the drain", func() bool { return pending(t, ob) == 0 })
				if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if code := second.wait(30 * time.Second); code != 0 {
					t.Errorf("second relay exited %d\n%s", code, second.logs)
				}
				dups := checkTopic(t, broker)
				if sig == syscall.SIGTERM && dups != 0 {
					t.Errorf("after SIGTERM %d messages were published twice; the batch in flight should have finished", dups)
				}
			})
		}
	}
}
