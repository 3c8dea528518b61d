//! The HTTP surface: ingest, reads, admin actions and health.
//!
//! Handlers parse at the edge, call the store, and map every failure through [`error::ApiError`].
//! They never call VOD: that is the flusher's job.

mod body;
pub mod error;
pub mod guard;
pub mod health;
pub mod ingest;
pub mod jobs;
pub mod openapi;
pub mod queue;
pub mod ui;
pub mod views;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::domain::MediaIdRules;
use crate::flusher::FlusherStatus;
use crate::flusher::hold::HoldPolicy;
use crate::metrics::{Metrics, StoredCounters};
use crate::queue::Debounce;
use crate::store::Store;
use crate::webhook::Source;
use error::ApiError;

/// Everything a handler needs, shared by all workers.
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub sources: HashMap<String, SourceState>,
    pub id_rules: MediaIdRules,
    pub debounce: Debounce,
    /// Set when a shutdown begins; `/readyz` then fails so that no new traffic arrives.
    pub draining: Arc<AtomicBool>,
    /// Every account's lane, `default` first.
    pub lanes: Vec<LaneState>,
    pub metrics: Arc<Metrics>,
    /// The counters of `POST /purge` deliveries.
    pub admin_stored: StoredCounters,
    /// Failed requests and unauthenticated reads per client.
    pub peers: guard::PeerGuard,
    /// Whom a request comes from (`server.trusted_proxies`, `server.forwarded_header`).
    pub proxies: guard::Proxies,
}

/// One account's lane as the handlers see it.
pub struct LaneState {
    pub account: crate::config::AccountSettings,
    pub status: Arc<FlusherStatus>,
    /// The account's quota settings.
    pub hold: HoldPolicy,
    /// What its calls are signed with; `None` in dry-run mode.
    pub credentials: Option<crate::credentials::CredentialSource>,
}

/// A configured source with its ingest limiter and counters.
pub struct SourceState {
    pub source: Source,
    /// The source's `rate_limit`, counting authenticated deliveries only.
    pub limiter: Option<DefaultDirectRateLimiter>,
    pub stored: StoredCounters,
    /// Permits for bodies read before their sender is authenticated
    /// (`server.unauthenticated_reads`).
    pub unauthenticated_reads: tokio::sync::Semaphore,
}

impl AppState {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        draining: Arc<AtomicBool>,
        lanes: Vec<LaneState>,
        metrics: Arc<Metrics>,
    ) -> Result<AppState, String> {
        if lanes.is_empty() {
            return Err("no account lane: the default account is missing".to_owned());
        }
        let mut sources = HashMap::new();
        for cfg in &settings.sources {
            let source = Source::new(cfg)?;
            if source.is_unauthenticated() {
                tracing::warn!(source = %cfg.name, "source accepts unauthenticated deliveries (auth = \"none\")");
            }
            let limiter = source.rate_limit().map(|rps| {
                let rps = NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN);
                let burst = source.burst().and_then(NonZeroU32::new).unwrap_or(rps);
                RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
            });
            let stored = metrics.stored_counters(&cfg.name);
            let reads = settings.server.unauthenticated_reads;
            sources.insert(
                cfg.name.clone(),
                SourceState {
                    source,
                    limiter,
                    stored,
                    unauthenticated_reads: tokio::sync::Semaphore::new(reads),
                },
            );
        }
        let id_rules = settings.queue.media_id_pattern.clone();
        let debounce = Debounce {
            quiet: settings.queue.quiet,
            max_wait: settings.queue.max_wait,
        };
        let server = &settings.server;
        let peers = guard::PeerGuard::new(
            server.peer_failures_per_second,
            server.peer_failure_burst,
            server.unauthenticated_reads,
        );
        let proxies = guard::Proxies::new(
            server.trusted_proxies.nets().to_vec(),
            server.forwarded_header,
        );
        Ok(AppState {
            peers,
            proxies,
            store,
            settings,
            sources,
            id_rules,
            debounce,
            draining,
            lanes,
            admin_stored: metrics.stored_counters(ingest::ADMIN_SOURCE),
            metrics,
        })
    }

    /// The `default` account's lane status (leadership is the same on every lane; `new`
    /// refuses an application without lanes).
    pub fn flusher(&self) -> &FlusherStatus {
        &self.lanes[0].status
    }

    /// The lane of the account named `name`.
    pub fn lane(&self, name: &str) -> Option<&LaneState> {
        self.lanes.iter().find(|l| l.account.name.as_str() == name)
    }

    fn admin_token(&self) -> Option<&str> {
        Some(self.settings.server.admin_token.expose()).filter(|t| !t.is_empty())
    }

    /// Reads are open when no admin token is configured.
    pub fn authorize_read(&self, req: &HttpRequest) -> Result<(), ApiError> {
        match self.admin_token() {
            None => Ok(()),
            Some(token) => check_bearer(req, token),
        }
    }

    /// Admin actions are refused when no admin token is configured.
    pub fn authorize_admin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        match self.admin_token() {
            None => Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "admin_disabled",
                "admin actions are disabled: set server.admin_token to enable them",
            )),
            Some(token) => check_bearer(req, token),
        }
    }
}

fn check_bearer(req: &HttpRequest, token: &str) -> Result<(), ApiError> {
    let unauthorized = |code, message: &str| {
        ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, code, message)
    };
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(
                "missing_token",
                "this endpoint needs the admin bearer token",
            )
        })?;
    let presented = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("missing_token", "expected Authorization: Bearer <token>"))?;
    if bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(unauthorized("invalid_token", "invalid admin token"))
    }
}

/// Every route `configure` registers, as (method, OpenAPI path); the tests check that each one
/// answers and is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/purge"),
    ("post", "/webhooks/{source}"),
    ("get", "/jobs"),
    ("get", "/jobs/{id}"),
    ("post", "/jobs/{id}/retry"),
    ("post", "/jobs/{id}/resubmit"),
    ("get", "/media/{id}"),
    ("get", "/targets"),
    ("get", "/queue"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/ui"),
    ("get", "/ui/"),
    ("get", "/ui/app.js"),
    ("get", "/ui/app.css"),
    ("get", "/ui/status.json"),
];

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Malformed query strings and paths get the usual JSON error, not actix's plain text.
    cfg.app_data(
        web::QueryConfig::default().error_handler(|err, _req| {
            ApiError::bad_request("invalid_query", err.to_string()).into()
        }),
    )
    .app_data(
        web::PathConfig::default().error_handler(|err, _req| {
            ApiError::bad_request("invalid_path", err.to_string()).into()
        }),
    );
    cfg.service(ingest::purge)
        .service(ingest::receive_webhook)
        .service(jobs::list_jobs)
        .service(jobs::get_job)
        .service(jobs::retry_job)
        .service(jobs::resubmit_job)
        .service(queue::media)
        .service(queue::target)
        .service(queue::queue)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(openapi::openapi_json)
        .service(ui::page_redirect)
        .service(ui::page)
        .service(ui::script)
        .service(ui::style)
        .service(ui::status_json)
        .default_service(web::to(no_route));
}

/// The header a caller's request ID comes in and goes back out in.
const REQUEST_ID: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-request-id");

/// Returns a caller's `X-Request-Id` in the answer, and logs every answer with a server error
/// together with its method, path and that ID.
///
/// There is no span per request. Even a two-field span (method and path) cost the ingest path
/// 1.5 µs of CPU per request, an eighth of its HTTP work and 8% of its throughput, for context
/// that only the rare warning needs; a fuller access span (a dozen fields and a random UUID)
/// had cost almost a fifth. Handlers put what identifies a request into their own warnings
/// instead: the ingest refusals name the source and the caller's request ID.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = caller_request_id(req.headers()).cloned();
    let mut response = next.call(req).await?;
    if response.status().is_server_error() {
        let request = response.request();
        tracing::warn!(
            method = %request.method(),
            path = request.path(),
            status = response.status().as_u16(),
            request_id = id.as_ref().and_then(|v| v.to_str().ok()),
            "request failed"
        );
    }
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    Ok(response)
}

/// The caller's `X-Request-Id` (most ingress controllers set one), when it is 1 to 128
/// characters of `A-Z a-z 0-9 - _ . :`.
pub(crate) fn caller_request_id(
    headers: &actix_web::http::header::HeaderMap,
) -> Option<&actix_web::http::header::HeaderValue> {
    headers.get(&REQUEST_ID).filter(|v| {
        let value = v.as_bytes();
        (1..=128).contains(&value.len())
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    })
}

/// Whether a request path matches an OpenAPI path of [`ROUTES`] (`{name}` is one segment).
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut segments = path.split('/');
    for expected in pattern.split('/') {
        match segments.next() {
            Some(got) if expected.starts_with('{') => {
                if got.is_empty() {
                    return false;
                }
            }
            Some(got) if got == expected => {}
            _ => return false,
        }
    }
    segments.next().is_none()
}

/// Requests no route takes: 405 with `Allow` for a known path, 404 otherwise; JSON either way.
async fn no_route(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    use actix_web::http::{StatusCode, header};

    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern)| path_matches(pattern, req.path()))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    if allowed.is_empty() {
        return ApiError::not_found("not_found", format!("no endpoint at {}", req.path()))
            .error_response();
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; allowed: {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
