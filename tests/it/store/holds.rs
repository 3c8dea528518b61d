//! Quota holds: which jobs are due while a task type is held, the probe whose process died, and
//! the allowance's gate on retries.

use super::*;

fn quota_failure() -> Failure {
    Failure {
        code: "QuotaExceeded.Refresh".into(),
        message: "used up".into(),
        request_id: None,
    }
}

/// Ingests `id` at `at` and claims it alone into a job 5 s later.
async fn job_of(store: &Store, id: &str, task: TaskType, at: i64) -> Job {
    store.ingest(ingest(&[id], task, at, None)).await.unwrap();
    claimed(store, at + 5_000, task).await
}

each_backend! {
    async fn a_probe_whose_lease_ran_out_is_the_probe_again(store: Store) {
        let first = job_of(&store, "a", TaskType::Refresh, 0).await;
        let second = job_of(&store, "b", TaskType::Refresh, 1_000).await;
        let preload = job_of(&store, "c", TaskType::Preload, 2_000).await;
        for (job, at) in [(&first, 5_100), (&second, 6_100)] {
            assert!(store.record_hold(&job.id, 1, Ts(at), Ts(10_000), &quota_failure()).await.unwrap());
        }
        // Both held jobs are due as probes; the Preload job's lease has not run out.
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(10_000), 10).await.unwrap();
        assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [first.id.as_str(), second.id.as_str()]);
        assert!(due.iter().all(|d| d.is_probe() && d.ids == 1), "{due:?}");
        assert_eq!(store.probe_size(&vod_purge::domain::AccountName::default(), Quota::Refresh).await.unwrap(), 1);

        // The first goes out as the probe; while it is in flight no other probe is due.
        let probe = store
            .claim_probe(&first.id, Quota::Refresh, Ts(10_000), Ts(15_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((probe.status, probe.held_since), (JobStatus::InFlight, Some(Ts(5_100))));
        // Another flusher that read the second as due before cannot claim it as a second probe.
        assert!(store.claim_probe(&second.id, Quota::Refresh, Ts(10_000), Ts(15_000)).await.unwrap().is_none());
        assert!(store.claim_job(&second.id, Ts(10_000), Ts(15_000)).await.unwrap().is_none());
        assert_eq!(due_ids(&store, Ts(14_999)).await, Vec::<String>::new());
        let held = store.held_tasks(None).await.unwrap();
        assert_eq!((held.len(), held[0].quota, held[0].jobs), (1, Quota::Refresh, 2), "{held:?}");

        // Its process dies: once the lease runs out it is due again, as the probe, and its
        // task type stays held meanwhile.
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(15_000), 10).await.unwrap();
        assert_eq!(due[0].id, first.id, "{due:?}");
        assert!(due[0].is_probe(), "{due:?}");
        assert_eq!(store.held_tasks(None).await.unwrap().len(), 1);
        let again = store.claim_job(&first.id, Ts(15_000), Ts(20_000)).await.unwrap().unwrap();
        assert_eq!((again.attempts, again.held_since), (3, Some(Ts(5_100))));
        // The probe's answer cannot be recorded either (the attempt was taken over): still due.
        assert!(!store.record_hold(&first.id, 1, Ts(15_100), Ts(30_000), &quota_failure()).await.unwrap());
        assert_eq!(due_ids(&store, Ts(20_000)).await[0], first.id);
        let again = store.claim_job(&first.id, Ts(20_000), Ts(25_000)).await.unwrap().unwrap();

        // The probe goes through: the hold ends, the other held job is a retry due now.
        let success = Success { vod_job_id: Some("v".into()), ..Success::default() };
        assert!(store.record_success(&again.id, again.attempts, Ts(20_100), &success).await.unwrap());
        assert_eq!(store.release_held(&vod_purge::domain::AccountName::default(), Quota::Refresh, Ts(20_100)).await.unwrap(), 1);
        assert_eq!(store.held_tasks(None).await.unwrap(), vec![]);
        let due = store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(20_100), 10).await.unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert!(!due[0].is_probe() && due[0].id == second.id, "{due:?}");
        let _ = preload;
    }
}

/// Ingests `n` IDs (`prefix` and a number) at `at` and claims them into one job 5 s later.
async fn job_of_size(store: &Store, prefix: &str, n: usize, task: TaskType, at: i64) -> Job {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    store.ingest(ingest(&ids, task, at, None)).await.unwrap();
    claimed(store, at + 5_000, task).await
}

each_backend! {
    async fn retries_larger_than_the_allowance_never_fill_the_limit(store: Store) {
        let failure = Failure { code: "InternalError".into(), message: "x".into(), request_id: None };
        // Twelve older Refresh jobs of two IDs, then a Preload job and a Refresh job of one.
        let mut jobs = Vec::new();
        for n in 0..12 {
            jobs.push(job_of_size(&store, &format!("r{n}-"), 2, TaskType::Refresh, n * 100).await);
        }
        let preload = job_of_size(&store, "p", 1, TaskType::Preload, 2_000).await;
        let small = job_of_size(&store, "s", 1, TaskType::Refresh, 2_100).await;
        for job in jobs.iter().chain([&preload, &small]) {
            assert!(store.record_retry(&job.id, 1, Ts(7_100), Ts(8_000), &failure).await.unwrap());
        }
        let due = |room: fn(Quota) -> RetryRoom| {
            let store = store.clone();
            async move {
                let due = store.due_jobs_within(&vod_purge::domain::AccountName::default(), Ts(8_000), 10, room).await.unwrap();
                due.into_iter().map(|d| d.id).collect::<Vec<_>>()
            }
        };
        let open = due(|_| RetryRoom::OPEN).await;
        assert_eq!(open.len(), 10);
        assert!(!open.contains(&preload.id), "the limit is full of older Refresh retries");
        // One ID of room for normal Refresh retries: the two-ID jobs are not among the ten.
        let one = |t| {
            if t == Quota::Refresh {
                RetryRoom { normal: Some(1), urgent: Some(1) }
            } else {
                RetryRoom::OPEN
            }
        };
        assert_eq!(due(one).await, [preload.id.clone(), small.id.clone()]);
        // No room for normal ones at all (only the reserve is left): none.
        let urgent_only = |_| RetryRoom { normal: Some(0), urgent: Some(150) };
        assert_eq!(due(urgent_only).await, Vec::<String>::new(), "all are normal");
    }
}
