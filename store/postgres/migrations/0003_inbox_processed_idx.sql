-- Inbox pruning deletes the oldest rows in bounded batches; this index keeps
-- each batch from scanning the whole inbox.
CREATE INDEX IF NOT EXISTS {{p}}inbox_processed_idx ON {{p}}inbox (processed_at);
