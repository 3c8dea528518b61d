//! Leadership: one flusher per store.

use super::*;

/// Replicas on one PostgreSQL database: claims never overlap, a redelivery arriving at two
/// replicas at once is stored once, and exactly one replica holds the flusher lock.
#[tokio::test]
async fn replicas_sharing_a_database_claim_disjoint_batches_and_elect_one_leader() {
    let Some(db) = fresh_database("replicas_sharing_a_database").await else {
        return;
    };
    let location = StoreLocation::Postgres(db.url.clone());
    let a = Store::open(&location).await.unwrap();
    let b = Store::open(&location).await.unwrap();

    // The same delivery at both replicas at once: one stores it, the other answers it.
    let (ra, rb) = tokio::join!(
        a.ingest(ingest(&["dup"], TaskType::Refresh, 0, Some("msg"))),
        b.ingest(ingest(&["dup"], TaskType::Refresh, 0, Some("msg")))
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.redelivery ^ rb.redelivery, "{ra:?} / {rb:?}");
    assert_eq!(a.pending_for_media("dup").await.unwrap()[0].events, 1);

    for i in 0..199 {
        let store = if i % 2 == 0 { &a } else { &b };
        store
            .ingest(ingest(&[&format!("r{i:03}")], TaskType::Refresh, 0, None))
            .await
            .unwrap();
    }
    // Both replicas claim as fast as they can; every item lands in exactly one job.
    let drain = |store: Store| async move {
        let mut ids = vec![];
        while let Some(job) = store
            .claim_batch(&claim(10_000, TaskType::Refresh))
            .await
            .unwrap()
        {
            ids.extend(job.items.iter().map(|i| i.media_id.to_string()));
        }
        ids
    };
    let (ia, ib) = tokio::join!(
        tokio::spawn(drain(a.clone())),
        tokio::spawn(drain(b.clone()))
    );
    let mut all: Vec<String> = ia.unwrap().into_iter().chain(ib.unwrap()).collect();
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!((total, all.len()), (200, 200), "each item claimed once");

    // Leadership: the first to ask gets it; the other waits until the leader's session ends.
    assert!(a.try_acquire_leadership().await.unwrap());
    assert!(a.is_leader());
    assert!(!b.try_acquire_leadership().await.unwrap());
    assert!(!b.is_leader());
    assert!(a.try_acquire_leadership().await.unwrap(), "still held");
    a.close().await;
    assert!(b.try_acquire_leadership().await.unwrap(), "handed over");
    b.close().await;
}

/// SQLite has one process by construction: it is always the leader.
#[tokio::test]
async fn the_embedded_store_is_always_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(&StoreLocation::Sqlite(path.to_string_lossy().into_owned()))
        .await
        .unwrap();
    // One process by construction: it flushes, names itself as the flusher, and no other
    // replica can share the file.
    assert!(!store.is_shared());
    assert!(store.try_acquire_leadership().await.unwrap());
    assert!(store.is_leader());
    assert_eq!(
        store.flusher_replica().await.unwrap().as_deref(),
        Some(vod_purge::telemetry::host_name())
    );
    store.close().await;
}
