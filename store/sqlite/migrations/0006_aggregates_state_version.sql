-- keel schema, version 6. {{p}} is replaced by the validated table prefix.

-- The version of the shape each document's state was saved in, so that a
-- repository can migrate state saved by an older release when it loads it.
-- Rows saved before this column existed are version 1.
ALTER TABLE {{p}}aggregates ADD COLUMN state_version INTEGER NOT NULL DEFAULT 1;
