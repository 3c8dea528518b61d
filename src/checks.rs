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
//! [`MAX_CHECKS`] checks in all; after that it stays `sent`. A retryable error of the check
//! itself (throttling, 5xx, timeouts) is a check that reported nothing; a permanent one (such as
//! a RAM user without `vod:GetMediaRefreshJobs`) ends the job's checks.
//!
//! IDs whose submission failed for a reason that passes (`PreloadQueueFull`: "please try again
//! later") go into a new job, sent `vod.retry_max` later like a retry and checked in its turn,
//! within the original job's `vod.max_age` budget. An operator can also resubmit failed IDs
//! (`POST /jobs/{id}/resubmit`).
//!
//! Calls are paced by a limiter of their own, `vod.checks_per_second`: VOD limits this API apart
//! from `RefreshMediaPlayUrls`, so checks take nothing from the purge budget. Only the active
//! flusher checks, so a cluster asks once per job.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::domain::Ts;
use crate::flusher::hold::HoldPolicy;
use crate::flusher::{FlusherStatus, error_kind};
use crate::metrics::Metrics;
use crate::store::{CheckResult, DueCheck, Resubmission, Store, Submission};
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

/// The IDs to send again, when, and whether the new job starts held on the quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    pub media_ids: Vec<String>,
    pub send_at: Ts,
    /// A used-up quota's code, when VOD reported one for an ID: the new job starts held and is
    /// sent as the quota comes back (see [`crate::flusher::hold`]).
    pub held: Option<String>,
}

/// The IDs to send again, and when: those whose submission failed with a code that passes
/// (`PreloadQueueFull`, `TooMany.Refresh`, throttling, server errors), while the job's retry
/// budget (`max_age` from `budget_from`) lasts at the time they would be sent. A resubmitted job
/// is checked in its turn, so an ID is sent again until it goes through or the budget runs out.
/// A used-up quota (`QuotaExceeded.*`) passes too, at the quota's pace: the new job is held, its
/// first probe is due as a hold's would be, and `max_age` does not run while it is held.
pub fn resubmission(
    submissions: &[Submission],
    now: Ts,
    budget_from: Ts,
    config: &CheckConfig,
) -> Option<Resend> {
    let class = |s: &Submission| match &s.result {
        Err((code, _)) => vod::class_of_code(code),
        Ok(()) => None,
    };
    let media_ids: Vec<String> = submissions
        .iter()
        .filter(|s| {
            matches!(
                class(s),
                Some(ErrorClass::Retryable | ErrorClass::Throttled | ErrorClass::QuotaExhausted)
            )
        })
        .map(|s| s.media_id.clone())
        .collect();
    if media_ids.is_empty() {
        return None;
    }
    let held = submissions
        .iter()
        .filter(|s| class(s) == Some(ErrorClass::QuotaExhausted))
        .find_map(|s| s.result.as_ref().err().map(|(code, _)| code.clone()));
    let send_at = match held {
        Some(_) => config.hold.next_probe(now, now),
        None => now + config.resubmit_after,
    };
    if held.is_none() && send_at > budget_from + config.max_age {
        return None;
    }
    Some(Resend {
        media_ids,
        send_at,
        held,
    })
}

/// Runs the checks until `token` is cancelled.
pub async fn watch(
    client: vod::Client,
    store: Store,
    status: Arc<FlusherStatus>,
    metrics: Arc<Metrics>,
    config: CheckConfig,
    token: CancellationToken,
) {
    let rate = NonZeroU32::new(config.per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
    let checker = Checker {
        client,
        store,
        metrics,
        config,
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

/// How the checks run (from `[vod]`).
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// `check_after`: the first check's delay, doubled for each check after it.
    pub check_after: Duration,
    /// `checks_per_second`.
    pub per_second: u32,
    /// `max_age`: a job's IDs are resubmitted only within its retry budget.
    pub max_age: Duration,
    /// `retry_max`: how long a resubmission waits before it is sent.
    pub resubmit_after: Duration,
    /// The quota holds, for IDs whose submission met a used-up quota.
    pub hold: HoldPolicy,
}

struct Checker {
    client: vod::Client,
    store: Store,
    metrics: Arc<Metrics>,
    config: CheckConfig,
    limiter: DefaultDirectRateLimiter,
    /// The code of the last failed call: a failure that repeats it (a RAM user without
    /// `vod:GetMediaRefreshJobs` fails every check) is logged at debug level, not once per job.
    last_error: Mutex<Option<String>>,
}

impl Checker {
    async fn check(&self, job: DueCheck) {
        // While no credential can sign a call (its renewal failing), no check is spent.
        self.client.credentials().wait_until_usable().await;
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
                let resubmission = resubmission(&submissions, now, job.budget_from, &self.config)
                    .map(|resend| Resubmission {
                        job_id: uuid::Uuid::now_v7().to_string(),
                        media_ids: resend.media_ids,
                        created_at: now,
                        send_at: resend.send_at,
                        held: resend.held,
                    });
                if let Some(r) = &resubmission {
                    self.metrics.resubmitted.inc_by(r.media_ids.len() as u64);
                    tracing::info!(job_id = %job.job_id, resubmission = %r.job_id, ids = r.media_ids.len(),
                        send_at = %r.send_at.to_rfc3339(), "media IDs whose submission failed for a passing reason are sent again");
                }
                CheckResult {
                    submissions,
                    again_at: again_at(now, self.config.check_after, done),
                    resubmission,
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
            ErrorClass::Retryable | ErrorClass::Throttled | ErrorClass::QuotaExhausted => {
                again_at(now, self.config.check_after, done)
            }
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
            resubmission: None,
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
    fn passing_failures_are_resubmitted_within_the_budget() {
        let config = CheckConfig {
            check_after: Duration::from_secs(10),
            per_second: 10,
            max_age: Duration::from_secs(3600),
            resubmit_after: Duration::from_secs(60),
            hold: crate::flusher::hold::HoldPolicy {
                probe_interval: Duration::from_secs(300),
                reset: crate::flusher::hold::QuotaReset::CHINA_MIDNIGHT,
                max_hold: Duration::from_secs(48 * 3600),
                reserve: crate::flusher::hold::Reserve::Percent(10.0),
            },
        };
        let failed = |media_id: &str, code: &str| Submission {
            media_id: media_id.to_owned(),
            result: Err((code.to_owned(), String::new())),
        };
        let reported = vec![
            Submission {
                media_id: "ok".into(),
                result: Ok(()),
            },
            failed("full", "PreloadQueueFull"),
            failed("busy", "TooMany.Refresh"),
            failed("slow", "Throttling"),
            failed("denied", "Forbidden.RAM"),
            failed("odd", "SubmitFailed"),
        ];
        let now = Ts(10_000_000);
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let resend = |media_ids: &[&str], send_at| Resend {
            media_ids: ids(media_ids),
            send_at,
            held: None,
        };
        let table = [
            // (checked job's budget start, expected)
            (
                now,
                Some(resend(&["full", "busy", "slow"], Ts(now.0 + 60_000))),
            ),
            (
                Ts(now.0 - 3_540_000),
                Some(resend(&["full", "busy", "slow"], Ts(now.0 + 60_000))),
            ),
            // Sent after the budget has run out: not at all.
            (Ts(now.0 - 3_540_001), None),
        ];
        for (budget_from, expected) in table {
            assert_eq!(
                resubmission(&reported, now, budget_from, &config),
                expected,
                "budget from {budget_from:?}"
            );
        }
        assert_eq!(
            resubmission(&reported[..1], now, now, &config),
            None,
            "nothing failed"
        );
        assert_eq!(
            resubmission(&reported[4..], now, now, &config),
            None,
            "only failures that do not pass"
        );
        // A used-up quota: the new job starts held, probed a probe interval later, even past
        // the budget (max_age does not run while held).
        let mut with_quota = reported.clone();
        with_quota.push(failed("spent", "QuotaExceeded.Refresh"));
        let expected = Resend {
            media_ids: ids(&["full", "busy", "slow", "spent"]),
            send_at: Ts(now.0 + 300_000),
            held: Some("QuotaExceeded.Refresh".into()),
        };
        for budget_from in [now, Ts(now.0 - 3_600_000)] {
            assert_eq!(
                resubmission(&with_quota, now, budget_from, &config),
                Some(expected.clone())
            );
        }
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
