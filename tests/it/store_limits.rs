//! The store conformance suite, continued: urgent items and quota holds, on every backend.

use vod_purge::domain::{Priority, Quota, TaskType, Ts};
use vod_purge::store::*;

use crate::store::{claim, claimed, each_backend, ingest};

/// An event for `ids` at `now`, urgent: no quiet period.
fn urgent(ids: &[&str], now: i64) -> Ingest {
    let mut ingest = ingest(ids, TaskType::Refresh, now, None);
    for item in &mut ingest.items {
        item.priority = Priority::Urgent;
        item.debounce = item.debounce.for_priority(Priority::Urgent);
    }
    ingest
}

each_backend! {
    async fn urgent_events_are_due_at_once_merged_and_claimed_first(store: Store) {
        store
            .ingest(ingest(&["a", "b", "c"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        // An urgent event for a pending item: merged, and the item is due at once.
        let receipt = store.ingest(urgent(&["b"], 1_500)).await.unwrap();
        assert_eq!(receipt.merged, vec!["b".to_owned()]);
        let b = &store.pending_for_media("b").await.unwrap()[0];
        assert_eq!(
            (b.due_at, b.priority, b.events),
            (Ts(1_500), Priority::Urgent, 2)
        );
        // A normal event later does not push an urgent item back.
        store
            .ingest(ingest(&["b"], TaskType::Refresh, 1_600, None))
            .await
            .unwrap();
        let b = &store.pending_for_media("b").await.unwrap()[0];
        assert_eq!((b.due_at, b.events), (Ts(1_500), 3));
        let stats = store.queue_stats(Ts(1_700)).await.unwrap();
        assert_eq!((stats.pending, stats.urgent, stats.due), (3, 1, 1));
        let groups = store.due_groups(&vod_purge::domain::AccountName::default(), Ts(1_700)).await.unwrap();
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.due_count, g.urgent_count))
                .collect::<Vec<_>>(),
            vec![(1, 1)]
        );

        // When normal items are due too, the urgent one leads the batch; an urgent-only claim
        // leaves the normal ones.
        let mut only = claim(3_000, TaskType::Refresh);
        only.urgent_only = true;
        store.ingest(urgent(&["d"], 2_000)).await.unwrap();
        let job = store
            .claim_batch(&only)
            .await
            .unwrap()
            .expect("urgent items");
        let ids: Vec<&str> = job.items.iter().map(|i| i.media_id.as_str()).collect();
        assert_eq!(ids, ["b", "d"]);
        assert_eq!(job.priority, Priority::Urgent);
        assert!(store.claim_batch(&only).await.unwrap().is_none());
        let rest = claimed(&store, 3_000, TaskType::Refresh).await;
        let ids: Vec<&str> = rest.items.iter().map(|i| i.media_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(rest.priority, Priority::Normal);
        // What a claim returns is what it stored.
        for claimed in [&job, &rest] {
            assert_eq!(
                store.get_job(&claimed.id).await.unwrap().as_ref(),
                Some(claimed)
            );
        }
    }
}

fn quota_failure() -> Failure {
    Failure {
        code: "QuotaExceeded.Refresh".into(),
        message: "used up".into(),
        request_id: Some("req".into()),
    }
}

each_backend! {
    async fn a_held_job_is_probed_released_and_keeps_its_budget(store: Store) {
        store
            .ingest(ingest(&["a"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        store
            .ingest(ingest(&["p"], TaskType::Preload, 1_000, None))
            .await
            .unwrap();
        let job = claimed(&store, 3_000, TaskType::Refresh).await;
        let failure = quota_failure();
        let hold = || store.record_hold(&job.id, job.attempts, Ts(4_000), Ts(9_000), &failure);
        assert!(hold().await.unwrap());
        // A stale attempt cannot hold it again.
        assert!(!hold().await.unwrap());
        let held = store.held_tasks(None).await.unwrap();
        assert_eq!(
            held,
            vec![HeldTask {
                account: vod_purge::domain::AccountName::default(),
                quota: Quota::Refresh,
                jobs: 1,
                since: Ts(4_000),
                until: Some(Ts(9_000)),
                code: "QuotaExceeded.Refresh".into(),
                probes: 0,
            }]
        );
        assert_eq!(store.queue_stats(Ts(4_000)).await.unwrap().held, held);
        let got = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.held_since, got.holds),
            (JobStatus::Held, Some(Ts(4_000)), 1)
        );

        // A retry of the held task type waits with it; another task type's does not.
        let preload = claimed(&store, 3_000, TaskType::Preload).await;
        let other = claimed_again(&store, 1_000, "r").await;
        for (id, attempt) in [(&preload.id, preload.attempts), (&other.id, other.attempts)] {
            let failure = Failure {
                code: "InternalError".into(),
                ..quota_failure()
            };
            assert!(
                store
                    .record_retry(id, attempt, Ts(4_100), Ts(5_000), &failure)
                    .await
                    .unwrap()
            );
        }
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(6_000), 10).await.unwrap();
        assert_eq!(
            due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [preload.id.as_str()]
        );
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(9_000), 10).await.unwrap();
        let held_due = due
            .iter()
            .find(|d| d.id == job.id)
            .expect("the probe is due");
        assert_eq!(
            (held_due.status, held_due.held_since),
            (JobStatus::Held, Some(Ts(4_000)))
        );
        assert!(due.iter().all(|d| d.id != other.id));

        // The probe: claimed, the hold's 5 s added to its budget; the task type stays held while
        // it is in flight.
        let probe = store
            .claim_job(&job.id, Ts(9_000), Ts(70_000))
            .await
            .unwrap()
            .expect("the probe");
        assert_eq!(probe.budget_from, Ts(job.budget_from.0 + 5_000));
        assert_eq!(probe.held_since, Some(Ts(4_000)));
        let held = store.held_tasks(None).await.unwrap();
        assert_eq!((held.len(), held[0].until), (1, None));
        // It meets the quota again: held once more, the hold's start kept, two holds counted.
        assert!(
            store
                .record_hold(
                    &probe.id,
                    probe.attempts,
                    Ts(9_100),
                    Ts(14_000),
                    &quota_failure()
                )
                .await
                .unwrap()
        );
        let got = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(
            (got.held_since, got.holds, got.counted_attempts()),
            (Some(Ts(4_000)), 2, 0)
        );
        assert_eq!(
            store
                .defer_held(&vod_purge::domain::AccountName::default(), Quota::Refresh, Ts(20_000))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .defer_held(&vod_purge::domain::AccountName::default(), Quota::Refresh, Ts(15_000))
                .await
                .unwrap(),
            0,
            "never earlier"
        );

        // The hold ends: the held job is a retry due now, and the other retry is free again.
        assert_eq!(
            store
                .release_held(&vod_purge::domain::AccountName::default(), Quota::Refresh, Ts(12_000))
                .await
                .unwrap(),
            1
        );
        let got = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.next_attempt_at, got.held_since),
            (JobStatus::Retrying, Some(Ts(12_000)), None)
        );
        assert_eq!(got.budget_from, Ts(job.budget_from.0 + 5_000 + 2_900));
        assert!(store.held_tasks(None).await.unwrap().is_empty());
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(12_000), 10).await.unwrap();
        assert!(due.iter().any(|d| d.id == other.id));
    }
}

/// A second Refresh job, of item `id` ingested at `now`.
async fn claimed_again(store: &Store, now: i64, id: &str) -> Job {
    store
        .ingest(ingest(&[id], TaskType::Refresh, now, None))
        .await
        .unwrap();
    claimed(store, now + 5_000, TaskType::Refresh).await
}

/// On PostgreSQL, what one replica stores wakes another replica's idle flusher (`NOTIFY`).
#[tokio::test]
async fn a_replica_that_stores_an_item_wakes_the_others() {
    let Some(db) = crate::support::postgres::fresh_database("wake_across_replicas").await else {
        return;
    };
    let location = vod_purge::config::StoreLocation::Postgres(db.url.clone());
    let (leader, follower) = (
        Store::open(&location).await.unwrap(),
        Store::open(&location).await.unwrap(),
    );
    let token = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn({
        let (leader, token) = (leader.clone(), token.clone());
        async move { leader.relay_wakes(token).await }
    });
    // The leader's relay says when its LISTEN has started: a NOTIFY sent before is not seen.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        leader.wake().listening(),
    )
    .await
    .expect("the leader's relay listens");
    // The leader's idle flusher sleeps for an hour.
    let sleeper = leader.wake().sleeper();
    sleeper.deciding();
    sleeper.sleeping_until(Ts(i64::MAX - 1));
    let now = Ts::now().0;
    follower
        .ingest(ingest(&["w"], TaskType::Refresh, now, None))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), sleeper.notified())
        .await
        .expect("the follower's item wakes the leader");
    token.cancel();
    relay.await.unwrap();
}
