//! `/media/{id}`, `/targets?url=` and `/queue`: what is pending, for one media ID, for one URL
//! and for the whole queue.

use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::views::*;
use crate::domain::{Quota, Ts};
use crate::flusher::hold::allowance;
use crate::store::JobFilter;

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
    let (pending, jobs) = pending_and_jobs(&state, &id).await?;
    Ok(HttpResponse::Ok().json(MediaView {
        media_id: id,
        pending,
        jobs,
    }))
}

/// What is pending for a target (a media ID or a stored URL), and its 20 most recent jobs.
async fn pending_and_jobs(
    state: &AppState,
    name: &str,
) -> Result<(Vec<PendingView>, Vec<JobView>), ApiError> {
    let pending = state.store.pending_for_media(name).await?;
    let filter = JobFilter {
        media_id: Some(name.to_owned()),
        limit: 20,
        ..JobFilter::default()
    };
    let jobs = state.store.list_jobs(&filter).await?;
    Ok((
        pending.into_iter().map(PendingView::from).collect(),
        jobs.into_iter().map(JobView::from).collect(),
    ))
}

/// Pending state and recent jobs of one file or directory URL (normalised as ingest does, so any
/// spelling of a stored URL finds it).
#[utoipa::path(
    params(("url" = String, Query, description = "a file URL, or a directory URL ending in /")),
    responses((status = 200, body = TargetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
#[get("/targets")]
pub async fn target(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<TargetQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let raw = query.into_inner().url;
    if !crate::api::jobs::is_url(raw.trim()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "url must be an http(s) URL; a media ID is looked up with /media/{id}".to_owned(),
        ));
    }
    let (kind, url) = crate::api::jobs::url_target(&state, &raw)?;
    let (pending, jobs) = pending_and_jobs(&state, &url).await?;
    Ok(HttpResponse::Ok().json(TargetView {
        kind,
        target: url,
        pending,
        jobs,
    }))
}

/// The query of `/targets`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct TargetQuery {
    pub url: String,
}

/// Queue depth and timing.
#[utoipa::path(responses((status = 200, body = QueueView), (status = 401, body = ErrorBody)))]
#[get("/queue")]
pub async fn queue(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let now = Ts::now();
    let stats = state.store.queue_stats(now).await?;
    let queues = &stats.accounts;
    let held_view = |h: &crate::store::HeldTask| HeldView {
        account: h.account.to_string(),
        task: h.quota,
        jobs: h.jobs,
        reason: h.code.clone(),
        since: h.since.to_rfc3339(),
        until: h.until.map(Ts::to_rfc3339),
    };
    let accounts = state
        .lanes
        .iter()
        .map(|lane| {
            let name = lane.account.name.as_str();
            let queue = queues.iter().find(|q| q.account.as_str() == name);
            AccountQueueView {
                account: name.to_owned(),
                pending: queue.map_or(0, |q| q.pending),
                due: queue.map_or(0, |q| q.due),
                held: stats
                    .held
                    .iter()
                    .filter(|h| h.account.as_str() == name)
                    .map(held_view)
                    .collect(),
                quota: quota_left(lane, now),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(QueueView {
        pending: stats.pending,
        urgent: stats.urgent,
        due: stats.due,
        oldest_age_seconds: stats.oldest_first_seen.map(|t| now.since(t).as_secs_f64()),
        next_due_at: stats.next_due_at.map(Ts::to_rfc3339),
        in_flight_batches: stats.in_flight_jobs,
        retrying_batches: stats.retrying_jobs,
        held: stats.held.iter().map(held_view).collect(),
        quota: quota_left(&state.lanes[0], now),
        accounts,
    }))
}

/// The last poll of an account's daily quota, as the active flusher sees it.
fn quota_left(lane: &crate::api::LaneState, now: Ts) -> Vec<QuotaLeftView> {
    let policy = lane.hold;
    Quota::ALL
        .into_iter()
        .filter_map(|task| {
            let (polled, sent) = lane.status.quota.last(task);
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
