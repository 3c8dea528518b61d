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

mod rules;

pub use rules::{MAX_CHECKS, Resend, again_at, resubmission, submissions};

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
use crate::store::{CheckResult, DueCheck, Resubmission, Store};
use crate::vod::{self, ErrorClass, VodError};

/// Jobs read from the store per look.
const BATCH: usize = 64;

/// How often the store is looked at for due checks.
const POLL: Duration = Duration::from_secs(1);

/// Calls made at once.
const CONCURRENCY: usize = 8;

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
            match checker
                .store
                .due_checks(&checker.config.account, Ts::now(), BATCH)
                .await
            {
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

/// How the checks run (from `[vod]`), for one account's jobs.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The account whose jobs are checked, with its own client.
    pub account: crate::domain::AccountName,
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
    /// `follow_for`: how long the CDN tasks of submitted IDs are followed; `None`: not at all.
    pub follow_for: Option<Duration>,
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
                        .with_label_values(&[self.config.account.as_str(), label, code])
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
                    follow_until: self.config.follow_for.map(|d| now + d),
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
        self.metrics
            .check_errors
            .with_label_values(&[self.config.account.as_str(), code])
            .inc();
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
            follow_until: None,
            submissions: Vec::new(),
            again_at: again,
            resubmission: None,
        }
    }
}
