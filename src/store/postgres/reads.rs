//! Reads: jobs, pending items and the queue's figures.

use sqlx::{AssertSqlSafe, Row};

use super::ingest::by_size;
use super::{PgStore, load_job};
use crate::domain::Ts;
use crate::store::rows::{self, JOB_ITEM_COLUMNS, PENDING_COLUMNS};
use crate::store::types::*;

impl PgStore {
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_job(&mut conn, id).await
    }

    pub async fn next_work(&self, now: Ts) -> Result<Option<Ts>, StoreError> {
        let sql = rows::next_work_sql("$1", "$1");
        let next: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_one(&self.pool)
            .await?;
        Ok(next.map(Ts))
    }

    pub async fn drain_history(&self, since: Ts) -> Result<Vec<DrainMinute>, StoreError> {
        let sql = rows::drain_history_sql("$1");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since.0)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(rows::drain_minute_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let query = rows::list_jobs_query(filter, |n| format!("${n}"));
        let mut conn = self.pool.acquire().await?;
        let job_rows = query.fetch_all(&mut *conn).await?;
        if job_rows.is_empty() {
            return Ok(Vec::new());
        }
        // The items of the whole page in one query (or a few, see MAX_STATEMENT_BYTES), not one
        // per job.
        let ids: Vec<String> = job_rows.iter().map(|r| r.get("id")).collect();
        let mut item_rows = Vec::new();
        for part in by_size(&ids, |id| id.len() + 4) {
            item_rows.extend(
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT job_id, {JOB_ITEM_COLUMNS} FROM job_items
                     WHERE job_id = ANY($1) ORDER BY job_id, position"
                )))
                .bind(part)
                .fetch_all(&mut *conn)
                .await?,
            );
        }
        rows::jobs_with_items(&job_rows, &item_rows)
    }

    pub async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM items WHERE media_id = $1 ORDER BY first_seen"
        )))
        .bind(media_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::pending_from_row).collect()
    }

    pub async fn queue_stats(&self, now: Ts) -> Result<QueueStats, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, COUNT(*) FILTER (WHERE due_at <= $1) AS due,
                    COUNT(*) FILTER (WHERE priority > 0) AS urgent,
                    MIN(first_seen) AS oldest, MIN(due_at) FILTER (WHERE due_at > $1) AS next_due
             FROM items",
        )
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        let jobs = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'in_flight') AS in_flight,
                    COUNT(*) FILTER (WHERE status = 'retrying') AS retrying
             FROM jobs WHERE status IN ('in_flight', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            pending: row.get::<i64, _>("pending") as u64,
            urgent: row.get::<i64, _>("urgent") as u64,
            due: row.get::<i64, _>("due") as u64,
            oldest_first_seen: row.get::<Option<i64>, _>("oldest").map(Ts),
            next_due_at: row.get::<Option<i64>, _>("next_due").map(Ts),
            in_flight_jobs: jobs.get::<i64, _>("in_flight") as u64,
            retrying_jobs: jobs.get::<i64, _>("retrying") as u64,
            held: Vec::new(),
        })
    }
}
