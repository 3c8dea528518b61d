//! Reads: pending items as they really are, with their logged merges folded in, and the
//! queue's figures corrected to the real due times.

use sqlx::{AssertSqlSafe, Row};

use super::claims::{CANDIDATE_COLUMNS, candidate_from_row, unsettled};
use super::{SqliteStore, merges, writer};
use crate::domain::Ts;
use crate::store::backend::PendingReads;
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

    async fn correct_due(&self, queues: &mut [AccountQueue], now: Ts) -> Result<(), StoreError> {
        // An item counted due by its stored time may be due later: logged merges, or a fold the
        // settle step has not written yet. Only those are read (see `merges`), not the due range.
        // Those found are marked stale and the account's settled time moves to `now`, so the
        // next read (or settle step) does not read the same range again: reads stay small while
        // the flusher does not settle (waiting for a credential, or for a call's slot).
        let mut conn = self.reader.acquire().await?;
        for queue in queues.iter_mut().filter(|q| q.due > 0) {
            let account = queue.account.as_str();
            let found = unsettled(&mut conn, &self.log, account, now).await?;
            let mut log = writer::lock(&self.log);
            let mut later = Vec::new();
            for row in &found.rows {
                let item = candidate_from_row(row)?;
                if item.timing.due_at > now {
                    later.push(item.id);
                }
                let real = merges::fold(item.timing, log.peek(item.id)).due_at;
                if real > now {
                    queue.due = queue.due.saturating_sub(1);
                    queue.next_due_at = Some(queue.next_due_at.map_or(real, |n| n.min(real)));
                }
            }
            // An item a claim took since this read is marked too: the next look drops the mark of
            // an item gone.
            log.mark(account, later);
            log.settle(account, now, found.look);
        }
        Ok(())
    }

    async fn recount(&self, now: Ts) -> Result<Vec<AccountQueue>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT i.account, {CANDIDATE_COLUMNS} FROM items i ORDER BY i.account"
        )))
        .fetch_all(&self.reader)
        .await?;
        let log = writer::lock(&self.log);
        let mut queues: Vec<AccountQueue> = Vec::new();
        for row in &rows {
            let account = rows::parse_account(row.try_get("account")?)?;
            let first_seen = Ts(row.try_get("first_seen")?);
            let item = candidate_from_row(row)?;
            let timing = merges::fold(item.timing, log.peek(item.id));
            if queues.last().is_none_or(|q| q.account != account) {
                queues.push(AccountQueue {
                    account,
                    pending: 0,
                    urgent: 0,
                    due: 0,
                    oldest_first_seen: None,
                    next_due_at: None,
                });
            }
            let queue = queues.last_mut().expect("pushed above");
            queue.pending += 1;
            queue.urgent += u64::from(timing.priority == crate::domain::Priority::Urgent);
            // The next due time as the figures give it: the stored one of an item not due by it
            // (never later than the real one), the real one of an item due by it.
            let stored_due = Ts(row.try_get("due_at")?);
            let next = if stored_due > now {
                Some(stored_due)
            } else {
                Some(timing.due_at).filter(|due| *due > now)
            };
            if timing.due_at <= now {
                queue.due += 1;
            }
            if let Some(next) = next {
                queue.next_due_at = Some(queue.next_due_at.map_or(next, |n| n.min(next)));
            }
            queue.oldest_first_seen = Some(
                queue
                    .oldest_first_seen
                    .map_or(first_seen, |o| o.min(first_seen)),
            );
        }
        Ok(queues)
    }
}
