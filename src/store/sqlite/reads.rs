//! Reads: jobs, pending items and the queue's figures (pending items as they really are, with
//! their logged merges folded in).

use sqlx::{AssertSqlSafe, Row};

use super::claims::{CANDIDATE_COLUMNS, REAL_DUE, candidate_from_row, logged_among_due};
use super::{SqliteStore, load_job, merges, writer};
use crate::domain::Ts;
use crate::store::rows::{self, JOB_ITEM_COLUMNS, PENDING_COLUMNS};
use crate::store::types::*;

impl SqliteStore {
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        load_job(&mut conn, id).await
    }

    pub async fn next_work(&self, now: Ts) -> Result<Option<Ts>, StoreError> {
        let sql = rows::next_work_sql("?1", "?1");
        let next: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_one(&self.writer)
            .await?;
        Ok(next.map(Ts))
    }

    pub async fn drain_history(&self, since: Ts) -> Result<Vec<DrainMinute>, StoreError> {
        let sql = rows::drain_history_sql("?");
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since.0)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows
            .iter()
            .map(rows::drain_minute_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let query = rows::list_jobs_query(filter, |_| "?".to_owned());
        let mut conn = self.reader.acquire().await?;
        let job_rows = query.fetch_all(&mut *conn).await?;
        if job_rows.is_empty() {
            return Ok(Vec::new());
        }
        // The items of the whole page in one query, not one per job.
        let ids: Vec<String> = job_rows.iter().map(|r| r.get("id")).collect();
        let item_rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT job_id, {JOB_ITEM_COLUMNS} FROM job_items
             WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, position"
        )))
        .bind(serde_json::to_string(&ids).expect("strings serialise"))
        .fetch_all(&mut *conn)
        .await?;
        rows::jobs_with_items(&job_rows, &item_rows)
    }

    pub async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, quiet, {PENDING_COLUMNS} FROM items JOIN option_sets USING (fingerprint)
             WHERE media_id = ? ORDER BY first_seen"
        )))
        .bind(media_id)
        .fetch_all(&self.reader)
        .await?;
        // Shown as they are: their real due time, with their logged merges folded in.
        let log = writer::lock(&self.log);
        rows.iter()
            .map(|row| {
                let mut item = rows::pending_from_row(row)?;
                let stored = merges::stored_timing(
                    item.last_seen,
                    item.deadline,
                    item.due_at,
                    item.events,
                    item.priority,
                    row.try_get("quiet")?,
                );
                let timing = merges::fold(stored, log.peek(row.try_get("id")?));
                (item.last_seen, item.due_at, item.events) =
                    (timing.last_seen, timing.due_at, timing.events);
                Ok(item)
            })
            .collect()
    }

    pub async fn queue_stats(&self, now: Ts) -> Result<QueueStats, StoreError> {
        // Items are counted by their real due time (see `merges::stored_timing`): the stored
        // one for urgent items; for normal ones the end of their latest quiet period, unless
        // merges are still logged for them, which are folded here as the claim would.
        let mut conn = self.reader.acquire().await?;
        let ids = logged_among_due(&mut conn, &self.log, now)
            .await?
            .unwrap_or_else(|| "[]".to_owned());
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT (SELECT COUNT(*) FROM items) AS pending,
                    (SELECT COUNT(*) FROM items WHERE due_at <= ?1 AND {REAL_DUE} <= ?1
                        AND id NOT IN (SELECT value FROM json_each(?2))) AS due,
                    (SELECT COUNT(*) FROM items WHERE priority > 0) AS urgent,
                    (SELECT MIN(first_seen) FROM items) AS oldest,
                    (SELECT MIN(due_at) FROM items WHERE due_at > ?1) AS next_stored,
                    (SELECT MIN({REAL_DUE}) FROM items WHERE due_at <= ?1 AND {REAL_DUE} > ?1
                        AND id NOT IN (SELECT value FROM json_each(?2))) AS next_late"
        )))
        .bind(now.0)
        .bind(&ids)
        .fetch_one(&mut *conn)
        .await?;
        let mut due = row.get::<i64, _>("due") as u64;
        // The earliest time an item may be due: stored due times are never later than real ones.
        let mut next_due = [
            row.get::<Option<i64>, _>("next_stored"),
            row.get("next_late"),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(Ts);
        if ids != "[]" {
            let stored = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CANDIDATE_COLUMNS} FROM items i WHERE i.id IN (SELECT value FROM json_each(?))"
            )))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            let log = writer::lock(&self.log);
            for row in &stored {
                let item = candidate_from_row(row)?;
                let real = merges::fold(item.timing, log.peek(item.id)).due_at;
                if real <= now {
                    due += 1;
                } else if row.get::<i64, _>("due_at") <= now.0 {
                    next_due = Some(next_due.map_or(real, |n| n.min(real)));
                }
            }
        }
        let jobs = sqlx::query(
            "SELECT COALESCE(SUM(status = 'in_flight'), 0) AS in_flight, COALESCE(SUM(status = 'retrying'), 0) AS retrying
             FROM jobs WHERE status IN ('in_flight', 'retrying')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(QueueStats {
            pending: row.get::<i64, _>("pending") as u64,
            urgent: row.get::<i64, _>("urgent") as u64,
            due,
            oldest_first_seen: row.get::<Option<i64>, _>("oldest").map(Ts),
            next_due_at: next_due,
            in_flight_jobs: jobs.get::<i64, _>("in_flight") as u64,
            retrying_jobs: jobs.get::<i64, _>("retrying") as u64,
            held: Vec::new(),
        })
    }
}
