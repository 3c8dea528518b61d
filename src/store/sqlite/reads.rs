//! Reads: jobs, pending items and the queue's figures (pending items as they really are, with
//! their logged merges folded in).

use sqlx::{AssertSqlSafe, Row};

use super::claims::{CANDIDATE_COLUMNS, REAL_DUE, candidate_from_row, logged_among_due};
use super::{SqliteStore, merges, writer};
use crate::domain::Ts;
use crate::store::backend::{ItemStats, PendingReads};
use crate::store::rows::{self, PENDING_COLUMNS};
use crate::store::types::*;

impl PendingReads for SqliteStore {
    async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
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

    async fn item_stats(&self, now: Ts) -> Result<ItemStats, StoreError> {
        // Items are counted by their real due time (see `merges::stored_timing`): the stored
        // one for urgent items; for normal ones the end of their latest quiet period, unless
        // merges are still logged for them, which are folded here as the claim would.
        let mut conn = self.reader.acquire().await?;
        let ids = logged_among_due(&mut conn, &self.log, None, now)
            .await?
            .unwrap_or_else(|| "[]".to_owned());
        let row = sqlx::query(AssertSqlSafe(item_stats_sql()))
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
        Ok(ItemStats {
            pending: row.get::<i64, _>("pending") as u64,
            urgent: row.get::<i64, _>("urgent") as u64,
            due,
            oldest_first_seen: row.get::<Option<i64>, _>("oldest").map(Ts),
            next_due_at: next_due,
        })
    }
}

/// The queue's figures over `items` ($1 now, $2 the JSON list of logged items among the due,
/// which the caller folds itself): index seeks and partial-index scans only, so a poll of the
/// figures costs the same however many items are pending.
pub(super) fn item_stats_sql() -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM items) AS pending,
                (SELECT COUNT(*) FROM items WHERE due_at <= ?1 AND {REAL_DUE} <= ?1
                    AND id NOT IN (SELECT value FROM json_each(?2))) AS due,
                (SELECT COUNT(*) FROM items WHERE priority > 0) AS urgent,
                (SELECT MIN(first_seen) FROM items) AS oldest,
                (SELECT MIN(due_at) FROM items WHERE due_at > ?1) AS next_stored,
                (SELECT MIN({REAL_DUE}) FROM items WHERE due_at <= ?1 AND {REAL_DUE} > ?1
                    AND id NOT IN (SELECT value FROM json_each(?2))) AS next_late"
    )
}
