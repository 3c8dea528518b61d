-- The same indexes as migrations/sqlite/0002_queue_indexes.sql, for a large queue.
--
-- items_due covers the flusher's look for due groups and the due count of /queue and /metrics;
-- items_group_order gives a group's items oldest first, so a claim reads about 20 index entries;
-- items_first_seen gives the oldest pending item without a scan. The UNIQUE (media_id, task,
-- fingerprint) index already serves lookups by media ID.
DROP INDEX items_group_due;
DROP INDEX items_due;
DROP INDEX items_media;
CREATE INDEX items_due ON items (due_at, task, fingerprint, media_id);
CREATE INDEX items_group_order ON items (task, fingerprint, first_seen);
CREATE INDEX items_first_seen ON items (first_seen);
