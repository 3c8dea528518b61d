-- The same as migrations/sqlite/0005_quota_holds.sql, in PostgreSQL's types.
-- Quota holds: a job answered "quota used up" (QuotaExceeded.Refresh / .Preload) waits with status
-- 'held' instead of failing. held_since is when its hold began (vod.max_hold bounds it); holds
-- counts the attempts that only met the quota, which do not use up vod.max_attempts.
ALTER TABLE jobs ADD COLUMN held_since BIGINT;
ALTER TABLE jobs ADD COLUMN holds BIGINT NOT NULL DEFAULT 0;
-- Urgent items (priority 1) skip the quiet period and are claimed before normal ones; a job is
-- urgent when it carries an urgent item.
ALTER TABLE items ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
CREATE INDEX items_urgent ON items (task, fingerprint, first_seen) WHERE priority > 0;
CREATE INDEX jobs_held ON jobs (task, next_attempt_at) WHERE status = 'held';
