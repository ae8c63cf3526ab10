package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
)

// serving starts keel with args and waits for it to log that it serves
// the console, returning the console's address and the running command.
func serving(t *testing.T, args ...string) (string, *exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := keelCmd(context.Background(), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	logs := &strings.Builder{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var entry struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "keel: serving the console" {
				addr <- entry.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return a, cmd, logs
	case <-time.After(30 * time.Second):
		t.Fatalf("keel %s did not serve the console\n%s", strings.Join(args, " "), logs)
	}
	return "", nil, nil
}

// page fetches a console page and returns its status and body.
func page(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// parkOne enqueues a message and parks it with a relay whose publisher
// rejects it.
func parkOne(t *testing.T, db database, id, key string) {
	t.Helper()
	ob, err := outbox.New(db.st)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Enqueue(context.Background(), outbox.Message{ID: id, Key: key, Name: "order.paid", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	reject := outbox.PublisherFunc(func(context.Context, []outbox.Message) error {
		return fmt.Errorf("rejected: %w", outbox.ErrPermanent)
	})
	r, err := outbox.NewRelay(db.st, reject, outbox.RelayConfig{Logger: testdb.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConsoleCommand(t *testing.T) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) {
			testdb.Require(t, s)
			db := freshDatabase(t, s)
			// Not migrated: a clear error, exit 1.
			fails(t, 1, []string{"keel migrate"}, "console", "--dsn", db.dsn, "--http", "127.0.0.1:0")
			fails(t, 2, []string{"--http"}, "console", "--dsn", db.dsn)
			ok(t, "migrate", "--dsn", db.dsn)
			parkOne(t, db, "m-1", "order-7")

			addr, cmd, logs := serving(t, "console", "--dsn", db.dsn, "--http", "127.0.0.1:0", "--title", "cli test")
			code, body := page(t, "http://"+addr+"/")
			if code != http.StatusOK || !strings.Contains(body, "cli test") || !strings.Contains(body, `data-stat="parked"><a href="/parked">1</a>`) {
				t.Fatalf("GET /: %d\n%s", code, body)
			}
			code, body = page(t, "http://"+addr+"/parked")
			if code != http.StatusOK || !strings.Contains(body, `<tr data-key="order-7">`) || !strings.Contains(body, `data-action="requeue-key"`) {
				t.Fatalf("GET /parked: %d\n%s", code, body)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after SIGTERM: %v\n%s", err, logs)
			}

			addr, _, _ = serving(t, "console", "--dsn", db.dsn, "--http", "127.0.0.1:0", "--read-only")
			code, body = page(t, "http://"+addr+"/parked")
			if code != http.StatusOK || !strings.Contains(body, `<tr data-key="order-7">`) || strings.Contains(body, `data-action=`) || !strings.Contains(body, "read-only") {
				t.Fatalf("read-only GET /parked: %d\n%s", code, body)
			}
		})
	}
}

func TestRelayServesConsole(t *testing.T) {
	s := testdb.SQLiteModernc
	testdb.Require(t, s)
	db := freshDatabase(t, s)
	ok(t, "migrate", "--dsn", db.dsn)
	parkOne(t, db, "m-1", "order-7")
	_, broker := testkafka.Cluster(t, kfake.SeedTopics(1, "events"))
	addr, cmd, logs := serving(t, "relay", "--dsn", db.dsn, "--brokers", broker, "--topic", "events", "--id", "relay-with-console", "--console", "127.0.0.1:0")
	// The relay's own heartbeat shows on the console's overview.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := page(t, "http://"+addr+"/")
		if code == http.StatusOK && strings.Contains(body, `<tr data-relay="relay-with-console">`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console never showed the relay: %d\n%s\n%s", code, body, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, logs)
	}
}
