//! The PostgreSQL backend, for several replicas sharing one database.
//!
//! Same schema and the same behaviour as the SQLite backend (the conformance suite checks both);
//! what differs is how concurrent processes are kept apart:
//!
//! - **Ingest** runs on every replica, each with its own group committer. Upserts on the same
//!   item serialise on its unique key (`INSERT ... ON CONFLICT DO UPDATE` either inserts or
//!   updates, even against a concurrent claim that deletes the row). A delivery ID is guarded by
//!   a transaction-scoped advisory lock on its hash, so two replicas receiving the same redelivery
//!   cannot both store it. A group that deadlocks with another replica's is retried.
//! - **Claims** select their rows `FOR UPDATE SKIP LOCKED`: a second claimer skips rows another
//!   transaction is moving into a job instead of waiting for them, and never claims them twice.
//!   Jobs carry a lease and an attempt counter that fences off a flusher whose lease ran out.
//! - **Leadership**: exactly one replica flushes. It holds a session-level advisory lock on a
//!   connection of its own, outside the pool. A lock rather than a lease row because PostgreSQL
//!   releases it the moment the holder's session ends (process killed, connection terminated),
//!   with no clock and no expiry to tune, and a waiting replica gets it on its next poll. The
//!   holder proves it still has the lock by a round trip on that connection on every poll; a
//!   failed or slow round trip drops the connection (and with it the lock) and the leadership.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use tokio::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::domain::Ts;
use crate::queue::Pushed;
use crate::store::rows::{self, JOB_COLUMNS, JOB_ITEM_COLUMNS, PENDING_COLUMNS, PRELOAD_RULE};
use crate::store::types::*;
use crate::store::wake::{self, Wake};

/// The schema, embedded in the binary. One entry per file of `migrations/postgres/`, in order.
fn migrator() -> Migrator {
    rows::migrator(&[
        (
            1,
            "initial",
            include_str!("../../migrations/postgres/0001_initial.sql"),
        ),
        (
            2,
            "queue indexes",
            include_str!("../../migrations/postgres/0002_queue_indexes.sql"),
        ),
        (
            3,
            "submission checks",
            include_str!("../../migrations/postgres/0003_submission_checks.sql"),
        ),
        (
            4,
            "quota holds",
            include_str!("../../migrations/postgres/0004_quota_holds.sql"),
        ),
    ])
}

/// The flusher lock: the two-key form of `pg_try_advisory_lock`, whose key space is apart from
/// the one-key locks taken on delivery-ID hashes. One lock per database.
const LEADER_LOCK: (i32, i32) = (0x7670_7572, 1); // "vpur"

/// The start of the leadership session's `application_name`, followed by the host name.
const LEADER_NAME_PREFIX: &str = "vod-purge flusher ";

/// How long a leadership check or a readiness ping may take before the database counts as gone.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a group that deadlocked with another replica's is tried again.
const DEADLOCK_RETRIES: usize = 3;

/// Creates the pending items of one round of a group, or folds each event into the item already
/// pending under the same key. The arrays, one element per row, are media IDs, tasks,
/// fingerprints, options, sources, event times, deadlines, due times and priorities. For a
/// pending item the due time follows [`crate::queue::MERGE_DUE_AT`] (`due_at - last_seen` of the
/// new row is the event's quiet delay, at most max_wait).
const UPSERT_ITEMS: &str = "INSERT INTO items (media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events, priority)
     SELECT u.media_id, u.task, u.fingerprint, u.options, u.source, u.now, u.now, u.deadline, u.due_at, 1, u.priority
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
          AS u(media_id, task, fingerprint, options, source, now, deadline, due_at, priority)
     ON CONFLICT (media_id, task, fingerprint) DO UPDATE SET
         last_seen = GREATEST(items.last_seen, EXCLUDED.last_seen),
         events = items.events + 1,
         priority = GREATEST(items.priority, EXCLUDED.priority),
         due_at = CASE WHEN GREATEST(items.priority, EXCLUDED.priority) > 0
                       THEN LEAST(items.due_at, GREATEST(items.last_seen, EXCLUDED.last_seen) + (EXCLUDED.due_at - EXCLUDED.last_seen))
                       ELSE LEAST(GREATEST(items.last_seen, EXCLUDED.last_seen) + (EXCLUDED.due_at - EXCLUDED.last_seen), items.deadline) END
     RETURNING media_id, task, fingerprint, events";

/// The last due time a committer announced to the other replicas.
#[derive(Debug, Default)]
pub(crate) struct Announced(Option<Ts>);

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    leader: Arc<Leadership>,
}

#[derive(Debug)]
struct Leadership {
    options: PgConnectOptions,
    /// The connection holding the lock (or trying to get it); `None` after it failed.
    conn: Mutex<Option<PgConnection>>,
    held: AtomicBool,
}

fn timed_out(what: &str) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took longer than {CHECK_TIMEOUT:?}"),
    )))
}

impl PgStore {
    /// Connects and applies the migrations (sqlx serialises concurrent migrators with a lock).
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("vod-purge");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        migrator().run(&pool).await?;
        // The leadership session carries this replica's name, so any replica can tell which one
        // holds the flusher lock (see `flusher_replica`).
        let leader_name = format!("{LEADER_NAME_PREFIX}{}", crate::telemetry::host_name());
        let leader_name: String = leader_name.chars().take(63).collect();
        let options = options.application_name(&leader_name);
        Ok(PgStore {
            pool,
            leader: Arc::new(Leadership {
                options,
                conn: Mutex::new(None),
                held: AtomicBool::new(false),
            }),
        })
    }

    /// The pool, for statements written once for both backends (`store/mod.rs`).
    pub(crate) fn write_pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map_err(|_| timed_out("a ping"))??;
        Ok(())
    }

    pub async fn migrated(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied as usize >= migrator().iter().count())
    }

    /// Closes the pool and the leadership connection, which hands the flusher lock over at once.
    pub async fn close(&self) {
        if let Some(conn) = self.leader.conn.lock().await.take() {
            self.leader.held.store(false, Ordering::SeqCst);
            let _ = conn.close().await;
        }
        self.pool.close().await;
    }

    /// The host name of the replica whose session holds the flusher lock.
    /// Tells the other replicas that something is due at `due` (`NOTIFY`), unless an earlier
    /// announcement still covers it: one that is due no later and has not come yet. So a
    /// replica under steady traffic notifies about once per quiet period, not once per commit.
    pub(crate) async fn announce_due(&self, announced: &mut Announced, due: Ts) {
        let now = Ts::now();
        if announced.0.is_some_and(|at| at <= due && at > now) {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(wake::CHANNEL)
            .bind(due.0.to_string())
            .execute(&self.pool)
            .await;
        match sent {
            Ok(_) => announced.0 = Some(due),
            Err(error) => {
                tracing::debug!(error = %error, "cannot announce a due time; the leader's poll finds it")
            }
        }
    }

    /// Listens for the due times replicas announce and hands them to `wake`, until `token` is
    /// cancelled; reconnects after a failure, a second later.
    pub async fn relay_wakes(&self, wake: &Wake, token: CancellationToken) {
        while !token.is_cancelled() {
            let listened = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
                listener.listen(wake::CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    match notification.payload().parse::<i64>() {
                        Ok(ms) => wake.announce(Ts(ms)),
                        Err(_) => tracing::debug!(
                            payload = notification.payload(),
                            "ignoring a malformed due-time announcement"
                        ),
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = token.cancelled() => return,
                result = listened => {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "the due-time listener stopped; reconnecting");
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    pub async fn flusher_replica(&self) -> Result<Option<String>, StoreError> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.classid::bigint = $1 AND l.objid::bigint = $2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
        )
        .bind(i64::from(LEADER_LOCK.0))
        .bind(i64::from(LEADER_LOCK.1))
        .fetch_optional(&self.pool)
        .await?;
        Ok(name.map(|n| n.strip_prefix(LEADER_NAME_PREFIX).unwrap_or(&n).to_owned()))
    }

    /// Takes the flusher lock if it is free, or confirms this process still holds it.
    pub async fn try_acquire_leadership(&self) -> Result<bool, StoreError> {
        let leader = &self.leader;
        let mut slot = leader.conn.lock().await;
        let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
            if slot.is_none() {
                *slot = Some(PgConnection::connect_with(&leader.options).await?);
            }
            let conn = slot.as_mut().expect("connected above");
            if leader.held.load(Ordering::SeqCst) {
                // The lock lives exactly as long as this session: a round trip proves both.
                sqlx::query("SELECT 1").execute(&mut *conn).await?;
                Ok(true)
            } else {
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(LEADER_LOCK.0)
                    .bind(LEADER_LOCK.1)
                    .fetch_one(&mut *conn)
                    .await
            }
        })
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        match checked {
            Ok(held) => {
                leader.held.store(held, Ordering::SeqCst);
                Ok(held)
            }
            Err(error) => {
                // Dropping the connection ends the session, so no lock outlives our belief in it.
                leader.held.store(false, Ordering::SeqCst);
                *slot = None;
                Err(match error {
                    sqlx::Error::PoolTimedOut => timed_out("the leadership check"),
                    other => other.into(),
                })
            }
        }
    }

    /// Whether the last leadership check found this process holding the flusher lock.
    pub fn is_leader(&self) -> bool {
        self.leader.held.load(Ordering::SeqCst)
    }

    /// Applies several ingest requests in one transaction (group commit).
    pub async fn ingest_group(&self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let mut retries = 0;
        loop {
            match self.try_ingest_group(group).await {
                Err(StoreError::Unavailable(sqlx::Error::Database(e)))
                    if retries < DEADLOCK_RETRIES
                        && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
                {
                    retries += 1;
                    tracing::debug!(error = %e, retries, "ingest group conflicted with another replica; retrying");
                }
                other => return other,
            }
        }
    }

    async fn try_ingest_group(&self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let receipts = ingest_in(&mut tx, group).await?;
        tx.commit().await?;
        Ok(receipts)
    }

    pub async fn due_groups(&self, now: Ts) -> Result<Vec<DueGroup>, StoreError> {
        let sql = format!(
            "SELECT i.task, i.fingerprint, COUNT(*) AS n, COUNT(*) FILTER (WHERE i.priority > 0) AS urgent,
                    MIN(i.due_at) AS oldest FROM items i
             WHERE i.due_at <= $1 AND {PRELOAD_RULE}
             GROUP BY i.task, i.fingerprint
             ORDER BY COUNT(*) FILTER (WHERE i.priority > 0) > 0 DESC, i.task DESC, oldest"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::due_group_from_row).collect()
    }

    /// Moves up to `max` due items of one group into a new in-flight job: its urgent items,
    /// oldest first, then (unless `urgent_only`) its oldest normal ones.
    pub async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::new();
        for (urgent, wanted) in [(true, true), (false, !claim.urgent_only)] {
            let max = claim.max - rows.len();
            if !wanted || max == 0 {
                continue;
            }
            let sql = format!(
                "SELECT i.id, i.media_id, i.options, i.first_seen, i.events, i.priority FROM items i
                 WHERE i.task = $1 AND i.fingerprint = $2 AND i.due_at <= $3 AND {} AND {PRELOAD_RULE}
                 ORDER BY i.first_seen, i.id LIMIT $4
                 FOR UPDATE OF i SKIP LOCKED",
                if urgent { "i.priority > 0" } else { "i.priority = 0" }
            );
            rows.extend(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(claim.task.as_str())
                    .bind(&claim.fingerprint)
                    .bind(claim.now.0)
                    .bind(max as i64)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let options: String = rows[0].get("options");
        let priority = rows
            .iter()
            .map(|r| r.get::<i64, _>("priority"))
            .max()
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at, lease_until, priority)
             VALUES ($1, $2, $3, $4, 'in_flight', $5, 1, $6, $6, $6, $7, $8)",
        )
        .bind(&claim.job_id)
        .bind(claim.task.as_str())
        .bind(&claim.fingerprint)
        .bind(&options)
        .bind(claim.dry_run)
        .bind(claim.now.0)
        .bind(claim.lease_until.0)
        .bind(priority)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
        let media_ids: Vec<String> = rows.iter().map(|r| r.get("media_id")).collect();
        let first_seen: Vec<i64> = rows.iter().map(|r| r.get("first_seen")).collect();
        let events: Vec<i64> = rows.iter().map(|r| r.get("events")).collect();
        sqlx::query(
            "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
             SELECT $1, t.ord - 1, t.media_id, 'pending', t.first_seen, t.events
             FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
                  AS t(media_id, first_seen, events, ord)",
        )
        .bind(&claim.job_id)
        .bind(&media_ids)
        .bind(&first_seen)
        .bind(&events)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM items WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let job = rows::claimed_job(
            claim,
            &options,
            priority,
            media_ids
                .into_iter()
                .zip(first_seen)
                .zip(events)
                .map(|((m, f), e)| (m, f, e)),
        )?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Starts a new attempt of a job that is due; a job another transaction is claiming is skipped.
    pub async fn claim_job(
        &self,
        id: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(AssertSqlSafe(format!(
            "{} WHERE id = (SELECT id FROM jobs WHERE id = $3 AND {} FOR UPDATE SKIP LOCKED)",
            rows::claim_job_set(rows::pg_param),
            rows::claimable(rows::pg_param)
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
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', lease_until = NULL, updated_at = $1, vod_job_id = $2, request_id = $3,
                    held_since = NULL, error_code = NULL, error_message = NULL, check_at = $6, checks = 0
             WHERE id = $4 AND status = 'in_flight' AND attempts = $5",
        )
        .bind(now.0)
        .bind(&success.vod_job_id)
        .bind(&success.request_id)
        .bind(id)
        .bind(attempt as i64)
        .bind(success.check_at.map(|t| t.0))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE job_items SET outcome = CASE
                 WHEN media_id = ANY($3) THEN 'forbidden'
                 WHEN media_id = ANY($2) THEN 'non_existent'
                 ELSE 'sent' END
             WHERE job_id = $1",
        )
        .bind(id)
        .bind(&success.non_existent)
        .bind(&success.forbidden)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn due_checks(&self, now: Ts, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, vod_job_id, checks, budget_from FROM jobs
             WHERE check_at <= $1 AND status = 'succeeded' AND vod_job_id IS NOT NULL
             ORDER BY check_at LIMIT $2",
        )
        .bind(now.0)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::due_check_from_row).collect())
    }

    /// Records what VOD reported for a job's submissions: only IDs still `sent` change.
    pub async fn record_check(&self, id: &str, result: &CheckResult) -> Result<(), StoreError> {
        // One statement for the job's (at most 20) IDs, well under MAX_STATEMENT_BYTES.
        let mut media_ids = Vec::with_capacity(result.submissions.len());
        let mut outcomes = Vec::with_capacity(result.submissions.len());
        let mut codes: Vec<Option<&str>> = Vec::with_capacity(result.submissions.len());
        let mut messages: Vec<Option<&str>> = Vec::with_capacity(result.submissions.len());
        for submission in &result.submissions {
            let (outcome, code, message) = rows::submission_outcome(submission);
            media_ids.push(submission.media_id.as_str());
            outcomes.push(outcome);
            codes.push(code);
            messages.push(message);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE job_items ji SET outcome = r.outcome, error_code = r.code, error_message = r.message
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[]) AS r (media_id, outcome, code, message)
             WHERE ji.job_id = $1 AND ji.media_id = r.media_id AND ji.outcome = 'sent'",
        )
        .bind(id)
        .bind(&media_ids)
        .bind(&outcomes)
        .bind(&codes)
        .bind(&messages)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET checks = checks + 1, check_at = CASE
                 WHEN EXISTS (SELECT 1 FROM job_items WHERE job_id = $1 AND outcome = 'sent') THEN $2
                 ELSE NULL END
             WHERE id = $1",
        )
        .bind(id)
        .bind(result.again_at.map(|t| t.0))
            .execute(&mut *tx)
            .await?;
        if let Some(resubmission) = &result.resubmission {
            sqlx::query(
                "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at,
                                   next_attempt_at, resubmission_of, priority, error_code, held_since)
                 SELECT $1, task, fingerprint, options, CASE WHEN $5 IS NULL THEN 'retrying' ELSE 'held' END, dry_run, 0, $2,
                        budget_from, $2, $3, id, priority, $5, CASE WHEN $5 IS NULL THEN NULL ELSE $2 END
                 FROM jobs WHERE id = $4",
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
                 SELECT $1, ROW_NUMBER() OVER (ORDER BY position) - 1, media_id, 'pending', first_seen, events
                 FROM job_items WHERE job_id = $2 AND media_id = ANY($3)",
            )
            .bind(&resubmission.job_id)
            .bind(id)
            .bind(&resubmission.media_ids)
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
            "UPDATE jobs SET status = 'retrying', lease_until = NULL, held_since = NULL, next_attempt_at = $1, updated_at = $2,
                    error_code = $3, error_message = $4, request_id = $5
             WHERE id = $6 AND status = 'in_flight' AND attempts = $7",
        )
        .bind(next_attempt_at.0)
        .bind(now.0)
        .bind(&failure.code)
        .bind(&failure.message)
        .bind(&failure.request_id)
        .bind(id)
        .bind(attempt as i64)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'failed', lease_until = NULL, next_attempt_at = NULL, held_since = NULL, updated_at = $1,
                    error_code = $2, error_message = $3, request_id = $4
             WHERE id = $5 AND status = 'in_flight' AND attempts = $6",
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
        sqlx::query("UPDATE job_items SET outcome = 'failed' WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Schedules a failed job to be sent again now, with a fresh attempt budget.
    pub async fn retry_job(&self, id: &str, now: Ts) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 FOR UPDATE")
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
            "UPDATE jobs SET status = 'retrying', next_attempt_at = $1, attempts = 0, budget_from = $1, updated_at = $1
             WHERE id = $2",
        )
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE job_items SET outcome = 'pending' WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Scheduled)
    }

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

    /// Forgets delivery IDs past their retention.
    pub async fn prune_deliveries(&self, now: Ts) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM deliveries WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// What a request's delivery ID says before anything of it is stored.
enum Delivery {
    /// No delivery ID, or one not answered before: the request stores its items.
    Fresh,
    /// Answered before this group (the stored answer, as JSON).
    Answered(String),
    /// Repeats the delivery ID of the request at this index, earlier in the same group.
    RepeatOf(usize),
}

/// Locks the group's delivery IDs and finds the ones answered before.
///
/// Another replica storing one of the same deliveries waits at the lock until it commits, then
/// sees its answer here. The locks are taken in one order (by hash) on every replica.
async fn deliveries_of(
    conn: &mut PgConnection,
    group: &[Ingest],
) -> Result<Vec<Delivery>, StoreError> {
    let mut answers: Vec<Delivery> = group.iter().map(|_| Delivery::Fresh).collect();
    let keyed: Vec<(usize, &str, &str)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, ingest)| {
            let id = ingest.delivery_id.as_deref()?;
            Some((i, ingest.source.as_str(), id))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(answers);
    }
    let sources: Vec<&str> = keyed.iter().map(|k| k.1).collect();
    let ids: Vec<&str> = keyed.iter().map(|k| k.2).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h) FROM (
             SELECT DISTINCT hashtextextended(s || '/' || d, 0) AS h
             FROM UNNEST($1::text[], $2::text[]) AS t(s, d) ORDER BY h) AS locks",
    )
    .bind(&sources)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let stored = sqlx::query(
        "SELECT source, delivery_id, receipt, expires_at FROM deliveries
         WHERE (source, delivery_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
    )
    .bind(&sources)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut previous: HashMap<(String, String), (String, i64)> = HashMap::new();
    for row in stored {
        previous.insert(
            (row.try_get("source")?, row.try_get("delivery_id")?),
            (row.try_get("receipt")?, row.try_get("expires_at")?),
        );
    }
    let mut first_in_group: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, source, id) in keyed {
        let answered = previous
            .get(&(source.to_owned(), id.to_owned()))
            .filter(|(_, expires_at)| *expires_at > group[i].now.0);
        answers[i] = match (answered, first_in_group.get(&(source, id))) {
            (Some((receipt, _)), _) => Delivery::Answered(receipt.clone()),
            (None, Some(&first)) => Delivery::RepeatOf(first),
            (None, None) => {
                first_in_group.insert((source, id), i);
                Delivery::Fresh
            }
        };
    }
    Ok(answers)
}

/// Records the answers of the group's fresh deliveries (in statements under
/// [`MAX_STATEMENT_BYTES`]).
async fn record_deliveries(
    conn: &mut PgConnection,
    group: &[Ingest],
    deliveries: &[Delivery],
    receipts: &[Receipt],
) -> Result<(), StoreError> {
    // (request, delivery ID, answer as JSON) of every fresh delivery.
    let recorded: Vec<(&Ingest, &str, String)> = group
        .iter()
        .zip(deliveries)
        .zip(receipts)
        .filter(|((_, delivery), _)| matches!(delivery, Delivery::Fresh))
        .filter_map(|((ingest, _), receipt)| {
            Some((
                ingest,
                ingest.delivery_id.as_deref()?,
                rows::receipt_json(receipt),
            ))
        })
        .collect();
    let size = |(ingest, id, json): &(&Ingest, &str, String)| {
        ingest.source.len() + id.len() + json.len() + 2 * 8 + 5 * 4
    };
    for part in by_size(&recorded, size) {
        sqlx::query(
            "INSERT INTO deliveries (source, delivery_id, receipt, created_at, expires_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
             ON CONFLICT (source, delivery_id) DO UPDATE SET receipt = EXCLUDED.receipt,
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
        )
        .bind(part.iter().map(|r| r.0.source.as_str()).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.0.now.0).collect::<Vec<_>>())
        .bind(
            part.iter()
                .map(|r| r.0.delivery_expires_at.0)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores a group of requests in the open transaction and returns their receipts, in order.
async fn ingest_in(conn: &mut PgConnection, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
    let deliveries = deliveries_of(conn, group).await?;
    let fresh: Vec<usize> = (0..group.len())
        .filter(|&i| matches!(deliveries[i], Delivery::Fresh))
        .collect();
    let events = upsert_items(conn, group, &fresh).await?;
    // In group order, so a repeat finds the answer of its first delivery, which comes earlier.
    let mut receipts: Vec<Receipt> = Vec::with_capacity(group.len());
    for (i, (ingest, delivery)) in group.iter().zip(&deliveries).enumerate() {
        let receipt = match delivery {
            Delivery::Fresh => {
                let pushed: Vec<Pushed> = events[i]
                    .iter()
                    .map(|&n| if n == 1 { Pushed::New } else { Pushed::Merged })
                    .collect();
                rows::receipt_for(ingest, &pushed)
            }
            Delivery::Answered(json) => rows::previous_receipt(json)?,
            Delivery::RepeatOf(first) => Receipt {
                redelivery: true,
                ..receipts[*first].clone()
            },
        };
        receipts.push(receipt);
    }
    record_deliveries(conn, group, &deliveries, &receipts).await?;
    Ok(receipts)
}

/// Creates or joins the pending item of every item of the `fresh` requests of a group; returns,
/// for each request of the group, each item's event count after its upsert (1: created), in
/// order (nothing for a request that is not fresh).
///
/// One statement per round instead of one per item or per request: round `k` holds the `k`-th
/// occurrence of every key in the group, since one upsert statement may touch a row only once. A
/// group naming each ID once therefore costs one round trip however many requests and IDs it
/// holds. Applying the occurrences of a key in their order, round after round, gives the same
/// rows and counts as applying the items one by one.
async fn upsert_items(
    conn: &mut PgConnection,
    group: &[Ingest],
    fresh: &[usize],
) -> Result<Vec<Vec<i64>>, StoreError> {
    // (request index, item index) of every item, in group order, split into rounds.
    let mut rounds: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut occurrences: HashMap<(&str, &str, &str), usize> = HashMap::new();
    // Items usually share their options: serialise each set once.
    let mut options: HashMap<&str, String> = HashMap::new();
    for &r in fresh {
        for (index, item) in group[r].items.iter().enumerate() {
            let seen = occurrences.entry(key(item)).or_insert(0);
            if rounds.len() == *seen {
                rounds.push(Vec::new());
            }
            rounds[*seen].push((r, index));
            *seen += 1;
            options
                .entry(item.fingerprint.as_str())
                .or_insert_with(|| rows::options_json(item));
        }
    }
    let mut events: Vec<Vec<i64>> = vec![Vec::new(); group.len()];
    for &r in fresh {
        events[r] = vec![0; group[r].items.len()];
    }
    let at = |&(r, index): &(usize, usize)| (&group[r], &group[r].items[index]);
    for mut round in rounds {
        // Rows in key order: replicas storing overlapping IDs lock them in the same order, so
        // one waits for the other instead of deadlocking.
        round.sort_by_key(|slot| key(at(slot).1));
        for part in by_size(&round, |slot| {
            let (ingest, item) = at(slot);
            item.media_id.as_str().len()
                + item.fingerprint.len()
                + options[item.fingerprint.as_str()].len()
                + ingest.source.len()
                + ROW_OVERHEAD
        }) {
            upsert_part(conn, part, &at, &options, &mut events).await?;
        }
    }
    Ok(events)
}

/// The key of a pending item: media ID, task, options fingerprint.
fn key(item: &NewItem) -> (&str, &str, &str) {
    (
        item.media_id.as_str(),
        item.task.as_str(),
        item.fingerprint.as_str(),
    )
}

/// Bytes a row adds to an upsert besides its strings: the task, four numbers, and the length
/// of each of its nine array elements.
const ROW_OVERHEAD: usize = 7 + 4 * 8 + 9 * 4;

/// Most bytes of parameters sent in one statement.
///
/// sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335): a message larger than the
/// socket's send buffer (16 KiB when a connection starts) goes out in two writes, and the
/// second waits for the server's delayed ACK, 40 ms. A group's upsert of 240 rows measured
/// 520 req/s instead of 5,300 on one replica. Statements are cut below that size instead.
const MAX_STATEMENT_BYTES: usize = 8 * 1024;

/// Cuts `slots` into consecutive parts of at most [`MAX_STATEMENT_BYTES`] (a part holds at least
/// one slot, however large).
fn by_size<T>(slots: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, slot) in slots.iter().enumerate() {
        let n = size(slot);
        if i > start && bytes + n > MAX_STATEMENT_BYTES {
            parts.push(&slots[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < slots.len() {
        parts.push(&slots[start..]);
    }
    parts
}

/// One upsert statement: the rows of `part` (slots of one round, in key order); their event
/// counts go into `events`.
async fn upsert_part<'g, F>(
    conn: &mut PgConnection,
    part: &[(usize, usize)],
    at: &F,
    options: &HashMap<&str, String>,
    events: &mut [Vec<i64>],
) -> Result<(), StoreError>
where
    F: Fn(&(usize, usize)) -> (&'g Ingest, &'g NewItem),
{
    let slots: Vec<(&Ingest, &NewItem)> = part.iter().map(at).collect();
    let column = |value: &dyn Fn(&'g Ingest, &'g NewItem) -> i64| -> Vec<i64> {
        slots
            .iter()
            .map(|&(ingest, item)| value(ingest, item))
            .collect()
    };
    let text = |value: &dyn Fn(&'g Ingest, &'g NewItem) -> &'g str| -> Vec<&'g str> {
        slots
            .iter()
            .map(|&(ingest, item)| value(ingest, item))
            .collect()
    };
    let rows = sqlx::query(UPSERT_ITEMS)
        .bind(text(&|_, item| item.media_id.as_str()))
        .bind(text(&|_, item| item.task.as_str()))
        .bind(text(&|_, item| item.fingerprint.as_str()))
        .bind(
            slots
                .iter()
                .map(|(_, item)| options[item.fingerprint.as_str()].as_str())
                .collect::<Vec<_>>(),
        )
        .bind(text(&|ingest, _| ingest.source.as_str()))
        .bind(column(&|ingest, _| ingest.now.0))
        .bind(column(&|ingest, item| item.debounce.deadline(ingest.now).0))
        .bind(column(&|ingest, item| {
            let deadline = item.debounce.deadline(ingest.now);
            item.debounce.due_at(ingest.now, deadline).0
        }))
        .bind(column(&|_, item| item.priority.rank()))
        .fetch_all(&mut *conn)
        .await?;
    let returned = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("media_id")?,
                row.try_get::<String, _>("task")?,
                row.try_get::<String, _>("fingerprint")?,
                row.try_get::<i64, _>("events")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let counts: HashMap<(&str, &str, &str), i64> = returned
        .iter()
        .map(|(media_id, task, fingerprint, events)| {
            (
                (media_id.as_str(), task.as_str(), fingerprint.as_str()),
                *events,
            )
        })
        .collect();
    for &(r, index) in part {
        let key = key(at(&(r, index)).1);
        events[r][index] = *counts.get(&key).ok_or_else(|| StoreError::Corrupt {
            table: "items",
            detail: format!("the upsert returned no row for {} ({})", key.0, key.1),
        })?;
    }
    Ok(())
}

async fn load_job(conn: &mut PgConnection, id: &str) -> Result<Option<Job>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut job = rows::job_from_row(&row)?;
    job.items = load_items(conn, id).await?;
    Ok(Some(job))
}

async fn load_items(conn: &mut PgConnection, job_id: &str) -> Result<Vec<JobItem>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_ITEM_COLUMNS} FROM job_items WHERE job_id = $1 ORDER BY position"
    )))
    .bind(job_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(rows::job_item_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_below_the_size_limit_and_keep_every_row_in_order() {
        let half = MAX_STATEMENT_BYTES / 2;
        let cases: [(&[usize], &[usize]); 6] = [
            // sizes of the rows -> lengths of the parts
            (&[], &[]),
            (&[10, 20, 30], &[3]),
            (&[half, half], &[2]),
            (&[half, half, 1], &[2, 1]),
            // A row larger than the limit goes alone.
            (&[1, MAX_STATEMENT_BYTES * 2, 1], &[1, 1, 1]),
            (&[MAX_STATEMENT_BYTES, 1, MAX_STATEMENT_BYTES - 1], &[1, 2]),
        ];
        for (sizes, expected) in cases {
            let parts = by_size(sizes, |&n| n);
            let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lengths, expected, "{sizes:?}");
            assert_eq!(parts.concat(), sizes, "{sizes:?}");
            for part in parts.iter().filter(|p| p.len() > 1) {
                assert!(
                    part.iter().sum::<usize>() <= MAX_STATEMENT_BYTES,
                    "{sizes:?}"
                );
            }
        }
    }
}
