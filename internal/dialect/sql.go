package dialect

import (
	"context"
	"database/sql"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Partitions is the fixed number of hash partitions of the outbox's
// partition key. It is part of the stored schema (migration 0005 creates one
// lease row per partition) and never changes.
const Partitions = 64

// SQL holds every statement keel runs against its own tables. Templates use
// {p} for the table prefix and "?" for placeholders; Render turns them into
// the statements a Store runs. Each field's comment lists its parameters.
type SQL struct {
	// Claim reads up to limit deliverable outbox rows of the listed
	// partitions: pending, due, and behind no failed or parked row of their
	// key. (partitions list, now, limit)
	Claim string
	// ClaimSkip is Claim under the SkipMessage policy, where parked rows hold
	// nothing back. (partitions list, now, limit)
	ClaimSkip string
	// ClaimExcept and ClaimSkipExcept are Claim and ClaimSkip that also
	// leave out the rows of the listed partition keys. (partitions list,
	// now, keys list, limit)
	ClaimExcept     string
	ClaimSkipExcept string
	// ClaimAhead and ClaimSkipAhead are ClaimExcept and ClaimSkipExcept
	// that read no row above a seq, which bounds their scan: a relay claims
	// with them while batches are in flight, leaving out those batches'
	// keys. (partitions list, now, keys list, max seq, limit)
	ClaimAhead     string
	ClaimSkipAhead string
	// DeleteDone deletes delivered rows. (seq list)
	DeleteDone string
	// MarkDone keeps delivered rows, marked delivered. (now, seq list)
	MarkDone string
	// Fail records failed deliveries. (Dialect.Failures)
	Fail string
	// Cleanup deletes at most batch delivered rows older than cutoff.
	// (cutoff, batch)
	Cleanup string

	// Heartbeat records a live relay with how many messages it delivered
	// since it started. (relay id, expires at, delivered)
	Heartbeat string
	// ReapRelays forgets relays that stopped heartbeating. (cutoff)
	ReapRelays string
	// LiveRelays counts live relays. (now)
	LiveRelays string
	// Relays lists the live relays in id order, as (id, expires_at,
	// delivered, partitions held now). (now, now)
	Relays string
	// Renew extends every lease a relay holds. (expires at, owner)
	Renew string
	// Acquire takes up to limit free or expired partitions, those the relay
	// prefers first. (owner, expires at, now, now, preference, limit)
	Acquire string
	// Owned lists the partitions a relay holds. (owner)
	Owned string
	// Release hands back some of a relay's partitions. (epoch, owner,
	// partitions list)
	Release string
	// ReleaseAll hands back every partition of a relay. (epoch, owner)
	ReleaseAll string
	// Leave removes a relay from the relays table. (relay id)
	Leave string

	// StatsPending counts pending and retrying rows and finds the oldest
	// pending one's enqueue time. ()
	StatsPending string
	// StatsParked counts parked rows. ()
	StatsParked string
	// Parked lists parked rows after a seq. (after seq, limit)
	Parked string
	// ParkedByKey lists one key's parked rows after a seq. (after seq,
	// partition, key, limit)
	ParkedByKey string
	// ParkedByName lists the parked rows of one event name after a seq.
	// (after seq, name, limit)
	ParkedByName string
	// ParkedByKeyName lists the parked rows of one key and event name
	// after a seq. (after seq, partition, key, name, limit)
	ParkedByKeyName string
	// ParkedKeys lists up to limit keys with parked rows whose oldest
	// parked row is above a seq, oldest first, as (key, parked rows, the
	// oldest's seq, id, name, last error and parking time). (after seq,
	// limit)
	ParkedKeys string
	// ParkedScan reads (seq, id, partition key, last error) of up to limit
	// parked rows after a seq, in seq order, for grouping by error.
	// (after seq, limit)
	ParkedScan string
	// Requeue makes one parked row pending again. (message id)
	Requeue string
	// RequeueKey makes a key's parked rows pending again. (partition, key)
	RequeueKey string
	// RequeueIDs makes the listed parked rows pending again. (ids list)
	RequeueIDs string
	// Lookup reads one row by message id, whatever its state, with its
	// state, last error, next attempt and delivery times. (message id)
	Lookup string
	// Leases lists every partition's lease. ()
	Leases string
	// InboxByMessage lists the handlers that processed a message, with
	// when. (message id)
	InboxByMessage string

	// DueScheduled lists up to limit scheduled messages due by now, in the
	// order they fall due (those due at once in the order they were
	// scheduled), locking them where the dialect has row locks, and
	// waiting for rows another transaction locked, so that moves commit in
	// due order. (now, limit)
	DueScheduled string
	// MoveScheduled copies the listed scheduled messages into the outbox in
	// DueScheduled's order, leaving out any whose id the outbox already
	// holds; their enqueue time is their due time. (ids list)
	MoveScheduled string
	// DeleteScheduled deletes the listed scheduled messages. (ids list)
	DeleteScheduled string
	// CancelScheduled deletes one scheduled message. (message id)
	CancelScheduled string
	// NextDue reads when the next scheduled message falls due; NULL when
	// none is scheduled. ()
	NextDue string
	// StatsScheduled counts scheduled messages. ()
	StatsScheduled string

	// AggregatesOfType lists up to limit stored aggregates of one type
	// whose id is above after, in id order, as (aggregate_id, version,
	// state, updated_at). (type, after id, limit)
	AggregatesOfType string
	// AggregateTypesLike lists the distinct aggregate types matching a
	// LIKE pattern, in order. (pattern)
	AggregateTypesLike string

	// IdemSelect reads an idempotency key's stored result. (key)
	IdemSelect string
	// IdemResult stores a result with its key. (result, key)
	IdemResult string
	// IdemPrune deletes at most batch keys older than cutoff. (cutoff, batch)
	IdemPrune string
	// InboxPrune deletes at most batch inbox rows older than cutoff.
	// (cutoff, batch)
	InboxPrune string
	// InboxClaim inserts the inbox rows of one handler and the listed
	// message ids that are not there yet, and returns the ids it inserted.
	// A row another transaction inserted and has not committed is waited
	// for. Dialects whose INSERT cannot return rows leave it empty and set
	// InboxInsert and InboxPresent instead; ClaimInbox runs whichever the
	// dialect has. (handler, now, ids list)
	InboxClaim string
	// InboxInsert inserts the rows of one handler and every listed message
	// id, failing with an error Classify reports as KeyConflict when one is
	// already there, which leaves the transaction usable. (handler, now,
	// ids list)
	InboxInsert string
	// InboxPresent returns those of the listed message ids that have a row
	// of the handler in the inbox, reading the latest committed rows.
	// (handler, ids list)
	InboxPresent string
	// InboxRelease deletes the rows of one handler and the listed message
	// ids. (handler, ids list)
	InboxRelease string

	// Savepoint sets the savepoint of one unit of work inside a batch
	// transaction, ReleaseSavepoint forgets it once the unit succeeded, and
	// RollbackToSavepoint undoes what the unit did after it. The name is
	// fixed: units of a batch run one after another. ()
	Savepoint           string
	ReleaseSavepoint    string
	RollbackToSavepoint string
	// NextSavepoint releases the savepoint of the unit that succeeded last
	// and sets the next unit's, in one round trip; dialects whose drivers
	// cannot run two statements in one call leave it empty. ()
	NextSavepoint string

	// MigrationsCreate creates the migrations table. ()
	MigrationsCreate string
	// MigrationsApplied lists the applied versions. ()
	MigrationsApplied string
	// MigrationsRecord records an applied version. (version, name, applied at)
	MigrationsRecord string
	// MigrationsLiteral is MigrationsRecord with its values written in, for
	// exported migration files: fmt verbs %d (version) and %s (name, already
	// quoted), and the dialect's own expression for the current time.
	MigrationsLiteral string
}

// Standard returns the statements that read the same on every dialect
// keel supports so far; a dialect starts from it and replaces what differs.
// in and inText render the dialect's test of expr against a list parameter
// of numbers (Dialect.Int64s) and of text (Dialect.Strings), such as
// "expr = ANY(?::bigint[])".
func Standard(in, inText func(expr string) string) SQL {
	q := SQL{}
	Claims(&q, in, inText,
		// The condition repeats the predicate of outbox_blocked_idx word for
		// word so that the planner probes that small partial index rather
		// than the table.
		NoEarlier("(b.state = 2 OR (b.state = 0 AND b.attempts > 0))"),
		NoEarlier("(b.state = 2 OR (b.state = 0 AND b.attempts > 0)) AND b.state = 0"))
	parked := `SELECT ` + MessageColumns + `, o.last_error, o.next_attempt_at
FROM {p}outbox o
WHERE o.state = 2 AND o.seq > ?`
	// Parked rows of any key are read from the index of held-back keys,
	// which holds the parked rows (and the retrying ones): the condition
	// repeats its predicate word for word, as the claims do, and "+" keeps
	// seq out of index conditions and sort orders, so that the planner
	// reads that small partial index and sorts what it finds, rather than
	// every row from AfterSeq on in seq order, delivered history included
	// (SQLite, which keeps no statistics, would). A key's own parked rows
	// are found through the same index by key, already in seq order.
	const parkedOnly = `(o.state = 2 OR (o.state = 0 AND o.attempts > 0)) AND o.state = 2`
	parkedAny := `SELECT ` + MessageColumns + `, o.last_error, o.next_attempt_at
FROM {p}outbox o
WHERE ` + parkedOnly + ` AND +o.seq > ?`
	requeue := `UPDATE {p}outbox SET state = 0, attempts = 0, next_attempt_at = NULL WHERE `
	return SQL{
		Claim:           q.Claim,
		ClaimSkip:       q.ClaimSkip,
		ClaimExcept:     q.ClaimExcept,
		ClaimSkipExcept: q.ClaimSkipExcept,
		ClaimAhead:      q.ClaimAhead,
		ClaimSkipAhead:  q.ClaimSkipAhead,
		DeleteDone:      `DELETE FROM {p}outbox WHERE ` + in("seq"),
		MarkDone:        `UPDATE {p}outbox SET state = 1, delivered_at = ? WHERE state = 0 AND ` + in("seq"),
		Cleanup: `DELETE FROM {p}outbox WHERE seq IN (SELECT seq FROM {p}outbox
    WHERE state = 1 AND delivered_at < ? ORDER BY delivered_at, seq LIMIT ?)`,

		Heartbeat: `INSERT INTO {p}outbox_relays (id, expires_at, delivered) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, delivered = excluded.delivered`,
		ReapRelays: `DELETE FROM {p}outbox_relays WHERE expires_at < ?`,
		LiveRelays: `SELECT COUNT(*) FROM {p}outbox_relays WHERE expires_at > ?`,
		Renew:      `UPDATE {p}outbox_leases SET expires_at = ? WHERE owner = ?`,
		// The outer condition is re-checked against the current row when two
		// relays race for one partition (PostgreSQL re-evaluates it after
		// waiting on the row lock), so only one of them wins it.
		Acquire: `UPDATE {p}outbox_leases SET owner = ?, expires_at = ?
WHERE (owner = '' OR expires_at < ?)
  AND partition_no IN (SELECT partition_no FROM {p}outbox_leases
      WHERE owner = '' OR expires_at < ?
      ORDER BY (partition_no + ?) % ` + strconv.Itoa(Partitions) + `
      LIMIT ?)`,
		Owned:      `SELECT partition_no FROM {p}outbox_leases WHERE owner = ?`,
		Release:    `UPDATE {p}outbox_leases SET owner = '', expires_at = ? WHERE owner = ? AND ` + in("partition_no"),
		ReleaseAll: `UPDATE {p}outbox_leases SET owner = '', expires_at = ? WHERE owner = ?`,
		Leave:      `DELETE FROM {p}outbox_relays WHERE id = ?`,
		Relays: `SELECT r.id, r.expires_at, r.delivered,
       (SELECT COUNT(*) FROM {p}outbox_leases l WHERE l.owner = r.id AND l.expires_at > ?)
FROM {p}outbox_relays r WHERE r.expires_at > ? ORDER BY r.id`,

		StatsPending: `SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0), MIN(created_at)
FROM {p}outbox WHERE state = 0`,
		StatsParked:     `SELECT COUNT(*) FROM {p}outbox WHERE state = 2`,
		Parked:          parkedAny + ` ORDER BY +o.seq LIMIT ?`,
		ParkedByKey:     parked + ` AND o.partition_no = ? AND o.partition_key = ? ORDER BY o.seq LIMIT ?`,
		ParkedByName:    parkedAny + ` AND o.name = ? ORDER BY +o.seq LIMIT ?`,
		ParkedByKeyName: parked + ` AND o.partition_no = ? AND o.partition_key = ? AND o.name = ? ORDER BY o.seq LIMIT ?`,
		ParkedKeys:      ParkedKeys(`{p}outbox o`, parkedOnly),
		Requeue:         requeue + `id = ? AND state = 2`,
		RequeueKey:      requeue + `partition_no = ? AND partition_key = ? AND state = 2`,
		RequeueIDs:      requeue + inText("id") + ` AND state = 2`,
		ParkedScan: `SELECT o.seq, o.id, o.partition_key, o.last_error FROM {p}outbox o
WHERE ` + parkedOnly + ` AND +o.seq > ? ORDER BY +o.seq LIMIT ?`,
		Lookup: `SELECT ` + MessageColumns + `, o.state, o.last_error, o.next_attempt_at, o.delivered_at
FROM {p}outbox o WHERE o.id = ?`,
		Leases:         `SELECT partition_no, owner, expires_at FROM {p}outbox_leases ORDER BY partition_no`,
		InboxByMessage: `SELECT handler, processed_at FROM {p}inbox WHERE message_id = ? ORDER BY handler`,

		DueScheduled:    `SELECT id FROM {p}scheduled WHERE due_at <= ? ORDER BY due_at, seq LIMIT ?`,
		MoveScheduled:   MoveScheduled("{p}scheduled s\nWHERE " + inText("s.id")),
		DeleteScheduled: `DELETE FROM {p}scheduled WHERE ` + inText("id"),
		CancelScheduled: `DELETE FROM {p}scheduled WHERE id = ?`,
		NextDue:         `SELECT MIN(due_at) FROM {p}scheduled`,
		StatsScheduled:  `SELECT COUNT(*) FROM {p}scheduled`,

		AggregatesOfType: `SELECT aggregate_id, version, state, updated_at FROM {p}aggregates
WHERE aggregate_type = ? AND aggregate_id > ? ORDER BY aggregate_id LIMIT ?`,
		AggregateTypesLike: `SELECT DISTINCT aggregate_type FROM {p}aggregates WHERE aggregate_type LIKE ? ORDER BY aggregate_type`,

		IdemSelect: `SELECT result FROM {p}idempotency WHERE key = ?`,
		IdemResult: `UPDATE {p}idempotency SET result = ? WHERE key = ?`,
		IdemPrune: `DELETE FROM {p}idempotency WHERE key IN (SELECT key FROM {p}idempotency
    WHERE created_at < ? ORDER BY created_at LIMIT ?)`,
		InboxPrune: `DELETE FROM {p}inbox WHERE (handler, message_id) IN
    (SELECT handler, message_id FROM {p}inbox WHERE processed_at < ? LIMIT ?)`,

		Savepoint:           `SAVEPOINT keel_unit`,
		ReleaseSavepoint:    `RELEASE SAVEPOINT keel_unit`,
		RollbackToSavepoint: `ROLLBACK TO SAVEPOINT keel_unit`,
		NextSavepoint:       `RELEASE SAVEPOINT keel_unit; SAVEPOINT keel_unit`,

		MigrationsApplied: `SELECT version FROM {p}migrations`,
		MigrationsRecord:  `INSERT INTO {p}migrations (version, name, applied_at) VALUES (?, ?, ?)`,
	}
}

// Claims sets the six claim statements of q (Claim, ClaimSkip, ClaimExcept,
// ClaimSkipExcept, ClaimAhead, ClaimSkipAhead) for a dialect's list tests
// and its conditions on a claimed row o that no earlier row of its key
// holds it back: held under ParkKey (no earlier failed or parked row),
// retrying under SkipMessage (no earlier failed row). NoEarlier writes such
// a condition.
func Claims(q *SQL, in, inText func(expr string) string, held, retrying string) {
	build := func(free, except string) string {
		// The oldest pending rows of the leased partitions, read in seq
		// order: oldest first is fair across partitions, and a batch of
		// neighbouring rows keeps the pages its settle statement rewrites
		// few. "+ 0" keeps the partition list out of index conditions: on a
		// table without statistics a planner would otherwise read every
		// pending row through the partition index and sort them.
		return `SELECT ` + MessageColumns + `
FROM {p}outbox o
WHERE o.state = 0 AND ` + in("o.partition_no + 0") + `
  AND (o.attempts = 0 OR o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)` + except + `
  AND ` + free + `
ORDER BY o.seq
LIMIT ?`
	}
	not := "\n  AND NOT (" + inText("o.partition_key") + ")"
	// The seq bound ends the index scan in seq order: when every key in
	// reach is in flight, the claim reads a window of rows, not the whole
	// backlog.
	ahead := not + "\n  AND o.seq <= ?"
	q.Claim, q.ClaimSkip = build(held, ""), build(retrying, "")
	q.ClaimExcept, q.ClaimSkipExcept = build(held, not), build(retrying, not)
	q.ClaimAhead, q.ClaimSkipAhead = build(held, ahead), build(retrying, ahead)
}

// ParkedKeys returns the ParkedKeys statement reading the outbox as o
// from source ("{p}outbox o" with any index hint) under a condition that
// selects the parked rows: it groups them by key, keeps the keys whose
// oldest parked row is above the seq parameter, and reads each such row by
// its seq.
func ParkedKeys(source, parked string) string {
	return `SELECT g.partition_key, g.n, f.seq, f.id, f.name, f.last_error, f.next_attempt_at
FROM (SELECT o.partition_no, o.partition_key, COUNT(*) AS n, MIN(o.seq) AS first_seq
      FROM ` + source + `
      WHERE ` + parked + `
      GROUP BY o.partition_no, o.partition_key
      HAVING MIN(o.seq) > ?
      ORDER BY MIN(o.seq)
      LIMIT ?) g
JOIN {p}outbox f ON f.seq = g.first_seq
ORDER BY g.first_seq`
}

// NoEarlier is the condition that no earlier row b of the claimed row o's
// key matches pred.
func NoEarlier(pred string) string {
	return `NOT EXISTS (SELECT 1 FROM {p}outbox b
      WHERE b.partition_no = o.partition_no AND b.partition_key = o.partition_key AND b.seq < o.seq
        AND ` + pred + `)`
}

// moveColumns are the columns a scheduled message carries into the
// outbox, before created_at (which takes its due time).
const moveColumns = `id, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at`

// MoveScheduled returns the MoveScheduled statement reading the scheduled
// rows, aliased s, from source: a FROM clause and a WHERE clause selecting
// the listed ids, such as "{p}scheduled s WHERE s.id IN (...)".
func MoveScheduled(source string) string {
	return `INSERT INTO {p}outbox (` + moveColumns + `, created_at)
SELECT ` + strings.ReplaceAll("s."+moveColumns, ", ", ", s.") + `, s.due_at
FROM ` + source + `
  AND NOT EXISTS (SELECT 1 FROM {p}outbox o WHERE o.id = s.id)
ORDER BY s.due_at, s.seq`
}

// MessageColumns are the outbox columns a relay reads for each message, in
// the order the outbox package scans them.
const MessageColumns = `o.seq, o.id, o.topic, o.partition_key, o.name, o.aggregate_type, o.aggregate_id,
       o.aggregate_version, o.payload, o.headers, o.correlation_id, o.causation_id, o.occurred_at, o.created_at, o.attempts`

// Render returns q with the table prefix written in and every statement
// rebound to d's placeholders. Statements a dialect left empty stay empty.
func Render(d Dialect, q SQL, prefix string) SQL {
	v := reflect.ValueOf(&q).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() != reflect.String || f.Len() == 0 {
			continue
		}
		s := strings.ReplaceAll(f.String(), "{p}", prefix)
		if v.Type().Field(i).Name != "MigrationsLiteral" {
			s = d.Rebind(s)
		}
		f.SetString(s)
	}
	return q
}

// OnConflictDoNothing is InsertIfAbsent for databases that support
// INSERT ... ON CONFLICT (key) DO NOTHING (PostgreSQL, SQLite).
func OnConflictDoNothing(table string, columns, key []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ") ON CONFLICT (" +
		strings.Join(key, ", ") + ") DO NOTHING"
}

// RebindDollar rewrites "?" placeholders as $1, $2, ... (PostgreSQL's
// style), leaving question marks inside single-quoted literals alone.
func RebindDollar(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
			b.WriteByte(c)
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Schema lists keel's tables (without prefix) and the columns keel reads
// and writes in each. A store's schema check selects them all.
var Schema = []struct {
	Table   string
	Columns string
}{
	{"aggregates", "aggregate_type, aggregate_id, version, state, state_version, created_at, updated_at"},
	{"outbox", "seq, id, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at, created_at, state, attempts, next_attempt_at, last_error, delivered_at"},
	{"outbox_leases", "partition_no, owner, expires_at"},
	{"outbox_relays", "id, expires_at, delivered"},
	{"inbox", "handler, message_id, processed_at"},
	{"idempotency", "key, result, created_at"},
	{"scheduled", "seq, id, due_at, topic, partition_key, partition_no, name, aggregate_type, aggregate_id, aggregate_version, payload, headers, correlation_id, causation_id, occurred_at, created_at"},
}

// Channel is the notification channel of a table prefix: commits that
// write outbox rows notify it, and listeners wait on it. Channels are
// database-wide, so schemas sharing a prefix share a channel, and a relay
// may be woken for another schema's rows, which costs one empty poll.
func Channel(prefix string) string { return prefix + "outbox" }

// ListOf writes v as open, the numbers separated by commas, then close:
// a JSON array with '[' and ']', a PostgreSQL array literal with '{' and
// '}'.
func ListOf(v []int64, open, close byte) string {
	var b strings.Builder
	b.Grow(len(v)*8 + 2)
	b.WriteByte(open)
	for i, n := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(n, 10))
	}
	b.WriteByte(close)
	return b.String()
}

// JSONStrings encodes v as a JSON array, for dialects that read list
// parameters with a JSON table function.
func JSONStrings(v []string) string {
	b, _ := json.Marshal(v) // a []string always encodes
	return string(b)
}

// JSONFailures encodes failure rows as one JSON array of [seq, state,
// next_at, error] rows, next_at as the dialect's time function gives it.
func JSONFailures(fs []Failure, at func(time.Time) any) ([]any, error) {
	rows := make([][4]any, len(fs))
	for i, f := range fs {
		rows[i] = [4]any{f.Seq, f.State, at(f.NextAt), f.Err}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, err
	}
	return []any{string(b)}, nil
}

// BeginTx starts a transaction on conn with the given statement ("BEGIN",
// "BEGIN IMMEDIATE") and returns the function that ends it, committing when
// commit is true.
func BeginTx(ctx context.Context, conn *sql.Conn, begin string) (func(commit bool) error, error) {
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return nil, err
	}
	return func(commit bool) error {
		if commit {
			_, err := conn.ExecContext(ctx, "COMMIT")
			return err
		}
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}, nil
}
