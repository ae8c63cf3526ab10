-- keel schema, version 5. {{p}} is replaced by the validated table prefix.

-- One lease row per hash partition of the partition key, free and expired
-- (owner '', expiry at the Unix epoch), so relays only ever update leases.
INSERT INTO {{p}}outbox_leases (partition_no, owner, expires_at)
SELECT g, '', TIMESTAMPTZ 'epoch' FROM generate_series(0, 63) AS g
ON CONFLICT (partition_no) DO NOTHING;
