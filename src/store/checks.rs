//! Submission checks: which successful jobs are due to be checked, and what VOD reported for
//! them. One body for both backends (see [`sql`](super::sql)).

use super::Store;
use super::rows::{self, StoreRow};
use super::sql::json_list;
use super::types::*;
use crate::domain::Ts;

/// A job's check is counted and moved to $2, or cleared once no item of it is `sent` ($1 id).
const COUNT_CHECK: &str = "UPDATE jobs SET checks = checks + 1, check_at = CASE
         WHEN EXISTS (SELECT 1 FROM job_items WHERE job_id = $1 AND outcome = 'sent') THEN $2
         ELSE NULL END
     WHERE id = $1";

/// The job that resends a checked job's failed IDs ($1 its id, $2 now, $3 when to send it,
/// $4 the checked job, $5 the quota code when it starts held): same account, task, options and
/// budget.
pub(super) const RESUBMISSION_JOB: &str = "INSERT INTO jobs (id, account, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from,
                       updated_at, next_attempt_at, resubmission_of, priority, error_code, held_since)
     SELECT $1, account, task, fingerprint, options, CASE WHEN $5 IS NULL THEN 'retrying' ELSE 'held' END, dry_run, 0, $2,
            budget_from, $2, $3, id, priority, $5, CASE WHEN $5 IS NULL THEN NULL ELSE $2 END
     FROM jobs WHERE id = $4";

impl Store {
    /// An account's successful jobs whose submissions are due to be checked, the longest
    /// waiting first.
    pub async fn due_checks(
        &self,
        account: &crate::domain::AccountName,
        now: Ts,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(&format!(
                "SELECT id, vod_job_id, checks, budget_from FROM jobs {}
                 WHERE check_at <= $1 AND account = $3 AND status = 'succeeded' AND vod_job_id IS NOT NULL
                 ORDER BY check_at LIMIT $2",
                sql.indexed_by("jobs_check")
            )))
            .bind(now.0)
            .bind(limit as i64)
            .bind(account.as_str())
            .fetch_all(b.reads())
            .await?;
            Ok(rows.iter().map(due_check_from_row).collect())
        })
    }

    /// Records what VOD reported for a job's submissions (only IDs still `sent` change), counts
    /// the check, and creates the job that resends the IDs worth resending, in one transaction.
    pub async fn record_check(&self, id: &str, result: &CheckResult) -> Result<(), StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            // At most 20 IDs: a statement each.
            for submission in &result.submissions {
                let (outcome, code, message) = rows::submission_outcome(submission);
                sqlx::query(sql.sql(
                    "UPDATE job_items SET outcome = $1, error_code = $2, error_message = $3
                     WHERE job_id = $4 AND media_id = $5 AND outcome = 'sent'",
                ))
                .bind(outcome)
                .bind(code)
                .bind(message)
                .bind(id)
                .bind(&submission.media_id)
                .execute(&mut *tx)
                .await?;
                // The ID's CDN tasks, followed from the call's time (their creation).
                if let (Ok(()), Some(until)) = (&submission.result, result.follow_until) {
                    for (task_id, url) in &submission.tasks {
                        // A check made again (its recording lost) finds the rows there.
                        sqlx::query(sql.sql(
                            "INSERT INTO cdn_tasks (job_id, target, path, task_ids, object_type, status, created_at, follow_until)
                             SELECT id, $2, $3, $4, CASE task WHEN 'Preload' THEN 'preload' ELSE 'file' END, 'Pending', updated_at, $5
                             FROM jobs WHERE id = $1 ON CONFLICT DO NOTHING",
                        ))
                        .bind(id)
                        .bind(&submission.media_id)
                        .bind(url)
                        .bind(task_id)
                        .bind(until.0)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            sqlx::query(sql.sql(COUNT_CHECK))
                .bind(id)
                .bind(result.again_at.map(|t| t.0))
                .execute(&mut *tx)
                .await?;
            if let Some(resubmission) = &result.resubmission {
                sqlx::query(sql.sql(RESUBMISSION_JOB))
                    .bind(&resubmission.job_id)
                    .bind(resubmission.created_at.0)
                    .bind(resubmission.send_at.0)
                    .bind(id)
                    .bind(&resubmission.held)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql.sql(&format!(
                    "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
                     SELECT $1, ROW_NUMBER() OVER (ORDER BY position) - 1, media_id, 'pending', first_seen, events
                     FROM job_items WHERE job_id = $2 AND media_id IN {}",
                    sql.json_strings(3)
                )))
                .bind(&resubmission.job_id)
                .bind(id)
                .bind(json_list(&resubmission.media_ids))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// A row of the due checks.
fn due_check_from_row(row: &impl StoreRow) -> DueCheck {
    DueCheck {
        job_id: row.text("id"),
        vod_job_id: row.text("vod_job_id"),
        checks: row.int("checks") as u32,
        budget_from: Ts(row.int("budget_from")),
    }
}
