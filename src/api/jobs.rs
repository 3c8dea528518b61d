//! `/jobs`, `/jobs/{id}`, and the operator's `POST /jobs/{id}/retry` and
//! `POST /jobs/{id}/resubmit`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::ingest;
use crate::api::views::*;
use crate::domain::{TargetKind, TaskType, Ts};
use crate::store::{ItemOutcome, JobFilter, JobStatus, NewItem, Receipt, RetryOutcome};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

fn invalid_query(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// The answer about a job ID that names no job.
fn unknown_job(id: &str) -> ApiError {
    ApiError::not_found("unknown_job", format!("no job {id}"))
}

/// A target as the store holds it: a URL normalised as ingest does (on `vod.cdn_domains`), a
/// media ID as given.
fn stored_target(state: &AppState, target: &str) -> Result<String, ApiError> {
    if !is_url(target.trim()) {
        return Ok(target.to_owned());
    }
    url_target(state, target).map(|(_, url)| url)
}

/// A file URL, or a directory URL (ending in `/`), normalised as ingest stores it.
pub(crate) fn url_target(state: &AppState, raw: &str) -> Result<(TargetKind, String), ApiError> {
    let trimmed = raw.trim();
    let kind = if trimmed.ends_with('/') {
        TargetKind::Directory
    } else {
        TargetKind::File
    };
    // Any account's domains: a URL is normalised as the account that could store it did.
    let mut first_error = None;
    for lane in &state.lanes {
        match lane.account.cdn_domains.normalise(trimmed, kind) {
            Ok(url) => return Ok((kind, url)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let e = first_error.unwrap_or(crate::domain::UrlError::Disabled);
    Err(invalid_query(format!("target: {e}")))
}

/// Whether a target names a URL (`http://` or `https://`, in any case) rather than a media ID.
pub(crate) fn is_url(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
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
    let account = match q.account {
        None => None,
        Some(name) => Some(
            state
                .lane(&name)
                .map(|lane| lane.account.name.clone())
                .ok_or_else(|| {
                    let shown: String = name.chars().take(40).collect();
                    invalid_query(format!("unknown account {shown:?}"))
                })?,
        ),
    };
    let filter = JobFilter {
        account,
        status: q
            .status
            .map(|s| {
                JobStatus::parse(&s).ok_or_else(|| invalid_query(format!("unknown status {s:?}")))
            })
            .transpose()?,
        media_id: match (q.media_id, q.target) {
            (Some(_), Some(_)) => {
                return Err(invalid_query(
                    "give media_id or target, not both".to_owned(),
                ));
            }
            (None, Some(target)) => Some(stored_target(&state, &target)?),
            (media_id, None) => media_id,
        },
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
            account: job.account.clone(),
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
    let receipt = ingest::commit(
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
