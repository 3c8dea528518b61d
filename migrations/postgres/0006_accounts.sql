-- Several VOD accounts from one deployment: an item and a job belong to one account ('default'
-- is the [vod] section's), and the account is part of an item's key: the same media ID in two
-- accounts is two items. Existing rows belong to 'default'; after them the columns have no
-- default, so that a replica of the previous release still running during the upgrade cannot
-- store an item or claim a job (its statements name no account) and send another account's items
-- with the default account's keys: its statements fail until it is replaced.
-- The key leads with the media ID, so that /media/{id} finds an ID's items in it.
-- items_account_due serves each account's lane: its due groups and its next due time, read
-- without walking another account's due items (one held on its quota may have many).
ALTER TABLE items ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
ALTER TABLE items ALTER COLUMN account DROP DEFAULT;
ALTER TABLE items DROP CONSTRAINT items_media_id_task_fingerprint_key;
ALTER TABLE items ADD CONSTRAINT items_key UNIQUE (media_id, account, task, fingerprint);
CREATE INDEX items_account_due ON items (account, due_at, task, fingerprint, media_id);
DROP INDEX items_due;
CREATE INDEX items_due ON items (due_at, account, task, fingerprint, media_id);
DROP INDEX items_group_order;
CREATE INDEX items_group_order ON items (account, task, fingerprint, first_seen);
DROP INDEX items_urgent;
CREATE INDEX items_urgent ON items (account, task, fingerprint, first_seen) WHERE priority > 0;

ALTER TABLE jobs ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ALTER COLUMN account DROP DEFAULT;
DROP INDEX jobs_held;
CREATE INDEX jobs_held ON jobs (account, quota, next_attempt_at) WHERE status = 'held';
