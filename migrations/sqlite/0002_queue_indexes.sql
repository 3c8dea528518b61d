-- Indexes for a large queue (bench/drills/scale.sh, 1,000,000 pending items).
--
-- items_due covers the flusher's look for due groups (a range of due_at, no table lookups), and
-- the due count and next due time of /queue and /metrics.
-- items_group_order gives a group's items oldest first, so claiming a batch reads about 20 index
-- entries instead of sorting every due item of the group.
-- items_first_seen gives the oldest pending item without a scan.
-- items_media is dropped: the UNIQUE (media_id, task, fingerprint) index serves lookups by media ID.
DROP INDEX items_group_due;
DROP INDEX items_due;
DROP INDEX items_media;
CREATE INDEX items_due ON items (due_at, task, fingerprint, media_id);
CREATE INDEX items_group_order ON items (task, fingerprint, first_seen);
CREATE INDEX items_first_seen ON items (first_seen);
