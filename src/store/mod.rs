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
mod sql;
pub mod types;
pub mod wake;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wake::Wake;

pub use types::*;

use crate::config::StoreLocation;
use crate::domain::Ts;
use postgres::PgStore;
use sqlite::{IngestWriter, SqliteStore};

/// Most requests folded into one transaction.
pub(crate) const MAX_GROUP: usize = 256;

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend is configured (an operation each backend does
/// its own way; see [`Backend`]).
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

/// Runs `$body` once per backend, with `$b` the backend's store and `$sql` its
/// [`Dialect`](sql::Dialect): an operation written once for both (`jobs.rs`, `checks.rs`,
/// `holds.rs`, `reads.rs`). The body reaches the database through `$b.reads()`, `$b.writes()`
/// and `$b.begin_write()`, which both backends have.
macro_rules! with_backend {
    ($self:ident, $b:ident, $sql:ident => $body:expr) => {
        match &$self.backend {
            $crate::store::Backend::Sqlite($b) => {
                let $sql = $crate::store::sql::Dialect::Sqlite;
                $body
            }
            $crate::store::Backend::Postgres($b) => {
                let $sql = $crate::store::sql::Dialect::Postgres;
                $body
            }
        }
    };
}

/// A job with its items, read on `$conn` (a `&mut` connection, in a transaction or not) in
/// dialect `$sql`: `Result<Option<Job>, StoreError>`.
macro_rules! load_job {
    ($conn:expr, $sql:expr, $id:expr) => {
        async {
            let conn = $conn;
            let row = sqlx::query($sql.sql(&format!(
                "SELECT {} FROM jobs WHERE id = $1",
                $crate::store::rows::JOB_COLUMNS
            )))
            .bind($id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut job = $crate::store::rows::job_from_row(&row)?;
            let items = sqlx::query($sql.sql(&format!(
                "SELECT {} FROM job_items WHERE job_id = $1 ORDER BY position",
                $crate::store::rows::JOB_ITEM_COLUMNS
            )))
            .bind($id)
            .fetch_all(&mut *conn)
            .await?;
            job.items = items
                .iter()
                .map($crate::store::rows::job_item_from_row)
                .collect::<Result<_, _>>()?;
            Ok::<_, StoreError>(Some(job))
        }
        .await
    };
}

mod checks;
mod holds;
mod jobs;
mod reads;

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
