//! Jobs: history, outcomes, filters, operator retries and submission checks.

use super::*;

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
            follow: None,
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
        assert!(store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(19_999), 10).await.unwrap().is_empty());
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
            follow: None,
        };
        assert!(
            store
                .record_success(&job.id, 1, Ts(5_100), &success)
                .await
                .unwrap()
        );
        assert!(
            store.due_checks(&vod_purge::domain::AccountName::default(), Ts(14_999), 10).await.unwrap().is_empty(),
            "not due before check_at"
        );
        let due = store.due_checks(&vod_purge::domain::AccountName::default(), Ts(15_000), 10).await.unwrap();
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
            follow_until: None,
            submissions: vec![
                Submission {
                    media_id: "ok".into(),
                    result: Ok(()),
                    tasks: Vec::new(),
                },
                Submission {
                    media_id: "bad".into(),
                    result: Err(("PreloadQueueFull".into(), "queue full".into())),
                    tasks: Vec::new(),
                },
                Submission {
                    media_id: "gone".into(),
                    result: Ok(()),
                    tasks: Vec::new(),
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
        assert!(store.due_jobs(&vod_purge::domain::AccountName::default(), Ts(74_999), 10).await.unwrap().is_empty());
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
        assert!(store.due_checks(&vod_purge::domain::AccountName::default(), Ts(34_999), 10).await.unwrap().is_empty());
        assert_eq!(store.due_checks(&vod_purge::domain::AccountName::default(), Ts(35_000), 10).await.unwrap()[0].checks, 1);

        // The last ID is reported: nothing is left to ask about, whatever again_at says.
        let second = CheckResult {
            follow_until: None,
            submissions: vec![Submission {
                media_id: "late".into(),
                result: Ok(()),
                tasks: Vec::new(),
            }],
            again_at: Some(Ts(75_000)),
            resubmission: None,
        };
        store.record_check(&job.id, &second).await.unwrap();
        let done = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.check_at, None);
        let late = done.items.iter().find(|i| i.media_id.as_str() == "late");
        assert_eq!(late.map(|i| i.outcome), Some(ItemOutcome::Submitted));
        assert!(store.due_checks(&vod_purge::domain::AccountName::default(), Ts(i64::MAX), 10).await.unwrap().is_empty());

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
        assert!(store.due_checks(&vod_purge::domain::AccountName::default(), Ts(i64::MAX), 10).await.unwrap().is_empty());
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
                account: vod_purge::domain::AccountName::default(),
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
