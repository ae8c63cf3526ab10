package outbox_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// The kill test runs relays as child processes (this test binary, re-run
// with -test.run=TestRelayKillChild) feeding a consumer that applies each
// message in a database transaction with an inbox row, and SIGKILLs one of
// them mid-drain. Children stop once every message has taken effect.
const (
	envKillSetup = "KEEL_KILL_CHILD_SETUP"
	envKillDSN   = "KEEL_KILL_CHILD_DSN"
	envKillLog   = "KEEL_KILL_CHILD_LOG"
	envKillID    = "KEEL_KILL_CHILD_ID"
	killBatch    = 500
	killKeys     = 200
	killPerKey   = 100
)

func TestRelayKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	eachSetupAlone(t, func(t *testing.T, s testdb.Setup) {
		db := testdb.Open(t, s)
		if _, err := db.SQL().Exec(`CREATE TABLE kill_effects (message_id TEXT NOT NULL, k TEXT NOT NULL, v BIGINT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		received := filepath.Join(dir, "received.log")

		var children []*exec.Cmd
		start := func(id string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRelayKillChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), envKillSetup+"="+s.Name, envKillDSN+"="+db.DSN, envKillLog+"="+received, envKillID+"="+id)
			out, err := os.Create(filepath.Join(dir, id+".out"))
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			children = append(children, cmd)
			return cmd
		}
		t.Cleanup(func() {
			for _, c := range children {
				_ = c.Process.Kill()
			}
			if t.Failed() {
				for _, c := range children {
					id := strings.TrimPrefix(c.Env[len(c.Env)-1], envKillID+"=")
					b, _ := os.ReadFile(filepath.Join(dir, id+".out"))
					t.Logf("output of %s:\n%s", id, b)
				}
			}
		})
		effects := func() int { return testdb.Count(t, db, "SELECT COUNT(*) FROM kill_effects") }

		// Two relay processes split the partitions, then share the work;
		// one is killed mid-drain.
		victim := start("relay-a")
		survivor := start("relay-b")
		testdb.Eventually(t, 30*time.Second, "two relay processes to hold 32 partitions each", func() bool {
			return testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-a'") == 32 &&
				testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox_leases WHERE owner = 'relay-b'") == 32
		})
		// One transaction, so the drain starts from a full outbox.
		var msgs []outbox.Message
		for v := 1; v <= killPerKey; v++ {
			for k := 0; k < killKeys; k++ {
				msgs = append(msgs, outbox.Message{Name: "kill", Key: keyName(k), AggregateVersion: int64(v), Payload: []byte{}})
			}
		}
		if err := newOutbox(t, db.Store).Enqueue(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		// Kill mid-drain, once both relays have delivered.
		testdb.Eventually(t, 120*time.Second, "3,000 effects, some of them relay-a's, before the kill", func() bool {
			if effects() < 3000 {
				return false
			}
			b, err := os.ReadFile(received)
			return err == nil && bytes.Contains(b, []byte(" relay-a\n"))
		})
		if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = victim.Wait()
		atKill := effects()
		if atKill >= len(msgs) {
			t.Fatalf("all %d messages were applied before the kill; the test did not kill mid-drain", atKill)
		}
		t.Logf("killed relay-a with %d of %d messages applied", atKill, len(msgs))
		restarted := start("relay-a2")
		for _, c := range []*exec.Cmd{survivor, restarted} {
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("relay process: %v", err)
				}
			case <-time.After(180 * time.Second):
				t.Fatal("relay process did not finish")
			}
		}

		// Every message arrived, first arrivals in order per key, few duplicates.
		ids := map[string]outbox.Message{}
		for _, m := range msgs {
			ids[m.ID] = m
		}
		f, err := os.Open(received)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var got []outbox.Message
		byRelay := map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 4 {
				continue // a line torn by the kill
			}
			v, err := strconv.ParseInt(fields[1], 10, 64)
			m, known := ids[fields[2]]
			if err != nil || !known || m.Key != fields[0] || m.AggregateVersion != v {
				continue
			}
			got = append(got, m)
			byRelay[fields[3]]++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		arrived := map[string]bool{}
		for _, m := range got {
			arrived[m.ID] = true
		}
		if len(arrived) != len(msgs) {
			t.Fatalf("%d of %d messages arrived", len(arrived), len(msgs))
		}
		dups := checkOrder(t, got)
		t.Logf("%d arrivals, %d duplicates; arrivals per relay: %v", len(got), dups, byRelay)
		if byRelay["relay-a"] == 0 || byRelay["relay-b"] == 0 {
			t.Fatalf("arrivals per relay %v: both processes should have delivered before the kill", byRelay)
		}
		// A crash may cost the batches the killed relay had in flight: two,
		// with the default MaxInFlight.
		if dups > outbox.DefaultMaxInFlight*killBatch {
			t.Fatalf("%d duplicates; at most the batches in flight (%d × %d) may be redelivered after one crash", dups, outbox.DefaultMaxInFlight, killBatch)
		}
		// The inbox made the effects exactly once.
		if n, distinct := effects(), testdb.Count(t, db, "SELECT COUNT(DISTINCT message_id) FROM kill_effects"); n != len(msgs) || distinct != len(msgs) {
			t.Fatalf("%d effects (%d distinct); want exactly %d", n, distinct, len(msgs))
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 0 {
			t.Fatalf("%d outbox rows left", n)
		}
	})
}

// TestRelayKillChild is the relay process of TestRelayKill; it skips unless
// started by it. It runs a relay until every message has taken effect and
// the outbox is empty.
func TestRelayKillChild(t *testing.T) {
	name := os.Getenv(envKillSetup)
	if name == "" {
		t.Skip("child process of TestRelayKill")
	}
	s, err := testdb.SetupNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	db := testdb.Reopen(t, s, os.Getenv(envKillDSN)) // on PostgreSQL, with the setup's Listener
	logFile, err := os.OpenFile(os.Getenv(envKillLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c := &killConsumer{db: db, log: logFile, id: os.Getenv(envKillID)}
	// The pure-Go SQLite runs an order of magnitude slower under the race
	// detector; on a loaded machine its relays would wait past a short lease
	// for the write lock and lose it mid-batch, publishing that batch twice,
	// which this test would count against the one batch a kill may cost.
	lease := 4 * time.Second
	if s == testdb.SQLiteModernc {
		// Two batches in flight per relay double the writers queueing for
		// SQLite's lock beside the consumer's own transactions.
		lease = 12 * time.Second
	}
	cfg := outbox.RelayConfig{
		// Polling at least every 50ms: on SQLite and MySQL nothing wakes a
		// relay in another process, and both should take part before the
		// kill.
		ID: os.Getenv(envKillID), BatchSize: killBatch, LeaseDuration: lease, MaxPollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	r, err := outbox.NewRelay(db.Store, c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			var applied int
			if err := db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM kill_effects").Scan(&applied); err != nil || applied < killKeys*killPerKey {
				continue
			}
			if s, err := r.Outbox().Stats(ctx); err == nil && s.Pending == 0 {
				cancel()
			}
		}
	}()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// killConsumer is the downstream service: it logs every arrival to an
// append-only file, then applies each message at most once, deduplicating
// with the inbox in the same transaction as the effect.
type killConsumer struct {
	db  testdb.DB
	log *os.File
	id  string // the relay's, written with each arrival
}

func (c *killConsumer) Publish(ctx context.Context, batch []outbox.Message) error {
	var b bytes.Buffer
	ids := make([]string, len(batch))
	byID := make(map[string]outbox.Message, len(batch))
	for i, m := range batch {
		fmt.Fprintf(&b, "%s %d %s %s\n", m.Key, m.AggregateVersion, m.ID, c.id)
		ids[i] = m.ID
		byID[m.ID] = m
	}
	// One write per batch: O_APPEND keeps concurrent processes' batches whole.
	if _, err := c.log.Write(b.Bytes()); err != nil {
		return err
	}
	time.Sleep(15 * time.Millisecond) // a broker's latency, so the kill lands mid-drain
	tx, err := c.db.SQL().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	freshIDs, err := c.record(ctx, tx, ids)
	if err != nil {
		return err
	}
	if len(freshIDs) > 0 {
		fresh := make([]outbox.Message, len(freshIDs))
		for i, id := range freshIDs {
			fresh[i] = byID[id]
		}
		if err := c.apply(ctx, tx, fresh); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// record writes the inbox rows of ids in tx and returns the ids that were
// not there yet: the messages to apply.
func (c *killConsumer) record(ctx context.Context, tx *sql.Tx, ids []string) ([]string, error) {
	d := c.db.Dialect()
	if c.db.Setup.IsMySQL() {
		// MySQL has no INSERT ... RETURNING: read which ids the inbox
		// holds, insert the others. A concurrent insert of one of them
		// fails this INSERT on the primary key, and the batch is retried.
		const list = `JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l`
		seen, err := scanStrings(tx.QueryContext(ctx, `SELECT i.message_id FROM `+list+`
JOIN keel_inbox i ON i.handler = 'kill' AND i.message_id = l.v`, d.Strings(ids)))
		if err != nil {
			return nil, err
		}
		held := make(map[string]bool, len(seen))
		for _, id := range seen {
			held[id] = true
		}
		fresh := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return held[id] })
		if len(fresh) == 0 {
			return nil, nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO keel_inbox (handler, message_id, processed_at)
SELECT 'kill', v, UTC_TIMESTAMP(6) FROM `+list, d.Strings(fresh))
		return fresh, err
	}
	if c.db.Setup.IsPostgres() {
		return scanStrings(tx.QueryContext(ctx, `INSERT INTO keel_inbox (handler, message_id, processed_at)
SELECT 'kill', id, now() FROM unnest($1::text[]) AS id ON CONFLICT DO NOTHING RETURNING message_id`, d.Strings(ids)))
	}
	return scanStrings(tx.QueryContext(ctx, `INSERT INTO keel_inbox (handler, message_id, processed_at)
SELECT 'kill', value, 0 FROM json_each(?) WHERE true ON CONFLICT DO NOTHING RETURNING message_id`, d.Strings(ids)))
}

// apply writes the effects of msgs in tx.
func (c *killConsumer) apply(ctx context.Context, tx *sql.Tx, msgs []outbox.Message) error {
	if c.db.Setup.IsPostgres() {
		ids, ks, vs := make([]string, len(msgs)), make([]string, len(msgs)), make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i], ks[i], vs[i] = m.ID, m.Key, m.AggregateVersion
		}
		d := c.db.Dialect()
		_, err := tx.ExecContext(ctx, `INSERT INTO kill_effects (message_id, k, v) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`,
			d.Strings(ids), d.Strings(ks), d.Int64s(vs))
		return err
	}
	rows := make([][3]any, len(msgs))
	for i, m := range msgs {
		rows[i] = [3]any{m.ID, m.Key, m.AggregateVersion}
	}
	js, _ := json.Marshal(rows)
	query := `INSERT INTO kill_effects (message_id, k, v)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)`
	if c.db.Setup.IsMySQL() {
		query = `INSERT INTO kill_effects (message_id, k, v)
SELECT id, k, v FROM JSON_TABLE(?, '$[*]' COLUMNS (id VARCHAR(255) PATH '$[0]', k VARCHAR(512) PATH '$[1]', v BIGINT PATH '$[2]')) AS l`
	}
	_, err := tx.ExecContext(ctx, query, string(js))
	return err
}

// scanStrings reads the single text column of rows.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
