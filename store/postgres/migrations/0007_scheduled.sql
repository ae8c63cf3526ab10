-- keel schema, version 7. {{p}} is replaced by the validated table prefix.

-- Messages scheduled for later (Message.NotBefore). A relay moves each
-- into the outbox when it falls due, so rows waiting for their time never
-- slow the outbox's claims and never hold a key's other messages back.
CREATE TABLE IF NOT EXISTS {{p}}scheduled (
    seq               BIGSERIAL   PRIMARY KEY,
    id                TEXT        NOT NULL UNIQUE,
    due_at            TIMESTAMPTZ NOT NULL,
    topic             TEXT        NOT NULL DEFAULT '',
    partition_key     TEXT        NOT NULL,
    partition_no      INTEGER     NOT NULL,
    name              TEXT        NOT NULL,
    aggregate_type    TEXT        NOT NULL DEFAULT '',
    aggregate_id      TEXT        NOT NULL DEFAULT '',
    aggregate_version BIGINT      NOT NULL DEFAULT 0,
    payload           BYTEA       NOT NULL,
    headers           TEXT        NOT NULL DEFAULT '',
    correlation_id    TEXT        NOT NULL DEFAULT '',
    causation_id      TEXT        NOT NULL DEFAULT '',
    occurred_at       TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);
-- Due rows first, in the order they fall due; those due at the same time
-- in the order they were scheduled.
CREATE INDEX IF NOT EXISTS {{p}}scheduled_due_idx ON {{p}}scheduled (due_at, seq);
