//! A restart in the middle of an item's life: the debounce state, `max_wait` deadline included,
//! and a delivery ID outlive the process, on both backends.

use super::*;

/// Where a store lives, to open it again after closing it.
async fn reopened(location: &StoreLocation, store: Store) -> Store {
    store.close().await;
    drop(store);
    Store::open(location).await.expect("the store opens again")
}

async fn max_wait_and_redelivery_hold_across_a_restart(location: StoreLocation) {
    let mut store = Store::open(&location).await.unwrap();
    store
        .ingest(ingest(&["a"], TaskType::Refresh, 1_000, Some("d1")))
        .await
        .unwrap();
    // Events every second, the store restarted every ten: the deadline set by the first event
    // (1 s + max_wait 30 s) still caps the delay, and the merges are counted across restarts.
    for t in 2..=40 {
        if t % 10 == 0 {
            store = reopened(&location, store).await;
        }
        store
            .ingest(ingest(&["a"], TaskType::Refresh, t * 1_000, None))
            .await
            .unwrap();
    }
    store = reopened(&location, store).await;
    let a = store.pending_for_media("a").await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].first_seen, a[0].events), (Ts(1_000), 40));
    assert_eq!(
        a[0].due_at,
        Ts(31_000),
        "never later than first_seen + max_wait"
    );
    assert!(
        store
            .due_groups(&vod_purge::domain::AccountName::default(), Ts(30_999))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .due_groups(&vod_purge::domain::AccountName::default(), Ts(31_000))
            .await
            .unwrap()
            .len(),
        1
    );
    // The first delivery's ID is remembered: its redelivery stores nothing.
    let again = store
        .ingest(ingest(&["a"], TaskType::Refresh, 41_000, Some("d1")))
        .await
        .unwrap();
    assert!(again.redelivery);
    let job = claimed(&store, 41_000, TaskType::Refresh).await;
    assert_eq!((job.items.len(), job.items[0].events), (1, 40));
    store.close().await;
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db").to_string_lossy().into_owned();
    max_wait_and_redelivery_hold_across_a_restart(StoreLocation::Sqlite(path)).await;
}

#[tokio::test]
async fn postgres() {
    if let Some(db) = fresh_database("store::restart::postgres").await {
        max_wait_and_redelivery_hold_across_a_restart(StoreLocation::Postgres(db.url.clone()))
            .await;
    }
}
