-- keel schema for MySQL and MariaDB, version 5. {{p}} is replaced by the
-- validated table prefix.

-- How many messages each relay delivered since it started, written with
-- every heartbeat, so that a delivery rate can be read from the database
-- alone. Relays that heartbeat without it count 0.
ALTER TABLE {{p}}outbox_relays ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;
