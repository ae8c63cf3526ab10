-- keel schema, version 2. {{p}} is replaced by the validated table prefix.

-- Pending rows in outbox order, with the partition alongside: relays claim
-- the oldest pending rows of the partitions they lease, so each batch is a
-- run of neighbouring rows, and skip other relays' partitions without
-- reading the table.
CREATE INDEX IF NOT EXISTS {{p}}outbox_claim_idx ON {{p}}outbox (seq, partition_no) WHERE state = 0;
