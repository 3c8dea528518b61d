//! The embedded SQLite backend.
//!
//! One file in WAL mode, with two writer connections that never write at the same time: every
//! write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's one write lock up front
//! and waits for it through the busy timeout. (A deferred transaction that reads first and then
//! loses the race to write fails at once instead of waiting.)
//!
//! - Ingest goes through [`IngestWriter`], a synchronous connection on a thread of its own that
//!   does the group commit (see [`writer`]).
//! - The flusher's claims and results go through a sqlx pool of exactly one connection.
//!
//! Reads use a separate pool and run concurrently with the writers, which WAL allows.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};

use crate::domain::{Priority, TaskType, Ts};
use crate::queue::Timing;
use crate::store::rows::{self, JOB_COLUMNS, JOB_ITEM_COLUMNS, PENDING_COLUMNS, PRELOAD_RULE};
use crate::store::types::*;
use merges::MergeLog;

pub(crate) mod merges;
pub(crate) mod writer;

pub(crate) use writer::IngestWriter;

/// The schema, embedded in the binary. One entry per file of `migrations/sqlite/`, in order.
fn migrator() -> Migrator {
    rows::migrator(&[
        (
            1,
            "initial",
            include_str!("../../../migrations/sqlite/0001_initial.sql"),
        ),
        (
            2,
            "queue indexes",
            include_str!("../../../migrations/sqlite/0002_queue_indexes.sql"),
        ),
        (
            3,
            "option sets",
            include_str!("../../../migrations/sqlite/0003_option_sets.sql"),
        ),
        (
            4,
            "submission checks",
            include_str!("../../../migrations/sqlite/0004_submission_checks.sql"),
        ),
        (
            5,
            "quota holds",
            include_str!("../../../migrations/sqlite/0005_quota_holds.sql"),
        ),
        (
            6,
            "merge log",
            include_str!("../../../migrations/sqlite/0006_merge_log.sql"),
        ),
    ])
}

/// Pages the write-ahead log grows by before the connection that commits copies it into the
/// database (SQLite's default is 1,000). A checkpoint writes each page it copies once, however
/// many commits changed it, so checkpointing less often writes the pages that merges keep
/// changing fewer times: the ingest benchmark's repeated IDs gain about a fifth. The log file
/// grows to about 40 MiB between checkpoints.
pub(crate) const WAL_AUTOCHECKPOINT: u32 = 10_000;

/// How many of a group's oldest items a claim looks at before it falls back to reading every due
/// item of the group (see [`SqliteStore::claim_batch`]).
const CLAIM_WINDOW: i64 = 1000;

/// How many times a claim looks for more due items after logged merges made some of its
/// candidates due later (each round folds those and writes their real due times).
const CLAIM_ROUNDS: usize = 50;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The merge log in memory (see [`merges`]), shared with the ingest writer.
    log: Arc<Mutex<MergeLog>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the migrations.
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT.to_string());
        // The writes on this connection (the flusher's claims, results and holds, the checks'
        // results, operator retries, pruning) commit without waiting for the disk: NORMAL in WAL
        // mode survives a crash of the process, and the next ingest commit (FULL, in `writer.rs`)
        // or checkpoint syncs the log with them. A power cut can lose the last of them, which
        // at-least-once delivery already covers: items whose claim is lost are sent again, a job
        // whose result is lost is sent again after its lease, and an operator retry lost that
        // way shows the job failed again. Not waiting for a sync takes the disk's sync time off
        // every claim, which is the latency an idle service adds.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Normal))
            .await?;
        migrator().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            log: Arc::default(),
        })
    }

    /// A write transaction on the sqlx writer that holds the write lock from its first statement
    /// (see the module documentation for why).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The merge log in memory, for the ingest writer (which reads it back from the table).
    pub(crate) fn merge_log(&self) -> Arc<Mutex<MergeLog>> {
        self.log.clone()
    }

    /// The writer connection, for statements written once for both backends (`store/mod.rs`).
    pub(crate) fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// True when every migration this binary knows has been applied.
    pub async fn migrated(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await?;
        Ok(applied as usize >= migrator().iter().count())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    pub async fn due_groups(&self, now: Ts) -> Result<Vec<DueGroup>, StoreError> {
        // A range of items_due (which covers every column read here): without INDEXED BY, SQLite
        // walks a whole group index to avoid sorting, which reads every pending item each poll.
        let sql = format!(
            "SELECT i.task, i.fingerprint, COUNT(*) AS n, SUM(i.priority > 0) AS urgent, MIN(i.due_at) AS oldest
             FROM items i INDEXED BY items_due
             WHERE i.due_at <= ? AND {PRELOAD_RULE}
             GROUP BY i.task, i.fingerprint ORDER BY urgent > 0 DESC, i.task DESC, oldest"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(rows::due_group_from_row).collect()
    }

    /// Moves up to `max` due items of one group into a new in-flight job: its urgent items,
    /// oldest first, then (unless `urgent_only`) its oldest normal ones.
    ///
    /// Candidates are found by their stored due time, which is never later than the real one;
    /// their logged merges are folded first, and an item they make due later is not claimed but
    /// gets its real timing written (see [`merges`]).
    pub async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        let mut taken = Taken {
            log: &self.log,
            events: Vec::new(),
        };
        let job = self.claim_in(claim, &mut taken).await?;
        taken.events.clear();
        Ok(job)
    }

    async fn claim_in(
        &self,
        claim: &ClaimBatch,
        taken: &mut Taken<'_>,
    ) -> Result<Option<Job>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut candidates: Vec<Candidate> = Vec::new();
        // Rounds: a candidate whose logged merges make it due later is left (with its real
        // timing written, so the next round does not find it again) and another is looked for.
        for _ in 0..CLAIM_ROUNDS {
            let wanted = claim.max - candidates.len();
            let found = self.candidates(&mut tx, claim, wanted).await?;
            if found.is_empty() {
                break;
            }
            let mut later = 0;
            for mut candidate in found {
                let events = writer::lock(&self.log).take(candidate.id);
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
                if candidate.timing.due_at > claim.now {
                    later += 1;
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
                } else {
                    // Claimed: gone from the pending items (a later round must not find it).
                    sqlx::query("DELETE FROM items WHERE id = ?")
                        .bind(candidate.id)
                        .execute(&mut *tx)
                        .await?;
                    candidates.push(candidate);
                }
            }
            if later == 0 || candidates.len() == claim.max {
                break;
            }
        }
        if candidates.is_empty() {
            // Folds alone are worth keeping: the items now show their real due times.
            tx.commit().await?;
            return Ok(None);
        }
        let priority = candidates
            .iter()
            .map(|c| c.timing.priority.rank())
            .max()
            .unwrap_or_default();
        let options: String =
            sqlx::query_scalar("SELECT options FROM option_sets WHERE fingerprint = ?")
                .bind(&claim.fingerprint)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "option_sets",
                    detail: format!("no options for fingerprint {}", claim.fingerprint),
                })?;
        sqlx::query(
            "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at, lease_until, priority)
             VALUES (?, ?, ?, ?, 'in_flight', ?, 1, ?, ?, ?, ?, ?)",
        )
        .bind(&claim.job_id)
        .bind(claim.task.as_str())
        .bind(&claim.fingerprint)
        .bind(&options)
        .bind(claim.dry_run)
        .bind(claim.now.0)
        .bind(claim.now.0)
        .bind(claim.now.0)
        .bind(claim.lease_until.0)
        .bind(priority)
        .execute(&mut *tx)
        .await?;
        for (position, candidate) in candidates.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events) VALUES (?, ?, ?, 'pending', ?, ?)",
            )
            .bind(&claim.job_id)
            .bind(position as i64)
            .bind(&candidate.media_id)
            .bind(candidate.first_seen)
            .bind(candidate.timing.events as i64)
            .execute(&mut *tx)
            .await?;
        }
        let job = rows::claimed_job(
            claim,
            &options,
            priority,
            candidates
                .iter()
                .map(|c| (c.media_id.clone(), c.first_seen, c.timing.events as i64)),
        )?;
        tx.commit().await?;
        Ok(Some(job))
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
             WHERE i.task = ?1 AND i.fingerprint = ?2 AND i.priority > 0 AND i.due_at <= ?3 AND {PRELOAD_RULE}
             ORDER BY i.first_seen, i.id LIMIT ?4"
        );
        let mut rows = sqlx::query(AssertSqlSafe(urgent))
            .bind(claim.task.as_str())
            .bind(&claim.fingerprint)
            .bind(claim.now.0)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?;
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
                 SELECT * FROM items INDEXED BY items_group_order WHERE task = ?1 AND fingerprint = ?2
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
            .fetch_all(&mut *tx)
            .await?;
        if rows.len() < max {
            let group_size: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM items WHERE task = ? AND fingerprint = ? LIMIT ?)",
            )
            .bind(claim.task.as_str())
            .bind(&claim.fingerprint)
            .bind(CLAIM_WINDOW + 1)
            .fetch_one(&mut *tx)
            .await?;
            if group_size > CLAIM_WINDOW {
                let all_due = format!(
                    "SELECT {CANDIDATE_COLUMNS} FROM items i INDEXED BY items_due
                     WHERE i.due_at <= ? AND i.task = ? AND i.fingerprint = ? AND i.priority = 0 AND {PRELOAD_RULE}
                     ORDER BY i.first_seen, i.id LIMIT ?"
                );
                rows = sqlx::query(AssertSqlSafe(all_due))
                    .bind(claim.now.0)
                    .bind(claim.task.as_str())
                    .bind(&claim.fingerprint)
                    .bind(max as i64)
                    .fetch_all(&mut *tx)
                    .await?;
            }
        }
        Ok(rows)
    }

    /// Starts a new attempt of a job that is due (see [`SqliteStore::due_jobs`]).
    pub async fn claim_job(
        &self,
        id: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(AssertSqlSafe(format!(
            "{} WHERE id = ?3 AND {}",
            rows::claim_job_set(rows::sqlite_param),
            rows::claimable(rows::sqlite_param)
        )))
        .bind(lease_until.0)
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let job = load_job(&mut tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Records a successful attempt. `attempt` fences off a flusher whose lease was taken over.
    pub async fn record_success(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        success: &Success,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', lease_until = NULL, updated_at = ?, vod_job_id = ?, request_id = ?,
                    held_since = NULL, error_code = NULL, error_message = NULL, check_at = ?, checks = 0
             WHERE id = ? AND status = 'in_flight' AND attempts = ?",
        )
        .bind(now.0)
        .bind(&success.vod_job_id)
        .bind(&success.request_id)
        .bind(success.check_at.map(|t| t.0))
        .bind(id)
        .bind(attempt as i64)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE job_items SET outcome = 'sent' WHERE job_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for (list, outcome) in [
            (&success.non_existent, "non_existent"),
            (&success.forbidden, "forbidden"),
        ] {
            for media_id in list {
                sqlx::query("UPDATE job_items SET outcome = ? WHERE job_id = ? AND media_id = ?")
                    .bind(outcome)
                    .bind(id)
                    .bind(media_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn due_checks(&self, now: Ts, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, vod_job_id, checks, budget_from FROM jobs INDEXED BY jobs_check
             WHERE check_at <= ? AND status = 'succeeded' AND vod_job_id IS NOT NULL
             ORDER BY check_at LIMIT ?",
        )
        .bind(now.0)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(rows::due_check_from_row).collect())
    }

    /// Records what VOD reported for a job's submissions: only IDs still `sent` change.
    pub async fn record_check(&self, id: &str, result: &CheckResult) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for submission in &result.submissions {
            let (outcome, code, message) = rows::submission_outcome(submission);
            sqlx::query(
                "UPDATE job_items SET outcome = ?, error_code = ?, error_message = ?
                 WHERE job_id = ? AND media_id = ? AND outcome = 'sent'",
            )
            .bind(outcome)
            .bind(code)
            .bind(message)
            .bind(id)
            .bind(&submission.media_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE jobs SET checks = checks + 1, check_at = CASE
                 WHEN EXISTS (SELECT 1 FROM job_items WHERE job_id = ?1 AND outcome = 'sent') THEN ?2
                 ELSE NULL END
             WHERE id = ?1",
        )
        .bind(id)
        .bind(result.again_at.map(|t| t.0))
        .execute(&mut *tx)
        .await?;
        if let Some(resubmission) = &result.resubmission {
            let ids = serde_json::to_string(&resubmission.media_ids).expect("strings serialise");
            sqlx::query(
                "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at,
                                   next_attempt_at, resubmission_of, priority, error_code, held_since)
                 SELECT ?1, task, fingerprint, options, CASE WHEN ?5 IS NULL THEN 'retrying' ELSE 'held' END, dry_run, 0, ?2,
                        budget_from, ?2, ?3, id, priority, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?2 END
                 FROM jobs WHERE id = ?4",
            )
            .bind(&resubmission.job_id)
            .bind(resubmission.created_at.0)
            .bind(resubmission.send_at.0)
            .bind(id)
            .bind(&resubmission.held)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
                 SELECT ?1, ROW_NUMBER() OVER (ORDER BY position) - 1, media_id, 'pending', first_seen, events
                 FROM job_items WHERE job_id = ?2 AND media_id IN (SELECT value FROM json_each(?3))",
            )
            .bind(&resubmission.job_id)
            .bind(id)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_retry(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        next_attempt_at: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'retrying', lease_until = NULL, held_since = NULL, next_attempt_at = ?, updated_at = ?,
                    error_code = ?, error_message = ?, request_id = ?
             WHERE id = ? AND status = 'in_flight' AND attempts = ?",
        )
        .bind(next_attempt_at.0)
        .bind(now.0)
        .bind(&failure.code)
        .bind(&failure.message)
        .bind(&failure.request_id)
        .bind(id)
        .bind(attempt as i64)
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    pub async fn record_failure(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'failed', lease_until = NULL, next_attempt_at = NULL, held_since = NULL, updated_at = ?,
                    error_code = ?, error_message = ?, request_id = ?
             WHERE id = ? AND status = 'in_flight' AND attempts = ?",
        )
        .bind(now.0)
        .bind(&failure.code)
        .bind(&failure.message)
        .bind(&failure.request_id)
        .bind(id)
        .bind(attempt as i64)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE job_items SET outcome = 'failed' WHERE job_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Schedules a failed job to be sent again now, with a fresh attempt budget.
    pub async fn retry_job(&self, id: &str, now: Ts) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(status) = status else {
            return Ok(RetryOutcome::NotFound);
        };
        let status = rows::parse_status(&status)?;
        if status != JobStatus::Failed {
            return Ok(RetryOutcome::NotFailed(status));
        }
        sqlx::query(
            "UPDATE jobs SET status = 'retrying', next_attempt_at = ?1, attempts = 0, budget_from = ?1, updated_at = ?1
             WHERE id = ?2",
        )
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE job_items SET outcome = 'pending' WHERE job_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Scheduled)
    }

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
        let logged = writer::lock(&self.log).snapshot();
        let ids =
            serde_json::to_string(&logged.keys().collect::<Vec<_>>()).expect("integers serialise");
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
        .fetch_one(&self.reader)
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
        if !logged.is_empty() {
            let stored = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CANDIDATE_COLUMNS} FROM items i WHERE i.id IN (SELECT value FROM json_each(?))"
            )))
            .bind(&ids)
            .fetch_all(&self.reader)
            .await?;
            for row in &stored {
                let item = candidate_from_row(row)?;
                let Some(events) = logged.get(&item.id) else {
                    continue;
                };
                let real = merges::fold(item.timing, events).due_at;
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

    /// Forgets delivery IDs past their retention.
    pub async fn prune_deliveries(&self, now: Ts) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM deliveries WHERE expires_at <= ?")
            .bind(now.0)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets the option sets that no pending item names any more (a job keeps its own copy).
    /// Each set costs two seeks of `items_group_order`, one per task.
    pub async fn prune_option_sets(&self) -> Result<u64, StoreError> {
        let unused = |task: TaskType| {
            format!(
                "NOT EXISTS (SELECT 1 FROM items INDEXED BY items_group_order
                             WHERE task = '{}' AND fingerprint = option_sets.fingerprint)",
                task.as_str()
            )
        };
        let sql = format!(
            "DELETE FROM option_sets WHERE {} AND {}",
            unused(TaskType::Refresh),
            unused(TaskType::Preload)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn load_job(conn: &mut SqliteConnection, id: &str) -> Result<Option<Job>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut job = rows::job_from_row(&row)?;
    job.items = load_items(conn, id).await?;
    Ok(Some(job))
}

async fn load_items(conn: &mut SqliteConnection, job_id: &str) -> Result<Vec<JobItem>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_ITEM_COLUMNS} FROM job_items WHERE job_id = ? ORDER BY position"
    )))
    .bind(job_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(rows::job_item_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default options, as an item row stored them.
    const PLAIN: &str = r#"{"formats":[],"definitions":[],"stream_types":[],"multiple":false,"slice_flag":false,"slice_count":5,"user_data":null}"#;

    /// Up to 20 due Refresh items of `fingerprint` at 500 ms into job `job_id`.
    fn claim(fingerprint: &str, job_id: &str) -> ClaimBatch {
        ClaimBatch {
            task: TaskType::Refresh,
            fingerprint: fingerprint.into(),
            now: Ts(500),
            max: 20,
            lease_until: Ts(600),
            job_id: job_id.into(),
            dry_run: true,
            urgent_only: false,
        }
    }

    /// A store made by a build from before option sets (migrations 1 and 2) opens with its
    /// pending items intact: each item keeps its options, and a claim carries them into the job.
    #[tokio::test]
    async fn pending_items_keep_their_options_across_the_option_sets_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let path = path.to_str().unwrap();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let old: Vec<_> = migrator()
            .iter()
            .filter(|m| m.version < 3)
            .cloned()
            .collect();
        assert_eq!(old.len(), 2);
        Migrator::with_migrations(old).run(&pool).await.unwrap();
        let slow = r#"{"formats":["mp4"],"definitions":[],"stream_types":[],"multiple":false,"slice_flag":false,"slice_count":5,"user_data":null}"#;
        for (media_id, fingerprint, json, first_seen) in [
            ("m1", "f-mp4", slow, 10),
            ("m2", "f-mp4", slow, 20),
            ("m1", "f-plain", PLAIN, 30),
        ] {
            sqlx::query(
                "INSERT INTO items (media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events)
                 VALUES (?, 'Refresh', ?, ?, 'cms', ?, ?, 1000, 100, 2)",
            )
            .bind(media_id)
            .bind(fingerprint)
            .bind(json)
            .bind(first_seen)
            .bind(first_seen)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(path).await.unwrap();
        assert!(store.migrated().await.unwrap());
        let sets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM option_sets")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(sets, 2);
        let m1 = store.pending_for_media("m1").await.unwrap();
        assert_eq!(m1.len(), 2);
        assert_eq!(m1[0].fingerprint, "f-mp4");
        assert_eq!(m1[0].options, rows::parse_options(slow).unwrap());
        assert_eq!(m1[0].events, 2);
        assert_eq!(m1[1].fingerprint, "f-plain");
        assert_eq!(m1[1].options, rows::parse_options(PLAIN).unwrap());

        let job = store
            .claim_batch(&claim("f-mp4", "job-1"))
            .await
            .unwrap()
            .expect("two items are due");
        assert_eq!(job.options, rows::parse_options(slow).unwrap());
        let ids: Vec<&str> = job.items.iter().map(|i| i.media_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2"]);
        assert_eq!(store.queue_stats(Ts(500)).await.unwrap().pending, 1);
        store.close().await;
    }

    /// An option set goes once no pending item names it, and not before.
    #[tokio::test]
    async fn option_sets_are_pruned_once_no_pending_item_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("q.db").to_str().unwrap())
            .await
            .unwrap();
        for fingerprint in ["f-refresh", "f-preload", "f-gone"] {
            sqlx::query("INSERT INTO option_sets (fingerprint, options) VALUES (?, ?)")
                .bind(fingerprint)
                .bind(PLAIN)
                .execute(&store.writer)
                .await
                .unwrap();
        }
        for (task, fingerprint) in [("Refresh", "f-refresh"), ("Preload", "f-preload")] {
            sqlx::query(
                "INSERT INTO items (media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at)
                 VALUES ('m1', ?, ?, 'cms', 10, 10, 1000, 100)",
            )
            .bind(task)
            .bind(fingerprint)
            .execute(&store.writer)
            .await
            .unwrap();
        }
        let sets = || async {
            sqlx::query_scalar::<_, String>("SELECT fingerprint FROM option_sets ORDER BY 1")
                .fetch_all(&store.reader)
                .await
                .unwrap()
        };
        assert_eq!(store.prune_option_sets().await.unwrap(), 1);
        assert_eq!(sets().await, ["f-preload", "f-refresh"]);

        let job = store
            .claim_batch(&claim("f-refresh", "job-1"))
            .await
            .unwrap()
            .expect("m1 is due");
        assert_eq!(job.options, rows::parse_options(PLAIN).unwrap());
        assert_eq!(store.prune_option_sets().await.unwrap(), 1);
        assert_eq!(sets().await, ["f-preload"]);
        // The job kept its own copy of the options.
        let kept = store.get_job("job-1").await.unwrap().unwrap();
        assert_eq!(kept.options, rows::parse_options(PLAIN).unwrap());
        store.close().await;
    }
}

/// An item's real due time in SQL (see `merges::stored_timing`).
const REAL_DUE: &str =
    "CASE WHEN priority > 0 THEN due_at ELSE MIN(last_seen + quiet, deadline) END";

/// The columns of a claim's candidate items.
const CANDIDATE_COLUMNS: &str = "i.id, i.media_id, i.first_seen, i.last_seen, i.deadline, i.due_at, i.events, i.priority, i.quiet";

/// A pending item a claim looks at.
struct Candidate {
    id: i64,
    media_id: String,
    first_seen: i64,
    timing: Timing,
}

fn candidate_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Candidate, StoreError> {
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
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let mut log = writer::lock(self.log);
        for (id, events) in self.events.drain(..) {
            log.restore(id, events);
        }
    }
}
