package outbox

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/keel-go/keel/internal/dialect"
)

// relaySQL holds every statement a Relay runs, rebound for its dialect and
// table prefix. Lists of numbers travel as one parameter: a PostgreSQL array,
// or a JSON array read with json_each on SQLite, so statement text and
// parameter count do not depend on batch size.
type relaySQL struct {
	d      *dialect.Dialect
	leases string // table names, for errors
	relays string

	initLeases string
	heartbeat  string
	reapRelays string
	liveRelays string
	renew      string
	acquire    string
	release    string
	releaseAll string
	leave      string

	claim      string
	deleteDone string
	markDone   string
	fail       string
	cleanup    string

	statsPending string
	statsParked  string
	parked       string
	parkedByKey  string
	requeue      string
	requeueKey   string
}

// messageColumns are the columns scanned by scanMessage, in order.
const messageColumns = `o.seq, o.id, o.topic, o.partition_key, o.partition_no, o.name, o.aggregate_type, o.aggregate_id,
       o.aggregate_version, o.payload, o.headers, o.correlation_id, o.causation_id, o.occurred_at, o.created_at, o.attempts`

func newRelaySQL(d *dialect.Dialect, prefix string, policy FailurePolicy) *relaySQL {
	ob, leases, relays := prefix+"outbox", prefix+"outbox_leases", prefix+"outbox_relays"
	in := func(expr, pgType string) string {
		if d.IsPostgres() {
			return expr + " = ANY(?::" + pgType + "[])"
		}
		return expr + " IN (SELECT value FROM json_each(?))"
	}

	// A row may go out only if no earlier row of its key is retrying or, under
	// ParkKey, parked. The condition repeats the predicate of
	// outbox_blocked_idx word for word so that both databases probe that small
	// partial index rather than the table.
	blocked := "(b.state = 2 OR (b.state = 0 AND b.attempts > 0))"
	if policy == SkipMessage {
		blocked += " AND b.state = 0"
	}
	// The oldest pending rows of the leased partitions, read in seq order
	// from outbox_claim_idx: oldest first is fair across partitions, and a
	// batch of neighbouring rows keeps the pages its settle statement
	// rewrites few. "+ 0" keeps the partition list out of index conditions:
	// on a table without statistics both planners would otherwise read every
	// pending row through outbox_pending_idx and sort them.
	claim := `SELECT ` + messageColumns + `
FROM ` + ob + ` o
WHERE o.state = 0 AND ` + in("o.partition_no + 0", "int") + `
  AND (o.attempts = 0 OR o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)
  AND NOT EXISTS (SELECT 1 FROM ` + ob + ` b
      WHERE b.partition_no = o.partition_no AND b.partition_key = o.partition_key AND b.seq < o.seq
        AND ` + blocked + `)
ORDER BY o.seq
LIMIT ?`

	var fail string
	if d.IsPostgres() {
		fail = `UPDATE ` + ob + ` AS o
SET state = v.state, attempts = o.attempts + 1, next_attempt_at = v.next_at, last_error = v.err
FROM (SELECT unnest(?::bigint[]) AS seq, unnest(?::smallint[]) AS state,
             unnest(?::timestamptz[]) AS next_at, unnest(?::text[]) AS err) AS v
WHERE o.seq = v.seq AND o.state = 0`
	} else {
		fail = `UPDATE ` + ob + ` AS o
SET state = v.state, attempts = o.attempts + 1, next_attempt_at = v.next_at, last_error = v.err
FROM (SELECT json_extract(value, '$[0]') AS seq, json_extract(value, '$[1]') AS state,
             json_extract(value, '$[2]') AS next_at, json_extract(value, '$[3]') AS err
      FROM json_each(?)) AS v
WHERE o.seq = v.seq AND o.state = 0`
	}

	var initLeases strings.Builder
	initLeases.WriteString("INSERT INTO " + leases + " (partition_no, owner, expires_at) VALUES ")
	for p := 0; p < Partitions; p++ {
		if p > 0 {
			initLeases.WriteString(", ")
		}
		initLeases.WriteString("(" + strconv.Itoa(p) + ", '', ?)")
	}
	initLeases.WriteString(" ON CONFLICT (partition_no) DO NOTHING")

	parked := `SELECT ` + messageColumns + `, o.last_error, o.next_attempt_at
FROM ` + ob + ` o
WHERE o.state = 2 AND o.seq > ?`
	requeue := `UPDATE ` + ob + ` SET state = 0, attempts = 0, next_attempt_at = NULL WHERE `

	rb := d.Rebind
	return &relaySQL{
		d:          d,
		leases:     leases,
		relays:     relays,
		initLeases: rb(initLeases.String()),
		heartbeat: rb(`INSERT INTO ` + relays + ` (id, expires_at) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`),
		reapRelays: rb(`DELETE FROM ` + relays + ` WHERE expires_at < ?`),
		liveRelays: rb(`SELECT COUNT(*) FROM ` + relays + ` WHERE expires_at > ?`),
		renew:      rb(`UPDATE ` + leases + ` SET expires_at = ? WHERE owner = ? RETURNING partition_no`),
		// The outer condition is re-checked against the current row when two
		// relays race for one partition (PostgreSQL re-evaluates it after
		// waiting on the row lock), so only one of them wins it.
		acquire: rb(`UPDATE ` + leases + ` SET owner = ?, expires_at = ?
WHERE (owner = '' OR expires_at < ?)
  AND partition_no IN (SELECT partition_no FROM ` + leases + `
      WHERE owner = '' OR expires_at < ?
      ORDER BY (partition_no + ?) % ` + strconv.Itoa(Partitions) + `
      LIMIT ?)
RETURNING partition_no`),
		release:    rb(`UPDATE ` + leases + ` SET owner = '', expires_at = ? WHERE owner = ? AND ` + in("partition_no", "int")),
		releaseAll: rb(`UPDATE ` + leases + ` SET owner = '', expires_at = ? WHERE owner = ?`),
		leave:      rb(`DELETE FROM ` + relays + ` WHERE id = ?`),

		claim:      rb(claim),
		deleteDone: rb(`DELETE FROM ` + ob + ` WHERE ` + in("seq", "bigint")),
		markDone:   rb(`UPDATE ` + ob + ` SET state = 1, delivered_at = ? WHERE state = 0 AND ` + in("seq", "bigint")),
		fail:       rb(fail),
		cleanup: rb(`DELETE FROM ` + ob + ` WHERE seq IN (SELECT seq FROM ` + ob + `
    WHERE state = 1 AND delivered_at < ? ORDER BY delivered_at, seq LIMIT ?)`),

		statsPending: rb(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0), MIN(created_at)
FROM ` + ob + ` WHERE state = 0`),
		statsParked: rb(`SELECT COUNT(*) FROM ` + ob + ` WHERE state = 2`),
		parked:      rb(parked + ` ORDER BY o.seq LIMIT ?`),
		parkedByKey: rb(parked + ` AND o.partition_no = ? AND o.partition_key = ? ORDER BY o.seq LIMIT ?`),
		requeue:     rb(requeue + `id = ? AND state = 2`),
		requeueKey:  rb(requeue + `partition_no = ? AND partition_key = ? AND state = 2`),
	}
}

// ints passes a list of numbers as one parameter of an "in" condition.
func (q *relaySQL) ints(v []int64) any {
	if q.d.IsPostgres() {
		return pq.Int64Array(v)
	}
	var b strings.Builder
	b.Grow(len(v) * 8)
	b.WriteByte('[')
	for i, n := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(n, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// failure is one row of the fail statement.
type failure struct {
	seq    int64
	state  int
	nextAt time.Time
	err    string
}

// failArgs encodes failures as the fail statement's parameters.
func (q *relaySQL) failArgs(fs []failure) ([]any, error) {
	if q.d.IsPostgres() {
		seqs := make(pq.Int64Array, len(fs))
		states := make(pq.Int64Array, len(fs))
		nexts := make(pq.StringArray, len(fs))
		errs := make(pq.StringArray, len(fs))
		for i, f := range fs {
			seqs[i], states[i] = f.seq, int64(f.state)
			nexts[i] = f.nextAt.UTC().Format(time.RFC3339Nano)
			errs[i] = f.err
		}
		return []any{seqs, states, nexts, errs}, nil
	}
	rows := make([][4]any, len(fs))
	for i, f := range fs {
		rows[i] = [4]any{f.seq, f.state, f.nextAt.UnixMicro(), f.err}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, err
	}
	return []any{string(b)}, nil
}
