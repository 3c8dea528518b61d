-- Submission checks: after a successful call, GetMediaRefreshJobs tells what became of each media
-- ID's submission. A job waiting for a check has check_at set (cleared when no check is left);
-- an item's outcome becomes 'submitted' or 'submit_failed', with VOD's code and message.
ALTER TABLE jobs ADD COLUMN check_at INTEGER;
-- A job made of IDs of another job whose submission failed for a passing reason names it.
ALTER TABLE jobs ADD COLUMN resubmission_of TEXT;
ALTER TABLE jobs ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_items ADD COLUMN error_code TEXT;
ALTER TABLE job_items ADD COLUMN error_message TEXT;
CREATE INDEX jobs_check ON jobs (check_at) WHERE check_at IS NOT NULL;
