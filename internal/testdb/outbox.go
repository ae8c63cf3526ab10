package testdb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/keel-go/keel/outbox"
)

// Logger discards logs unless KEEL_TEST_LOG is set, when it prints them,
// debug level included, to standard error.
func Logger() *slog.Logger {
	if os.Getenv("KEEL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// FillKeys is how many partition keys FillOutbox spreads its rows over.
const FillKeys = 1000

// FillOutbox inserts n rows into the outbox straight in SQL, as pending
// (state 0), as delivered history (state 1) or as parked (state 2: one
// attempt, parked now, with the last error "failure N" for N from 0 to 6),
// over FillKeys keys with 100-byte payloads. It is setup for benchmarks, far faster than Enqueue for
// a million rows. On PostgreSQL it then analyzes the table, as autovacuum
// would soon after a bulk load: without statistics the planner takes a
// million fresh rows for a few dozen.
func FillOutbox(tb testing.TB, db DB, n, state int) {
	tb.Helper()
	parts := make([]int64, FillKeys)
	for k := range parts {
		parts[k] = int64(outbox.PartitionOf(fmt.Sprintf("key-%04d", k)))
	}
	tag := randomHex(4) + "-"
	table := db.Table("outbox")
	var err error
	switch {
	case db.Setup.IsMySQL():
		js, _ := json.Marshal(parts)
		now := time.Now().UTC()
		ctx := context.Background()
		conn, cerr := db.SQL().Conn(ctx)
		if cerr != nil {
			tb.Fatal(cerr)
		}
		defer conn.Close()
		// Lift the recursion bound of the row generator (MariaDB's name,
		// then MySQL's); each server rejects the other's.
		_, _ = conn.ExecContext(ctx, `SET SESSION max_recursive_iterations = 100000000`)
		_, _ = conn.ExecContext(ctx, `SET SESSION cte_max_recursion_depth = 100000000`)
		_, err = conn.ExecContext(ctx, `INSERT INTO `+table+` (id, partition_key, partition_no, name, aggregate_version, payload, occurred_at, created_at, state, delivered_at, attempts, next_attempt_at, last_error)
WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
SELECT CONCAT(?, i), CONCAT('key-', LPAD(i % 1000, 4, '0')), JSON_EXTRACT(?, CONCAT('$[', i % 1000, ']')), 'bench.event', i, REPEAT('x', 100),
       ?, ?, ?, CASE WHEN ? = 1 THEN ? END,
       CASE WHEN ? = 2 THEN 1 ELSE 0 END, CASE WHEN ? = 2 THEN ? END, CASE WHEN ? = 2 THEN CONCAT('failure ', i % 7) END
FROM g`, n, tag, string(js), now, now, state, state, now, state, state, now, state)
		if err == nil {
			_, err = conn.ExecContext(ctx, "ANALYZE TABLE "+table)
		}
	case db.Setup.IsPostgres():
		_, err = db.SQL().Exec(`INSERT INTO `+table+` (id, partition_key, partition_no, name, aggregate_version, payload, occurred_at, created_at, state, delivered_at, attempts, next_attempt_at, last_error)
SELECT $1 || g, 'key-' || lpad((g % 1000)::text, 4, '0'), ($2::int[])[g % 1000 + 1], 'bench.event', g, convert_to(repeat('x', 100), 'UTF8'),
       now(), now(), $3::smallint, CASE WHEN $3::smallint = 1 THEN now() END,
       CASE WHEN $3::smallint = 2 THEN 1 ELSE 0 END, CASE WHEN $3::smallint = 2 THEN now() END, CASE WHEN $3::smallint = 2 THEN 'failure ' || (g % 7) END
FROM generate_series(1, $4) AS g`, tag, db.Dialect().Int64s(parts), state, n)
		if err == nil {
			_, err = db.SQL().Exec("ANALYZE " + table)
		}
	default:
		js, _ := json.Marshal(parts)
		now := time.Now().UnixMicro()
		_, err = db.SQL().Exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
INSERT INTO `+table+` (id, partition_key, partition_no, name, aggregate_version, payload, occurred_at, created_at, state, delivered_at, attempts, next_attempt_at, last_error)
SELECT ? || i, 'key-' || printf('%04d', i % 1000), json_extract(?, '$[' || (i % 1000) || ']'), 'bench.event', i, zeroblob(100),
       ?, ?, ?, CASE WHEN ? = 1 THEN ? END,
       CASE WHEN ? = 2 THEN 1 ELSE 0 END, CASE WHEN ? = 2 THEN ? END, CASE WHEN ? = 2 THEN 'failure ' || (i % 7) END
FROM g`, n, tag, string(js), now, now, state, state, now, state, state, now, state)
		if err == nil {
			// Fold the bulk load's write-ahead log into the database, as the
			// automatic checkpoints of a steadily written database keep doing.
			_, err = db.SQL().Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// Eventually polls cond every few milliseconds until it holds, failing the
// test when timeout passes first.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Count runs a COUNT query, written with "?" placeholders, and returns its
// result.
func Count(tb testing.TB, db DB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.SQL().QueryRow(db.Dialect().Rebind(query), args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// FillScheduled inserts n messages scheduled for due into the scheduled
// table, straight in SQL, over FillKeys keys: setup for benchmarks that
// need a large backlog of timers.
func FillScheduled(tb testing.TB, db DB, n int, due time.Time) {
	tb.Helper()
	parts := make([]int64, FillKeys)
	for k := range parts {
		parts[k] = int64(outbox.PartitionOf(fmt.Sprintf("key-%04d", k)))
	}
	js, _ := json.Marshal(parts)
	table := db.Table("scheduled")
	tag := randomHex(4) + "-"
	at := db.Dialect().Time(due.UTC())
	var err error
	switch {
	case db.Setup.IsMySQL():
		ctx := context.Background()
		conn, cerr := db.SQL().Conn(ctx)
		if cerr != nil {
			tb.Fatal(cerr)
		}
		defer conn.Close()
		_, _ = conn.ExecContext(ctx, `SET SESSION max_recursive_iterations = 100000000`)
		_, _ = conn.ExecContext(ctx, `SET SESSION cte_max_recursion_depth = 100000000`)
		_, err = conn.ExecContext(ctx, `INSERT INTO `+table+` (id, due_at, partition_key, partition_no, name, payload, occurred_at, created_at)
WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
SELECT CONCAT(?, i), ?, CONCAT('key-', LPAD(i % 1000, 4, '0')), JSON_EXTRACT(?, CONCAT('$[', i % 1000, ']')), 'bench.timer', REPEAT('x', 100), ?, ?
FROM g`, n, tag, at, string(js), at, at)
		if err == nil {
			_, err = conn.ExecContext(ctx, "ANALYZE TABLE "+table)
		}
	case db.Setup.IsPostgres():
		_, err = db.SQL().Exec(`INSERT INTO `+table+` (id, due_at, partition_key, partition_no, name, payload, occurred_at, created_at)
SELECT $1 || g, $2, 'key-' || lpad((g % 1000)::text, 4, '0'), ($4::int[])[g % 1000 + 1], 'bench.timer', convert_to(repeat('x', 100), 'UTF8'), $2, $2
FROM generate_series(1, $3) AS g`, tag, at, n, db.Dialect().Int64s(parts))
		if err == nil {
			_, err = db.SQL().Exec("ANALYZE " + table)
		}
	default:
		_, err = db.SQL().Exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
INSERT INTO `+table+` (id, due_at, partition_key, partition_no, name, payload, occurred_at, created_at)
SELECT ? || i, ?, 'key-' || printf('%04d', i % 1000), json_extract(?, '$[' || (i % 1000) || ']'), 'bench.timer', zeroblob(100), ?, ?
FROM g`, n, tag, at, string(js), at, at)
		if err == nil {
			_, err = db.SQL().Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
}
