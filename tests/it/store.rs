//! The store conformance suite: every backend must pass every check here.

use std::time::Duration;

use vod_purge::config::StoreLocation;
use vod_purge::domain::{MediaIdRules, PurgeOptions, TaskType, Ts};
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
        task,
        fingerprint: PurgeOptions::default().fingerprint(),
        now: Ts(store_now),
        max: 20,
        lease_until: Ts(store_now + 60_000),
        job_id: uuid::Uuid::now_v7().to_string(),
        dry_run: false,
        urgent_only: false,
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
    async fn claims_are_oldest_first_and_at_most_twenty(store: Store) {
        for i in 0..45 {
            store
                .ingest(ingest(
                    &[&format!("id{i:02}")],
                    TaskType::Refresh,
                    i * 10,
                    None,
                ))
                .await
                .unwrap();
        }
        let groups = store.due_groups(Ts(10_000)).await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].due_count, groups[0].oldest_due_at),
            (45, Ts(2_000))
        );

        let mut sizes = vec![];
        let mut order = vec![];
        while let Some(job) = store
            .claim_batch(&claim(10_000, TaskType::Refresh))
            .await
            .unwrap()
        {
            sizes.push(job.items.len());
            order.extend(job.items.iter().map(|i| i.media_id.to_string()));
            assert_eq!(job.status, JobStatus::InFlight);
            assert_eq!(job.attempts, 1);
        }
        assert_eq!(sizes, vec![20, 20, 5]);
        let want: Vec<String> = (0..45).map(|i| format!("id{i:02}")).collect();
        assert_eq!(order, want);
        assert_eq!(
            store.queue_stats(Ts(10_000)).await.unwrap().in_flight_jobs,
            3
        );
    }
}

each_backend! {
    async fn event_for_an_in_flight_id_creates_a_new_item(store: Store) {
        store
            .ingest(ingest(&["a"], TaskType::Refresh, 0, None))
            .await
            .unwrap();
        let job = claimed(&store, 5_000, TaskType::Refresh).await;
        let receipt = store
            .ingest(ingest(&["a"], TaskType::Refresh, 5_100, None))
            .await
            .unwrap();
        assert_eq!(
            receipt.accepted,
            vec!["a"],
            "a new item, not merged into the in-flight one"
        );
        assert_eq!(store.pending_for_media("a").await.unwrap().len(), 1);
        assert_eq!(job.items.len(), 1);
    }
}

each_backend! {
    async fn preload_waits_until_the_refresh_is_done(store: Store) {
        store
            .ingest(ingest(&["a"], TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        store
            .ingest(ingest(&["a", "b"], TaskType::Preload, 0, None))
            .await
            .unwrap();
        let groups = store.due_groups(Ts(10_000)).await.unwrap();
        let preload = groups.iter().find(|g| g.task == TaskType::Preload).unwrap();
        assert_eq!(
            preload.due_count, 1,
            "only b: a's preload waits for its refresh"
        );
        assert_eq!(
            groups[0].task,
            TaskType::Refresh,
            "refresh groups come first"
        );

        let refresh = claimed(&store, 10_000, TaskType::Refresh).await;
        let pre = claimed(&store, 10_000, TaskType::Preload).await;
        assert_eq!(
            pre.items
                .iter()
                .map(|i| i.media_id.as_str())
                .collect::<Vec<_>>(),
            vec!["b"]
        );
        assert!(
            store
                .claim_batch(&claim(10_000, TaskType::Preload))
                .await
                .unwrap()
                .is_none(),
            "a still waits"
        );

        store
            .record_success(&refresh.id, 1, Ts(10_100), &Success::default())
            .await
            .unwrap();
        let pre = claimed(&store, 10_200, TaskType::Preload).await;
        assert_eq!(pre.items[0].media_id.as_str(), "a");
    }
}

each_backend! {
    async fn leases_expire_and_fence_the_old_attempt(store: Store) {
        store
            .ingest(ingest(&["a"], TaskType::Refresh, 0, None))
            .await
            .unwrap();
        let mut c = claim(5_000, TaskType::Refresh);
        c.lease_until = Ts(6_000);
        let job = store.claim_batch(&c).await.unwrap().unwrap();
        assert!(
            store.due_jobs(Ts(5_999), 10).await.unwrap().is_empty(),
            "lease still held"
        );
        assert_eq!(due_ids(&store, Ts(6_000)).await, vec![job.id.clone()]);

        let again = store
            .claim_job(&job.id, Ts(6_000), Ts(70_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.attempts, 2);
        assert!(
            store
                .claim_job(&job.id, Ts(6_001), Ts(70_000))
                .await
                .unwrap()
                .is_none(),
            "claimed once"
        );
        let stale = store
            .record_success(&job.id, 1, Ts(6_500), &Success::default())
            .await
            .unwrap();
        assert!(!stale, "the first attempt lost its lease and cannot record");
        assert!(
            store
                .record_success(&job.id, 2, Ts(6_500), &Success::default())
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_job(&job.id).await.unwrap().unwrap().status,
            JobStatus::Succeeded
        );
    }
}

each_backend! {
    async fn job_history_outcomes_filters_and_retry(store: Store) {
        store
            .ingest(ingest(&["a", "b", "c"], TaskType::Refresh, 0, None))
            .await
            .unwrap();
        let ok = claimed(&store, 5_000, TaskType::Refresh).await;
        let success = Success {
            vod_job_id: Some("job-1".into()),
            request_id: Some("req-1".into()),
            non_existent: vec!["b".into()],
            forbidden: vec!["c".into()],
            check_at: None,
        };
        assert!(
            store
                .record_success(&ok.id, 1, Ts(5_100), &success)
                .await
                .unwrap()
        );
        let job = store.get_job(&ok.id).await.unwrap().unwrap();
        let outcomes: Vec<_> = job
            .items
            .iter()
            .map(|i| (i.media_id.as_str(), i.outcome))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("a", ItemOutcome::Sent),
                ("b", ItemOutcome::NonExistent),
                ("c", ItemOutcome::Forbidden)
            ]
        );
        assert_eq!(
            (job.vod_job_id.as_deref(), job.request_id.as_deref()),
            (Some("job-1"), Some("req-1"))
        );

        store
            .ingest(ingest(&["d"], TaskType::Preload, 6_000, None))
            .await
            .unwrap();
        let bad = claimed(&store, 9_000, TaskType::Preload).await;
        let failure = Failure {
            code: "InvalidParameter".into(),
            message: "bad".into(),
            request_id: None,
        };
        let retry_at = Ts(20_000);
        assert!(
            store
                .record_retry(&bad.id, 1, Ts(9_100), retry_at, &failure)
                .await
                .unwrap()
        );
        assert!(store.due_jobs(Ts(19_999), 10).await.unwrap().is_empty());
        let bad = store
            .claim_job(&bad.id, Ts(20_000), Ts(80_000))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .record_failure(&bad.id, 2, Ts(20_100), &failure)
                .await
                .unwrap()
        );

        let all = store
            .list_jobs(&JobFilter {
                limit: 10,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            vec![bad.id.as_str(), ok.id.as_str()]
        );
        for job in &all {
            let alone = store.get_job(&job.id).await.unwrap().unwrap();
            assert!(!job.items.is_empty());
            assert_eq!(
                job.items, alone.items,
                "a page carries each job's own items"
            );
        }
        let failed = JobFilter {
            status: Some(JobStatus::Failed),
            limit: 10,
            ..JobFilter::default()
        };
        assert_eq!(store.list_jobs(&failed).await.unwrap().len(), 1);
        let by_media = JobFilter {
            media_id: Some("b".into()),
            limit: 10,
            ..JobFilter::default()
        };
        assert_eq!(store.list_jobs(&by_media).await.unwrap()[0].id, ok.id);
        let by_task = JobFilter {
            task: Some(TaskType::Preload),
            limit: 10,
            ..JobFilter::default()
        };
        assert_eq!(store.list_jobs(&by_task).await.unwrap()[0].id, bad.id);
        let page2 = JobFilter {
            before: Some(bad.id.clone()),
            limit: 10,
            ..JobFilter::default()
        };
        assert_eq!(store.list_jobs(&page2).await.unwrap()[0].id, ok.id);
        let since = JobFilter {
            since: Some(Ts(9_000)),
            limit: 10,
            ..JobFilter::default()
        };
        assert_eq!(store.list_jobs(&since).await.unwrap().len(), 1);

        assert_eq!(
            store.retry_job(&ok.id, Ts(30_000)).await.unwrap(),
            RetryOutcome::NotFailed(JobStatus::Succeeded)
        );
        assert_eq!(
            store.retry_job("nope", Ts(30_000)).await.unwrap(),
            RetryOutcome::NotFound
        );
        assert_eq!(
            store.retry_job(&bad.id, Ts(30_000)).await.unwrap(),
            RetryOutcome::Scheduled
        );
        let again = store
            .claim_job(&bad.id, Ts(30_000), Ts(90_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.attempts, again.budget_from), (1, Ts(30_000)));
    }
}

each_backend! {
    async fn submission_checks_record_what_vod_reports_and_are_asked_again_for_the_rest(store: Store) {
        store
            .ingest(ingest(
                &["ok", "bad", "late", "gone"],
                TaskType::Refresh,
                0,
                None,
            ))
            .await
            .unwrap();
        let job = claimed(&store, 5_000, TaskType::Refresh).await;
        let success = Success {
            vod_job_id: Some("vod-1".into()),
            request_id: Some("req-1".into()),
            non_existent: vec!["gone".into()],
            forbidden: Vec::new(),
            check_at: Some(Ts(15_000)),
        };
        assert!(
            store
                .record_success(&job.id, 1, Ts(5_100), &success)
                .await
                .unwrap()
        );
        assert!(
            store.due_checks(Ts(14_999), 10).await.unwrap().is_empty(),
            "not due before check_at"
        );
        let due = store.due_checks(Ts(15_000), 10).await.unwrap();
        assert_eq!(
            due,
            vec![DueCheck {
                job_id: job.id.clone(),
                vod_job_id: "vod-1".into(),
                checks: 0,
                budget_from: Ts(5_000),
            }]
        );

        // VOD reports two IDs (one failed), not yet the third, and reports the non-existent one
        // as submitted, which must not overwrite what the call said.
        let first = CheckResult {
            submissions: vec![
                Submission {
                    media_id: "ok".into(),
                    result: Ok(()),
                },
                Submission {
                    media_id: "bad".into(),
                    result: Err(("PreloadQueueFull".into(), "queue full".into())),
                },
                Submission {
                    media_id: "gone".into(),
                    result: Ok(()),
                },
            ],
            again_at: Some(Ts(35_000)),
            resubmission: Some(Resubmission {
                job_id: "resubmitted".into(),
                media_ids: vec!["bad".into()],
                created_at: Ts(15_000),
                send_at: Ts(75_000),
                held: None,
            }),
        };
        store.record_check(&job.id, &first).await.unwrap();
        // The failed ID is in a job of its own, due like a retry, with the checked job's task,
        // options and retry budget.
        let again = store.get_job("resubmitted").await.unwrap().unwrap();
        assert_eq!(
            (
                again.status,
                again.task,
                &again.options,
                again.fingerprint.as_str()
            ),
            (
                JobStatus::Retrying,
                TaskType::Refresh,
                &job.options,
                job.fingerprint.as_str()
            )
        );
        assert_eq!(
            (again.budget_from, again.next_attempt_at, again.attempts),
            (Ts(5_000), Some(Ts(75_000)), 0)
        );
        assert_eq!(again.resubmission_of.as_deref(), Some(job.id.as_str()));
        assert_eq!(job.resubmission_of, None);
        let again_items: Vec<_> = again
            .items
            .iter()
            .map(|i| (i.media_id.as_str(), i.outcome))
            .collect();
        assert_eq!(again_items, vec![("bad", ItemOutcome::Pending)]);
        assert!(store.due_jobs(Ts(74_999), 10).await.unwrap().is_empty());
        assert_eq!(
            due_ids(&store, Ts(75_000)).await,
            vec!["resubmitted".to_owned()]
        );
        let seen = store.get_job(&job.id).await.unwrap().unwrap();
        let mut items: Vec<_> = seen
            .items
            .iter()
            .map(|i| {
                (
                    i.media_id.as_str(),
                    i.outcome,
                    i.error_code.as_deref(),
                    i.error_message.as_deref(),
                )
            })
            .collect();
        items.sort_by_key(|item| item.0);
        assert_eq!(
            items,
            vec![
                (
                    "bad",
                    ItemOutcome::SubmitFailed,
                    Some("PreloadQueueFull"),
                    Some("queue full")
                ),
                ("gone", ItemOutcome::NonExistent, None, None),
                ("late", ItemOutcome::Sent, None, None),
                ("ok", ItemOutcome::Submitted, None, None),
            ]
        );
        assert_eq!(seen.check_at, Some(Ts(35_000)), "asked again for \"late\"");
        assert!(store.due_checks(Ts(34_999), 10).await.unwrap().is_empty());
        assert_eq!(store.due_checks(Ts(35_000), 10).await.unwrap()[0].checks, 1);

        // The last ID is reported: nothing is left to ask about, whatever again_at says.
        let second = CheckResult {
            submissions: vec![Submission {
                media_id: "late".into(),
                result: Ok(()),
            }],
            again_at: Some(Ts(75_000)),
            resubmission: None,
        };
        store.record_check(&job.id, &second).await.unwrap();
        let done = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.check_at, None);
        let late = done.items.iter().find(|i| i.media_id.as_str() == "late");
        assert_eq!(late.map(|i| i.outcome), Some(ItemOutcome::Submitted));
        assert!(store.due_checks(Ts(i64::MAX), 10).await.unwrap().is_empty());

        // A job recorded without a check time is never checked.
        store
            .ingest(ingest(&["x"], TaskType::Refresh, 40_000, None))
            .await
            .unwrap();
        let unchecked = claimed(&store, 45_000, TaskType::Refresh).await;
        let no_check = Success {
            vod_job_id: Some("vod-2".into()),
            ..Success::default()
        };
        assert!(
            store
                .record_success(&unchecked.id, 1, Ts(45_100), &no_check)
                .await
                .unwrap()
        );
        assert!(store.due_checks(Ts(i64::MAX), 10).await.unwrap().is_empty());
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

each_backend! {
    /// A page of many jobs (more job IDs than one statement carries on PostgreSQL) has every
    /// job's items.
    async fn a_page_of_many_jobs_has_every_jobs_items(store: Store) {
        let ids: Vec<String> = (0..250).map(|i| format!("many{i:03}")).collect();
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        store
            .ingest(ingest(&names, TaskType::Refresh, 1_000, None))
            .await
            .unwrap();
        let due = 1_000 + QUIET.as_millis() as i64;
        for _ in 0..ids.len() {
            let one = ClaimBatch {
                max: 1,
                ..claim(due, TaskType::Refresh)
            };
            store
                .claim_batch(&one)
                .await
                .unwrap()
                .expect("an item is due");
        }
        let page = store
            .list_jobs(&JobFilter {
                limit: 500,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), ids.len());
        let mut listed: Vec<String> = page
            .iter()
            .map(|job| {
                assert_eq!(job.items.len(), 1, "{}", job.id);
                job.items[0].media_id.as_str().to_owned()
            })
            .collect();
        listed.sort();
        assert_eq!(listed, ids);
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
    assert!(store.is_leader());
    assert!(store.try_acquire_leadership().await.unwrap());
    assert!(!store.is_shared());
}

/// The IDs of the jobs due at `now`.
async fn due_ids(store: &Store, now: Ts) -> Vec<String> {
    let due = store.due_jobs(now, 10).await.unwrap();
    due.into_iter().map(|d| d.id).collect()
}
