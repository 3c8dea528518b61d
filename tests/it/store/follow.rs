//! Following purges to the edge: the CDN task rows a URL call's success writes, and what the
//! CDN's reports settle (`complete`, `failed` and resent once, `unconfirmed` past the deadline),
//! on both backends.

use std::time::Duration;

use vod_purge::store::{CdnResend, CdnTaskUpdate, Follow};

use super::*;
use vod_purge::domain::TargetKind;

const RESEND: CdnResend = CdnResend {
    max_age: Duration::from_secs(3600),
};

/// Ingests `urls` as file purges at 0, claims them at 5 s and records the call's success at
/// 5.1 s with CDN task `11`, followed until `until`.
async fn sent_files(store: &Store, urls: &[&str], until: i64) -> Job {
    let mut files = ingest(&[], TaskType::FileRefresh, 0, None);
    files.items = urls
        .iter()
        .map(|url| NewItem {
            account: vod_purge::domain::AccountName::default(),
            // Normalised URLs, as ingest stores them.
            media_id: vod_purge::domain::MediaId::from_trusted((*url).to_owned()),
            ..item("placeholder", TaskType::FileRefresh)
        })
        .collect();
    store.ingest(files).await.unwrap();
    let job = claimed(store, 5_000, TaskType::FileRefresh).await;
    let success = Success {
        vod_job_id: Some("11".into()),
        follow: Some(Follow {
            task_ids: "11".into(),
            object_type: "file",
            until: Ts(until),
        }),
        ..Success::default()
    };
    assert!(
        store
            .record_success(&job.id, 1, Ts(5_100), &success)
            .await
            .unwrap()
    );
    job
}

fn report(job: &Job, url: &str, status: &str, description: &str) -> CdnTaskUpdate {
    CdnTaskUpdate {
        job_id: job.id.clone(),
        target: url.to_owned(),
        path: String::new(),
        status: status.to_owned(),
        description: description.to_owned(),
    }
}

fn outcomes(job: &Job) -> Vec<(String, ItemOutcome, Option<String>)> {
    job.items
        .iter()
        .map(|i| (i.media_id.to_string(), i.outcome, i.error_message.clone()))
        .collect()
}

each_backend! {
    async fn reports_settle_a_url_job_complete_or_failed_and_resend_once(store: Store) {
        // A URL of 1,900 bytes: its row's key holds it once.
        let long = format!("https://cdn.example.com/{}.jpg", "x".repeat(1_870));
        let short = "https://cdn.example.com/a.jpg";
        let job = sent_files(&store, &[short, &long], 100_000).await;
        let mut open = store.open_cdn_tasks(&vod_purge::domain::AccountName::default(), 100).await.unwrap();
        open.sort_by(|a, b| a.url.cmp(&b.url));
        let seen: Vec<(&str, &str, &str, TargetKind)> = open
            .iter()
            .map(|t| (t.url.as_str(), t.task_ids.as_str(), t.object_type.as_str(), t.kind))
            .collect();
        assert_eq!(
            seen,
            [(short, "11", "file", TargetKind::File), (long.as_str(), "11", "file", TargetKind::File)]
        );

        let reports = [
            report(&job, short, "Complete", ""),
            report(&job, &long, "Failed", "Origin Timeout"),
        ];
        let outcome = store.record_cdn_tasks(&reports, Ts(10_000), Some(RESEND)).await.unwrap();
        assert_eq!((outcome.completed.len(), outcome.failed, outcome.unconfirmed), (1, 1, 0));
        assert_eq!(outcome.completed[0].seconds, 10.0, "from the first event at 0");
        // The same reports again (a recording made again) change nothing.
        let again = store.record_cdn_tasks(&reports, Ts(11_000), Some(RESEND)).await.unwrap();
        assert_eq!((again.completed.len(), again.failed), (0, 0));
        assert!(store.open_cdn_tasks(&vod_purge::domain::AccountName::default(), 100).await.unwrap().is_empty());

        let mut got = outcomes(&store.get_job(&job.id).await.unwrap().unwrap());
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                (short.to_owned(), ItemOutcome::Complete, None),
                (long.clone(), ItemOutcome::Failed, Some("Origin Timeout".to_owned())),
            ]
        );
        assert_eq!(store.completion_times(Ts(0)).await.unwrap(), [10.0]);
        // The failed file is sent once more, in a job of its own.
        let jobs = store.list_jobs(&JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
        let resent: Vec<&Job> = jobs.iter().filter(|j| j.resubmission_of.as_deref() == Some(job.id.as_str())).collect();
        assert_eq!(resent.len(), 1, "{jobs:?}");
        assert_eq!((resent[0].status, resent[0].task), (JobStatus::Retrying, TaskType::FileRefresh));
        assert_eq!(resent[0].items.iter().map(|i| i.media_id.to_string()).collect::<Vec<_>>(), [long.as_str()]);
    }
}

each_backend! {
    async fn a_task_not_reported_in_time_leaves_its_item_unconfirmed(store: Store) {
        let url = "https://cdn.example.com/slow.jpg";
        let job = sent_files(&store, &[url], 20_000).await;
        let outcome = store.record_cdn_tasks(&[], Ts(19_999), Some(RESEND)).await.unwrap();
        assert_eq!(outcome.unconfirmed, 0, "before the deadline");
        let outcome = store.record_cdn_tasks(&[], Ts(20_000), Some(RESEND)).await.unwrap();
        assert_eq!((outcome.completed.len(), outcome.failed, outcome.unconfirmed), (0, 0, 1));
        let job = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(outcomes(&job)[0].1, ItemOutcome::Unconfirmed);
        let jobs = store.list_jobs(&JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
        assert_eq!(jobs.len(), 1, "nothing resent: {jobs:?}");
        // A late report of the expired task changes nothing.
        let late = store
            .record_cdn_tasks(&[report(&job, url, "Complete", "")], Ts(21_000), Some(RESEND))
            .await
            .unwrap();
        assert!(late.completed.is_empty());
    }
}
