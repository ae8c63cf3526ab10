-- keel schema, version 1. {{p}} is replaced by the validated table prefix.
-- Timestamps are integer Unix microseconds.

-- State-stored aggregates in the ready document table.
CREATE TABLE IF NOT EXISTS {{p}}aggregates (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;

-- The transactional outbox. Each row carries its own delivery state, so a
-- row whose transaction commits late is never skipped by a moving cursor.
-- state: 0 pending, 1 delivered (kept for retention), 2 parked.
CREATE TABLE IF NOT EXISTS {{p}}outbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE,
    topic             TEXT    NOT NULL DEFAULT '',
    partition_key     TEXT    NOT NULL,
    partition_no      INTEGER NOT NULL,
    name              TEXT    NOT NULL,
    aggregate_type    TEXT    NOT NULL DEFAULT '',
    aggregate_id      TEXT    NOT NULL DEFAULT '',
    aggregate_version INTEGER NOT NULL DEFAULT 0,
    payload           BLOB    NOT NULL,
    headers           TEXT    NOT NULL DEFAULT '',
    correlation_id    TEXT    NOT NULL DEFAULT '',
    causation_id      TEXT    NOT NULL DEFAULT '',
    occurred_at       INTEGER NOT NULL,
    created_at        INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    state             INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    last_error        TEXT,
    delivered_at      INTEGER
);
-- Pending rows only: claim cost does not grow with delivered history.
CREATE INDEX IF NOT EXISTS {{p}}outbox_pending_idx ON {{p}}outbox (partition_no, seq) WHERE state = 0;
-- Keys held back by a failed or parked row.
CREATE INDEX IF NOT EXISTS {{p}}outbox_blocked_idx ON {{p}}outbox (partition_no, partition_key, seq) WHERE state = 2 OR (state = 0 AND attempts > 0);
-- Delivered rows kept for retention, oldest first.
CREATE INDEX IF NOT EXISTS {{p}}outbox_delivered_idx ON {{p}}outbox (delivered_at, seq) WHERE state = 1;

-- Relay leases: one row per hash partition of the partition key.
CREATE TABLE IF NOT EXISTS {{p}}outbox_leases (
    partition_no INTEGER PRIMARY KEY,
    owner        TEXT    NOT NULL DEFAULT '',
    expires_at   INTEGER NOT NULL
);

-- Live relays, so each can take a fair share of the partitions.
CREATE TABLE IF NOT EXISTS {{p}}outbox_relays (
    id         TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Consumer inbox: one row per handler and message that took effect.
CREATE TABLE IF NOT EXISTS {{p}}inbox (
    handler      TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (handler, message_id)
) WITHOUT ROWID;

-- Idempotency keys of commands already applied.
CREATE TABLE IF NOT EXISTS {{p}}idempotency (
    key        TEXT    PRIMARY KEY,
    result     BLOB,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
