//! The durable store: pending items, jobs with per-ID results, and delivery IDs.
//!
//! [`Store`] is the one contract the rest of the application uses. It dispatches to a backend
//! chosen from `store.url` (embedded SQLite, or PostgreSQL for several replicas) and owns the
//! group committer: ingest requests are queued on a channel, and the committer applies everything
//! waiting in one transaction before answering each request. Under load that turns N disk syncs
//! into one, without ever answering before the data is durable. Every replica has its own. On
//! SQLite the committer is a thread with its own synchronous connection ([`sqlite::writer`]); on
//! PostgreSQL it is a task on the runtime.
//!
//! Leadership: exactly one process per store may flush. SQLite has one process by construction,
//! so it is always the leader; PostgreSQL replicas compete for an advisory lock (see
//! [`postgres`]). [`Store::try_acquire_leadership`] is polled by the application; the flusher
//! only runs while it says yes.
//!
//! Every backend must pass the conformance suite in `tests/it/store.rs`.

pub mod postgres;
mod rows;
pub mod sqlite;
pub mod types;
pub mod wake;

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use tokio::sync::{mpsc, oneshot};
use wake::Wake;

pub use types::*;

use crate::config::StoreLocation;
use crate::domain::{TaskType, Ts};
use postgres::PgStore;
use sqlite::{IngestWriter, SqliteStore};

/// Most requests folded into one transaction.
pub(crate) const MAX_GROUP: usize = 256;

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend is configured.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

/// Runs `$body` once per backend with `$pool` its writing pool and `$param` its placeholder
/// function: for statements that are the same in both dialects (see `rows.rs`), written once.
macro_rules! on_pool {
    ($self:ident, $pool:ident, $param:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite(s) => {
                let ($pool, $param) = (s.write_pool(), rows::sqlite_param as fn(usize) -> String);
                $body
            }
            Backend::Postgres(s) => {
                let ($pool, $param) = (s.write_pool(), rows::pg_param as fn(usize) -> String);
                $body
            }
        }
    };
}

type Reply = oneshot::Sender<Result<Receipt, StoreError>>;
type Waiting = (Ingest, Reply);

/// The store handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Requests waiting for the group committer.
    ingest_tx: mpsc::Sender<Waiting>,
    /// Wakes the idle flusher when a commit adds something due sooner.
    wake: Arc<Wake>,
}

impl Store {
    /// Connects, migrates, and starts the group committer (on SQLite a thread of its own, on
    /// PostgreSQL a task on the current runtime).
    pub async fn open(location: &StoreLocation) -> Result<Store, StoreError> {
        let (ingest_tx, ingest_rx) = mpsc::channel(4 * MAX_GROUP);
        let wake = Arc::new(Wake::default());
        let backend = match location {
            StoreLocation::Sqlite(path) => {
                // The schema first (through sqlx), then the writer's own connection.
                let store = SqliteStore::open(path).await?;
                let writer = IngestWriter::open(path, store.merge_log())?;
                let wake = wake.clone();
                std::thread::Builder::new()
                    .name("sqlite-ingest".into())
                    .spawn(move || sqlite_committer(writer, ingest_rx, &wake))
                    .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
                Backend::Sqlite(store)
            }
            StoreLocation::Postgres(url) => {
                let store = PgStore::open(url).await?;
                tokio::spawn(postgres_committer(store.clone(), ingest_rx, wake.clone()));
                Backend::Postgres(store)
            }
        };
        Ok(Store {
            backend,
            ingest_tx,
            wake,
        })
    }

    /// What wakes the idle flusher (see [`wake`]).
    pub fn wake(&self) -> &Wake {
        &self.wake
    }

    /// On PostgreSQL, relays the due times other replicas announce to [`Store::wake`] until
    /// `token` is cancelled (reconnecting after a failure); on SQLite there are none.
    pub async fn relay_wakes(&self, token: tokio_util::sync::CancellationToken) {
        if let Backend::Postgres(store) = &self.backend {
            store.relay_wakes(&self.wake, token).await;
        }
    }

    /// Stores one request durably (or answers its earlier delivery) and returns the receipt.
    pub async fn ingest(&self, ingest: Ingest) -> Result<Receipt, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ingest_tx
            .send((ingest, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// True when other processes may share this store, so that leadership can change hands.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The host name of the process that flushes this store: this one on SQLite, on PostgreSQL
    /// the replica whose session holds the flusher lock (`None` when no replica does).
    pub async fn flusher_replica(&self) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(crate::telemetry::host_name().to_owned())),
            Backend::Postgres(s) => s.flusher_replica().await,
        }
    }

    /// Becomes the one flusher of this store if no live process is, or confirms this process
    /// still is. An error means the database is unreachable; this process is then not the leader.
    pub async fn try_acquire_leadership(&self) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(s) => s.try_acquire_leadership().await,
        }
    }

    /// The answer of the last [`Store::try_acquire_leadership`]; no I/O.
    pub fn is_leader(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(s) => s.is_leader(),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    pub async fn migrated(&self) -> Result<bool, StoreError> {
        dispatch!(self, s => s.migrated().await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    pub async fn due_groups(&self, now: Ts) -> Result<Vec<DueGroup>, StoreError> {
        dispatch!(self, s => s.due_groups(now).await)
    }

    pub async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        dispatch!(self, s => s.claim_batch(claim).await)
    }

    /// Jobs whose next attempt is due, oldest first (see [`rows::due_jobs_sql`]).
    pub async fn due_jobs(&self, now: Ts, limit: usize) -> Result<Vec<DueJob>, StoreError> {
        on_pool!(self, pool, param => {
            let rows = sqlx::query(AssertSqlSafe(rows::due_jobs_sql(param)))
                .bind(now.0)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
            rows.iter().map(rows::due_job_from_row).collect()
        })
    }

    /// Holds a job on the daily quota until its next probe at `until`; `attempt` fences off a
    /// flusher whose lease was taken over.
    pub async fn record_hold(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        until: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool, param => {
            let done = sqlx::query(AssertSqlSafe(rows::record_hold_sql(param)))
                .bind(until.0)
                .bind(now.0)
                .bind(&failure.code)
                .bind(&failure.message)
                .bind(&failure.request_id)
                .bind(id)
                .bind(attempt as i64)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Ends the quota hold of a task type: its held jobs are due now, as retries; returns how
    /// many.
    pub async fn release_held(&self, task: TaskType, now: Ts) -> Result<u64, StoreError> {
        on_pool!(self, pool, param => {
            let done = sqlx::query(AssertSqlSafe(rows::release_held_sql(param)))
                .bind(now.0)
                .bind(task.as_str())
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Moves the next probe of a task type's held jobs to `until` (one probe at a time).
    pub async fn defer_held(&self, task: TaskType, until: Ts) -> Result<u64, StoreError> {
        on_pool!(self, pool, param => {
            let done = sqlx::query(AssertSqlSafe(rows::defer_held_sql(param)))
                .bind(until.0)
                .bind(task.as_str())
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// The task types held on the daily quota.
    pub async fn held_tasks(&self) -> Result<Vec<HeldTask>, StoreError> {
        on_pool!(self, pool, _param => {
            let rows = sqlx::query(rows::HELD_TASKS_SQL).fetch_all(pool).await?;
            rows.iter().map(rows::held_task_from_row).collect()
        })
    }

    pub async fn claim_job(
        &self,
        id: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<Option<Job>, StoreError> {
        dispatch!(self, s => s.claim_job(id, now, lease_until).await)
    }

    pub async fn record_success(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        success: &Success,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.record_success(id, attempt, now, success).await)
    }

    /// Successful jobs whose submissions are due to be checked, the longest waiting first.
    pub async fn due_checks(&self, now: Ts, limit: usize) -> Result<Vec<DueCheck>, StoreError> {
        dispatch!(self, s => s.due_checks(now, limit).await)
    }

    pub async fn record_check(&self, id: &str, result: &CheckResult) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_check(id, result).await)
    }

    pub async fn record_retry(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        next_attempt_at: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.record_retry(id, attempt, now, next_attempt_at, failure).await)
    }

    pub async fn record_failure(
        &self,
        id: &str,
        attempt: u32,
        now: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.record_failure(id, attempt, now, failure).await)
    }

    pub async fn retry_job(&self, id: &str, now: Ts) -> Result<RetryOutcome, StoreError> {
        dispatch!(self, s => s.retry_job(id, now).await)
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        dispatch!(self, s => s.get_job(id).await)
    }

    /// The next instant after `now` at which an item becomes due or a retry is due (when the
    /// idle flusher wakes).
    pub async fn next_work(&self, now: Ts) -> Result<Option<Ts>, StoreError> {
        dispatch!(self, s => s.next_work(now).await)
    }

    /// Jobs sent and their media IDs per minute since `since` (the status page's chart).
    pub async fn drain_history(&self, since: Ts) -> Result<Vec<DrainMinute>, StoreError> {
        dispatch!(self, s => s.drain_history(since).await)
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        dispatch!(self, s => s.list_jobs(filter).await)
    }

    pub async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
        dispatch!(self, s => s.pending_for_media(media_id).await)
    }

    pub async fn queue_stats(&self, now: Ts) -> Result<QueueStats, StoreError> {
        let mut stats = dispatch!(self, s => s.queue_stats(now).await)?;
        stats.held = self.held_tasks().await?;
        Ok(stats)
    }

    pub async fn prune_deliveries(&self, now: Ts) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_deliveries(now).await)
    }

    /// Forgets option sets that no pending item names (SQLite keeps each set once; PostgreSQL
    /// keeps the options in the item rows and has nothing to prune).
    pub async fn prune_option_sets(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune_option_sets().await,
            Backend::Postgres(_) => Ok(0),
        }
    }
}

/// The requests of one group commit: the first one to arrive and every one waiting behind it,
/// up to [`MAX_GROUP`].
struct Group {
    ingests: Vec<Ingest>,
    replies: Vec<Reply>,
}

impl Group {
    fn gather(first: Waiting, rx: &mut mpsc::Receiver<Waiting>) -> Group {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (ingests, replies) = group.into_iter().unzip();
        Group { ingests, replies }
    }

    /// Answers every request with the group's receipts. When the group failed and holds more
    /// than one request, nobody is answered and the group comes back: one bad request must not
    /// fail the others, so the caller commits them one by one.
    fn answer(self, result: Result<Vec<Receipt>, StoreError>) -> Option<Group> {
        match result {
            Ok(receipts) => {
                for (reply, receipt) in self.replies.into_iter().zip(receipts) {
                    let _ = reply.send(Ok(receipt));
                }
                None
            }
            Err(error) if self.ingests.len() > 1 => {
                tracing::warn!(error = %error, size = self.ingests.len(), "group commit failed; committing one by one");
                Some(self)
            }
            Err(error) => {
                if let Some(reply) = self.replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
                None
            }
        }
    }

    /// The requests one by one, each with its reply.
    fn singles(self) -> impl Iterator<Item = (Ingest, Reply)> {
        self.ingests.into_iter().zip(self.replies)
    }
}

fn first_receipt(result: Result<Vec<Receipt>, StoreError>) -> Result<Receipt, StoreError> {
    result.and_then(|receipts| receipts.into_iter().next().ok_or(StoreError::Closed))
}

/// The SQLite group committer: runs until every [`Store`] handle is gone.
fn sqlite_committer(mut writer: IngestWriter, mut rx: mpsc::Receiver<Waiting>, wake: &Wake) {
    while let Some(first) = rx.blocking_recv() {
        let group = Group::gather(first, &mut rx);
        let result = writer.ingest_group(&group.ingests);
        if let (Ok(_), Some(due)) = (&result, wake::soonest_due(&group.ingests)) {
            wake.announce(due);
        }
        if let Some(group) = group.answer(result) {
            for (ingest, reply) in group.singles() {
                let _ = reply.send(first_receipt(writer.ingest_group(&[ingest])));
            }
        }
    }
}

/// The PostgreSQL group committer: runs until every [`Store`] handle is gone. After answering a
/// group it announces the group's soonest due time, here and to the other replicas.
async fn postgres_committer(store: PgStore, mut rx: mpsc::Receiver<Waiting>, wake: Arc<Wake>) {
    let mut announced = postgres::Announced::default();
    while let Some(first) = rx.recv().await {
        let group = Group::gather(first, &mut rx);
        let due = wake::soonest_due(&group.ingests);
        let result = store.ingest_group(&group.ingests).await;
        let stored = result.is_ok();
        if let Some(group) = group.answer(result) {
            for (ingest, reply) in group.singles() {
                let _ = reply.send(first_receipt(store.ingest_group(&[ingest]).await));
            }
        }
        if let (true, Some(due)) = (stored, due) {
            wake.announce(due);
            store.announce_due(&mut announced, due).await;
        }
    }
}
