//! Jobs: claiming the next attempt of a due job, recording an attempt's result, and operator
//! retries. One body for both backends (see [`sql`](super::sql)).
//!
//! Every update of an attempt is fenced by its number (`status = 'in_flight' AND attempts = ?`),
//! so a flusher whose lease was taken over cannot overwrite the newer attempt.

use super::Store;
use super::rows::{self, StoreRow};
use super::sql::Dialect;
use super::types::*;
use crate::domain::{AccountName, Priority, Quota, Ts};

/// Jobs of a quota that is held: held, or the probe of a hold in flight (a probe keeps its
/// `held_since`).
pub(super) const HELD_OR_PROBING: &str =
    "(status = 'held' OR (status = 'in_flight' AND held_since IS NOT NULL))";

/// The number of IDs of the job `j`.
const JOB_IDS: &str = "(SELECT COUNT(*) FROM job_items i WHERE i.job_id = j.id)";

/// Jobs of one account ($9) whose next attempt is due ($1 now, $2 limit), with their priority
/// and size (holds are an account's own: another account's held quota holds nothing here):
/// - first the probes of holds: a probe whose lease ran out (its process died mid-call, or
///   could not record the answer), then held jobs whose probe time has come, unless a live
///   probe of the same quota is in flight (one probe at a time);
/// - then retries and expired leases of jobs that are not held, except those of a quota that is
///   held (a held or probing job), and those larger than the quota's allowance leaves room for
///   ($3/$4: the most targets a normal/urgent retry of the URL quota may carry, $5/$6 the
///   preload quota's, $7/$8 the directory quota's; see [`RetryRoom`]), so that retries that
///   cannot go never fill the limit; urgent ones first, then the oldest.
///
/// No job with a lease or a hold is left out for good: a lease runs out, a probe whose lease
/// ran out is the probe again, and a quota is held only while a held or probing job is.
fn due_jobs_sql() -> String {
    format!(
        "SELECT j.id, j.task, j.status, j.held_since, j.priority, {JOB_IDS} AS ids
         FROM jobs j
         WHERE j.account = $9 AND (
               (j.held_since IS NOT NULL
                AND ((j.status = 'held' AND j.next_attempt_at <= $1)
                     OR (j.status = 'in_flight' AND j.lease_until <= $1))
                AND NOT EXISTS ({LIVE_PROBE} AND p.quota = j.quota AND p.account = j.account))
            OR (j.held_since IS NULL
                AND ((j.status = 'retrying' AND j.next_attempt_at <= $1)
                     OR (j.status = 'in_flight' AND j.lease_until <= $1))
                AND j.quota NOT IN (SELECT quota FROM jobs WHERE account = $9 AND {HELD_OR_PROBING})
                AND {JOB_IDS} <= CASE WHEN j.priority > 0
                                    THEN CASE j.quota WHEN 'Refresh' THEN $4 WHEN 'Preload' THEN $6 ELSE $8 END
                                    ELSE CASE j.quota WHEN 'Refresh' THEN $3 WHEN 'Preload' THEN $5 ELSE $7 END END))
         ORDER BY CASE WHEN j.held_since IS NULL THEN 2 WHEN j.status = 'in_flight' THEN 0 ELSE 1 END,
                  j.priority DESC, COALESCE(j.next_attempt_at, j.lease_until), j.id LIMIT $2"
    )
}

/// A probe in flight whose lease has not run out ($1 now), as `p`: add the quota's condition.
const LIVE_PROBE: &str = "SELECT 1 FROM jobs p WHERE p.status = 'in_flight' AND p.held_since IS NOT NULL AND p.lease_until > $1";

/// Starts the next attempt of a due job ($1 lease_until, $2 now, $3 id). A held job's time on
/// hold is added to its retry budget, so that `max_age` does not run while it is held; a held
/// job (or a probe whose lease ran out) is not claimed while another live probe of its quota is
/// in flight.
fn claim_job_sql(sql: Dialect) -> String {
    format!(
        "UPDATE jobs SET status = 'in_flight', lease_until = $1, next_attempt_at = NULL,
                attempts = attempts + 1, updated_at = $2,
                budget_from = CASE WHEN held_since IS NOT NULL THEN budget_from + ($2 - updated_at) ELSE budget_from END
         WHERE id = (SELECT c.id FROM jobs c WHERE c.id = $3
                       AND ((c.status IN ('retrying', 'held') AND c.next_attempt_at <= $2)
                            OR (c.status = 'in_flight' AND c.lease_until <= $2))
                       AND NOT (c.held_since IS NOT NULL AND EXISTS (
                           SELECT 1 FROM jobs p WHERE p.quota = c.quota AND p.account = c.account
                             AND p.id <> c.id AND p.status = 'in_flight'
                             AND p.held_since IS NOT NULL AND p.lease_until > $2))
                     {})",
        sql.for_update_skip_locked()
    )
}

/// The end of an attempt that did not succeed: the job's status and next attempt ($1), when
/// ($2), VOD's answer ($3 code, $4 message, $5 request ID), fenced by id ($6) and attempt ($7).
const RECORD_RETRY: &str = "UPDATE jobs SET status = 'retrying', lease_until = NULL, held_since = NULL, next_attempt_at = $1,
        updated_at = $2, error_code = $3, error_message = $4, request_id = $5
     WHERE id = $6 AND status = 'in_flight' AND attempts = $7";

/// As [`RECORD_RETRY`] for an attempt that only met a per-minute limit: counted with the
/// attempts that met a quota (`holds`), which do not use up `vod.max_attempts`.
const RECORD_DEFERRAL: &str = "UPDATE jobs SET status = 'retrying', lease_until = NULL, held_since = NULL, next_attempt_at = $1,
        updated_at = $2, error_code = $3, error_message = $4, request_id = $5, holds = holds + 1
     WHERE id = $6 AND status = 'in_flight' AND attempts = $7";

/// As [`RECORD_RETRY`] for a job that failed for good ($1 is null).
const RECORD_FAILURE: &str = "UPDATE jobs SET status = 'failed', lease_until = NULL, next_attempt_at = $1, held_since = NULL,
        updated_at = $2, error_code = $3, error_message = $4, request_id = $5
     WHERE id = $6 AND status = 'in_flight' AND attempts = $7";

/// As [`RECORD_RETRY`] for a job held on the quota until its next probe ($1).
const RECORD_HOLD: &str = "UPDATE jobs SET status = 'held', lease_until = NULL, next_attempt_at = $1, updated_at = $2,
        error_code = $3, error_message = $4, request_id = $5, held_since = COALESCE(held_since, $2), holds = holds + 1
     WHERE id = $6 AND status = 'in_flight' AND attempts = $7";

/// A successful attempt ($1 when, $2 VOD's job ID, $3 request ID, $4 when to check it), fenced
/// by id ($5) and attempt ($6).
const RECORD_SUCCESS: &str = "UPDATE jobs SET status = 'succeeded', lease_until = NULL, updated_at = $1, vod_job_id = $2,
        request_id = $3, held_since = NULL, error_code = NULL, error_message = NULL, check_at = $4, checks = 0
     WHERE id = $5 AND status = 'in_flight' AND attempts = $6";

/// Runs one of the `RECORD_*` statements on `$conn`: `Ok(false)` when the attempt was taken
/// over.
macro_rules! end_attempt {
    ($conn:expr, $sql:expr, $statement:expr, $id:expr, $attempt:expr, $now:expr, $next:expr, $failure:expr) => {
        sqlx::query($sql.sql($statement))
            .bind($next.map(|t: Ts| t.0))
            .bind($now.0)
            .bind($failure.code.as_str())
            .bind($failure.message.as_str())
            .bind($failure.request_id.as_deref())
            .bind($id)
            .bind($attempt as i64)
            .execute($conn)
            .await
            .map(|done| done.rows_affected() > 0)
    };
}

impl Store {
    /// Jobs whose next attempt is due: probes first, then urgent ones, then the oldest (see
    /// [`due_jobs_sql`]).
    pub async fn due_jobs(
        &self,
        account: &AccountName,
        now: Ts,
        limit: usize,
    ) -> Result<Vec<DueJob>, StoreError> {
        self.due_jobs_within(account, now, limit, |_| RetryRoom::OPEN)
            .await
    }

    /// As [`Store::due_jobs`], leaving out the retries larger than `room` of their quota (the
    /// probes of holds always come).
    pub async fn due_jobs_within(
        &self,
        account: &AccountName,
        now: Ts,
        limit: usize,
        room: impl Fn(Quota) -> RetryRoom,
    ) -> Result<Vec<DueJob>, StoreError> {
        let (refresh, preload, directory) = (
            room(Quota::Refresh).bounds(),
            room(Quota::Preload).bounds(),
            room(Quota::Directory).bounds(),
        );
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(&due_jobs_sql()))
                .bind(now.0)
                .bind(limit as i64)
                .bind(refresh.0)
                .bind(refresh.1)
                .bind(preload.0)
                .bind(preload.1)
                .bind(directory.0)
                .bind(directory.1)
                .bind(account.as_str())
                .fetch_all(b.writes())
                .await?;
            rows.iter().map(due_job_from_row).collect()
        })
    }

    /// Starts a new attempt of a job that is due; on PostgreSQL a job another transaction is
    /// claiming is passed over.
    pub async fn claim_job(
        &self,
        id: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        self.claim(id, None, now, lease_until).await
    }

    /// Starts the probe of a quota hold: as [`Store::claim_job`], never while another live probe
    /// of the quota is in flight. On PostgreSQL the probe claims of a quota take a
    /// transaction-scoped advisory lock first, so that two flushers (a leader cut off from the
    /// database and its successor) cannot each see no probe and claim one.
    pub async fn claim_probe(
        &self,
        id: &str,
        task: Quota,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        self.claim(id, Some(task), now, lease_until).await
    }

    async fn claim(
        &self,
        id: &str,
        probe: Option<Quota>,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            if let Some(lock) = probe.and_then(|task| sql.probe_lock(task)) {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let updated = sqlx::query(sql.sql(&claim_job_sql(sql)))
                .bind(lease_until.0)
                .bind(now.0)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Ok(None);
            }
            let job = load_job!(&mut *tx, sql, id)?;
            tx.commit().await?;
            Ok(job)
        })
    }

    /// Records a successful attempt: its items are `sent`, but for those VOD reported as not
    /// existing or forbidden. `attempt` fences off a flusher whose lease was taken over.
    pub async fn record_success(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        success: &Success,
    ) -> Result<bool, StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            let updated = sqlx::query(sql.sql(RECORD_SUCCESS))
                .bind(now.0)
                .bind(&success.vod_job_id)
                .bind(&success.request_id)
                .bind(success.check_at.map(|t| t.0))
                .bind(id)
                .bind(attempt as i64)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(sql.sql("UPDATE job_items SET outcome = 'sent' WHERE job_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for (list, outcome) in [
                (&success.non_existent, "non_existent"),
                (&success.forbidden, "forbidden"),
            ] {
                for media_id in list {
                    sqlx::query(sql.sql(
                        "UPDATE job_items SET outcome = $1 WHERE job_id = $2 AND media_id = $3",
                    ))
                    .bind(outcome)
                    .bind(id)
                    .bind(media_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if let Some(follow) = &success.follow {
                sqlx::query(sql.sql(
                    "INSERT INTO cdn_tasks (job_id, target, path, task_ids, object_type, status, created_at, follow_until)
                     SELECT job_id, media_id, '', $2, $3, 'Pending', $4, $5 FROM job_items WHERE job_id = $1",
                ))
                .bind(id)
                .bind(&follow.task_ids)
                .bind(follow.object_type)
                .bind(now.0)
                .bind(follow.until.0)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Puts a job back to be sent again at `next_attempt_at`.
    pub async fn record_retry(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        next_attempt_at: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        self.end_attempt(
            RECORD_RETRY,
            id,
            attempt,
            now,
            Some(next_attempt_at),
            failure,
        )
        .await
    }

    /// Puts a job back until `next_attempt_at` without counting the attempt (a per-minute limit).
    pub async fn record_deferral(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        next_attempt_at: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        self.end_attempt(
            RECORD_DEFERRAL,
            id,
            attempt,
            now,
            Some(next_attempt_at),
            failure,
        )
        .await
    }

    /// Holds a job on the daily quota until its next probe at `until`.
    pub async fn record_hold(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        until: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        self.end_attempt(RECORD_HOLD, id, attempt, now, Some(until), failure)
            .await
    }

    /// Fails a job for good: it and its items are `failed`.
    pub async fn record_failure(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            if !end_attempt!(&mut *tx, sql, RECORD_FAILURE, id, attempt, now, None::<Ts>, failure)? {
                return Ok(false);
            }
            sqlx::query(sql.sql("UPDATE job_items SET outcome = 'failed' WHERE job_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// One fenced update of an attempt's end (`statement` is one of the `RECORD_*` above).
    async fn end_attempt(
        &self,
        statement: &str,
        id: &str,
        attempt: u32,
        now: Ts,
        next: Option<Ts>,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        with_backend!(self, b, sql => {
            Ok(end_attempt!(b.writes(), sql, statement, id, attempt, now, next, failure)?)
        })
    }

    /// Schedules a failed job to be sent again now, with a fresh attempt budget.
    pub async fn retry_job(&self, id: &str, now: Ts) -> Result<RetryOutcome, StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            let status: Option<String> = sqlx::query_scalar(sql.sql(&format!(
                "SELECT status FROM jobs WHERE id = $1 {}",
                sql.for_update()
            )))
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
            sqlx::query(sql.sql(
                "UPDATE jobs SET status = 'retrying', next_attempt_at = $1, attempts = 0, budget_from = $1, updated_at = $1
                 WHERE id = $2",
            ))
            .bind(now.0)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(sql.sql("UPDATE job_items SET outcome = 'pending' WHERE job_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(RetryOutcome::Scheduled)
        })
    }
}

/// A row of [`due_jobs_sql`].
fn due_job_from_row(row: &impl StoreRow) -> Result<DueJob, StoreError> {
    Ok(DueJob {
        id: row.text("id"),
        task: rows::parse_task(&row.text("task"))?,
        status: rows::parse_status(&row.text("status"))?,
        held_since: row.opt_int("held_since").map(Ts),
        priority: Priority::from_rank(row.int("priority")),
        ids: u64::try_from(row.int("ids")).unwrap_or(0),
    })
}
