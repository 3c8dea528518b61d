-- The same as migrations/sqlite/0007_targets.sql, in PostgreSQL's types.
-- Files and directories beside media IDs. An item's and a job's task names the kind of target
-- with VOD's TaskType (Refresh and Preload stay the media tasks; FileRefresh, FilePreload and
-- DirectoryRefresh are new), and the target column (media_id) holds the normalised URL of a file
-- or directory. Quota holds are per daily quota, which several tasks may share (a media ID's play
-- URLs and files spend the same URL quota): quota names it (Refresh, Preload or Directory).
-- Computed from the task, so that every writer, a process of the previous release during a
-- rolling update included, files a job under its quota.
ALTER TABLE jobs ADD COLUMN quota TEXT GENERATED ALWAYS AS (CASE task
    WHEN 'Preload' THEN 'Preload' WHEN 'FilePreload' THEN 'Preload'
    WHEN 'DirectoryRefresh' THEN 'Directory' ELSE 'Refresh' END) STORED;
DROP INDEX jobs_held;
CREATE INDEX jobs_held ON jobs (quota, next_attempt_at) WHERE status = 'held';

-- A purge followed to the edge: the CDN tasks of each job item (one per play URL of a media ID,
-- one per file or directory), read with DescribeVodRefreshTasks until the CDN reports them
-- Complete or Failed, or until follow_until. task_ids is the task's ID, or for a URL call the IDs
-- it answered (the URLs of one domain share one; which URL has which is read from the listing).
-- done_at is when every task of the item completed (its outcome 'complete').
CREATE TABLE cdn_tasks (
    job_id       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    -- The play URL of a media ID's task; empty for a file or directory, whose URL is the target
    -- (a URL of up to 2,048 bytes is stored once, within an index entry's limit).
    path         TEXT    NOT NULL,
    task_ids     TEXT    NOT NULL,
    object_type  TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    follow_until BIGINT NOT NULL,
    PRIMARY KEY (job_id, target, path)
);
CREATE INDEX cdn_tasks_open ON cdn_tasks (follow_until) WHERE status IN ('Pending', 'Refreshing');
ALTER TABLE job_items ADD COLUMN done_at BIGINT;
CREATE INDEX job_items_done ON job_items (done_at) WHERE done_at IS NOT NULL;
