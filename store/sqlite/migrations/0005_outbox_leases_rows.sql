-- keel schema, version 5. {{p}} is replaced by the validated table prefix.

-- One lease row per hash partition of the partition key, free and expired
-- (owner '', expiry at the Unix epoch), so relays only ever update leases.
WITH RECURSIVE n(p) AS (SELECT 0 UNION ALL SELECT p + 1 FROM n WHERE p < 63)
INSERT INTO {{p}}outbox_leases (partition_no, owner, expires_at)
SELECT p, '', 0 FROM n WHERE true
ON CONFLICT (partition_no) DO NOTHING;
