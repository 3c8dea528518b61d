//! Reads: jobs, pending items and the queue's figures.

use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::domain::Ts;
use crate::store::backend::{ItemStats, PendingReads};
use crate::store::rows::{self, PENDING_COLUMNS};
use crate::store::types::*;

impl PendingReads for PgStore {
    async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM items WHERE media_id = $1 ORDER BY first_seen"
        )))
        .bind(media_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::pending_from_row).collect()
    }

    async fn item_stats(&self, now: Ts) -> Result<ItemStats, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, COUNT(*) FILTER (WHERE due_at <= $1) AS due,
                    COUNT(*) FILTER (WHERE priority > 0) AS urgent,
                    MIN(first_seen) AS oldest, MIN(due_at) FILTER (WHERE due_at > $1) AS next_due
             FROM items",
        )
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(ItemStats {
            pending: row.get::<i64, _>("pending") as u64,
            urgent: row.get::<i64, _>("urgent") as u64,
            due: row.get::<i64, _>("due") as u64,
            oldest_first_seen: row.get::<Option<i64>, _>("oldest").map(Ts),
            next_due_at: row.get::<Option<i64>, _>("next_due").map(Ts),
        })
    }
}
