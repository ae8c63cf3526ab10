-- keel schema for MySQL 8 and MariaDB 10.6+, version 4. {{p}} is replaced
-- by the validated table prefix.

-- Messages scheduled for later (Message.NotBefore). A relay moves each
-- into the outbox when it falls due, so rows waiting for their time never
-- slow the outbox's claims and never hold a key's other messages back.
CREATE TABLE IF NOT EXISTS {{p}}scheduled (
    seq               BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id                VARBINARY(255) NOT NULL,
    due_at            DATETIME(6)    NOT NULL,
    topic             TEXT           NOT NULL DEFAULT (''),
    partition_key     VARBINARY(512) NOT NULL,
    partition_no      INT            NOT NULL,
    name              TEXT           NOT NULL,
    aggregate_type    TEXT           NOT NULL DEFAULT (''),
    aggregate_id      TEXT           NOT NULL DEFAULT (''),
    aggregate_version BIGINT         NOT NULL DEFAULT 0,
    payload           LONGBLOB       NOT NULL,
    headers           LONGTEXT       NOT NULL DEFAULT (''),
    correlation_id    TEXT           NOT NULL DEFAULT (''),
    causation_id      TEXT           NOT NULL DEFAULT (''),
    occurred_at       DATETIME(6)    NOT NULL,
    created_at        DATETIME(6)    NOT NULL,
    UNIQUE KEY {{p}}scheduled_id_key (id),
    -- Due rows first, in the order they fall due; those due at the same time
    -- in the order they were scheduled.
    KEY {{p}}scheduled_due_idx (due_at, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
