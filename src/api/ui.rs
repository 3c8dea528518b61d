//! The status page at `/ui/`: one page an operator glances at when an editor asks why a video
//! is still stale.
//!
//! The binary serves everything itself, with no asset from another host: the page is rendered
//! from `templates/status.html` (askama, checked at compile time; the queue figures are in it
//! when reads are open), and `static/ui/app.js` refreshes it every five seconds from
//! `GET /ui/status.json` and the JSON API, pausing while the tab is hidden. The script is a file,
//! never inline, and the page is sent with a Content-Security-Policy that allows scripts from
//! this origin only. With an admin token configured the script asks for it once and keeps it in
//! the tab's session storage, sending it as a bearer token: nothing is authorised by a cookie,
//! so a cross-site form cannot act on the operator's behalf. Every string from outside (media
//! IDs, VOD's error messages, source names) is inserted as text, never as markup.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use serde::Serialize;

use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::domain::Ts;

/// Scripts, styles and requests from this origin only; no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("../../static/ui/app.js");
const STYLE: &str = include_str!("../../static/ui/app.css");

/// What the status page draws; `GET /ui/status.json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub generated_at: String,
    pub queue: QueueFigures,
    pub drain: DrainView,
    /// VOD's daily quota by kind (`refresh`, `preload`, `directory`), once the quota poll has
    /// read it.
    pub quota: Vec<QuotaView>,
    pub flusher: FlusherView,
    /// The time from an item's first event to its purge complete at the edge, for the items
    /// completed in the last hour.
    pub time_to_complete: TimeToComplete,
    /// Each account's lane, `default` first.
    pub accounts: Vec<AccountView>,
}

/// One account's lane on the status page: its queue, its rate, its quota and its holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub name: String,
    /// The VOD endpoint its calls go to.
    pub endpoint: String,
    pub pending: u64,
    /// Due by their stored due time (a lower bound of the real one).
    pub due: u64,
    /// Its `max_requests_per_second`.
    pub rate_configured: u32,
    /// Its limiter's target after its last call (absent before one).
    pub rate_current: Option<u32>,
    pub throttled_last_minute: usize,
    /// Its daily quotas by the last poll.
    pub quota: Vec<QuotaView>,
    /// The quotas held (`Refresh`, `Preload`, `Directory`).
    pub held: Vec<String>,
    /// VOD refused its credential on the last call.
    pub credential_refused: bool,
    pub dry_run: bool,
}

/// Percentiles of the time to purge, in seconds (0 when no item completed).
#[derive(Debug, Serialize, utoipa::ToSchema, PartialEq)]
pub struct TimeToComplete {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl TimeToComplete {
    /// Nearest-rank percentiles of `times`.
    pub fn of(mut times: Vec<f64>) -> TimeToComplete {
        times.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if times.is_empty() {
                return 0.0;
            }
            let at = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len());
            times[at - 1]
        };
        TimeToComplete {
            count: times.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueFigures {
    pub pending: u64,
    pub due: u64,
    pub in_flight: u64,
    pub retrying: u64,
    /// Age of the oldest pending item.
    pub oldest_age_seconds: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DrainView {
    /// The last 60 minutes, oldest first: jobs sent and their media IDs, by the minute each job
    /// was first sent (dry runs left out).
    pub minutes: Vec<MinuteView>,
    /// `vod.max_requests_per_second`.
    pub rate_configured: u32,
    /// The limiter's target after this replica's last call (lower while VOD throttles); absent
    /// before it made one.
    pub rate_current: Option<u32>,
    /// Throttled answers to this replica's calls in the last minute.
    pub throttled_last_minute: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MinuteView {
    pub minute: String,
    pub jobs: u64,
    pub ids: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    pub kind: String,
    pub daily: i64,
    pub remaining: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlusherView {
    /// This replica's host name.
    pub replica: String,
    /// Whether this replica is the store's leader and runs the flusher.
    pub active_here: bool,
    /// The host name of the replica that flushes, when one does (on PostgreSQL, read from the
    /// session that holds the flusher lock).
    pub replica_flushing: Option<String>,
    /// Several replicas share the store (PostgreSQL); one of them flushes.
    pub shared_store: bool,
    pub last_step: Option<String>,
}

async fn status(state: &AppState) -> Result<StatusView, ApiError> {
    let now = Ts::now();
    let stats = state.store.queue_stats(now).await?;
    let hour_ago = Ts(now.0 - now.0.rem_euclid(60_000)) - Duration::from_secs(59 * 60);
    let history = state.store.drain_history(hour_ago).await?;
    let minutes = (0..60)
        .map(|n| {
            let minute = hour_ago + Duration::from_secs(60 * n);
            let found = history.iter().find(|m| m.minute == minute);
            MinuteView {
                minute: minute.to_rfc3339(),
                jobs: found.map_or(0, |m| m.jobs),
                ids: found.map_or(0, |m| m.ids),
            }
        })
        .collect();
    let metrics = &state.metrics;
    let quota_of = |account: &str| -> Vec<QuotaView> {
        ["refresh", "preload", "directory"]
            .into_iter()
            .filter_map(|kind| {
                let daily = metrics
                    .vod_quota_daily
                    .with_label_values(&[account, kind])
                    .get();
                (daily > 0).then(|| QuotaView {
                    kind: kind.to_owned(),
                    daily,
                    remaining: metrics
                        .vod_quota_remaining
                        .with_label_values(&[account, kind])
                        .get(),
                })
            })
            .collect()
    };
    let quota = quota_of(crate::domain::AccountName::DEFAULT);
    let queues = &stats.accounts;
    let accounts = state
        .lanes
        .iter()
        .map(|lane| {
            let name = lane.account.name.as_str();
            let queue = queues.iter().find(|q| q.account.as_str() == name);
            AccountView {
                name: name.to_owned(),
                endpoint: lane.account.vod_base_url(),
                pending: queue.map_or(0, |q| q.pending),
                due: queue.map_or(0, |q| q.due),
                rate_configured: lane.account.max_requests_per_second,
                rate_current: lane.status.current_rate(),
                throttled_last_minute: lane.status.throttled_in_last_minute(now),
                quota: quota_of(name),
                held: stats
                    .held
                    .iter()
                    .filter(|h| h.account.as_str() == name)
                    .map(|h| h.quota.as_str().to_owned())
                    .collect(),
                credential_refused: lane.status.credential_error().is_some(),
                dry_run: lane.account.dry_run,
            }
        })
        .collect();
    Ok(StatusView {
        generated_at: now.to_rfc3339(),
        queue: QueueFigures {
            pending: stats.pending,
            due: stats.due,
            in_flight: stats.in_flight_jobs,
            retrying: stats.retrying_jobs,
            oldest_age_seconds: stats.oldest_first_seen.map(|t| now.since(t).as_secs_f64()),
        },
        drain: DrainView {
            minutes,
            rate_configured: state.settings.vod.max_requests_per_second,
            rate_current: state.flusher().current_rate(),
            throttled_last_minute: state.flusher().throttled_in_last_minute(now),
        },
        quota,
        flusher: FlusherView {
            replica: crate::telemetry::host_name().to_owned(),
            active_here: state.flusher().is_active(),
            replica_flushing: state.store.flusher_replica().await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "cannot tell which replica flushes");
                None
            }),
            shared_store: state.store.is_shared(),
            last_step: state.flusher().last_step().map(Ts::to_rfc3339),
        },
        time_to_complete: TimeToComplete::of(
            state
                .store
                .completion_times(now - Duration::from_secs(3600))
                .await?,
        ),
        accounts,
    })
}

/// The figures of the status page (needs the admin token when one is configured).
#[utoipa::path(responses(
    (status = 200, body = StatusView),
    (status = 401, body = ErrorBody),
    (status = 503, body = ErrorBody),
))]
#[get("/ui/status.json")]
pub async fn status_json(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state.authorize_read(&req)?;
    let view = status(&state).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view))
}

#[derive(Template)]
#[template(path = "status.html")]
struct Page {
    replica: String,
    rate_configured: u32,
    token_configured: bool,
    /// The figures, when reads are open (no admin token); the script fills them in otherwise.
    initial: Option<StatusView>,
}

fn secured(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    response
}

/// The status page (HTML; its script reads the JSON API).
#[utoipa::path(security(()), responses((status = 200, description = "the status page", content_type = "text/html")))]
#[get("/ui/")]
pub async fn page(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let token_configured = !state.settings.server.admin_token.is_empty();
    // Without an admin token reads are open, and the figures go into the page itself.
    let initial = if token_configured {
        None
    } else {
        status(&state).await.ok()
    };
    let page = Page {
        replica: crate::telemetry::host_name().to_owned(),
        rate_configured: state.settings.vod.max_requests_per_second,
        token_configured,
        initial,
    };
    let html = page.render().map_err(|e| {
        tracing::error!(error = %e, "cannot render the status page");
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot render the status page",
        )
    })?;
    Ok(secured(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// `/ui` without the slash.
#[utoipa::path(security(()), responses((status = 308, description = "to /ui/")))]
#[get("/ui")]
pub async fn page_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, HeaderValue::from_static("/ui/")))
        .finish()
}

/// The status page's script.
#[utoipa::path(security(()), responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
#[get("/ui/app.js")]
pub async fn script() -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

/// The status page's stylesheet.
#[utoipa::path(security(()), responses((status = 200, description = "CSS", content_type = "text/css")))]
#[get("/ui/app.css")]
pub async fn style() -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(
            TimeToComplete::of(vec![]),
            TimeToComplete {
                count: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0
            }
        );
        let times: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            TimeToComplete::of(times),
            TimeToComplete {
                count: 100,
                p50: 50.0,
                p90: 90.0,
                p99: 99.0
            }
        );
        assert_eq!(
            TimeToComplete::of(vec![7.0]),
            TimeToComplete {
                count: 1,
                p50: 7.0,
                p90: 7.0,
                p99: 7.0
            }
        );
    }
}
