//! Claims: which items are due, and moving them into a job (folding their logged merges first).

use std::sync::Mutex;

use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::{SqliteStore, merges, writer};
use crate::domain::{AccountName, Priority, Ts};
use crate::queue::Timing;
use crate::store::backend::Claims;
use crate::store::rows::{self, PRELOAD_RULE};
use crate::store::sql::Dialect;
use crate::store::types::*;
use merges::MergeLog;

/// How many of a group's oldest items a claim looks at before it falls back to reading every due
/// item of the group (see `claim_normal`).
const CLAIM_WINDOW: i64 = 1000;

/// How many option sets a store keeps in memory, and the longest kept (a deployment has a handful,
/// of a few hundred bytes; a longer one, with a large `user_data`, is read each time).
const OPTIONS_CACHED: usize = 256;
const OPTIONS_CACHED_BYTES: usize = 4096;

/// How many times a claim looks for more due items after logged merges made some of its
/// candidates due later (each round folds those and writes their real due times).
const CLAIM_ROUNDS: usize = 50;

impl Claims for SqliteStore {
    /// Makes the stored due times exact for the items they say are due: folds their logged
    /// merges, and writes the real due time of those not really due yet. So the flusher decides
    /// what is ready (a full batch, or a group that lingered long enough) on what is really due.
    /// A read finds them first; most polls find none and take no write lock.
    async fn settle_due(&self, account: &AccountName, now: Ts) -> Result<(), StoreError> {
        let account = account.as_str();
        let first = unsettled(&mut *self.reader.acquire().await?, &self.log, account, now).await?;
        // Nothing to write, unless a fold overlapped the look: then again under the write
        // lock, where none can begin (else the settled time could stay behind while ingest
        // folds, and every look read the whole due range).
        if first.rows.is_empty() && writer::lock(&self.log).settle(account, now, first.look) {
            return Ok(());
        }
        // Declared after the transaction, so dropped first: what it took goes back into the log
        // while the transaction still holds the write lock (a fold in between would miss it).
        let mut tx = self.begin_write().await?;
        let mut taken = Taken::new(&self.log);
        // Again under the write lock, with the log as it is now.
        let found = unsettled(&mut tx, &self.log, account, now).await?;
        for row in &found.rows {
            let mut candidate = candidate_from_row(row)?;
            if !settle(&mut tx, account, &mut candidate, &mut taken, now).await? {
                // Really due: its folded events are written, its due time stays.
                write_timing(&mut tx, &candidate).await?;
            }
        }
        tx.commit().await?;
        taken.committed();
        writer::lock(&self.log).settle(account, now, found.look);
        Ok(())
    }

    /// Candidates are found by their stored due time, which is never later than the real one;
    /// their logged merges are folded first, and an item they make due later is not claimed but
    /// gets its real timing written (see [`merges`]).
    async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        // The transaction before what it takes from the log (see `settle_due`).
        let mut tx = self.begin_write().await?;
        let mut taken = Taken::new(&self.log);
        let job = self.claim_in(&mut tx, claim, &mut taken).await?;
        tx.commit().await?;
        taken.committed();
        Ok(job)
    }
}

impl SqliteStore {
    /// Claims in the open transaction `tx`, which the caller commits.
    async fn claim_in(
        &self,
        tx: &mut SqliteConnection,
        claim: &ClaimBatch,
        taken: &mut Taken<'_>,
    ) -> Result<Option<Job>, StoreError> {
        let mut candidates: Vec<Candidate> = Vec::new();
        // Rounds: a candidate whose logged merges make it due later is left (with its real
        // timing written, so the next round does not find it again) and another is looked for.
        for _ in 0..CLAIM_ROUNDS {
            let wanted = claim.max - candidates.len();
            let found = self.candidates(tx, claim, wanted).await?;
            if found.is_empty() {
                break;
            }
            let mut later = 0;
            let mut claimed = Vec::new();
            for mut candidate in found {
                if settle(tx, claim.account.as_str(), &mut candidate, taken, claim.now).await? {
                    later += 1;
                } else {
                    claimed.push(candidate.id);
                    candidates.push(candidate);
                }
            }
            // Claimed: gone from the pending items (a later round must not find them).
            if !claimed.is_empty() {
                sqlx::query("DELETE FROM items WHERE id IN (SELECT value FROM json_each(?))")
                    .bind(serde_json::to_string(&claimed).expect("integers serialise"))
                    .execute(&mut *tx)
                    .await?;
            }
            if later == 0 || candidates.len() == claim.max {
                break;
            }
        }
        if candidates.is_empty() {
            // Folds alone are worth keeping (the caller commits): the items now show their real
            // due times.
            return Ok(None);
        }
        let priority = candidates
            .iter()
            .map(|c| c.timing.priority.rank())
            .max()
            .unwrap_or_default();
        let options = self.options_of(tx, &claim.fingerprint).await?;
        insert_claimed_job!(&mut *tx, Dialect::Sqlite, claim, &options, priority)?;
        // One statement for the job's items: (media ID, first seen, events) in position order.
        let rows: Vec<(&str, i64, i64)> = candidates
            .iter()
            .map(|c| (c.media_id.as_str(), c.first_seen, c.timing.events as i64))
            .collect();
        sqlx::query(
            "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
             SELECT ?1, CAST(j.key AS INTEGER), j.value ->> 0, 'pending', j.value ->> 1, j.value ->> 2
             FROM json_each(?2) AS j",
        )
        .bind(&claim.job_id)
        .bind(serde_json::to_string(&rows).expect("rows serialise"))
        .execute(&mut *tx)
        .await?;
        let items = candidates
            .iter()
            .map(|c| (c.media_id.clone(), c.first_seen, c.timing.events as i64));
        let job = rows::claimed_job(claim, &options, priority, items)?;
        Ok(Some(job))
    }

    /// The options of an option set (stored once per fingerprint, and never changed: equal
    /// fingerprints mean equal options), kept in memory once read.
    async fn options_of(
        &self,
        tx: &mut SqliteConnection,
        fingerprint: &str,
    ) -> Result<String, StoreError> {
        if let Some(options) = self.options_cache().get(fingerprint) {
            return Ok(options.clone());
        }
        let options: String =
            sqlx::query_scalar("SELECT options FROM option_sets WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "option_sets",
                    detail: format!("no options for fingerprint {fingerprint}"),
                })?;
        if options.len() <= OPTIONS_CACHED_BYTES {
            let mut cache = self.options_cache();
            if cache.len() >= OPTIONS_CACHED {
                cache.clear();
            }
            cache.insert(fingerprint.to_owned(), options.clone());
        }
        Ok(options)
    }

    /// Up to `max` due items of a claim's group by their stored due time: urgent ones first,
    /// then (unless `urgent_only`) the oldest normal ones.
    async fn candidates(
        &self,
        tx: &mut SqliteConnection,
        claim: &ClaimBatch,
        max: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        // Urgent items first (a partial index holds only them), then the oldest normal ones.
        let urgent = format!(
            "SELECT {CANDIDATE_COLUMNS} FROM items i INDEXED BY items_urgent
             WHERE i.account = ?5 AND i.task = ?1 AND i.fingerprint = ?2 AND i.priority > 0 AND i.due_at <= ?3 AND {PRELOAD_RULE}
             ORDER BY i.first_seen, i.id LIMIT ?4"
        );
        let mut rows = if !claim.looks_for_urgent() {
            Vec::new()
        } else {
            sqlx::query(AssertSqlSafe(urgent))
                .bind(claim.task.as_str())
                .bind(&claim.fingerprint)
                .bind(claim.now.0)
                .bind(max as i64)
                .bind(claim.account.as_str())
                .fetch_all(&mut *tx)
                .await?
        };
        if rows.len() < max && !claim.urgent_only {
            rows.extend(self.claim_normal(&mut *tx, claim, max - rows.len()).await?);
        }
        rows.iter().map(candidate_from_row).collect()
    }

    /// The `max` oldest due normal items of a claim's group.
    ///
    /// They are looked for among the group's `CLAIM_WINDOW` oldest items first (an index walk, no
    /// sort); only when that finds fewer than `max` in a larger group are all the group's due
    /// items read and sorted.
    async fn claim_normal(
        &self,
        tx: &mut SqliteConnection,
        claim: &ClaimBatch,
        max: usize,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
        let window = format!(
            "SELECT {CANDIDATE_COLUMNS} FROM (
                 SELECT * FROM items INDEXED BY items_group_order
                 WHERE account = ?6 AND task = ?1 AND fingerprint = ?2
                 ORDER BY first_seen, id LIMIT ?5) i
             WHERE i.due_at <= ?3 AND i.priority = 0 AND {PRELOAD_RULE}
             ORDER BY i.first_seen, i.id LIMIT ?4"
        );
        let mut rows = sqlx::query(AssertSqlSafe(window))
            .bind(claim.task.as_str())
            .bind(&claim.fingerprint)
            .bind(claim.now.0)
            .bind(max as i64)
            .bind(CLAIM_WINDOW)
            .bind(claim.account.as_str())
            .fetch_all(&mut *tx)
            .await?;
        // The window held every item the group had due a moment ago: nothing to look further
        // for (an item due since is the next claim's).
        let window_had_all = claim.seen.is_some_and(|seen| {
            let due_then = rows
                .iter()
                .filter(|row| row.get::<i64, _>("due_at") <= seen.at.0)
                .count() as u64;
            due_then >= seen.due.saturating_sub(seen.urgent)
        });
        if rows.len() < max && !window_had_all {
            let group_size: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM items WHERE account = ? AND task = ? AND fingerprint = ? LIMIT ?)",
            )
            .bind(claim.account.as_str())
            .bind(claim.task.as_str())
            .bind(&claim.fingerprint)
            .bind(CLAIM_WINDOW + 1)
            .fetch_one(&mut *tx)
            .await?;
            if group_size > CLAIM_WINDOW {
                let all_due = format!(
                    "SELECT {CANDIDATE_COLUMNS} FROM items i INDEXED BY items_account_due
                     WHERE i.due_at <= ? AND i.account = ? AND i.task = ? AND i.fingerprint = ? AND i.priority = 0 AND {PRELOAD_RULE}
                     ORDER BY i.first_seen, i.id LIMIT ?"
                );
                rows = sqlx::query(AssertSqlSafe(all_due))
                    .bind(claim.now.0)
                    .bind(claim.account.as_str())
                    .bind(claim.task.as_str())
                    .bind(&claim.fingerprint)
                    .bind(max as i64)
                    .fetch_all(&mut *tx)
                    .await?;
            }
        }
        Ok(rows)
    }
}

/// The columns of a claim's candidate items.
pub(super) const CANDIDATE_COLUMNS: &str = "i.id, i.media_id, i.first_seen, i.last_seen, i.deadline, i.due_at, i.events, i.priority, i.quiet";

/// A pending item a claim looks at.
pub(super) struct Candidate {
    pub id: i64,
    media_id: String,
    first_seen: i64,
    pub timing: Timing,
}

pub(super) fn candidate_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Candidate, StoreError> {
    Ok(Candidate {
        id: row.try_get("id")?,
        media_id: row.try_get("media_id")?,
        first_seen: row.try_get("first_seen")?,
        timing: merges::stored_timing(
            Ts(row.try_get("last_seen")?),
            Ts(row.try_get("deadline")?),
            Ts(row.try_get("due_at")?),
            row.try_get::<i64, _>("events")? as u64,
            Priority::from_rank(row.try_get("priority")?),
            row.try_get("quiet")?,
        ),
    })
}

/// Logged merges a claim took out of the log: put back when it does not commit (an error, or a
/// claim cancelled half-way), since its transaction then leaves them in the table.
struct Taken<'a> {
    log: &'a Mutex<MergeLog>,
    events: Vec<(i64, Vec<merges::Logged>)>,
    /// The stale marks taken off the items whose real timing the transaction writes (or which
    /// it deletes), by account: put back if it does not commit.
    unmarked: Vec<(String, i64)>,
}

impl<'a> Taken<'a> {
    /// Made under the claim's transaction: while it lives, the ingest writer folds no chunk (a
    /// chunk that passed an item whose events are out would leave them to the last chunk's
    /// delete if they came back, as they do when the transaction does not commit).
    fn new(log: &'a Mutex<MergeLog>) -> Taken<'a> {
        writer::lock(log).taker_begins();
        Taken {
            log,
            events: Vec::new(),
            unmarked: Vec::new(),
        }
    }

    /// The transaction that deleted the taken events' rows committed: they stay out of the log,
    /// and the marks stay off.
    fn committed(mut self) {
        self.events.clear();
        self.unmarked.clear();
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut log = writer::lock(self.log);
        log.taker_ends();
        for (id, events) in self.events.drain(..) {
            log.restore(id, events);
        }
        for (account, id) in self.unmarked.drain(..) {
            log.mark(&account, [id]);
        }
    }
}

/// An item's real due time in SQL (see `merges::stored_timing`).
const REAL_DUE: &str =
    "CASE WHEN priority > 0 THEN due_at ELSE MIN(last_seen + quiet, deadline) END";

/// The statement of [`unsettled`]: ?1 now, ?2 the logged and stale items (JSON), ?3 the account,
/// ?4 its settled time, ?5 the horizon (listed items stored as due by it are returned, for the
/// caller to tell those gone or due later). The second part looks the listed items up by ID (`+`
/// keeps SQLite from reading the due range of an index instead, the whole backlog).
pub(super) fn unsettled_sql() -> String {
    format!(
        "SELECT {CANDIDATE_COLUMNS} FROM items i INDEXED BY items_account_due
         WHERE i.account = ?3 AND i.due_at <= ?1 AND i.due_at > ?4 AND {REAL_DUE} > ?1
         UNION
         SELECT {CANDIDATE_COLUMNS} FROM items i
         WHERE i.id IN (SELECT value FROM json_each(?2)) AND +i.account = ?3 AND +i.due_at <= ?5"
    )
}

/// The items of `account` due by their stored time whose real timing may differ: those that
/// fell due since the account's settled time with a later real due time, and the logged and
/// stale ones (see [`merges`]).
pub(super) async fn unsettled(
    conn: &mut SqliteConnection,
    log: &Mutex<MergeLog>,
    account: &str,
    now: Ts,
) -> Result<Unsettled, StoreError> {
    let (look, limit) = {
        let log = writer::lock(log);
        (log.look(account), log.unsettled_len(account) + 1)
    };
    // Stale marks are looked at up to the horizon: a mark of an item stored as due after it (or
    // of an item gone) is dropped, the settled time never passing it without a look.
    let horizon = look.settled.map_or(now, |settled| settled.max(now));
    let due: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT i.id, i.due_at FROM items i INDEXED BY items_account_due
         WHERE i.account = ? AND i.due_at <= ? LIMIT ?",
    )
    .bind(account)
    .bind(horizon.0)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let whole = due.len() < limit;
    let listed: Vec<i64> = {
        let mut log = writer::lock(log);
        if whole {
            // Every item stored as due by the horizon is here: a mark of any other is dropped.
            let ids: std::collections::HashSet<i64> = due.iter().map(|(id, _)| *id).collect();
            log.drop_marks(account, look, |item| !ids.contains(&item));
        }
        if due.iter().all(|(_, due_at)| *due_at > now.0) {
            return Ok(Unsettled {
                rows: Vec::new(),
                look,
            });
        }
        if whole {
            due.iter()
                .map(|(id, _)| *id)
                .filter(|id| log.is_unsettled(account, *id))
                .collect()
        } else {
            log.unsettled_items(account)
        }
    };
    let mut rows = sqlx::query(AssertSqlSafe(unsettled_sql()))
        .bind(now.0)
        .bind(serde_json::to_string(&listed).expect("integers serialise"))
        .bind(account)
        .bind(look.settled.map_or(i64::MIN, |t| t.0))
        .bind(horizon.0)
        .fetch_all(&mut *conn)
        .await?;
    {
        // A listed mark the look did not find is of an item gone, or stored as due after the
        // horizon.
        let found: std::collections::HashSet<i64> =
            rows.iter().map(|row| row.get::<i64, _>("id")).collect();
        let listed: std::collections::HashSet<i64> = listed.into_iter().collect();
        writer::lock(log).drop_marks(account, look, |item| {
            listed.contains(&item) && !found.contains(&item)
        });
    }
    rows.retain(|row| row.get::<i64, _>("due_at") <= now.0);
    Ok(Unsettled { rows, look })
}

/// The items of an account due by their stored time whose real timing may differ, and the look
/// that found them (see [`MergeLog::settle`]).
pub(super) struct Unsettled {
    pub rows: Vec<sqlx::sqlite::SqliteRow>,
    pub look: merges::Look,
}

/// Folds a candidate's logged merges (taken out of the log, their rows deleted) and, when that
/// makes it due after `now`, writes its real timing. Returns whether it is due later.
async fn settle(
    tx: &mut SqliteConnection,
    account: &str,
    candidate: &mut Candidate,
    taken: &mut Taken<'_>,
    now: Ts,
) -> Result<bool, StoreError> {
    // Under the write lock (the transaction holds it): no fold can mark the item meanwhile.
    let events = {
        let mut log = writer::lock(taken.log);
        if log.unmark(account, candidate.id) {
            taken.unmarked.push((account.to_owned(), candidate.id));
        }
        log.take(candidate.id)
    };
    if !events.is_empty() {
        candidate.timing = merges::fold(candidate.timing, &events);
        for event in &events {
            sqlx::query("DELETE FROM merges WHERE seq = ?")
                .bind(event.seq)
                .execute(&mut *tx)
                .await?;
        }
        taken.events.push((candidate.id, events));
    }
    let later = candidate.timing.due_at > now;
    if later {
        write_timing(tx, candidate).await?;
    }
    Ok(later)
}

/// Writes a candidate's timing, its real due time included.
async fn write_timing(tx: &mut SqliteConnection, candidate: &Candidate) -> Result<(), StoreError> {
    let timing = &candidate.timing;
    sqlx::query(
        "UPDATE items SET last_seen = ?, due_at = ?, events = ?, priority = ?, quiet = ? WHERE id = ?",
    )
    .bind(timing.last_seen.0)
    .bind(timing.due_at.0)
    .bind(timing.events as i64)
    .bind(timing.priority.rank())
    .bind(timing.quiet.as_millis() as i64)
    .bind(candidate.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
