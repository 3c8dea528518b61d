-- Several VOD accounts from one deployment: an item and a job belong to one account ('default'
-- is the [vod] section's), and the account is part of an item's key: the same media ID in two
-- accounts is two items. Existing rows belong to 'default'.
ALTER TABLE items ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
ALTER TABLE items DROP CONSTRAINT items_media_id_task_fingerprint_key;
ALTER TABLE items ADD CONSTRAINT items_key UNIQUE (account, media_id, task, fingerprint);
DROP INDEX items_due;
CREATE INDEX items_due ON items (due_at, account, task, fingerprint, media_id);
DROP INDEX items_group_order;
CREATE INDEX items_group_order ON items (account, task, fingerprint, first_seen);
DROP INDEX items_urgent;
CREATE INDEX items_urgent ON items (account, task, fingerprint, first_seen) WHERE priority > 0;

ALTER TABLE jobs ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
DROP INDEX jobs_held;
CREATE INDEX jobs_held ON jobs (account, quota, next_attempt_at) WHERE status = 'held';
