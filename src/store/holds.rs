//! Quota holds: the daily quotas that are held, and the end of a hold. One body for
//! both backends (see [`sql`](super::sql)); a job is put on hold by
//! [`Store::record_hold`](super::Store::record_hold).

use super::Store;
use super::jobs::HELD_OR_PROBING;
use super::rows::{self, StoreRow};
use super::types::*;
use crate::domain::{AccountName, Quota, Ts};

impl Store {
    /// Ends the hold of an account's quota ($1 now, $2 quota, $3 account): its held jobs are due
    /// now, as retries, with their time on hold added to their retry budget; returns how many.
    pub async fn release_held(
        &self,
        account: &AccountName,
        quota: Quota,
        now: Ts,
    ) -> Result<u64, StoreError> {
        with_backend!(self, b, sql => {
            let done = sqlx::query(sql.sql(
                "UPDATE jobs SET status = 'retrying', next_attempt_at = $1, held_since = NULL,
                        budget_from = budget_from + ($1 - updated_at), updated_at = $1
                 WHERE status = 'held' AND quota = $2 AND account = $3",
            ))
            .bind(now.0)
            .bind(quota.as_str())
            .bind(account.as_str())
            .execute(b.writes())
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Moves the next probe of an account's held jobs of a quota to `until` (one probe at a
    /// time).
    pub async fn defer_held(
        &self,
        account: &AccountName,
        quota: Quota,
        until: Ts,
    ) -> Result<u64, StoreError> {
        with_backend!(self, b, sql => {
            let done = sqlx::query(sql.sql(
                "UPDATE jobs SET next_attempt_at = $1
                 WHERE status = 'held' AND quota = $2 AND account = $3 AND next_attempt_at < $1",
            ))
            .bind(until.0)
            .bind(quota.as_str())
            .bind(account.as_str())
            .execute(b.writes())
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// How many targets the held job of an account's quota probed next carries (0 when none
    /// is held).
    pub async fn probe_size(&self, account: &AccountName, quota: Quota) -> Result<u64, StoreError> {
        with_backend!(self, b, sql => {
            let ids: i64 = sqlx::query_scalar(sql.sql(
                "SELECT COUNT(*) FROM job_items WHERE job_id = (
                     SELECT id FROM jobs WHERE quota = $1 AND account = $2 AND status = 'held'
                     ORDER BY next_attempt_at, id LIMIT 1)",
            ))
            .bind(quota.as_str())
            .bind(account.as_str())
            .fetch_one(b.writes())
            .await?;
            Ok(u64::try_from(ids).unwrap_or(0))
        })
    }

    /// The quotas of an account (of every account: `None`) that are held, with their held jobs.
    pub async fn held_tasks(
        &self,
        account: Option<&AccountName>,
    ) -> Result<Vec<HeldTask>, StoreError> {
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(&format!(
                "SELECT account, quota, COUNT(*) AS jobs, MIN(held_since) AS since,
                        MIN(CASE WHEN status = 'held' THEN next_attempt_at END) AS until, MAX(error_code) AS code,
                        SUM(CASE WHEN status = 'in_flight' THEN 1 ELSE 0 END) AS probes
                 FROM jobs WHERE ($1 IS NULL OR account = $1) AND {HELD_OR_PROBING}
                 GROUP BY account, quota ORDER BY account, quota"
            )))
            .bind(account.map(AccountName::as_str))
            .fetch_all(b.writes())
            .await?;
            rows.iter().map(held_task_from_row).collect()
        })
    }
}

/// A row of [`Store::held_tasks`].
fn held_task_from_row(row: &impl StoreRow) -> Result<HeldTask, StoreError> {
    Ok(HeldTask {
        account: rows::parse_account(&row.text("account"))?,
        quota: rows::parse_quota(&row.text("quota"))?,
        jobs: row.int("jobs") as u64,
        since: Ts(row.opt_int("since").unwrap_or_default()),
        until: row.opt_int("until").map(Ts),
        code: row.opt_text("code").unwrap_or_default(),
        probes: u64::try_from(row.int("probes")).unwrap_or(0),
    })
}
