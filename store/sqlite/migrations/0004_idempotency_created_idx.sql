-- Pruning old idempotency keys deletes the oldest first, in bounded batches.
CREATE INDEX IF NOT EXISTS {{p}}idempotency_created_idx ON {{p}}idempotency (created_at);
