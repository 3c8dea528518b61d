//! Reads of jobs: one job with its items, a page of `GET /jobs`, the drain history, and when the
//! flusher next has work. One body for both backends (see [`sql`](super::sql)); the reads of
//! pending items differ (SQLite folds its merge log in) and live with each backend.

use sqlx::query::Query;
use sqlx::{Database, Encode, Row, Type};

use super::Store;
use super::rows::{self, JOB_COLUMNS, JOB_ITEM_COLUMNS, StoreRow};
use super::sql::{Dialect, by_size, json_list};
use super::types::*;
use crate::domain::Ts;

impl Store {
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        with_backend!(self, b, sql => {
            let mut conn = b.reads().acquire().await?;
            load_job!(&mut *conn, sql, id)
        })
    }

    /// A page of `GET /jobs`, newest first, with the items of every job on it.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        with_backend!(self, b, sql => {
            let mut conn = b.reads().acquire().await?;
            let job_rows = list_jobs_query(filter, sql).fetch_all(&mut *conn).await?;
            // The items of the whole page in one query (or a few, see `MAX_STATEMENT_BYTES`),
            // not one per job.
            let ids: Vec<String> = job_rows.iter().map(|r| r.get("id")).collect();
            let mut item_rows = Vec::new();
            for part in by_size(&ids, |id| id.len() + 3) {
                item_rows.extend(
                    sqlx::query(sql.sql(&format!(
                        "SELECT job_id, {JOB_ITEM_COLUMNS} FROM job_items
                         WHERE job_id IN {} ORDER BY job_id, position",
                        sql.json_strings(1)
                    )))
                    .bind(json_list(part))
                    .fetch_all(&mut *conn)
                    .await?,
                );
            }
            rows::jobs_with_items(&job_rows, &item_rows)
        })
    }

    /// The next instant after `now` at which a pending item of `account` becomes due or a retry is due (when
    /// the idle flusher wakes): two index seeks (`items_account_due`, `jobs_status`).
    pub async fn next_work(
        &self,
        account: &crate::domain::AccountName,
        now: Ts,
    ) -> Result<Option<Ts>, StoreError> {
        with_backend!(self, b, sql => {
            let next: Option<i64> = sqlx::query_scalar(sql.sql(
                "SELECT MIN(t) AS t FROM (
                     SELECT MIN(due_at) AS t FROM items WHERE due_at > $1 AND account = $2
                     UNION ALL
                     SELECT MIN(next_attempt_at) AS t FROM jobs
                     WHERE status IN ('retrying', 'held') AND next_attempt_at > $1 AND account = $2
                 ) AS w",
            ))
            .bind(now.0)
            .bind(account.as_str())
            .fetch_one(b.writes())
            .await?;
            Ok(next.map(Ts))
        })
    }

    /// Jobs sent and their media IDs per minute since `since` (the status page's chart), dry
    /// runs left out. Integer division of the epoch milliseconds is the same in both dialects.
    pub async fn drain_history(&self, since: Ts) -> Result<Vec<DrainMinute>, StoreError> {
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(
                "SELECT j.created_at / 60000 AS minute, COUNT(DISTINCT j.id) AS jobs, COUNT(*) AS ids
                 FROM jobs j JOIN job_items i ON i.job_id = j.id
                 WHERE j.created_at >= $1 AND j.dry_run = FALSE
                 GROUP BY j.created_at / 60000 ORDER BY minute",
            ))
            .bind(since.0)
            .fetch_all(b.reads())
            .await?;
            rows.iter().map(drain_minute_from_row).collect()
        })
    }
}

/// The `GET /jobs` query with its parameters bound. Parameters come in this order: account,
/// status, task, since, before, media ID (each only when the filter has it), then the limit.
fn list_jobs_query<DB>(filter: &JobFilter, sql: Dialect) -> Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut query = sqlx::query(sql.sql(&list_jobs_sql(filter)));
    if let Some(account) = &filter.account {
        query = query.bind(account.as_str());
    }
    if let Some(status) = filter.status {
        query = query.bind(status.as_str());
    }
    if let Some(task) = filter.task {
        query = query.bind(task.as_str());
    }
    if let Some(since) = filter.since {
        query = query.bind(since.0);
    }
    if let Some(before) = &filter.before {
        query = query.bind(before.as_str());
    }
    if let Some(media_id) = &filter.media_id {
        query = query.bind(media_id.as_str());
    }
    query.bind(filter.limit as i64)
}

/// The SQL of [`list_jobs_query`], with `$N` parameters.
fn list_jobs_sql(filter: &JobFilter) -> String {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.account.is_some() {
        sql.push_str(&format!(" AND account = {}", next()));
    }
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = {}", next()));
    }
    if filter.task.is_some() {
        sql.push_str(&format!(" AND task = {}", next()));
    }
    if filter.since.is_some() {
        sql.push_str(&format!(" AND created_at >= {}", next()));
    }
    if filter.before.is_some() {
        sql.push_str(&format!(" AND id < {}", next()));
    }
    if filter.media_id.is_some() {
        sql.push_str(&format!(
            " AND id IN (SELECT job_id FROM job_items WHERE media_id = {})",
            next()
        ));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    sql
}

/// A row of [`Store::drain_history`].
fn drain_minute_from_row(row: &impl StoreRow) -> Result<DrainMinute, StoreError> {
    let count = |name: &str| u64::try_from(row.int(name)).unwrap_or(0);
    Ok(DrainMinute {
        minute: Ts(row.int("minute").saturating_mul(60_000)),
        jobs: count("jobs"),
        ids: count("ids"),
    })
}
