//! The store conformance suite: every backend must pass every check here (`each_backend!`
//! runs a test on each), by concern in the files below.

use std::time::Duration;

use vod_purge::config::StoreLocation;
use vod_purge::domain::{MediaIdRules, PurgeOptions, Quota, TaskType, Ts};
use vod_purge::queue::Debounce;
use vod_purge::store::*;

use crate::support::postgres::{TestDb, fresh_database};

const QUIET: Duration = Duration::from_secs(2);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What keeps a test store's data alive; dropping it removes the file or database.
#[allow(dead_code)]
pub(super) enum Backing {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

/// A fresh embedded store.
pub(super) async fn sqlite_store() -> (Store, Backing) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let sqlite = Store::open(&StoreLocation::Sqlite(path.to_string_lossy().into_owned()))
        .await
        .unwrap();
    (sqlite, Backing::Sqlite(dir))
}

/// A fresh PostgreSQL store, or `None` when no server is reachable outside CI (which
/// `fresh_database` reports; in CI it fails the test).
pub(super) async fn postgres_store(test: &str) -> Option<(Store, Backing)> {
    let db = fresh_database(test).await?;
    let pg = Store::open(&StoreLocation::Postgres(db.url.clone()))
        .await
        .expect("the PostgreSQL store opens");
    Some((pg, Backing::Postgres(db)))
}

/// A conformance test, once per backend: `async fn name(store: Store) { … }` becomes the tests
/// `name::sqlite` and `name::postgres`, so a failure names its backend and the two run in
/// parallel. Without a reachable server outside CI the PostgreSQL one says so and does nothing.
macro_rules! each_backend {
    ($(#[$meta:meta])* async fn $name:ident($store:ident: Store) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($store: Store) $body

            #[tokio::test]
            async fn sqlite() {
                let (store, _backing) = crate::store::sqlite_store().await;
                run(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some((store, _backing)) = crate::store::postgres_store(test).await {
                    run(store).await;
                }
            }
        }
    };
}
pub(crate) use each_backend;

pub(super) fn item(id: &str, task: TaskType) -> NewItem {
    let options = PurgeOptions::default();
    NewItem {
        account: vod_purge::domain::AccountName::default(),
        media_id: MediaIdRules::default().parse(id).unwrap(),
        task,
        fingerprint: options.fingerprint(),
        options,
        debounce: Debounce {
            quiet: QUIET,
            max_wait: MAX_WAIT,
        },
        priority: vod_purge::domain::Priority::Normal,
    }
}

pub(super) fn ingest(ids: &[&str], task: TaskType, now: i64, delivery: Option<&str>) -> Ingest {
    Ingest {
        source: "test".into(),
        delivery_id: delivery.map(str::to_owned),
        event_id: uuid::Uuid::now_v7().to_string(),
        items: ids.iter().map(|id| item(id, task)).collect(),
        rejected: vec![],
        now: Ts(now),
        delivery_expires_at: Ts(now + 60_000),
    }
}

pub(super) fn claim(store_now: i64, task: TaskType) -> ClaimBatch {
    ClaimBatch {
        account: vod_purge::domain::AccountName::default(),
        task,
        fingerprint: PurgeOptions::default().fingerprint(),
        now: Ts(store_now),
        max: 20,
        lease_until: Ts(store_now + 60_000),
        job_id: uuid::Uuid::now_v7().to_string(),
        dry_run: false,
        urgent_only: false,
        seen: None,
    }
}

/// The job of a claim that must find due items.
pub(super) async fn claimed(store: &Store, store_now: i64, task: TaskType) -> Job {
    store
        .claim_batch(&claim(store_now, task))
        .await
        .unwrap()
        .expect("due items to claim")
}

/// The IDs of the jobs due at `now`.
async fn due_ids(store: &Store, now: Ts) -> Vec<String> {
    let due = store
        .due_jobs(&vod_purge::domain::AccountName::default(), now, 10)
        .await
        .unwrap();
    due.into_iter().map(|d| d.id).collect()
}

mod claims;
mod due_times;
mod follow;
mod holds;
mod ingest;
mod jobs;
mod leadership;
mod model;
mod race;
mod restart;
