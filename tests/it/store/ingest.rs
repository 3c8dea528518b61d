//! What ingest stores: dedup and debounce, redeliveries, group commits.

use super::*;

each_backend! {
    async fn dedup_and_debounce(store: Store) {
        let first = store
            .ingest(ingest(&["a", "b"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        assert_eq!(first.accepted, vec!["a", "b"]);
        let second = store
            .ingest(ingest(&["a", "c"], TaskType::Refresh, 2_500, None))
            .await
            .unwrap();
        assert_eq!(
            (second.accepted, second.merged),
            (vec!["c".to_owned()], vec!["a".to_owned()])
        );

        let a = store.pending_for_media("a").await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].first_seen, a[0].last_seen, a[0].events),
            (Ts(1_000), Ts(2_500), 2)
        );
        assert_eq!(a[0].due_at, Ts(4_500), "due quiet after the last event");

        // Events every second for 40 s: the max_wait deadline caps the delay.
        for t in 3..40 {
            store
                .ingest(ingest(&["a"], TaskType::Refresh, t * 1_000, None))
                .await
                .unwrap();
        }
        let a = store.pending_for_media("a").await.unwrap();
        assert_eq!(
            a[0].due_at,
            Ts(31_000),
            "never later than first_seen + max_wait"
        );

        let stats = store.queue_stats(Ts(4_000)).await.unwrap();
        assert_eq!(
            (stats.pending, stats.due),
            (3, 1),
            "b is due at 3 s; a and c later"
        );
    }
}

each_backend! {
    async fn redelivery_returns_the_first_answer_and_stores_nothing(store: Store) {
        let first = store
            .ingest(ingest(&["a"], TaskType::Refresh, 0, Some("msg_1")))
            .await
            .unwrap();
        let again = store
            .ingest(ingest(&["a", "b"], TaskType::Refresh, 500, Some("msg_1")))
            .await
            .unwrap();
        assert!(again.redelivery);
        assert_eq!(
            (again.event_id.as_str(), &again.accepted),
            (first.event_id.as_str(), &first.accepted)
        );
        assert!(store.pending_for_media("b").await.unwrap().is_empty());
        assert_eq!(store.pending_for_media("a").await.unwrap()[0].events, 1);
        // Past the retention the ID is forgotten.
        assert_eq!(store.prune_deliveries(Ts(60_000)).await.unwrap(), 1);
        let later = store
            .ingest(ingest(&["a"], TaskType::Refresh, 61_000, Some("msg_1")))
            .await
            .unwrap();
        assert!(!later.redelivery);
    }
}

each_backend! {
    async fn concurrent_ingests_are_group_committed_and_all_stored(store: Store) {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .ingest(ingest(
                            &[&format!("v{i}"), "shared"],
                            TaskType::Refresh,
                            1_000,
                            None,
                        ))
                        .await
                })
            })
            .collect();
        let mut merged_shared = 0;
        for task in tasks {
            let receipt = task.await.unwrap().unwrap();
            merged_shared += receipt.merged.iter().filter(|id| *id == "shared").count();
        }
        assert_eq!(
            merged_shared, 199,
            "exactly one request created the shared item"
        );
        let stats = store.queue_stats(Ts(1_000)).await.unwrap();
        assert_eq!(stats.pending, 201);
        assert_eq!(
            store.pending_for_media("shared").await.unwrap()[0].events,
            200
        );
    }
}

each_backend! {
    async fn repeats_inside_one_commit_are_told_apart(store: Store) {
        // The same ID twice in one request: one item, two events, reported as accepted once.
        let receipt = store
            .ingest(ingest(&["twice", "twice"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        assert_eq!(
            (receipt.accepted, receipt.merged),
            (vec!["twice".to_owned()], vec![])
        );
        assert_eq!(store.pending_for_media("twice").await.unwrap()[0].events, 2);

        // Repeats mixed with a pending item and new IDs: each occurrence counts once, in order.
        store
            .ingest(ingest(&["old"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        let receipt = store
            .ingest(ingest(
                &["a", "old", "a", "b", "a"],
                TaskType::Refresh,
                1_500,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(
            (receipt.accepted, receipt.merged),
            (vec!["a".to_owned(), "b".to_owned()], vec!["old".to_owned()])
        );
        for (id, events) in [("a", 3), ("old", 2), ("b", 1)] {
            let pending = store.pending_for_media(id).await.unwrap();
            assert_eq!((pending.len(), pending[0].events), (1, events), "{id}");
        }

        // The same delivery ID many times at once (very likely in one group commit): stored once,
        // every answer the same.
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .ingest(ingest(
                            &["redelivered", &format!("extra{i}")],
                            TaskType::Refresh,
                            2_000,
                            Some("same"),
                        ))
                        .await
                })
            })
            .collect();
        let mut receipts = Vec::new();
        for task in tasks {
            receipts.push(task.await.unwrap().unwrap());
        }
        assert_eq!(
            receipts.iter().filter(|r| !r.redelivery).count(),
            1,
            "stored once"
        );
        assert!(receipts.iter().all(|r| r.event_id == receipts[0].event_id));
        assert_eq!(
            store.pending_for_media("redelivered").await.unwrap()[0].events,
            1
        );
        assert_eq!(
            store.queue_stats(Ts(2_000)).await.unwrap().pending,
            6,
            "twice, old, a, b, redelivered, one extra"
        );
    }
}

/// PostgreSQL stores a whole group in a few statements: the same key across requests, a delivery
/// ID repeated inside the group and one answered by an earlier group all come out as they would
/// one request at a time.
#[tokio::test]
async fn a_postgres_group_is_stored_as_its_requests_one_by_one() {
    let Some(db) = fresh_database("a_postgres_group_is_stored_as_its_requests_one_by_one").await
    else {
        return;
    };
    use vod_purge::store::backend::{Housekeeping, PendingReads};
    let store = vod_purge::store::postgres::PgStore::open(&db.url)
        .await
        .unwrap();
    let group = [
        ingest(&["k", "n1"], TaskType::Refresh, 1_000, Some("d1")),
        ingest(&["k"], TaskType::Refresh, 1_100, None),
        ingest(&["x"], TaskType::Refresh, 1_150, Some("d1")),
        ingest(&["k", "k", "n2"], TaskType::Refresh, 1_200, Some("d2")),
    ];
    let receipts = store.ingest_group(&group).await.unwrap();
    let lists = |r: &Receipt| (r.accepted.clone(), r.merged.clone(), r.redelivery);
    let owned = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        lists(&receipts[0]),
        (owned(&["k", "n1"]), owned(&[]), false)
    );
    assert_eq!(lists(&receipts[1]), (owned(&[]), owned(&["k"]), false));
    // The repeat gets the first answer and stores nothing.
    assert_eq!(lists(&receipts[2]), (owned(&["k", "n1"]), owned(&[]), true));
    assert_eq!(receipts[2].event_id, receipts[0].event_id);
    assert_eq!(lists(&receipts[3]), (owned(&["n2"]), owned(&["k"]), false));
    assert_eq!(receipts[3].event_id, group[3].event_id);

    // A later group: d1 was answered before, so it stores nothing either.
    let later = store
        .ingest_group(&[ingest(&["y"], TaskType::Refresh, 2_000, Some("d1"))])
        .await
        .unwrap();
    assert_eq!(lists(&later[0]), (owned(&["k", "n1"]), owned(&[]), true));
    assert_eq!(later[0].event_id, receipts[0].event_id);

    let k = store.pending_for_media("k").await.unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(
        (k[0].events, k[0].first_seen, k[0].last_seen),
        (4, Ts(1_000), Ts(1_200))
    );
    for (id, pending) in [("n1", 1), ("n2", 1), ("x", 0), ("y", 0)] {
        assert_eq!(
            store.pending_for_media(id).await.unwrap().len(),
            pending,
            "{id}"
        );
    }
    store.close().await;
}

each_backend! {
    /// The counts the queue's figures read are kept by the transactions that change items:
    /// after concurrent group commits of new and repeated IDs (urgent ones among them), folds of
    /// the counts running at the same time (PostgreSQL's), and claims, they equal a count of
    /// every pending item, at every moment looked at.
    async fn the_kept_counts_equal_a_count_of_every_item(store: Store) {
        // PostgreSQL's counts are folded by the leader.
        assert!(store.try_acquire_leadership().await.unwrap());
        let writers: Vec<_> = (0..4_i64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for r in 0..40_i64 {
                        let ids: Vec<String> =
                            (0..10).map(|i| format!("k{}", (w * 7 + r * 3 + i) % 100)).collect();
                        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                        let mut request = ingest(&ids, TaskType::Refresh, 1_000 + r * 150, None);
                        if r % 5 == 0 {
                            request.items[0].priority = vod_purge::domain::Priority::Urgent;
                        }
                        store.ingest(request).await.unwrap();
                    }
                })
            })
            .collect();
        let folds = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut folded = 0;
                for _ in 0..20 {
                    folded += store.fold_item_counts().await.unwrap();
                    tokio::task::yield_now().await;
                }
                folded
            })
        };
        for writer in writers {
            writer.await.unwrap();
        }
        let folded = folds.await.unwrap() + store.fold_item_counts().await.unwrap();
        // SQLite keeps one row per second already; PostgreSQL's triggers appended rows to fold.
        assert_eq!(folded > 0, store.is_shared(), "rows folded: {folded}");
        for now in [0, 1_000, 3_000, 5_500, 7_999, 8_000, 9_000, 60_000] {
            let at = Ts(now);
            assert_eq!(
                store.queue_by_account(at).await.unwrap(),
                store.recount_queue(at).await.unwrap(),
                "at {now}"
            );
        }
        let pending = store.queue_stats(Ts(0)).await.unwrap().pending;
        assert_eq!(pending, 100, "every ID once");
        let mut claimed = 0;
        while let Some(job) = store
            .claim_batch(&claim(8_000, TaskType::Refresh))
            .await
            .unwrap()
        {
            claimed += job.items.len() as u64;
        }
        store.fold_item_counts().await.unwrap();
        let kept = store.queue_by_account(Ts(8_000)).await.unwrap();
        assert_eq!(kept, store.recount_queue(Ts(8_000)).await.unwrap());
        assert_eq!(kept.iter().map(|q| q.pending).sum::<u64>(), 100 - claimed);
        assert!(claimed > 0);
    }
}
