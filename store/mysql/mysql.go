// Package mysql is keel's dialect for MySQL 8 and MariaDB 10.6 and later,
// with InnoDB tables, through github.com/go-sql-driver/mysql (driver name
// "mysql"). It imports no driver itself:
//
//	import _ "github.com/go-sql-driver/mysql"
//
//	db, err := sql.Open("mysql", "app:secret@tcp(db:3306)/app?"+mysql.DSNOptions)
//	st, err := store.Open(db, mysql.Dialect(), store.Options{})
//
// # Server settings
//
// keel needs InnoDB (its migrations ask for it), an isolation level that
// never reads uncommitted rows (READ COMMITTED, or InnoDB's default
// REPEATABLE READ), and strict SQL mode, so that a value too long for its
// column is an error rather than silently cut. The store checks the last
// two in Migrate and CheckSchema, so a relay refuses to start on a server
// that would break a guarantee, and says which setting to change.
//
// # Wake-ups
//
// MySQL has no LISTEN. Units of work wake the relays of their own process
// at commit; relays in other processes find new rows by polling, within
// their MaxPollInterval (1s by default, 10ms while there is work).
//
// # Parameters
//
// Open the database with DSNOptions: interpolateParams=true sends each
// statement with its arguments in one round trip, instead of preparing,
// executing and closing a server-side statement (three round trips).
package mysql

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// DSNOptions are the connection options keel recommends, in the query
// string form of go-sql-driver/mysql's DSN: arguments interpolated
// client-side (one round trip per statement), times read as time.Time in
// UTC, and strict SQL mode for the session.
const DSNOptions = "interpolateParams=true&parseTime=true&loc=UTC&sql_mode=%27STRICT_TRANS_TABLES%2CNO_ENGINE_SUBSTITUTION%27"

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect returns the MySQL and MariaDB dialect, for store.Open.
func Dialect() store.Dialect { return my{} }

type my struct{}

// datetime is how times travel inside JSON parameters.
const datetime = "2006-01-02 15:04:05.000000"

var sqlText = func() dialect.SQL {
	in := func(expr string) string {
		return expr + " IN (SELECT v FROM JSON_TABLE(?, '$[*]' COLUMNS (v BIGINT PATH '$')) AS l)"
	}
	inText := func(expr string) string {
		return expr + " IN (SELECT v FROM JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l)"
	}
	q := dialect.Standard(in, inText)
	// The generated column blocked (1 retrying, 2 parked) stands for the
	// held-back predicate, through outbox_blocked_idx. One equality per
	// check lets MariaDB seek on all of the index's leading columns; with a
	// range (blocked > 0) it reads every earlier row of the key instead.
	retrying := dialect.NoEarlier("b.blocked = 1")
	dialect.Claims(&q, in, inText,
		retrying+"\n  AND "+dialect.NoEarlier("b.blocked = 2"), retrying)
	// The settling statements read the list first and reach each row by its
	// primary key. A single-table DELETE or UPDATE with an IN subquery scans
	// the whole table on MySQL and MariaDB, and so does a plain join on a
	// small outbox, the usual one; a locking scan waits on every row an open
	// transaction inserted, so the relay could not settle a batch until the
	// application's transactions ended. STRAIGHT_JOIN and FORCE INDEX fix
	// the plan.
	const seqs = "JSON_TABLE(?, '$[*]' COLUMNS (v BIGINT PATH '$')) AS l STRAIGHT_JOIN {p}outbox o FORCE INDEX (PRIMARY) ON o.seq = l.v"
	q.DeleteDone = `DELETE o FROM ` + seqs
	q.MarkDone = `UPDATE (SELECT CAST(? AS DATETIME(6)) AS at) AS t STRAIGHT_JOIN ` + seqs + `
SET o.state = 1, o.delivered_at = t.at WHERE o.state = 0`
	q.Fail = `UPDATE JSON_TABLE(?, '$[*]' COLUMNS (
    seq BIGINT PATH '$[0]', state INT PATH '$[1]', next_at DATETIME(6) PATH '$[2]', err TEXT PATH '$[3]')) AS v
STRAIGHT_JOIN {p}outbox o FORCE INDEX (PRIMARY) ON o.seq = v.seq
SET o.state = v.state, o.attempts = o.attempts + 1, o.next_attempt_at = v.next_at, o.last_error = v.err
WHERE o.state = 0`
	q.Cleanup = `DELETE FROM {p}outbox WHERE state = 1 AND delivered_at < ? ORDER BY delivered_at, seq LIMIT ?`
	// Scheduled messages are reached through their id's index from their
	// list, as the outbox's rows are through theirs, never by a scan of rows waiting for later.
	const ids = "JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l STRAIGHT_JOIN {p}scheduled s FORCE INDEX ({p}scheduled_id_key) ON s.id = l.v"
	// A relay moving due messages waits for rows another has locked rather
	// than skip them: moves then commit in the order their messages fell
	// due, which keeps a key's messages in order across relays.
	q.DueScheduled += " FOR UPDATE"
	q.MoveScheduled = dialect.MoveScheduled(ids + "\nWHERE TRUE")
	q.DeleteScheduled = `DELETE s FROM ` + ids
	// Parked rows are read from outbox_state_idx (state, seq), which holds
	// them in seq order and stands for the partial index the other
	// dialects read: MySQL has none. FORCE INDEX, since for a LIMIT in seq
	// order MariaDB reads the table by its primary key from AfterSeq on,
	// passing every delivered row kept for retention (2s against a few
	// milliseconds beside a million of them, measured here). A key's
	// parked rows are a range of outbox_blocked_idx, in seq order, which
	// MariaDB may pass over for the primary key too.
	const (
		parked    = `{p}outbox o FORCE INDEX ({p}outbox_state_idx)`
		columns   = `SELECT ` + dialect.MessageColumns + `, o.last_error, o.next_attempt_at`
		parkedAny = columns + `
FROM ` + parked + `
WHERE o.state = 2 AND o.seq > ?`
		parkedKey = columns + `
FROM {p}outbox o FORCE INDEX ({p}outbox_blocked_idx)
WHERE o.blocked = 2 AND o.seq > ? AND o.partition_no = ? AND o.partition_key = ?`
	)
	q.Parked = parkedAny + ` ORDER BY o.seq LIMIT ?`
	q.ParkedByName = parkedAny + ` AND o.name = ? ORDER BY o.seq LIMIT ?`
	q.ParkedByKey = parkedKey + ` ORDER BY o.seq LIMIT ?`
	q.ParkedByKeyName = parkedKey + ` AND o.name = ? ORDER BY o.seq LIMIT ?`
	q.ParkedScan = `SELECT o.seq, o.id, o.partition_key, o.last_error FROM ` + parked + `
WHERE o.state = 2 AND o.seq > ? ORDER BY o.seq LIMIT ?`
	q.ParkedKeys = dialect.ParkedKeys(parked, "o.state = 2")
	// Requeued rows are reached through their id's index from their list.
	q.RequeueIDs = `UPDATE JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l
STRAIGHT_JOIN {p}outbox o FORCE INDEX ({p}outbox_id_key) ON o.id = l.v
SET o.state = 0, o.attempts = 0, o.next_attempt_at = NULL
WHERE o.state = 2`
	q.Heartbeat = `INSERT INTO {p}outbox_relays (id, expires_at, delivered) VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at), delivered = VALUES(delivered)`
	// InnoDB's UPDATE reads the latest committed rows and locks them, so two
	// relays racing for a partition cannot both win it. The repeated
	// condition takes both "now" parameters of the statement's contract.
	q.Acquire = `UPDATE {p}outbox_leases SET owner = ?, expires_at = ?
WHERE (owner = '' OR expires_at < ?) AND (owner = '' OR expires_at < ?)
ORDER BY (partition_no + ?) % ` + strconv.Itoa(dialect.Partitions) + `
LIMIT ?`
	q.IdemSelect = "SELECT result FROM {p}idempotency WHERE `key` = ?"
	q.IdemResult = "UPDATE {p}idempotency SET result = ? WHERE `key` = ?"
	q.IdemPrune = `DELETE FROM {p}idempotency WHERE created_at < ? ORDER BY created_at LIMIT ?`
	q.InboxPrune = `DELETE FROM {p}inbox WHERE processed_at < ? ORDER BY processed_at LIMIT ?`
	// INSERT returns no rows here, so the inbox is claimed with InboxInsert,
	// and InboxPresent after a duplicate. Each inbox row is reached by its
	// primary key.
	const messages = `JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l`
	const inbox = ` STRAIGHT_JOIN {p}inbox i FORCE INDEX (PRIMARY) ON i.handler = h.v AND i.message_id = l.v`
	q.InboxInsert = `INSERT INTO {p}inbox (handler, message_id, processed_at)
SELECT ?, l.v, CAST(? AS DATETIME(6)) FROM ` + messages
	q.InboxPresent = `SELECT i.message_id FROM (SELECT ? AS v) AS h STRAIGHT_JOIN ` + messages + inbox + ` LOCK IN SHARE MODE`
	q.InboxRelease = `DELETE i FROM (SELECT ? AS v) AS h STRAIGHT_JOIN ` + messages + inbox
	// The driver runs one statement per call unless the DSN asks for
	// multiStatements.
	q.NextSavepoint = ""
	q.MigrationsCreate = `CREATE TABLE IF NOT EXISTS {p}migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(6) NOT NULL) ENGINE = InnoDB`
	q.MigrationsLiteral = `INSERT INTO {p}migrations (version, name, applied_at) VALUES (%d, %s, UTC_TIMESTAMP(6));`
	return q
}()

func (my) Name() string { return "mysql" }

// KeysFilteredByRelay says that relays leave the keys of their batches in
// flight out of their claims themselves: MySQL and MariaDB read the
// JSON_TABLE of the claim's key list anew for every row, which costs
// hundreds of milliseconds for a thousand keys.
func (my) KeysFilteredByRelay() {}

// Rebind leaves "?" placeholders as they are: MySQL's own style.
func (my) Rebind(query string) string { return query }

// Time stores timestamps as DATETIME(6) in UTC, cut to microseconds, the
// column's precision. The cut matters beyond storage: the driver writes a
// time with all nine digits of its nanoseconds, and MariaDB compares a
// DATETIME(6) column with such a literal row by row instead of through an
// index (3.3 s against 0.5 ms on a million rows, measured here).
func (my) Time(t time.Time) any { return t.UTC().Truncate(time.Microsecond) }

// Int64s encodes a list as a JSON array, read with JSON_TABLE.
func (my) Int64s(v []int64) any { return dialect.ListOf(v, '[', ']') }

// Strings encodes a list of text as a JSON array, read with JSON_TABLE.
func (my) Strings(v []string) any { return dialect.JSONStrings(v) }

// Failures encodes the failure rows as one JSON array, read with
// JSON_TABLE, times as DATETIME text.
func (my) Failures(fs []dialect.Failure) ([]any, error) {
	return dialect.JSONFailures(fs, func(t time.Time) any { return t.UTC().Format(datetime) })
}

func (my) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is always there
	}
	return sub
}

// BeginMigration serialises migrators on a named lock. MySQL commits each
// schema change at once, so a migration is not one transaction; every
// statement keel ships can run again after an interruption.
func (my) BeginMigration(ctx context.Context, conn *sql.Conn, prefix string) (func(bool) error, error) {
	name := "keel.migrate." + prefix
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
		return nil, err
	}
	if got.Int64 != 1 {
		return nil, fmt.Errorf("keel: another migration of prefix %s held the lock %s for 60s", prefix, name)
	}
	return func(bool) error {
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", name)
		return err
	}, nil
}

func (my) SQL() dialect.SQL { return sqlText }

// InsertIfAbsent is a plain INSERT: MySQL cannot limit "do nothing on a
// duplicate" to one key, and INSERT IGNORE would swallow other errors. A
// duplicate primary key fails with an error Classify reports as
// KeyConflict, which leaves the transaction usable.
func (my) InsertIfAbsent(table string, columns, key []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = "`" + c + "`"
	}
	return "INSERT INTO " + table + " (" + strings.Join(quoted, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
}

func (my) ForUpdate() string { return " FOR UPDATE" }

// ReadCurrent reads the latest committed row instead of the REPEATABLE
// READ snapshot. There its shared lock adds no wait after a failed write:
// InnoDB already holds a lock on the row an UPDATE or DELETE found by key,
// and on the key a duplicate INSERT found. MariaDB has no FOR SHARE; both
// servers accept LOCK IN SHARE MODE.
func (my) ReadCurrent() string { return " LOCK IN SHARE MODE" }

// MaxInsertRows keeps a 14-column INSERT well under the protocol's limit of
// 65,535 placeholders.
func (my) MaxInsertRows() int { return 1000 }

// Writers is 4: InnoDB flushes the commits of concurrent transactions
// together, so a few writers overlap their round trips and flushes.
func (my) Writers() int { return 4 }

// CheckSession refuses an isolation level that reads uncommitted rows (a
// relay could publish a message whose transaction then rolls back) and a
// session without strict SQL mode (an overlong value would be cut, not
// refused).
func (my) CheckSession(ctx context.Context, db *sql.DB) error {
	var level, mode string
	err := db.QueryRowContext(ctx, "SELECT @@SESSION.transaction_isolation, @@SESSION.sql_mode").Scan(&level, &mode)
	if err != nil {
		// MariaDB before 11.1 names the variable tx_isolation.
		if err2 := db.QueryRowContext(ctx, "SELECT @@SESSION.tx_isolation, @@SESSION.sql_mode").Scan(&level, &mode); err2 != nil {
			return fmt.Errorf("keel: read the session's isolation level and SQL mode: %w", errors.Join(err, err2))
		}
	}
	if strings.EqualFold(level, "READ-UNCOMMITTED") {
		return dialect.Invalid("the MySQL session reads uncommitted rows (transaction isolation %s), so a relay could publish a message whose transaction later rolls back; use READ-COMMITTED or REPEATABLE-READ, e.g. transaction_isolation=%%27READ-COMMITTED%%27 in the DSN (tx_isolation on MariaDB before 11.1)", level)
	}
	if !strings.Contains(mode, "STRICT_TRANS_TABLES") && !strings.Contains(mode, "STRICT_ALL_TABLES") {
		return dialect.Invalid("the MySQL session is not in strict SQL mode (sql_mode %q), so a value too long for its column would be cut instead of refused; add STRICT_TRANS_TABLES, e.g. with mysql.DSNOptions", mode)
	}
	return nil
}
