-- keel schema for MySQL 8 and MariaDB 10.6+, version 1. {{p}} is replaced
-- by the validated table prefix. Timestamps are DATETIME(6) in UTC. Text
-- that keys a row is compared byte for byte (utf8mb4_bin), as on the other
-- dialects: "Acc-1", "acc-1" and "acc-1 " are different ids. Key columns
-- are VARBINARY, since every utf8mb4 _bin collation both servers share pads
-- with spaces. Indexes are declared with their tables, since MySQL has no
-- CREATE INDEX IF NOT EXISTS.

-- State-stored aggregates in the ready document table.
CREATE TABLE IF NOT EXISTS {{p}}aggregates (
    aggregate_type VARBINARY(255) NOT NULL,
    aggregate_id   VARBINARY(512) NOT NULL,
    version        BIGINT       NOT NULL,
    state          LONGTEXT     NOT NULL,
    created_at     DATETIME(6)  NOT NULL,
    updated_at     DATETIME(6)  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The transactional outbox. Each row carries its own delivery state, so a
-- row whose transaction commits late is never skipped by a moving cursor.
-- state: 0 pending, 1 delivered (kept for retention), 2 parked. MySQL has
-- no partial indexes: the generated column blocked (1 retrying, 2 parked)
-- lets a claim find the rows that hold a key back without reading the
-- key's pending rows.
CREATE TABLE IF NOT EXISTS {{p}}outbox (
    seq               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id                VARBINARY(255) NOT NULL,
    topic             TEXT         NOT NULL DEFAULT (''),
    partition_key     VARBINARY(512) NOT NULL,
    partition_no      INT          NOT NULL,
    name              TEXT         NOT NULL,
    aggregate_type    TEXT         NOT NULL DEFAULT (''),
    aggregate_id      TEXT         NOT NULL DEFAULT (''),
    aggregate_version BIGINT       NOT NULL DEFAULT 0,
    payload           LONGBLOB     NOT NULL,
    headers           LONGTEXT     NOT NULL DEFAULT (''),
    correlation_id    TEXT         NOT NULL DEFAULT (''),
    causation_id      TEXT         NOT NULL DEFAULT (''),
    occurred_at       DATETIME(6)  NOT NULL,
    created_at        DATETIME(6)  NOT NULL,
    state             TINYINT      NOT NULL DEFAULT 0,
    attempts          INT          NOT NULL DEFAULT 0,
    next_attempt_at   DATETIME(6)  NULL,
    last_error        TEXT         NULL,
    delivered_at      DATETIME(6)  NULL,
    blocked           TINYINT AS (CASE WHEN state = 2 THEN 2 WHEN state = 0 AND attempts > 0 THEN 1 ELSE 0 END) VIRTUAL,
    UNIQUE KEY {{p}}outbox_id_key (id),
    -- Pending rows in outbox order, for claims; parked rows for listing.
    KEY {{p}}outbox_state_idx (state, seq),
    -- Keys held back by a failed or parked row.
    KEY {{p}}outbox_blocked_idx (partition_no, partition_key, blocked, seq),
    -- Delivered rows kept for retention, oldest first.
    KEY {{p}}outbox_delivered_idx (state, delivered_at, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Relay leases: one row per hash partition of the partition key.
CREATE TABLE IF NOT EXISTS {{p}}outbox_leases (
    partition_no INT          NOT NULL PRIMARY KEY,
    owner        VARBINARY(255) NOT NULL DEFAULT '',
    expires_at   DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Live relays, so each can take a fair share of the partitions.
CREATE TABLE IF NOT EXISTS {{p}}outbox_relays (
    id         VARBINARY(255) NOT NULL PRIMARY KEY,
    expires_at DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Consumer inbox: one row per handler and message that took effect.
CREATE TABLE IF NOT EXISTS {{p}}inbox (
    handler      VARBINARY(255) NOT NULL,
    message_id   VARBINARY(255) NOT NULL,
    processed_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (handler, message_id),
    KEY {{p}}inbox_processed_idx (processed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Idempotency keys of commands already applied.
CREATE TABLE IF NOT EXISTS {{p}}idempotency (
    `key`      VARBINARY(255) NOT NULL PRIMARY KEY,
    result     LONGBLOB     NULL,
    created_at DATETIME(6)  NOT NULL,
    KEY {{p}}idempotency_created_idx (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
