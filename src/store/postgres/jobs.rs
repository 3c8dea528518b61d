//! Jobs: the results of attempts and of submission checks, and operator retries, each fenced by
//! the attempt's number.

use super::PgStore;
use crate::domain::Ts;
use crate::store::rows::{self};
use crate::store::types::*;

impl PgStore {
    /// Records a successful attempt. `attempt` fences off a flusher whose lease was taken over.
    pub async fn record_success(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        success: &Success,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', lease_until = NULL, updated_at = $1, vod_job_id = $2, request_id = $3,
                    held_since = NULL, error_code = NULL, error_message = NULL, check_at = $6, checks = 0
             WHERE id = $4 AND status = 'in_flight' AND attempts = $5",
        )
        .bind(now.0)
        .bind(&success.vod_job_id)
        .bind(&success.request_id)
        .bind(id)
        .bind(attempt as i64)
        .bind(success.check_at.map(|t| t.0))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE job_items SET outcome = CASE
                 WHEN media_id = ANY($3) THEN 'forbidden'
                 WHEN media_id = ANY($2) THEN 'non_existent'
                 ELSE 'sent' END
             WHERE job_id = $1",
        )
        .bind(id)
        .bind(&success.non_existent)
        .bind(&success.forbidden)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn due_checks(&self, now: Ts, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, vod_job_id, checks, budget_from FROM jobs
             WHERE check_at <= $1 AND status = 'succeeded' AND vod_job_id IS NOT NULL
             ORDER BY check_at LIMIT $2",
        )
        .bind(now.0)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::due_check_from_row).collect())
    }

    /// Records what VOD reported for a job's submissions: only IDs still `sent` change.
    pub async fn record_check(&self, id: &str, result: &CheckResult) -> Result<(), StoreError> {
        // One statement for the job's (at most 20) IDs, well under MAX_STATEMENT_BYTES.
        let mut media_ids = Vec::with_capacity(result.submissions.len());
        let mut outcomes = Vec::with_capacity(result.submissions.len());
        let mut codes: Vec<Option<&str>> = Vec::with_capacity(result.submissions.len());
        let mut messages: Vec<Option<&str>> = Vec::with_capacity(result.submissions.len());
        for submission in &result.submissions {
            let (outcome, code, message) = rows::submission_outcome(submission);
            media_ids.push(submission.media_id.as_str());
            outcomes.push(outcome);
            codes.push(code);
            messages.push(message);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE job_items ji SET outcome = r.outcome, error_code = r.code, error_message = r.message
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[]) AS r (media_id, outcome, code, message)
             WHERE ji.job_id = $1 AND ji.media_id = r.media_id AND ji.outcome = 'sent'",
        )
        .bind(id)
        .bind(&media_ids)
        .bind(&outcomes)
        .bind(&codes)
        .bind(&messages)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET checks = checks + 1, check_at = CASE
                 WHEN EXISTS (SELECT 1 FROM job_items WHERE job_id = $1 AND outcome = 'sent') THEN $2
                 ELSE NULL END
             WHERE id = $1",
        )
        .bind(id)
        .bind(result.again_at.map(|t| t.0))
            .execute(&mut *tx)
            .await?;
        if let Some(resubmission) = &result.resubmission {
            sqlx::query(
                "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at,
                                   next_attempt_at, resubmission_of, priority, error_code, held_since)
                 SELECT $1, task, fingerprint, options, CASE WHEN $5 IS NULL THEN 'retrying' ELSE 'held' END, dry_run, 0, $2,
                        budget_from, $2, $3, id, priority, $5, CASE WHEN $5 IS NULL THEN NULL ELSE $2 END
                 FROM jobs WHERE id = $4",
            )
            .bind(&resubmission.job_id)
            .bind(resubmission.created_at.0)
            .bind(resubmission.send_at.0)
            .bind(id)
            .bind(&resubmission.held)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
                 SELECT $1, ROW_NUMBER() OVER (ORDER BY position) - 1, media_id, 'pending', first_seen, events
                 FROM job_items WHERE job_id = $2 AND media_id = ANY($3)",
            )
            .bind(&resubmission.job_id)
            .bind(id)
            .bind(&resubmission.media_ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_retry(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        next_attempt_at: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'retrying', lease_until = NULL, held_since = NULL, next_attempt_at = $1, updated_at = $2,
                    error_code = $3, error_message = $4, request_id = $5
             WHERE id = $6 AND status = 'in_flight' AND attempts = $7",
        )
        .bind(next_attempt_at.0)
        .bind(now.0)
        .bind(&failure.code)
        .bind(&failure.message)
        .bind(&failure.request_id)
        .bind(id)
        .bind(attempt as i64)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    pub async fn record_failure(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'failed', lease_until = NULL, next_attempt_at = NULL, held_since = NULL, updated_at = $1,
                    error_code = $2, error_message = $3, request_id = $4
             WHERE id = $5 AND status = 'in_flight' AND attempts = $6",
        )
        .bind(now.0)
        .bind(&failure.code)
        .bind(&failure.message)
        .bind(&failure.request_id)
        .bind(id)
        .bind(attempt as i64)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE job_items SET outcome = 'failed' WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Schedules a failed job to be sent again now, with a fresh attempt budget.
    pub async fn retry_job(&self, id: &str, now: Ts) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Ok(RetryOutcome::NotFound);
        };
        let status = rows::parse_status(&status)?;
        if status != JobStatus::Failed {
            return Ok(RetryOutcome::NotFailed(status));
        }
        sqlx::query(
            "UPDATE jobs SET status = 'retrying', next_attempt_at = $1, attempts = 0, budget_from = $1, updated_at = $1
             WHERE id = $2",
        )
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE job_items SET outcome = 'pending' WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Scheduled)
    }
}
