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
use sqlx::{AssertSqlSafe, SqlitePool};

use crate::domain::{AccountName, TaskType};
use crate::store::backend::{Housekeeping, Leadership};
use crate::store::types::*;
use merges::MergeLog;

mod claims;
pub(crate) mod merges;
mod reads;
pub(crate) mod writer;

pub(crate) use writer::IngestWriter;

/// The migrations before `version`: the schema an earlier release left (tests make a database
/// of that release with it).
pub fn migrator_before(version: i64) -> Migrator {
    crate::store::sql::migrations_before(&migrator(), version)
}

/// The schema, embedded in the binary. One entry per file of `migrations/sqlite/`, in order.
fn migrator() -> Migrator {
    crate::store::sql::migrator(&[
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
        (
            7,
            "targets",
            include_str!("../../../migrations/sqlite/0007_targets.sql"),
        ),
        (
            8,
            "accounts",
            include_str!("../../../migrations/sqlite/0008_accounts.sql"),
        ),
        (
            9,
            "item counts",
            include_str!("../../../migrations/sqlite/0009_item_counts.sql"),
        ),
        (
            10,
            "merge folds",
            include_str!("../../../migrations/sqlite/0010_merge_folds.sql"),
        ),
    ])
}

/// Pages the write-ahead log grows by before the connection that commits copies it into the
/// database (SQLite's default is 1,000). A checkpoint writes each page it copies once, however
/// many commits changed it, so checkpointing less often writes the pages that merges keep
/// changing fewer times: the ingest benchmark's repeated IDs gain about a fifth. The log file
/// grows to about 40 MiB between checkpoints.
pub(crate) const WAL_AUTOCHECKPOINT: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The merge log in memory (see [`merges`]), shared with the ingest writer.
    log: Arc<Mutex<MergeLog>>,
    /// Option sets read by claims, by fingerprint (they never change).
    options: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

impl Housekeeping for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// True when every migration this binary knows has been applied.
    async fn migrated(&self) -> Result<bool, StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await?;
        Ok(applied as usize >= migrator().iter().count())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Forgets the option sets that no pending item names any more (a job keeps its own copy).
    /// Each set costs a seek of `items_group_order` per task.
    async fn prune_option_sets(&self, accounts: &[AccountName]) -> Result<u64, StoreError> {
        // Account names are checked words (a-z, 0-9, '-', '_'): safe inside the statement.
        let unused = |(account, task): (&AccountName, TaskType)| {
            format!(
                "NOT EXISTS (SELECT 1 FROM items INDEXED BY items_group_order
                             WHERE account = '{}' AND task = '{}' AND fingerprint = option_sets.fingerprint)",
                account.as_str(),
                task.as_str()
            )
        };
        let conditions: Vec<String> = accounts
            .iter()
            .flat_map(|a| TaskType::ALL.into_iter().map(move |t| (a, t)))
            .map(unused)
            .collect();
        if conditions.is_empty() {
            return Ok(0);
        }
        let sql = format!("DELETE FROM option_sets WHERE {}", conditions.join(" AND "));
        let done = sqlx::query(AssertSqlSafe(sql))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

/// SQLite has one process by construction: it is always the leader.
impl Leadership for SqliteStore {
    async fn try_acquire_leadership(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn is_leader(&self) -> bool {
        true
    }

    async fn flusher_replica(&self) -> Result<Option<String>, StoreError> {
        Ok(Some(crate::telemetry::host_name().to_owned()))
    }
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
            options: Arc::default(),
        })
    }

    fn options_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        // A panic while holding it leaves a map of correct entries.
        self.options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write transaction on the sqlx writer that holds the write lock from its first statement
    /// (see the module documentation for why).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The merge log in memory, for the ingest writer (which reads it back from the table).
    pub(crate) fn merge_log(&self) -> Arc<Mutex<MergeLog>> {
        self.log.clone()
    }

    /// The sqlx writer connection (the flusher's), for the operations written once for both
    /// backends (see `store/sql.rs`).
    pub(crate) fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    /// The readers, which run beside the writers (WAL).
    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Ts;
    use crate::store::backend::{Claims, PendingReads};
    use crate::store::rows;
    use crate::store::sql::Dialect;

    /// The default options, as an item row stored them.
    const PLAIN: &str = r#"{"formats":[],"definitions":[],"stream_types":[],"multiple":false,"slice_flag":false,"slice_count":5,"user_data":null}"#;

    /// A store in a file of its own, in a directory removed when the second value is dropped.
    async fn temp_store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("store.db").to_str().unwrap())
            .await
            .unwrap();
        (store, dir)
    }

    /// Up to 20 due Refresh items of `fingerprint` at 500 ms into job `job_id`.
    fn claim(fingerprint: &str, job_id: &str) -> ClaimBatch {
        ClaimBatch {
            account: crate::domain::AccountName::default(),
            task: TaskType::Refresh,
            fingerprint: fingerprint.into(),
            now: Ts(500),
            max: 20,
            lease_until: Ts(600),
            job_id: job_id.into(),
            dry_run: true,
            urgent_only: false,
            seen: None,
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
        let old = migrator_before(3);
        assert_eq!(old.iter().count(), 2);
        old.run(&pool).await.unwrap();
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
        assert_eq!(store.recount(Ts(500)).await.unwrap()[0].pending, 1);
        store.close().await;
    }

    /// An option set goes once no pending item names it, and not before.
    #[tokio::test]
    async fn option_sets_are_pruned_once_no_pending_item_names_them() {
        let (store, _dir) = temp_store().await;
        for fingerprint in ["f-refresh", "f-preload", "f-gone"] {
            sqlx::query("INSERT INTO option_sets (fingerprint, options) VALUES (?, ?)")
                .bind(fingerprint)
                .bind(PLAIN)
                .execute(&store.writer)
                .await
                .unwrap();
        }
        let accounts = [AccountName::default_account()];
        for (task, fingerprint) in [("Refresh", "f-refresh"), ("Preload", "f-preload")] {
            sqlx::query(
                "INSERT INTO items (account, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at)
                 VALUES ('default', 'm1', ?, ?, 'cms', 10, 10, 1000, 100)",
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
        assert_eq!(store.prune_option_sets(&accounts).await.unwrap(), 1);
        assert_eq!(sets().await, ["f-preload", "f-refresh"]);

        let job = store
            .claim_batch(&claim("f-refresh", "job-1"))
            .await
            .unwrap()
            .expect("m1 is due");
        assert_eq!(job.options, rows::parse_options(PLAIN).unwrap());
        assert_eq!(store.prune_option_sets(&accounts).await.unwrap(), 1);
        assert_eq!(sets().await, ["f-preload"]);
        // The job kept its own copy of the options.
        let kept: String = sqlx::query_scalar("SELECT options FROM jobs WHERE id = 'job-1'")
            .fetch_one(store.reads())
            .await
            .unwrap();
        assert_eq!(
            rows::parse_options(&kept).unwrap(),
            rows::parse_options(PLAIN).unwrap()
        );
        store.close().await;
    }

    /// A stale mark of an item gone (claimed after a read of the figures marked it) or stored as
    /// due after the horizon is dropped by the next look, whichever way it reads the marks: a
    /// mark never outlives its use.
    #[tokio::test]
    async fn marks_of_items_gone_or_due_later_are_dropped() {
        let (store, _dir) = temp_store().await;
        sqlx::query("INSERT INTO option_sets (fingerprint, options) VALUES ('f', ?)")
            .bind(PLAIN)
            .execute(&store.writer)
            .await
            .unwrap();
        // m0..m3 due at 100 ms, m4 at 10 s.
        for (media_id, due_at) in [
            ("m0", 100),
            ("m1", 100),
            ("m2", 100),
            ("m3", 100),
            ("m4", 10_000),
        ] {
            sqlx::query(
                "INSERT INTO items (account, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at)
                 VALUES ('default', ?, 'Refresh', 'f', 'cms', 10, 10, 20000, ?)",
            )
            .bind(media_id)
            .bind(due_at)
            .execute(&store.writer)
            .await
            .unwrap();
        }
        let id = |media_id: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT id FROM items WHERE media_id = ?")
                    .bind(media_id)
                    .fetch_one(&store.reader)
                    .await
                    .unwrap()
            }
        };
        let (m0, m4) = (id("m0").await, id("m4").await);
        let job = store
            .claim_batch(&ClaimBatch {
                max: 1,
                ..claim("f", "job-1")
            })
            .await
            .unwrap()
            .expect("m0 is due");
        assert_eq!(job.items[0].media_id.as_str(), "m0");
        let marks = || writer::lock(&store.log).unsettled_len("default");
        let look = || async {
            let mut queues = [AccountQueue {
                account: AccountName::default(),
                pending: 4,
                urgent: 0,
                due: 3,
                oldest_first_seen: None,
                next_due_at: None,
            }];
            store.correct_due(&mut queues, Ts(500)).await.unwrap();
            assert_eq!(queues[0].due, 3);
        };
        // Marked after the claim took m0 (as a read of the figures may), and m4 not due.
        writer::lock(&store.log).mark("default", [m0, m4]);
        assert_eq!(marks(), 2);
        // The due range (3 items) is longer than the marks (2): the look reads the marks by ID.
        look().await;
        assert_eq!(marks(), 0, "the list of marks, looked up");
        // The due range is shorter than the marks: the look reads it whole.
        writer::lock(&store.log).mark("default", [m0, m4, 1_000, 1_001, 1_002]);
        look().await;
        assert_eq!(marks(), 0, "the whole due range");
        store.close().await;
    }

    /// The plan of each statement a poll runs (the flusher's `due_groups`, the queue figures of
    /// `/metrics` and `/queue`): what they read must not grow with the pending items. A scan of
    /// `items` (or of an index over all of them) fails; `due_groups` must take a range of
    /// `items_account_due`, and the figures seek their indexes and read the kept counts.
    #[tokio::test]
    async fn polls_read_ranges_of_indexes_not_every_pending_item() {
        let (store, _dir) = temp_store().await;
        let plan = |sql: String| {
            let store = store.clone();
            async move {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                        .bind(0_i64)
                        .bind("[]")
                        .bind("default")
                        .bind(0_i64)
                        .fetch_all(store.reads())
                        .await
                        .unwrap();
                rows.into_iter().map(|r| r.3).collect::<Vec<String>>()
            }
        };
        let due_groups = plan(crate::store::sql::due_groups_sql(Dialect::Sqlite).0).await;
        assert!(
            due_groups
                .iter()
                .any(|l| l.contains("USING INDEX items_account_due (account=? AND due_at<?)")),
            "{due_groups:#?}"
        );
        let counts = plan(Dialect::Sqlite.sql(crate::store::counts::COUNTS).0).await;
        assert!(
            counts.iter().any(|l| l.contains("item_counts")),
            "{counts:#?}"
        );
        let seeks = plan(Dialect::Sqlite.sql(crate::store::counts::SEEKS).0).await;
        for index in ["items_account_due", "items_account_first_seen"] {
            assert!(
                seeks.iter().any(
                    |l| l.starts_with("SEARCH items USING COVERING INDEX") && l.contains(index)
                ),
                "{index}: {seeks:#?}"
            );
        }
        // The bulk fold's look for items stored as due: each account's due range (the accounts
        // first: CROSS JOIN keeps that order).
        let stored_due = plan(writer::STORED_DUE.to_owned()).await;
        assert!(
            stored_due
                .iter()
                .any(|l| l
                    .contains("USING COVERING INDEX items_account_due (account=? AND due_at<?)")),
            "{stored_due:#?}"
        );
        let unsettled = plan(claims::unsettled_sql()).await;
        assert!(
            unsettled.iter().any(|l| l
                .contains("USING INDEX items_account_due (account=? AND due_at>? AND due_at<?)")),
            "{unsettled:#?}"
        );
        assert!(
            unsettled
                .iter()
                .any(|l| l.contains("USING INTEGER PRIMARY KEY (rowid=?)")),
            "the listed items by ID: {unsettled:#?}"
        );
        for (name, lines) in [
            ("due_groups", &due_groups),
            ("counts", &counts),
            ("seeks", &seeks),
            ("unsettled", &unsettled),
            ("stored_due", &stored_due),
        ] {
            for line in lines.iter().filter(|l| l.starts_with("SCAN ")) {
                let harmless = line.contains("json_each")
                    || line == "SCAN CONSTANT ROW"
                    || line.starts_with("SCAN item_counts")
                    || (name == "stored_due" && line == "SCAN a");
                assert!(harmless, "{name} scans: {line} in {lines:#?}");
            }
        }
        store.close().await;
    }
}
