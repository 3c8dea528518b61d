//! The durable store: pending items, jobs with per-ID results, and delivery IDs.
//!
//! [`Store`] is the one contract the rest of the application uses, on a backend chosen from
//! `store.url` (embedded SQLite, or PostgreSQL for several replicas). Its files are cut by
//! concern:
//!
//! - written once for both backends, over the [`Dialect`](sql::Dialect) (`sql.rs`, the macros
//!   in `macros.rs`): `jobs.rs` (claiming a due job, recording an attempt, operator retries),
//!   `checks.rs` (submission checks), `holds.rs` (quota holds), `reads.rs` (jobs as the API
//!   reads them); `rows.rs` reads rows back into domain types;
//! - done by each backend its own way, behind the traits of `backend.rs`: claims of due items,
//!   reads of pending items, housekeeping, leadership, in `sqlite/` and `postgres/`;
//! - ingest: the group committer (`commit.rs`), which answers a request only once it is durable.
//!
//! Leadership: exactly one process per store may flush. SQLite has one process by construction,
//! so it is always the leader; PostgreSQL replicas compete for an advisory lock (see
//! [`postgres`]). [`Store::try_acquire_leadership`] is polled by the application; the flusher
//! only runs while it says yes.
//!
//! Every backend must pass the conformance suite in `tests/it/store/`.

#[macro_use]
mod macros;
pub mod backend;
mod checks;
mod commit;
mod counts;
mod follow;
mod holds;
mod jobs;
mod location;
pub mod postgres;
mod reads;
mod rows;
mod sql;
pub mod sqlite;
pub mod types;
pub mod wake;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wake::Wake;

pub use location::StoreLocation;
pub use types::*;

use crate::domain::{AccountName, Ts};
use backend::{Claims, Housekeeping, Leadership, PendingReads};
use commit::{Waiting, postgres_committer, sqlite_committer};
use postgres::PgStore;
use sqlite::{IngestWriter, SqliteStore};

pub(crate) use commit::MAX_GROUP;

/// The backend `store.url` chose.
#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The store handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
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
        let engine = match location {
            StoreLocation::Sqlite(path) => {
                // The schema first (through sqlx), then the writer's own connection.
                let store = SqliteStore::open(path).await?;
                let writer = IngestWriter::open(path, store.merge_log())?;
                let wake = wake.clone();
                std::thread::Builder::new()
                    .name("sqlite-ingest".into())
                    .spawn(move || sqlite_committer(writer, ingest_rx, &wake))
                    .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
                Engine::Sqlite(store)
            }
            StoreLocation::Postgres(url) => {
                let store = PgStore::open(url).await?;
                tokio::spawn(postgres_committer(store.clone(), ingest_rx, wake.clone()));
                Engine::Postgres(store)
            }
        };
        Ok(Store {
            engine,
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
        if let Engine::Postgres(store) = &self.engine {
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
        matches!(self.engine, Engine::Postgres(_))
    }

    /// The host name of the process that flushes this store: this one on SQLite, on PostgreSQL
    /// the replica whose session holds the flusher lock (`None` when no replica does).
    pub async fn flusher_replica(&self) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.flusher_replica().await)
    }

    /// Becomes the one flusher of this store if no live process is, or confirms this process
    /// still is (see [`Leadership`]). SQLite has one process by construction.
    pub async fn try_acquire_leadership(&self) -> Result<bool, StoreError> {
        dispatch!(self, s => s.try_acquire_leadership().await)
    }

    /// The answer of the last [`Store::try_acquire_leadership`]; no I/O.
    pub fn is_leader(&self) -> bool {
        dispatch!(self, s => s.is_leader())
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

    /// The groups (task type, option set) of `account` that have due items, with their count, urgent count
    /// and the earliest due time, groups with urgent items first.
    pub async fn due_groups(
        &self,
        account: &AccountName,
        now: Ts,
    ) -> Result<Vec<DueGroup>, StoreError> {
        dispatch!(self, s => s.settle_due(account, now).await)?;
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql::due_groups_sql(sql))
                .bind(now.0)
                .bind(account.as_str())
                .fetch_all(b.writes())
                .await?;
            rows.iter().map(rows::due_group_from_row).collect()
        })
    }

    pub async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        dispatch!(self, s => s.claim_batch(claim).await)
    }

    pub async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError> {
        dispatch!(self, s => s.pending_for_media(media_id).await)
    }

    /// The queue's figures: pending items (each account's, and their sums), jobs in flight or
    /// waiting to be retried, and the task types held on the quota.
    pub async fn queue_stats(&self, now: Ts) -> Result<QueueStats, StoreError> {
        let accounts = self.queue_by_account(now).await?;
        let (in_flight, retrying): (i64, i64) = with_backend!(self, b, sql => {
            sqlx::query_as(sql.sql(
                "SELECT COALESCE(SUM(CASE WHEN status = 'in_flight' THEN 1 ELSE 0 END), 0),
                        COALESCE(SUM(CASE WHEN status = 'retrying' THEN 1 ELSE 0 END), 0)
                 FROM jobs WHERE status IN ('in_flight', 'retrying')",
            ))
            .fetch_one(b.reads())
            .await?
        });
        Ok(QueueStats {
            pending: accounts.iter().map(|a| a.pending).sum(),
            urgent: accounts.iter().map(|a| a.urgent).sum(),
            due: accounts.iter().map(|a| a.due).sum(),
            oldest_first_seen: accounts.iter().filter_map(|a| a.oldest_first_seen).min(),
            next_due_at: accounts.iter().filter_map(|a| a.next_due_at).min(),
            in_flight_jobs: in_flight as u64,
            retrying_jobs: retrying as u64,
            held: self.held_tasks(None).await?,
            accounts,
        })
    }

    /// The accounts with work stored: pending items (from the kept counts, not a read of every
    /// item at start), or jobs with a call to come (in flight, retrying, held, or a submission
    /// check), with how many of each.
    pub async fn accounts_with_work(&self) -> Result<Vec<(AccountName, u64, u64)>, StoreError> {
        with_backend!(self, b, sql => {
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(sql.sql(
                "SELECT account, CAST(SUM(items) AS BIGINT), CAST(SUM(jobs) AS BIGINT) FROM (
                     SELECT account, items, 0 AS jobs FROM item_counts
                     UNION ALL
                     SELECT account, 0, COUNT(*) FROM jobs
                     WHERE status IN ('in_flight', 'retrying', 'held') OR check_at IS NOT NULL
                     GROUP BY account
                 ) AS w GROUP BY account HAVING SUM(items) <> 0 OR SUM(jobs) <> 0 ORDER BY account",
            ))
            .fetch_all(b.reads())
            .await?;
            rows.into_iter()
                .map(|(account, items, jobs)| {
                    Ok((
                        rows::parse_account(&account)?,
                        u64::try_from(items).unwrap_or(0),
                        u64::try_from(jobs).unwrap_or(0),
                    ))
                })
                .collect()
        })
    }

    /// Forgets delivery IDs past their retention.
    pub async fn prune_deliveries(&self, now: Ts) -> Result<u64, StoreError> {
        with_backend!(self, b, sql => {
            let done = sqlx::query(sql.sql("DELETE FROM deliveries WHERE expires_at <= $1"))
                .bind(now.0)
                .execute(b.writes())
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Forgets option sets that no pending item names (SQLite keeps each set once; PostgreSQL
    /// keeps the options in the item rows and has nothing to prune).
    pub async fn prune_option_sets(&self, accounts: &[AccountName]) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_option_sets(accounts).await)
    }
}
