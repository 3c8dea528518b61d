//! Reads: pending items, and the queue's figures counted from every item.

use sqlx::AssertSqlSafe;

use super::PgStore;
use crate::domain::Ts;
use crate::store::backend::PendingReads;
use crate::store::counts::count;
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

    async fn recount(&self, now: Ts) -> Result<Vec<AccountQueue>, StoreError> {
        /// Account, pending, urgent, due, oldest first seen, next due.
        type Row = (String, i64, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT account, COUNT(*), COUNT(*) FILTER (WHERE priority > 0),
                    COUNT(*) FILTER (WHERE due_at <= $1), MIN(first_seen),
                    MIN(due_at) FILTER (WHERE due_at > $1)
             FROM items GROUP BY account ORDER BY account",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(account, pending, urgent, due, oldest, next_due)| {
                Ok(AccountQueue {
                    account: rows::parse_account(&account)?,
                    pending: count(pending),
                    urgent: count(urgent),
                    due: count(due),
                    oldest_first_seen: oldest.map(Ts),
                    next_due_at: next_due.map(Ts),
                })
            })
            .collect()
    }
}
