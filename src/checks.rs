//! Submission checks: what VOD did with each media ID of a successful call.
//!
//! `RefreshMediaPlayUrls` answering with a `MediaRefreshJobId` only means that VOD accepted the
//! job. VOD then submits one CDN task per playback URL of each media ID, and that submission can
//! still fail for one ID (`PreloadQueueFull`, `TooMany.Refresh`); the call's answer cannot say
//! so. `vod.check_after` after a successful call, the active flusher asks `GetMediaRefreshJobs`
//! and records, on each item still `sent`, `submitted` or `submit_failed` with VOD's code and
//! message, so that `/jobs` and the metrics show an ID whose purge did not happen.
//!
//! An ID that VOD does not list yet is asked about again, the delay doubling each time, up to
//! [`MAX_CHECKS`] checks in all; after that it stays `sent`. A retryable error (throttling,
//! 5xx, timeouts) is a check that reported nothing; a permanent one (such as a RAM user without
//! `vod:GetMediaRefreshJobs`) ends the job's checks. Calls are paced by a limiter of their own,
//! `vod.checks_per_second`: VOD limits this API apart from `RefreshMediaPlayUrls`, so checks take
//! nothing from the purge budget. Only the active flusher checks, so a cluster asks once per job.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::domain::Ts;
use crate::flusher::{FlusherStatus, error_kind};
use crate::metrics::Metrics;
use crate::store::{CheckResult, DueCheck, Store, Submission};
use crate::vod::{self, ErrorClass, GetMediaRefreshJobsResponse, VodError};

/// Checks per job at most: with the default `check_after` of 10 s, the last one is about five
/// minutes after the call.
pub const MAX_CHECKS: u32 = 5;

/// Jobs read from the store per look.
const BATCH: usize = 64;

/// How often the store is looked at for due checks.
const POLL: Duration = Duration::from_secs(1);

/// Calls made at once.
const CONCURRENCY: usize = 8;

/// The submissions VOD reports in an answer about `vod_job_id`. Items of other jobs, and items
/// whose status is neither `success` nor `fail`, are left out: those IDs are asked about again.
pub fn submissions(vod_job_id: &str, answer: &GetMediaRefreshJobsResponse) -> Vec<Submission> {
    answer
        .media_refresh_jobs
        .iter()
        .filter(|item| {
            item.media_refresh_job_id.is_empty() || item.media_refresh_job_id == vod_job_id
        })
        .filter_map(|item| {
            let result = match item.status.to_ascii_lowercase().as_str() {
                "success" => Ok(()),
                "fail" => Err((
                    item.error_code
                        .clone()
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(|| "SubmitFailed".to_owned()),
                    item.error_message.clone().unwrap_or_default(),
                )),
                _ => return None,
            };
            Some(Submission {
                media_id: item.media_id.clone(),
                result,
            })
        })
        .collect()
}

/// When to ask again about IDs still unreported after check number `done` (counting from 1):
/// `check_after` doubled once per check made, and never after the last allowed check.
pub fn again_at(now: Ts, check_after: Duration, done: u32) -> Option<Ts> {
    (done < MAX_CHECKS).then(|| now + check_after.saturating_mul(1 << done.min(16)))
}

/// Runs the checks until `token` is cancelled.
pub async fn watch(
    client: vod::Client,
    store: Store,
    status: Arc<FlusherStatus>,
    metrics: Arc<Metrics>,
    check_after: Duration,
    per_second: u32,
    token: CancellationToken,
) {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
    let checker = Checker {
        client,
        store,
        metrics,
        check_after,
        limiter,
        last_error: Mutex::new(None),
    };
    loop {
        if status.is_active() {
            match checker.store.due_checks(Ts::now(), BATCH).await {
                Ok(due) => {
                    let full = due.len() == BATCH;
                    let run = futures_util::stream::iter(due)
                        .for_each_concurrent(CONCURRENCY, |job| checker.check(job));
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = run => {}
                    }
                    if full {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read the submission checks due")
                }
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

struct Checker {
    client: vod::Client,
    store: Store,
    metrics: Arc<Metrics>,
    check_after: Duration,
    limiter: DefaultDirectRateLimiter,
    /// The code of the last failed call: a failure that repeats it (a RAM user without
    /// `vod:GetMediaRefreshJobs` fails every check) is logged at debug level, not once per job.
    last_error: Mutex<Option<String>>,
}

impl Checker {
    async fn check(&self, job: DueCheck) {
        self.limiter.until_ready().await;
        let answer = self
            .client
            .get_media_refresh_jobs(&job.vod_job_id, None)
            .await;
        let now = Ts::now();
        let done = job.checks + 1;
        let result = match answer {
            Ok(answer) => {
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let submissions = submissions(&job.vod_job_id, &answer);
                for submission in &submissions {
                    let (label, code) = match &submission.result {
                        Ok(()) => ("submitted", ""),
                        Err((code, _)) => ("submit_failed", code.as_str()),
                    };
                    self.metrics
                        .submissions
                        .with_label_values(&[label, code])
                        .inc();
                    if let Err((code, message)) = &submission.result {
                        tracing::warn!(job_id = %job.job_id, vod_job_id = %job.vod_job_id,
                            media_id = %submission.media_id, code, message, "VOD could not submit a media ID's CDN tasks");
                    }
                }
                CheckResult {
                    submissions,
                    again_at: again_at(now, self.check_after, done),
                }
            }
            Err(error) => self.on_error(&job, now, done, &error),
        };
        if let Err(error) = self.store.record_check(&job.job_id, &result).await {
            // The check stays due and is made again.
            tracing::warn!(job_id = %job.job_id, error = %error, "cannot record a submission check");
        }
    }

    fn on_error(&self, job: &DueCheck, now: Ts, done: u32, error: &VodError) -> CheckResult {
        let code = error.code().unwrap_or_else(|| error_kind(error));
        self.metrics.check_errors.with_label_values(&[code]).inc();
        let again = match error.class() {
            ErrorClass::Permanent => None,
            ErrorClass::Retryable | ErrorClass::Throttled => again_at(now, self.check_after, done),
        };
        let repeated = {
            let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
            let repeated = last.as_deref() == Some(code);
            *last = Some(code.to_owned());
            repeated
        };
        if repeated {
            tracing::debug!(job_id = %job.job_id, vod_job_id = %job.vod_job_id, error = %error,
                again = again.is_some(), "GetMediaRefreshJobs failed again");
        } else {
            tracing::warn!(job_id = %job.job_id, vod_job_id = %job.vod_job_id, error = %error,
                again = again.is_some(), "GetMediaRefreshJobs failed; repeats of this error are logged at debug level");
        }
        CheckResult {
            submissions: Vec::new(),
            again_at: again,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vod::MediaRefreshJob;

    fn item(job: &str, media: &str, status: &str, code: Option<&str>) -> MediaRefreshJob {
        MediaRefreshJob {
            media_refresh_job_id: job.to_owned(),
            media_id: media.to_owned(),
            status: status.to_owned(),
            error_code: code.map(str::to_owned),
            error_message: code.map(|c| format!("{c} happened")),
            ..MediaRefreshJob::default()
        }
    }

    #[test]
    fn answers_become_submissions() {
        let answer = GetMediaRefreshJobsResponse {
            request_id: "R".into(),
            media_refresh_jobs: vec![
                item("J", "a", "success", None),
                item("J", "b", "fail", Some("PreloadQueueFull")),
                item("J", "c", "fail", None),
                item("J", "d", "Success", None),
                item("J", "e", "processing", None),
                item("OTHER", "f", "success", None),
                item("", "g", "success", None),
            ],
        };
        let submitted = |media_id: &str| Submission {
            media_id: media_id.to_owned(),
            result: Ok(()),
        };
        let failed = |media_id: &str, code: &str, message: &str| Submission {
            media_id: media_id.to_owned(),
            result: Err((code.to_owned(), message.to_owned())),
        };
        assert_eq!(
            submissions("J", &answer),
            vec![
                submitted("a"),
                failed("b", "PreloadQueueFull", "PreloadQueueFull happened"),
                failed("c", "SubmitFailed", ""),
                submitted("d"),
                submitted("g"),
            ]
        );
    }

    #[test]
    fn checks_back_off_and_stop() {
        let now = Ts(1_000_000);
        let after = Duration::from_secs(10);
        let table = [
            (1, Some(20_000)),
            (2, Some(40_000)),
            (3, Some(80_000)),
            (4, Some(160_000)),
            (MAX_CHECKS, None),
            (MAX_CHECKS + 1, None),
        ];
        for (done, wait_ms) in table {
            assert_eq!(
                again_at(now, after, done),
                wait_ms.map(|ms| Ts(now.0 + ms)),
                "after check {done}"
            );
        }
    }
}
