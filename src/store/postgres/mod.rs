//! The PostgreSQL backend, for several replicas sharing one database.
//!
//! The same behaviour as the SQLite backend (the conformance suite checks both; SQLite alone keeps
//! a merge log, see `sqlite/merges.rs`);
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

mod claims;
pub use claims::candidates_sql;
mod ingest;
mod reads;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::domain::{AccountName, Ts};
use crate::store::backend::{Housekeeping, Leadership};
use crate::store::types::*;
use crate::store::wake::{self, Wake};

/// The migrations before `version`: the schema an earlier release left (tests make a database
/// of that release with it).
pub fn migrator_before(version: i64) -> Migrator {
    crate::store::sql::migrations_before(&migrator(), version)
}

/// The schema, embedded in the binary. One entry per file of `migrations/postgres/`, in order.
fn migrator() -> Migrator {
    crate::store::sql::migrator(&[
        (
            1,
            "initial",
            include_str!("../../../migrations/postgres/0001_initial.sql"),
        ),
        (
            2,
            "queue indexes",
            include_str!("../../../migrations/postgres/0002_queue_indexes.sql"),
        ),
        (
            3,
            "submission checks",
            include_str!("../../../migrations/postgres/0003_submission_checks.sql"),
        ),
        (
            4,
            "quota holds",
            include_str!("../../../migrations/postgres/0004_quota_holds.sql"),
        ),
        (
            5,
            "targets",
            include_str!("../../../migrations/postgres/0005_targets.sql"),
        ),
        (
            6,
            "accounts",
            include_str!("../../../migrations/postgres/0006_accounts.sql"),
        ),
        (
            7,
            "item counts",
            include_str!("../../../migrations/postgres/0007_item_counts.sql"),
        ),
        (
            8,
            "claim order",
            include_str!("../../../migrations/postgres/0008_claim_order.sql"),
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

/// The last due time a committer announced to the other replicas.
#[derive(Debug, Default)]
pub(crate) struct Announced(Option<Ts>);

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    leader: Arc<LeaderLock>,
}

#[derive(Debug)]
struct LeaderLock {
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

impl Leadership for PgStore {
    async fn flusher_replica(&self) -> Result<Option<String>, StoreError> {
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
    async fn try_acquire_leadership(&self) -> Result<bool, StoreError> {
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
    fn is_leader(&self) -> bool {
        self.leader.held.load(Ordering::SeqCst)
    }
}

impl PgStore {
    /// Folds the rows the count triggers appended into one per account and second (see
    /// `migrations/postgres/0007_item_counts.sql`), in one statement: every snapshot sees the
    /// same sums before and after, and of two folds at once each row is deleted by one only.
    /// Only seconds with several rows are rewritten. Returns how many rows were folded.
    pub(crate) async fn fold_item_counts(&self) -> Result<u64, StoreError> {
        let (read,): (i64,) = sqlx::query_as(
            "WITH several AS (
                      SELECT account, due_second FROM item_counts
                      GROUP BY account, due_second HAVING COUNT(*) > 1
                  ),
                  folded AS (
                      DELETE FROM item_counts c USING several s
                      WHERE c.account = s.account AND c.due_second = s.due_second
                      RETURNING c.account, c.due_second, c.items, c.urgent
                  ),
                  kept AS (
                      INSERT INTO item_counts (account, due_second, items, urgent)
                      SELECT account, due_second, SUM(items), SUM(urgent) FROM folded
                      GROUP BY account, due_second HAVING SUM(items) <> 0 OR SUM(urgent) <> 0
                  )
             SELECT COUNT(*) FROM folded",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(read as u64)
    }
}

impl Housekeeping for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map_err(|_| timed_out("a ping"))??;
        Ok(())
    }

    async fn migrated(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied as usize >= migrator().iter().count())
    }

    /// Closes the pool and the leadership connection, which hands the flusher lock over at once.
    async fn close(&self) {
        if let Some(conn) = self.leader.conn.lock().await.take() {
            self.leader.held.store(false, Ordering::SeqCst);
            let _ = conn.close().await;
        }
        self.pool.close().await;
    }

    /// The options live in the item rows: there is nothing to prune.
    async fn prune_option_sets(&self, _accounts: &[AccountName]) -> Result<u64, StoreError> {
        Ok(0)
    }
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
            leader: Arc::new(LeaderLock {
                options,
                conn: Mutex::new(None),
                held: AtomicBool::new(false),
            }),
        })
    }

    /// The pool, for the operations written once for both backends (see `store/sql.rs`).
    pub(crate) fn writes(&self) -> &PgPool {
        &self.pool
    }

    /// The pool: reads and writes share it.
    pub(crate) fn reads(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction: PostgreSQL locks rows, not the database, so it begins as any other.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
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
                wake.set_listening(true);
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
            let stopped = tokio::select! {
                _ = token.cancelled() => None,
                result = listened => Some(result),
            };
            wake.set_listening(false);
            match stopped {
                None => return,
                Some(result) => {
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
}
