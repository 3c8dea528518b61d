-- The same as migrations/sqlite/0007_targets.sql.
-- Files and directories beside media IDs. An item's and a job's task names the kind of target
-- with VOD's TaskType (Refresh and Preload stay the media tasks; FileRefresh, FilePreload and
-- DirectoryRefresh are new), and the target column (media_id) holds the normalised URL of a file
-- or directory. Quota holds are per daily quota, which several tasks may share (a media ID's play
-- URLs and files spend the same URL quota): quota names it (Refresh, Preload or Directory).
ALTER TABLE jobs ADD COLUMN quota TEXT NOT NULL DEFAULT 'Refresh';
UPDATE jobs SET quota = 'Preload' WHERE task = 'Preload';
DROP INDEX jobs_held;
CREATE INDEX jobs_held ON jobs (quota, next_attempt_at) WHERE status = 'held';
