//! What happened to every ID: `/jobs`, `/jobs/{id}`, `/media/{id}`, `/queue`, and the operator's
//! `POST /jobs/{id}/retry`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::ingest;
use crate::domain::{Priority, PurgeOptions, TaskType, Ts};
use crate::flusher::hold::allowance;
use crate::store::{
    ItemOutcome, Job, JobFilter, JobStatus, NewItem, PendingItem, Receipt, RetryOutcome,
};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub task: TaskType,
    pub status: JobStatus,
    /// `urgent` when the job carries an urgent item.
    pub priority: Priority,
    /// True when the call was not made (`vod.dry_run`).
    pub dry_run: bool,
    pub attempts: u32,
    /// While `held`: when the hold on the daily quota began. `next_attempt_at` is the next probe.
    pub held_since: Option<String>,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    /// `MediaRefreshJobId` returned by VOD.
    pub vod_job_id: Option<String>,
    /// `RequestId` of the last VOD answer.
    pub request_id: Option<String>,
    /// The last error (code and message), if the last attempt failed.
    pub error: Option<JobError>,
    /// When VOD is next asked what became of the submissions (`GetMediaRefreshJobs`).
    pub next_check_at: Option<String>,
    /// The job whose IDs this one sends again, after VOD reported their submission failed for a
    /// passing reason.
    pub resubmission_of: Option<String>,
    pub items: Vec<JobItemView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobItemView {
    pub media_id: String,
    pub outcome: ItemOutcome,
    pub first_seen: String,
    /// Events merged into this ID before it was sent.
    pub events: u64,
    /// VOD's code and message when submitting the ID's CDN tasks failed (`submit_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingView {
    pub task: TaskType,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub source: String,
    pub first_seen: String,
    pub last_seen: String,
    pub due_at: String,
    pub events: u64,
    pub priority: Priority,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaView {
    pub media_id: String,
    /// Items waiting for their debounce to end.
    pub pending: Vec<PendingView>,
    /// The most recent jobs that carried this ID, newest first.
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueView {
    pub pending: u64,
    /// Urgent items among the pending ones.
    pub urgent: u64,
    pub due: u64,
    /// Age in seconds of the oldest pending item.
    pub oldest_age_seconds: Option<f64>,
    pub next_due_at: Option<String>,
    pub in_flight_batches: u64,
    pub retrying_batches: u64,
    /// The task types held on VOD's daily quota (no batch of them goes out but one probe).
    pub held: Vec<HeldView>,
    /// The daily quota by the last poll, per task type; read on the active flusher only
    /// (empty on other replicas and before the first poll).
    pub quota: Vec<QuotaLeftView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldView {
    pub task: TaskType,
    /// Jobs held, the probe in flight included.
    pub jobs: u64,
    /// VOD's code: `QuotaExceeded.Refresh` or `QuotaExceeded.Preload`.
    pub reason: String,
    pub since: String,
    /// When the next probe goes out (the sooner of the probe interval and the daily reset);
    /// absent while a probe is in flight.
    pub until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaLeftView {
    pub task: TaskType,
    pub daily: u64,
    /// What the last poll reported left, less the IDs sent since.
    pub remaining: u64,
    /// URLs kept for urgent items (`vod.urgent_quota_reserve`).
    pub reserve: u64,
    pub polled_at: String,
    /// Set when normal items wait for the quota (what is left is within the reserve): the time
    /// of the next reset.
    pub normal_held_until: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// `in_flight`, `retrying`, `held`, `succeeded` or `failed`.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Only jobs that carried this media ID.
    pub media_id: Option<String>,
    /// `Refresh` or `Preload`.
    #[param(value_type = Option<TaskType>)]
    pub task: Option<String>,
    /// Only jobs created at or after this time: epoch milliseconds (an RFC 3339 time is
    /// accepted too).
    #[param(pattern = "^[0-9]{1,13}$")]
    pub since: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

fn options_json(options: &PurgeOptions) -> serde_json::Value {
    serde_json::to_value(options).unwrap_or(serde_json::Value::Null)
}

impl From<Job> for JobView {
    fn from(job: Job) -> JobView {
        let error = match (job.error_code, job.error_message) {
            (Some(code), message) => Some(JobError {
                code,
                message: message.unwrap_or_default(),
            }),
            _ => None,
        };
        JobView {
            options: options_json(&job.options),
            id: job.id,
            task: job.task,
            status: job.status,
            priority: job.priority,
            dry_run: job.dry_run,
            attempts: job.attempts,
            held_since: job.held_since.map(Ts::to_rfc3339),
            created_at: job.created_at.to_rfc3339(),
            updated_at: job.updated_at.to_rfc3339(),
            next_attempt_at: job.next_attempt_at.map(Ts::to_rfc3339),
            vod_job_id: job.vod_job_id,
            request_id: job.request_id,
            error,
            next_check_at: job.check_at.map(Ts::to_rfc3339),
            resubmission_of: job.resubmission_of,
            items: job
                .items
                .into_iter()
                .map(|i| JobItemView {
                    media_id: i.media_id.to_string(),
                    outcome: i.outcome,
                    first_seen: i.first_seen.to_rfc3339(),
                    events: i.events,
                    error: i.error_code.map(|code| JobError {
                        code,
                        message: i.error_message.unwrap_or_default(),
                    }),
                })
                .collect(),
        }
    }
}

impl From<PendingItem> for PendingView {
    fn from(p: PendingItem) -> PendingView {
        PendingView {
            task: p.task,
            options: options_json(&p.options),
            source: p.source,
            first_seen: p.first_seen.to_rfc3339(),
            last_seen: p.last_seen.to_rfc3339(),
            due_at: p.due_at.to_rfc3339(),
            events: p.events,
            priority: p.priority,
        }
    }
}

fn invalid_query(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// The answer about a job ID that names no job.
fn unknown_job(id: &str) -> ApiError {
    ApiError::not_found("unknown_job", format!("no job {id}"))
}

/// List jobs, newest first.
#[utoipa::path(
    params(JobsQuery),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
#[get("/jobs")]
pub async fn list_jobs(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid_query(format!(
            "limit {limit} is outside 1 to {MAX_PAGE}"
        )));
    }
    let filter = JobFilter {
        status: q
            .status
            .map(|s| {
                JobStatus::parse(&s).ok_or_else(|| invalid_query(format!("unknown status {s:?}")))
            })
            .transpose()?,
        media_id: q.media_id,
        task: q
            .task
            .map(|t| {
                t.parse::<TaskType>()
                    .map_err(|e| invalid_query(e.to_string()))
            })
            .transpose()?,
        since: q
            .since
            .map(|s| {
                Ts::parse(&s).ok_or_else(|| {
                    invalid_query(format!("since {s:?} is not RFC 3339 or epoch ms"))
                })
            })
            .transpose()?,
        before: q
            .cursor
            .map(|c| match uuid::Uuid::parse_str(&c) {
                Ok(_) => Ok(c),
                Err(_) => Err(invalid_query(format!(
                    "cursor {c:?} is not a next_cursor of this API"
                ))),
            })
            .transpose()?,
        limit: limit + 1,
    };
    let mut jobs = state.store.list_jobs(&filter).await?;
    let next_cursor = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// One job with the outcome of each of its media IDs.
#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/jobs/{id}")]
pub async fn get_job(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    match state.store.get_job(&id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(JobView::from(job))),
        None => Err(unknown_job(&id)),
    }
}

/// Send a failed job again, with a fresh attempt budget. Needs the admin token.
#[utoipa::path(
    params(("id" = String, Path)),
    responses(
        (status = 202, body = JobView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the job has not failed", body = ErrorBody)
    )
)]
#[post("/jobs/{id}/retry")]
pub async fn retry_job(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_admin(&req)?;
    match state.store.retry_job(&id, Ts::now()).await? {
        RetryOutcome::Scheduled => {
            tracing::info!(job_id = %id, "job scheduled for retry by an operator");
            let job = state
                .store
                .get_job(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("unknown_job", "job vanished"))?;
            Ok(HttpResponse::Accepted().json(JobView::from(job)))
        }
        RetryOutcome::NotFound => Err(unknown_job(&id)),
        RetryOutcome::NotFailed(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_not_failed",
            format!(
                "job {id} is {}; only failed jobs can be retried",
                status.as_str()
            ),
        )),
    }
}

/// Queue again the IDs of a job whose CDN task submission VOD reported failed (`submit_failed`),
/// with the job's task and options; they are debounced and batched like any new event. Needs the
/// admin token.
#[utoipa::path(
    params(("id" = String, Path)),
    responses(
        (status = 202, description = "the IDs are queued again", body = Receipt),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "no ID of the job failed its submission", body = ErrorBody)
    )
)]
#[post("/jobs/{id}/resubmit")]
pub async fn resubmit_job(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_admin(&req)?;
    let Some(job) = state.store.get_job(&id).await? else {
        return Err(unknown_job(&id));
    };
    let items: Vec<NewItem> = job
        .items
        .iter()
        .filter(|item| item.outcome == ItemOutcome::SubmitFailed)
        .map(|item| NewItem {
            media_id: item.media_id.clone(),
            task: job.task,
            options: job.options.clone(),
            fingerprint: job.fingerprint.clone(),
            debounce: state.debounce.for_priority(job.priority),
            priority: job.priority,
        })
        .collect();
    if items.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_resubmit",
            format!("no ID of job {id} failed its submission"),
        ));
    }
    tracing::info!(job_id = %id, ids = items.len(), "failed submissions queued again by an operator");
    let receipt = ingest::store(
        &state,
        ingest::ADMIN_SOURCE,
        &state.admin_stored,
        None,
        items,
        Vec::new(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(receipt))
}

/// Pending state and recent jobs of one media ID.
#[utoipa::path(
    params(("id" = String, Path)),
    responses((status = 200, body = MediaView), (status = 401, body = ErrorBody))
)]
#[get("/media/{id}")]
pub async fn media(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let id = id.into_inner();
    let pending = state.store.pending_for_media(&id).await?;
    let filter = JobFilter {
        media_id: Some(id.clone()),
        limit: 20,
        ..JobFilter::default()
    };
    let jobs = state.store.list_jobs(&filter).await?;
    Ok(HttpResponse::Ok().json(MediaView {
        media_id: id,
        pending: pending.into_iter().map(PendingView::from).collect(),
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

/// Queue depth and timing.
#[utoipa::path(responses((status = 200, body = QueueView), (status = 401, body = ErrorBody)))]
#[get("/queue")]
pub async fn queue(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let now = Ts::now();
    let stats = state.store.queue_stats(now).await?;
    Ok(HttpResponse::Ok().json(QueueView {
        pending: stats.pending,
        urgent: stats.urgent,
        due: stats.due,
        oldest_age_seconds: stats.oldest_first_seen.map(|t| now.since(t).as_secs_f64()),
        next_due_at: stats.next_due_at.map(Ts::to_rfc3339),
        in_flight_batches: stats.in_flight_jobs,
        retrying_batches: stats.retrying_jobs,
        held: stats
            .held
            .into_iter()
            .map(|h| HeldView {
                task: h.task,
                jobs: h.jobs,
                reason: h.code,
                since: h.since.to_rfc3339(),
                until: h.until.map(Ts::to_rfc3339),
            })
            .collect(),
        quota: quota_left(&state, now),
    }))
}

/// The last poll of the daily quota, as the active flusher sees it.
fn quota_left(state: &AppState, now: Ts) -> Vec<QuotaLeftView> {
    let policy = state.hold;
    [TaskType::Refresh, TaskType::Preload]
        .into_iter()
        .filter_map(|task| {
            let (polled, sent) = state.flusher.quota.last(task);
            let polled = polled.filter(|p| p.is_current(policy.reset, now))?;
            let allowance = allowance(Some(polled), sent, &policy, false, now);
            Some(QuotaLeftView {
                task,
                daily: polled.total,
                remaining: polled.remaining.saturating_sub(sent),
                reserve: policy.reserve.of(polled.total),
                polled_at: polled.at.to_rfc3339(),
                normal_held_until: (allowance == Some(0))
                    .then(|| policy.reset.next_after(now).to_rfc3339()),
            })
        })
        .collect()
}
