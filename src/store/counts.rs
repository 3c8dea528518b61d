//! The queue's figures (`/queue`, `/metrics`, the status page) without reading the queue.
//!
//! Triggers keep `item_counts` in the transaction that changes an item: pending and urgent
//! items per account and per second of their stored due time (see
//! `migrations/*/…_item_counts.sql`). A read sums those rows, one per second in which some item
//! falls due, and counts in `items` only what falls due in the current second; the oldest item
//! and the next due time are one index seek each. So a scrape costs the same at 10 and at
//! 1,000,000 pending items. SQLite then corrects the due count for stored due times that are
//! early ([`PendingReads::correct_due`]), reading only the items the flusher has not settled.
//!
//! On PostgreSQL the triggers append a row per statement and second; the leader folds them now
//! and then ([`Store::fold_item_counts`]).

use super::Store;
use super::backend::{Leadership, PendingReads};
use super::rows;
use super::types::*;
use crate::domain::Ts;

/// Each account's pending, urgent, and due-before-this-second items.
pub(super) const COUNTS: &str =
    "SELECT account, CAST(SUM(items) AS BIGINT), CAST(SUM(urgent) AS BIGINT),
            CAST(SUM(CASE WHEN due_second < $1 THEN items ELSE 0 END) AS BIGINT)
     FROM item_counts GROUP BY account HAVING SUM(items) <> 0 ORDER BY account";

/// One account's items due in the current second ($2 its start, $3 now), its oldest item and its
/// next due time: index seeks (`items_account_due`, `items_account_first_seen`).
pub(super) const SEEKS: &str = "SELECT
        (SELECT COUNT(*) FROM items WHERE account = $1 AND due_at >= $2 AND due_at <= $3),
        (SELECT MIN(first_seen) FROM items WHERE account = $1),
        (SELECT MIN(due_at) FROM items WHERE account = $1 AND due_at > $3)";

impl Store {
    /// Each account's pending items, by their real due times; the accounts with none left out.
    pub async fn queue_by_account(&self, now: Ts) -> Result<Vec<AccountQueue>, StoreError> {
        let second = now.0.div_euclid(1000);
        let mut queues = with_backend!(self, b, sql => {
            let counts: Vec<(String, i64, i64, i64)> = sqlx::query_as(sql.sql(COUNTS))
                .bind(second)
                .fetch_all(b.reads())
                .await?;
            let mut queues = Vec::with_capacity(counts.len());
            for (account, pending, urgent, due_before) in counts {
                let (due_now, oldest, next_due): (i64, Option<i64>, Option<i64>) =
                    sqlx::query_as(sql.sql(SEEKS))
                        .bind(&account)
                        .bind(second * 1000)
                        .bind(now.0)
                        .fetch_one(b.reads())
                        .await?;
                queues.push(AccountQueue {
                    account: rows::parse_account(&account)?,
                    pending: count(pending),
                    urgent: count(urgent),
                    due: count(due_before) + count(due_now),
                    oldest_first_seen: oldest.map(Ts),
                    next_due_at: next_due.map(Ts),
                });
            }
            queues
        });
        dispatch!(self, s => s.correct_due(&mut queues, now).await)?;
        Ok(queues)
    }

    /// [`Store::queue_by_account`] counted from every pending item (see
    /// [`PendingReads::recount`]): the check of the kept counts.
    pub async fn recount_queue(&self, now: Ts) -> Result<Vec<AccountQueue>, StoreError> {
        dispatch!(self, s => s.recount(now).await)
    }

    /// Folds PostgreSQL's appended count rows into one per account and second (SQLite keeps one
    /// already), on the leader only (another replica's fold would only wait for the leader's).
    /// Returns how many rows it folded.
    pub async fn fold_item_counts(&self) -> Result<u64, StoreError> {
        match &self.engine {
            super::Engine::Postgres(pg) if pg.is_leader() => pg.fold_item_counts().await,
            _ => Ok(0),
        }
    }
}

/// A count read as a signed integer (a negative one would be a fault of the counts; shown as 0).
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
