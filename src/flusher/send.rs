//! One call: sending a claimed job to VOD and recording what came of it (success, retry,
//! failure, or a hold on the daily quota).

use super::backoff;
use super::backoff::Decision;
use super::hold::HoldDecision;
use super::{ErrorClass, Flusher, Sender};
use crate::domain::{MediaId, Priority, TargetKind, TaskType, Ts};
use crate::queue::Debounce;
use crate::store::{Failure, Follow, Ingest, Job, NewItem, StoreError, Success};
use crate::vod::{ObjectRequest, RefreshRequest, VodError};

/// How long a cover lookup's answer is reused.
const COVER_CACHE: std::time::Duration = std::time::Duration::from_secs(60);

/// The source the cover URLs a lookup found are recorded under.
pub const COVERS_SOURCE: &str = "covers";

impl Flusher {
    #[tracing::instrument(skip_all, fields(job_id = %job.id, task = %job.task, ids = job.items.len(), attempt = job.attempts))]
    pub(super) async fn send(&self, job: Job) {
        let inner = &self.inner;
        let ids: Vec<String> = job.items.iter().map(|i| i.media_id.to_string()).collect();
        inner.metrics.batch_size.observe(ids.len() as f64);
        let mut started = tokio::time::Instant::now();
        let result = match &inner.sender {
            Sender::DryRun => {
                tracing::info!(targets = ?ids, task = %job.task, options = ?job.options, "dry run: would call {}", job.task.action());
                Ok(Success::default())
            }
            Sender::Vod(client) if job.task == TaskType::ResolveCovers => {
                match self.resolve_covers(client, &ids, job.priority).await {
                    Ok(result) => result,
                    // Not recorded: the lease runs out and the lookup is made again.
                    Err(error) => {
                        tracing::error!(error = %error, "cannot queue the cover URLs; the lookup is made again when its lease runs out");
                        return;
                    }
                }
            }
            Sender::Vod(client) if job.task.kind() == TargetKind::Media => {
                let request = RefreshRequest::from_options(ids, job.task, &job.options);
                self.limiter(job.task).depart().await;
                started = tokio::time::Instant::now();
                client
                    .refresh_media_play_urls(&request)
                    .await
                    .map(|r| Success {
                        vod_job_id: Some(r.media_refresh_job_id).filter(|s| !s.is_empty()),
                        request_id: Some(r.request_id).filter(|s| !s.is_empty()),
                        non_existent: r.non_exist_media_ids,
                        forbidden: r.forbidden_media_ids,
                        ..Success::default()
                    })
            }
            Sender::Vod(client) => self.send_urls(client, job.task, ids, &mut started).await,
        };
        let now = Ts::now();
        if matches!(inner.sender, Sender::Vod(_)) {
            inner
                .metrics
                .vod_call_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let ends_hold = job.held_since.is_some() && ends_hold(&result);
        let limiter = self.limiter(job.task);
        let recorded = match result {
            Ok(mut success) => {
                // Only a job VOD created can be checked (never a dry run's); the CDN tasks of
                // URL calls are not submission checks.
                if success.vod_job_id.is_some() && job.task.kind() == TargetKind::Media {
                    success.check_at = inner.config.check_after.map(|after| now + after);
                }
                // A URL call's CDN tasks are followed from now on.
                if let (Some(task_ids), Some(follow_for), Some(object_type)) = (
                    success.vod_job_id.clone(),
                    inner.config.follow_for,
                    object_type(job.task),
                ) {
                    success.follow = Some(Follow {
                        task_ids,
                        object_type,
                        until: now + follow_for,
                    });
                }
                limiter.on_success();
                inner.status.set_credential_error(None);
                inner
                    .metrics
                    .vod_credential_error
                    .with_label_values(&[job.account.as_str()])
                    .set(0);
                inner
                    .metrics
                    .vod_calls
                    .with_label_values(&[job.account.as_str(), "success", ""])
                    .inc();
                inner
                    .metrics
                    .jobs_finished
                    .with_label_values(&[job.account.as_str(), "succeeded"])
                    .inc();
                tracing::info!(vod_job_id = ?success.vod_job_id, request_id = ?success.request_id,
                    non_existent = success.non_existent.len(), forbidden = success.forbidden.len(), "job sent");
                inner
                    .store
                    .record_success(&job.id, job.attempts, now, &success)
                    .await
            }
            Err(error) => self.record_error(&job, now, started, error).await,
        };
        if matches!(inner.sender, Sender::Vod(_)) {
            inner.status.note_rate(inner.limiter.current_rps());
        }
        if ends_hold {
            self.groups_may_be_sendable();
            match inner
                .store
                .release_held(&job.account, job.task.quota(), now)
                .await
            {
                // The in-memory flag is left to the next step's reading of the store: another
                // call's quota answer may have just held the task type again.
                Ok(jobs) => {
                    inner
                        .metrics
                        .quota_hold_ends
                        .with_label_values(&[
                            job.account.as_str(),
                            job.task.quota().as_str(),
                            "probe",
                        ])
                        .inc();
                    tracing::info!(quota = %job.task.quota(), jobs, "the probe met no quota limit: the hold ends and the held jobs are sent")
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot end the quota hold; the next probe will")
                }
            }
        }
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("job was taken over by another flusher; result not recorded")
            }
            // The lease runs out and the job is sent again: at-least-once.
            Err(error) => {
                tracing::error!(error = %error, "cannot record the job result; it will be sent again")
            }
        }
    }

    /// One URL job: `RefreshVodObjectCaches` or `PreloadVodObjectCaches`, each call passing the
    /// limiter's departure window. Normally one call; after `SingleRequest.OverLimit` the batch
    /// size is halved for the rest of the process (and said so in the log) and the job's URLs go
    /// in calls of the new size, so a job claimed at the old size still goes out whole.
    async fn send_urls(
        &self,
        client: &crate::vod::Client,
        task: TaskType,
        paths: Vec<String>,
        started: &mut tokio::time::Instant,
    ) -> Result<Success, VodError> {
        let mut task_ids: Vec<String> = Vec::new();
        let mut request_id = None;
        let (mut done, mut calls) = (0, 0);
        while done < paths.len() {
            let size = self.batch_size(task).max(1);
            let chunk = &paths[done..(done + size).min(paths.len())];
            let request = ObjectRequest {
                paths: chunk.to_vec(),
                task,
            };
            // The claim's permit paid for the first call; each later one takes its own.
            if calls > 0 {
                self.limiter(task).acquire().await;
            }
            calls += 1;
            self.limiter(task).depart().await;
            *started = tokio::time::Instant::now();
            match client.refresh_object_caches(&request).await {
                Ok(answer) => {
                    task_ids.extend(answer.refresh_task_id);
                    request_id = Some(answer.request_id).filter(|s| !s.is_empty());
                    done += chunk.len();
                }
                Err(error)
                    if error.code() == Some("SingleRequest.OverLimit") && chunk.len() > 1 =>
                {
                    let lower = chunk.len() / 2;
                    self.inner
                        .urls_per_call
                        .fetch_min(lower, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        action = task.action(),
                        refused = chunk.len(),
                        urls_per_call = lower,
                        "VOD refused a call of {} URLs as too large (SingleRequest.OverLimit): \
                         URL calls carry at most {lower} from now on; lower vod.urls_per_call",
                        chunk.len()
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Success {
            vod_job_id: Some(task_ids.join(",")).filter(|s| !s.is_empty()),
            request_id,
            ..Success::default()
        })
    }

    /// A cover lookup: the cover and snapshot URLs of each media ID (`GetVideoInfo`, cached for
    /// [`COVER_CACHE`]), those on `vod.cdn_domains` queued as `FileRefresh` items in one commit.
    /// An ID VOD does not know (`InvalidVideo.NotFound`) is recorded `non_existent`, not
    /// retried; any other error fails the lookup as a call does (and it is retried).
    async fn resolve_covers(
        &self,
        client: &crate::vod::Client,
        ids: &[String],
        priority: Priority,
    ) -> Result<Result<Success, VodError>, StoreError> {
        let inner = &self.inner;
        let mut urls: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let cached = {
                let mut covers = inner.covers.lock().unwrap_or_else(|e| e.into_inner());
                covers.retain(|_, (at, _)| at.elapsed() < COVER_CACHE);
                covers.get(id).map(|(_, found)| found.clone())
            };
            let found = match cached {
                Some(found) => found,
                None => {
                    // The claim's permit paid for the first lookup.
                    if n > 0 {
                        self.limiter(TaskType::ResolveCovers).acquire().await;
                    }
                    self.limiter(TaskType::ResolveCovers).depart().await;
                    let found = match client.get_video_info(id).await {
                        Ok(info) => Some(
                            std::iter::once(info.video.cover_url)
                                .chain(info.video.snapshots)
                                .filter(|u| !u.is_empty())
                                .collect(),
                        ),
                        Err(error) if error.code() == Some("InvalidVideo.NotFound") => None,
                        Err(error) => return Ok(Err(error)),
                    };
                    inner
                        .covers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone(), (std::time::Instant::now(), found.clone()));
                    found
                }
            };
            match found {
                Some(found) => urls.extend(found),
                None => unknown.push(id.clone()),
            }
        }
        let mut items = Vec::new();
        for url in &urls {
            // A signed URL (URL signing on the domain) carries its signature in the query: the
            // object is the same, and the signature must not be stored.
            let url = url.split_once('?').map_or(url.as_str(), |(path, _)| path);
            match inner.config.cdn_domains.normalise(url, TargetKind::File) {
                Ok(url) if !items.iter().any(|i: &NewItem| i.media_id.as_str() == url) => items
                    .push(NewItem::plain(
                        inner.config.account.clone(),
                        MediaId::from_trusted(url),
                        TaskType::FileRefresh,
                        Debounce::for_covers(),
                        priority,
                    )),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(error = %error, "a cover URL is not on vod.cdn_domains: not purged")
                }
            }
        }
        if !items.is_empty() {
            let now = Ts::now();
            let queued = items.len();
            inner
                .store
                .ingest(Ingest {
                    source: COVERS_SOURCE.to_owned(),
                    delivery_id: None,
                    event_id: uuid::Uuid::now_v7().to_string(),
                    items,
                    rejected: Vec::new(),
                    now,
                    delivery_expires_at: now,
                })
                .await?;
            tracing::info!(
                media_ids = ids.len(),
                urls = queued,
                "cover and snapshot URLs queued"
            );
        }
        Ok(Ok(Success {
            non_existent: unknown,
            ..Success::default()
        }))
    }

    /// Records a failed call that left at `sent_at`.
    async fn record_error(
        &self,
        job: &Job,
        now: Ts,
        sent_at: tokio::time::Instant,
        error: VodError,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let failure = Failure {
            code: error
                .code()
                .map(str::to_owned)
                .unwrap_or_else(|| error_kind(&error).to_owned()),
            message: error.to_string(),
            request_id: error.request_id().map(str::to_owned),
        };
        if error.is_credential_error() {
            inner
                .status
                .set_credential_error(Some(failure.message.clone()));
            inner
                .metrics
                .vod_credential_error
                .with_label_values(&[job.account.as_str()])
                .set(1);
        }
        let class = error.class();
        let limiter = self.limiter(job.task);
        // A per-minute limit or a full refresh queue: VOD answered, and is not down.
        let minute_limit = error.code().is_some_and(backoff::is_minute_limit);
        let outage = match class {
            // Never sent: VOD is not the problem, and the attempt is not counted.
            _ if matches!(error, VodError::NoCredentials) => true,
            ErrorClass::Throttled => {
                limiter.on_throttled(sent_at);
                inner.status.note_throttled(now);
                false
            }
            ErrorClass::Retryable if !minute_limit => limiter.on_unavailable(),
            _ => {
                limiter.on_answer();
                false
            }
        };
        if !matches!(error, VodError::NoCredentials) {
            let outcome = match class {
                ErrorClass::Throttled => "throttled",
                ErrorClass::Retryable => "retryable",
                ErrorClass::Permanent => "permanent",
                ErrorClass::QuotaExhausted => "quota",
            };
            inner
                .metrics
                .vod_calls
                .with_label_values(&[job.account.as_str(), outcome, &failure.code])
                .inc();
        }
        if class == ErrorClass::QuotaExhausted {
            return self.hold(job, now, &failure).await;
        }
        if job.held_since.is_some() && !answer_ends_hold(&error) {
            return self.keep_holding(job, now, &failure).await;
        }
        // The next minute, not counted as an attempt (within max_age).
        if minute_limit {
            let at = backoff::next_minute(now);
            if at.since(job.budget_from) <= inner.config.retry.max_age {
                tracing::warn!(code = %failure.code, retry_at = %at.to_rfc3339(), "VOD's per-minute refresh limit: the job waits for the next minute");
                inner.metrics.retries.inc();
                return inner
                    .store
                    .record_deferral(&job.id, job.attempts, now, at, &failure)
                    .await;
            }
        }
        if class == ErrorClass::Permanent {
            tracing::error!(code = %failure.code, error = %failure.message, "job failed permanently");
            return self.fail(job, now, &failure).await;
        }
        let jitter: f64 = rand::random();
        match inner.config.retry.decide(
            job.counted_attempts(),
            job.budget_from,
            now,
            class == ErrorClass::Throttled,
            outage,
            jitter,
        ) {
            Decision::RetryAt(at) => {
                tracing::warn!(code = %failure.code, error = %failure.message, retry_at = %at.to_rfc3339(), "job will be retried");
                inner.metrics.retries.inc();
                inner
                    .store
                    .record_retry(&job.id, job.attempts, now, at, &failure)
                    .await
            }
            Decision::GiveUp => {
                tracing::error!(code = %failure.code, error = %failure.message, "job failed after its last attempt");
                self.fail(job, now, &failure).await
            }
        }
    }

    /// The call met a used-up daily quota: hold the job (no attempt spent) until its next probe,
    /// or fail it once it has been held for `vod.max_hold`.
    async fn hold(&self, job: &Job, now: Ts, failure: &Failure) -> Result<bool, StoreError> {
        let inner = &self.inner;
        match inner.config.hold.on_quota_answer(job.held_since, now) {
            HoldDecision::HoldUntil(until) => {
                // At once, so that a step stops claiming; and again once the hold is stored, so
                // that a step reading the holds meanwhile cannot undo it.
                inner.status.quota.set_held(job.task.quota(), true);
                if job.held_since.is_none() {
                    tracing::warn!(quota = %job.task.quota(), code = %failure.code, until = %until.to_rfc3339(),
                        "VOD's daily quota is used up: its tasks are held, one job is tried again at the next probe");
                } else {
                    tracing::info!(task = %job.task, until = %until.to_rfc3339(), "the quota probe met the limit again");
                }
                inner
                    .metrics
                    .quota_holds
                    .with_label_values(&[job.account.as_str(), job.task.quota().as_str()])
                    .inc();
                let recorded = inner
                    .store
                    .record_hold(&job.id, job.attempts, now, until, failure)
                    .await;
                inner.status.quota.set_held(job.task.quota(), true);
                recorded
            }
            HoldDecision::Fail => {
                tracing::error!(code = %failure.code, "job held on the quota for vod.max_hold: it fails");
                self.fail(job, now, failure).await
            }
        }
    }

    /// A probe met an answer that says nothing about the quota (a timeout, a 5xx, throttling, a
    /// refused connection, no credential): the hold goes on, the job keeps its `held_since` and
    /// its quota code, and the next probe goes at the hold's pace (the limiter's outage probes
    /// pace the calls while VOD is down). Past `vod.max_hold` the job fails.
    async fn keep_holding(&self, job: &Job, now: Ts, answer: &Failure) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let since = job.held_since.unwrap_or(now);
        match inner.config.hold.on_quota_answer(Some(since), now) {
            HoldDecision::HoldUntil(until) => {
                tracing::warn!(task = %job.task, code = %answer.code, until = %until.to_rfc3339(),
                    "the quota probe got no answer about the quota: the hold goes on");
                let failure = Failure {
                    code: hold_code(job),
                    message: format!(
                        "held on the daily quota; the last probe got {}: {}",
                        answer.code, answer.message
                    ),
                    request_id: answer.request_id.clone(),
                };
                inner
                    .store
                    .record_hold(&job.id, job.attempts, now, until, &failure)
                    .await
            }
            HoldDecision::Fail => self.fail_held(job, since, now).await,
        }
    }

    /// Fails a job held on the quota since `since` once `vod.max_hold` has passed: with the
    /// quota's code and a message naming the setting.
    pub(super) async fn fail_held(
        &self,
        job: &Job,
        since: Ts,
        now: Ts,
    ) -> Result<bool, StoreError> {
        tracing::error!(job_id = %job.id, task = %job.task, held_since = %since.to_rfc3339(), "job held on the quota for vod.max_hold: it fails");
        let failure = Failure {
            code: hold_code(job),
            message: format!(
                "held on the daily quota since {} and given up: vod.max_hold has passed",
                since.to_rfc3339()
            ),
            request_id: job.request_id.clone(),
        };
        self.fail(job, now, &failure).await
    }

    /// Fails a job for good (counted in `jobs_finished_total{status="failed"}`).
    pub(super) async fn fail(
        &self,
        job: &Job,
        now: Ts,
        failure: &Failure,
    ) -> Result<bool, StoreError> {
        self.inner
            .metrics
            .jobs_finished
            .with_label_values(&[job.account.as_str(), "failed"])
            .inc();
        self.inner
            .store
            .record_failure(&job.id, job.attempts, now, failure)
            .await
    }
}

/// Whether an answer to the probe of a quota hold ends the hold: a success, or a definite answer
/// from VOD that is not about the quota (a permanent error code; the job itself then fails).
/// A timeout, a 5xx, throttling, a refused connection, a garbled answer or a call that never
/// left (no credential) say nothing about the quota, and a quota answer says it is still used
/// up: the hold goes on.
pub(super) fn ends_hold<T>(result: &Result<T, VodError>) -> bool {
    result.as_ref().err().is_none_or(answer_ends_hold)
}

/// See [`ends_hold`]. A refused credential or permission (`SignatureDoesNotMatch`,
/// `InvalidSecurityToken.*`, `Forbidden.RAM`, an account in arrears) is definite but says
/// nothing about the quota either, and would fail every released job on the same error: the
/// held jobs keep waiting for the operator to mend it (within `vod.max_hold`).
fn answer_ends_hold(error: &VodError) -> bool {
    let refused = error.is_credential_error()
        || error
            .code()
            .is_some_and(|c| c.starts_with("Forbidden") || c.starts_with("OperationDenied"));
    matches!(error, VodError::Api { .. }) && error.class() == ErrorClass::Permanent && !refused
}

/// The quota code a held job was held with (its quota's, if none is stored).
fn hold_code(job: &Job) -> String {
    job.error_code
        .clone()
        .filter(|code| code.starts_with("QuotaExceeded"))
        .unwrap_or_else(|| job.task.quota().exceeded_code().to_owned())
}

/// `DescribeVodRefreshTasks`' `ObjectType` of a URL task; `None` for media tasks, whose CDN
/// tasks are named by the submission check.
pub(super) fn object_type(task: TaskType) -> Option<&'static str> {
    match task {
        TaskType::FileRefresh => Some("file"),
        TaskType::DirectoryRefresh => Some("directory"),
        TaskType::FilePreload => Some("preload"),
        TaskType::Refresh | TaskType::Preload | TaskType::ResolveCovers => None,
    }
}

/// A code for failures that have no VOD error code.
pub(crate) fn error_kind(error: &VodError) -> &'static str {
    match error {
        VodError::Api { .. } => "ApiError",
        VodError::Timeout => "Timeout",
        VodError::Connection(_) => "ConnectionError",
        VodError::Malformed { .. } => "MalformedResponse",
        VodError::InvalidRequest(_) => "InvalidRequest",
        VodError::Config(_) => "ClientConfig",
        VodError::NoCredentials => "NoCredentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> VodError {
        VodError::Api {
            status,
            code: code.to_owned(),
            message: String::new(),
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn only_a_success_or_a_definite_answer_not_about_the_quota_ends_a_hold() {
        let table = [
            (Ok(()), true),
            (Err(api(400, "InvalidParameter")), true),
            (Err(api(403, "Forbidden.RAM")), false),
            (Err(api(400, "SignatureDoesNotMatch")), false),
            (Err(api(400, "InvalidSecurityToken.Expired")), false),
            (Err(api(403, "OperationDenied.Suspended")), false),
            (Err(api(400, "InvalidParameter.MediaIds")), true),
            (Err(api(400, "QuotaExceeded.Refresh")), false),
            (Err(api(503, "Throttling")), false),
            (Err(api(400, "Throttling.User")), false),
            (Err(api(500, "InternalError")), false),
            (Err(api(503, "ServiceUnavailable")), false),
            (Err(VodError::Timeout), false),
            (
                Err(VodError::Connection("connection refused".into())),
                false,
            ),
            (Err(VodError::NoCredentials), false),
            (Err(VodError::malformed(400, b"<html>")), false),
        ];
        for (answer, ends) in table {
            assert_eq!(ends_hold(&answer), ends, "{answer:?}");
        }
    }
}
