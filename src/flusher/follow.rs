//! Following purges to the edge: when does the CDN serve the new content?
//!
//! A successful call only means VOD accepted the purge; the CDN then runs one task per URL (the
//! play URLs of a media ID, each file, each directory), which completes minutes later or fails
//! (`Origin Timeout`). The tasks of a URL call are known from its answer (`RefreshTaskId`,
//! `PreloadTaskId`), those of a media ID from the submission check (`GetMediaRefreshJobs`'
//! `TaskIds`); both are stored in `cdn_tasks` ([`crate::store::Store::record_success`],
//! [`crate::store::Store::record_check`]).
//!
//! Every `vod.follow_interval` the active flusher reads them with `DescribeVodRefreshTasks`.
//! Its `TaskId` filter takes one ID, and one call per task would cost thousands of calls for a
//! backlog; so the follower lists the account's tasks instead: per `ObjectType` that has open
//! tasks, the `Complete` and then the `Failed` ones created since the oldest open task (50 a
//! page), and matches them to the open tasks ([`matches`], pure): a media ID's task by its ID, a
//! file's or directory's by its ID and its URL (the URLs of one domain in one call share an ID).
//! A task not done within `vod.follow_for` stops being read and its item counts as failed.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::domain::{TargetKind, Ts};
use crate::flusher::{FlusherStatus, error_kind};
use crate::metrics::Metrics;
use crate::store::{CdnResend, CdnTaskUpdate, OpenCdnTask, Store};
use crate::vod::{self, CdnTask, REFRESH_TASKS_PAGE};

/// Open tasks read from the store per round.
const OPEN_LIMIT: usize = 10_000;
/// Pages read per object type and status in one round (10,000 tasks): a round never runs away
/// on an account with a flood of other tasks. The daily quotas bound what an account can have
/// in the window (2,000 URLs, 100 directories, 500 prefetches by default: about 50 pages a
/// status), so a round normally reads the whole window. Tasks created in a burst share their
/// second, so the window's start cannot skip those already recorded: every round reads them.
const MAX_PAGES: u32 = 200;
/// How far before the oldest open task the listing starts: the CDN stamps its tasks with its
/// own clock, to the second.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);
/// `DescribeVodRefreshTasks` reads the last 3 days only.
const LISTING_REACH: Duration = Duration::from_secs(3 * 24 * 3600 - 600);

/// How the follower runs (from `[vod]`), for one account's tasks.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The account whose tasks are followed, with its own client.
    pub account: crate::domain::AccountName,
    pub interval: Duration,
    /// Calls per second to `DescribeVodRefreshTasks` (`vod.checks_per_second`).
    pub per_second: u32,
    /// `max_age`: an item whose CDN task failed is sent once more within its job's budget.
    pub max_age: Duration,
}

/// Runs the follower until `token` is cancelled.
pub async fn watch(
    client: vod::Client,
    store: Store,
    status: Arc<FlusherStatus>,
    metrics: Arc<Metrics>,
    config: FollowConfig,
    token: CancellationToken,
) {
    let rate = NonZeroU32::new(config.per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
    let mut last_error: Option<String> = None;
    let account = config.account.clone();
    loop {
        if status.is_active() {
            let round = async {
                client.credentials().wait_until_usable().await;
                let now = Ts::now();
                let open = store.open_cdn_tasks(&config.account, OPEN_LIMIT).await?;
                // Nothing open, nothing past its deadline: an idle round is this one read.
                if open.is_empty() {
                    return Ok(None);
                }
                let mut listed: Vec<CdnTask> = Vec::new();
                // A listing that fails ends the reading: what was read is recorded all the same,
                // and the deadlines run.
                'listing: for (object_type, oldest) in oldest_by_type(&open) {
                    let start = oldest.0.max(now.0 - LISTING_REACH.as_millis() as i64);
                    let window = (
                        time_of(Ts(start) - CLOCK_MARGIN),
                        time_of(now + CLOCK_MARGIN),
                    );
                    for task_status in ["Complete", "Failed"] {
                        // Newest first: the first page gives the count, then the pages are read
                        // from the oldest end, where the open tasks are.
                        let mut pages: Vec<u32> = vec![1];
                        while let Some(page) = pages.pop() {
                            limiter.until_ready().await;
                            let answer = client
                                .describe_vod_refresh_tasks(object_type, task_status, window, page)
                                .await;
                            let answer = match answer {
                                Ok(answer) => answer,
                                Err(error) => {
                                    let code = error.code().unwrap_or_else(|| error_kind(&error));
                                    metrics
                                        .follow_errors
                                        .with_label_values(&[account.as_str(), code])
                                        .inc();
                                    if last_error.as_deref() != Some(code) {
                                        tracing::warn!(error = %error, "DescribeVodRefreshTasks failed; repeats are logged at debug level");
                                        last_error = Some(code.to_owned());
                                    } else {
                                        tracing::debug!(error = %error, "DescribeVodRefreshTasks failed again");
                                    }
                                    break 'listing;
                                }
                            };
                            last_error = None;
                            if page == 1 {
                                pages = later_pages(answer.total_count);
                            }
                            listed.extend(answer.tasks.into_iter().map(|mut t| {
                                if t.object_type.is_empty() {
                                    t.object_type = object_type.to_owned();
                                }
                                t
                            }));
                        }
                    }
                }
                let updates = matches(&open, &listed);
                let resend = CdnResend {
                    max_age: config.max_age,
                };
                Ok::<_, crate::store::StoreError>(Some(
                    store
                        .record_cdn_tasks(&updates, Ts::now(), Some(resend))
                        .await?,
                ))
            };
            let result = tokio::select! {
                _ = token.cancelled() => return,
                result = round => result,
            };
            match result {
                Ok(Some(outcome)) => {
                    let done = outcome.completed;
                    for (result, n) in [
                        ("failed", outcome.failed),
                        ("unconfirmed", outcome.unconfirmed),
                    ] {
                        metrics
                            .followed
                            .with_label_values(&[account.as_str(), result])
                            .inc_by(n);
                    }
                    for item in &done {
                        metrics
                            .time_to_complete
                            .with_label_values(&[account.as_str(), item.kind.as_str()])
                            .observe(item.seconds);
                        tracing::info!(kind = item.kind.as_str(), target = %item.target, seconds = item.seconds, "purge complete at the edge");
                    }
                    metrics
                        .followed
                        .with_label_values(&[account.as_str(), "complete"])
                        .inc_by(done.len() as u64);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(error = %error, "cannot follow the CDN tasks"),
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}

fn time_of(ts: Ts) -> OffsetDateTime {
    ts.to_datetime().unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The pages after the first of a listing of `total` tasks that one round reads, in the order
/// they are popped: the oldest (last) page first, at most [`MAX_PAGES`] in all. The oldest
/// tasks are the ones still followed longest; once they are recorded the window starts later.
pub fn later_pages(total: u64) -> Vec<u32> {
    let last = u32::try_from(total.div_ceil(u64::from(REFRESH_TASKS_PAGE))).unwrap_or(u32::MAX);
    let first = last.saturating_sub(MAX_PAGES - 2).max(2);
    (first..=last).collect()
}

/// Each object type with open tasks, and the creation time of its oldest.
pub fn oldest_by_type(open: &[OpenCdnTask]) -> Vec<(&str, Ts)> {
    let mut oldest: Vec<(&str, Ts)> = Vec::new();
    for task in open {
        match oldest.iter_mut().find(|(t, _)| *t == task.object_type) {
            Some((_, at)) => *at = (*at).min(task.created_at),
            None => oldest.push((task.object_type.as_str(), task.created_at)),
        }
    }
    oldest.sort();
    oldest
}

/// A URL without its scheme: VOD's documented examples list paths without one.
fn without_scheme(url: &str) -> &str {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
}

/// The open tasks the listing reports done: by one of their IDs (and the object type) and their
/// URL; a media ID's task by its ID alone where the listing has a single task of that ID (VOD
/// may report a play URL in another form than `SuccessPlayUrls` named it). Tasks the listing
/// does not name, or names in another state, are left open.
pub fn matches(open: &[OpenCdnTask], listed: &[CdnTask]) -> Vec<CdnTaskUpdate> {
    let mut by_id: HashMap<(&str, &str), Vec<&CdnTask>> = HashMap::new();
    for task in listed {
        if matches!(task.status.as_str(), "Complete" | "Failed") {
            by_id
                .entry((task.object_type.as_str(), task.task_id.as_str()))
                .or_default()
                .push(task);
        }
    }
    open.iter()
        .filter_map(|task| {
            let found = task.task_ids.split(',').map(str::trim).find_map(|id| {
                let same_id = by_id.get(&(task.object_type.as_str(), id))?;
                same_id
                    .iter()
                    .find(|l| without_scheme(&l.object_path) == without_scheme(&task.url))
                    .or_else(|| {
                        (task.kind == TargetKind::Media && same_id.len() == 1).then(|| &same_id[0])
                    })
            })?;
            Some(CdnTaskUpdate {
                job_id: task.job_id.clone(),
                target: task.target.clone(),
                path: task.path.clone(),
                status: found.status.clone(),
                description: found.description.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(kind: TargetKind, object_type: &str, ids: &str, path: &str, at: i64) -> OpenCdnTask {
        OpenCdnTask {
            job_id: "j".into(),
            target: path.into(),
            path: if kind == TargetKind::Media {
                path.into()
            } else {
                String::new()
            },
            url: path.into(),
            task_ids: ids.into(),
            object_type: object_type.into(),
            kind,
            created_at: Ts(at),
        }
    }

    fn listed(id: &str, object_type: &str, path: &str, status: &str) -> CdnTask {
        CdnTask {
            task_id: id.into(),
            object_path: path.into(),
            object_type: object_type.into(),
            status: status.into(),
            description: if status == "Failed" {
                "Origin Timeout".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn a_round_reads_the_first_page_and_then_the_oldest() {
        for (total, want) in [
            (0, vec![]),
            (50, vec![]),
            (51, vec![2]),
            (150, vec![2, 3]),
            (5_000, (2..=100).collect::<Vec<u32>>()),
            // 400 pages: the oldest 199 after the first.
            (20_000, (202..=400).collect::<Vec<u32>>()),
        ] {
            let pages = later_pages(total);
            assert_eq!(pages, want, "{total}");
            assert!(pages.len() < MAX_PAGES as usize);
        }
        // Popped from the end: the last page is read first.
        assert_eq!(later_pages(150).pop(), Some(3));
    }

    #[test]
    fn listed_tasks_are_matched_by_id_and_for_urls_by_path() {
        use TargetKind::{Directory, File, Media};
        let a = "https://cdn.example.com/a.jpg";
        let b = "https://cdn.example.com/b.jpg";
        let tasks = [
            open(File, "file", "10,11", a, 5),
            open(File, "file", "10,11", b, 5),
            open(
                Media,
                "file",
                "77",
                "https://cdn.example.com/v/play.m3u8",
                3,
            ),
            open(
                Directory,
                "directory",
                "12",
                "https://cdn.example.com/d/",
                9,
            ),
            open(Media, "file", "78", "https://cdn.example.com/v/hd.mp4", 4),
            // Not listed under its URL, and its ID is shared: left open.
            open(Media, "file", "78", "https://cdn.example.com/v/4k.mp4", 4),
        ];
        let listing = [
            // The URLs of one domain share an ID; the path says which is which.
            listed("11", "file", "cdn.example.com/a.jpg", "Complete"),
            listed("11", "file", "https://cdn.example.com/b.jpg", "Failed"),
            // A media ID's play URL: its own ID, whatever path VOD reports.
            listed("77", "file", "http://other/path.m3u8", "Complete"),
            // Play URLs sharing an ID: each by its URL.
            listed("78", "file", "https://cdn.example.com/v/sd.mp4", "Failed"),
            listed("78", "file", "https://cdn.example.com/v/hd.mp4", "Complete"),
            // Another object type with the same ID is another task.
            listed("12", "file", "https://cdn.example.com/d/", "Complete"),
            listed(
                "12",
                "directory",
                "https://cdn.example.com/d/",
                "Refreshing",
            ),
        ];
        let got: Vec<(String, String)> = matches(&tasks, &listing)
            .into_iter()
            .map(|u| (u.target, u.status))
            .collect();
        assert_eq!(
            got,
            [
                (a.to_owned(), "Complete".to_owned()),
                (b.to_owned(), "Failed".to_owned()),
                (
                    "https://cdn.example.com/v/play.m3u8".to_owned(),
                    "Complete".to_owned()
                ),
                (
                    "https://cdn.example.com/v/hd.mp4".to_owned(),
                    "Complete".to_owned()
                ),
            ]
        );
        assert_eq!(
            oldest_by_type(&tasks),
            [("directory", Ts(9)), ("file", Ts(3))]
        );
    }
}
