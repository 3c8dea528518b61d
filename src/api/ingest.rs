//! `POST /webhooks/{source}` and `POST /purge`: verify, parse, validate, store, answer 202.
//!
//! The order matters. Schemes whose credential is all in the headers (bearer, vod-callback,
//! none, and the admin token of `/purge`) authenticate first, before the body is read and
//! before anything else about the request is looked at; the others read the body first, within
//! a per-source cap on such unauthenticated reads and a share of it per client address
//! ([`guard`]). Every body must arrive within `server.body_timeout`, and its buffer grows with
//! the bytes received, not with the declared length. Authentication runs over the raw bytes
//! before any parsing. A request that fails before it authenticates is counted against its
//! client address, and answered `429` once the address is over its budget; a request that
//! authenticates is never refused by that budget nor counted in it, whatever it carries. The
//! source's rate limit counts authenticated deliveries only; nothing is stored unless the whole
//! request is usable, and `202` is sent only after the commit.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Serialize;

use crate::api::body::{checked_delivery_id, header, read_body, require_json};
use crate::api::error::{ApiError, ErrorBody, retry_after_secs};
use crate::api::guard::{client, reader, report_unlisted_proxy, stranger_failed};
use crate::api::{AppState, caller_request_id, guard};
use crate::domain::{
    AccountName, MediaId, Priority, PurgeOptions, RawOptions, RequestedTask, TargetKind, TaskType,
    Ts,
};
use crate::metrics::StoredCounters;
use crate::queue::Debounce;
use crate::store::{Ingest, NewItem, Receipt, RejectedId};
use crate::webhook::{Headers, PurgeRequest, Request, parse_native};

/// The source name under which `POST /purge` requests are recorded.
pub const ADMIN_SOURCE: &str = "admin";

/// Answer to a delivery whose event does not purge (acknowledged so the sender does not retry).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ignored {
    pub ignored_event: String,
    /// Why, where the format says (`vod-events`: a failed transcode, an unmapped event type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A `200` answer of `POST /webhooks/{source}`: an event that does not purge, or, for a
/// `vod-callback` or `vod-events` source (VOD counts only `200` as delivered), a stored one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WebhookOk {
    Ignored(Ignored),
    Stored(Receipt),
}

/// One native purge request: the body of `POST /purge` (or an element of an array of them).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeRequest {
    /// Media IDs (at most 1000 targets in a request, with the URLs and directories). IDs that
    /// do not match `queue.media_id_pattern` are listed in `rejected`; a request without any
    /// usable target gets 422. At least one of `media_ids`, `urls`, `directories`.
    #[schema(max_items = 1000)]
    pub media_ids: Option<Vec<String>>,
    /// File URLs on one of `vod.cdn_domains` (a cover, a snapshot, a subtitle file), purged
    /// with `RefreshVodObjectCaches` or prefetched with `PreloadVodObjectCaches`. A URL on
    /// another host refuses the whole request (`422 url_not_allowed`), as does any URL when
    /// `vod.cdn_domains` is empty (`422 url_purge_disabled`) or a malformed one (`invalid_url`).
    pub urls: Option<Vec<String>>,
    /// Directory URLs ending in `/`, purged with `ObjectType=Directory` (task `Refresh` only).
    pub directories: Option<Vec<String>>,
    /// `["cover"]`: also purge the cover and snapshot URLs of each media ID, which the flusher
    /// finds with `GetVideoInfo` (those on `vod.cdn_domains`).
    pub include: Option<Vec<String>>,
    /// `Refresh` when absent.
    pub task: Option<RequestedTask>,
    pub options: Option<RawOptions>,
}

/// The native payload: one request, or an array of them.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum NativeBody {
    One(Box<NativeRequest>),
    Many(Vec<NativeRequest>),
}

/// Enqueue media IDs directly (native payload). Needs the admin token.
#[utoipa::path(
    request_body(content = NativeBody, description = "native payload: {\"media_ids\": [...], \"urls\": [...], \"directories\": [...], \"task\": \"Refresh\", \"options\": {...}} or an array of them", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat within the retention window to get the first answer")),
    responses(
        (status = 202, description = "stored", body = Receipt),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "a request without the admin token from a client address over its budget of failed requests (too_many_failures); see Retry-After", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
#[post("/purge")]
pub async fn purge(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    report_unlisted_proxy(&state, &req);
    let result = purge_inner(&state, &req, payload).await;
    count_refusal(&state, ADMIN_SOURCE, &result);
    result
}

async fn purge_inner(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if let Err(error) = state.authorize_admin(req) {
        return Err(stranger_failed(state, &client(state, req), error));
    }
    require_json(req)?;
    let body = read_body(payload, req, &state.settings.server).await?;
    let requests = parse_native(&body)?;
    let delivery_id = checked_delivery_id(header(req, "idempotency-key"))?;
    enqueue(
        state,
        ADMIN_SOURCE,
        &state.admin_stored,
        delivery_id,
        requests,
        SenderDefaults {
            debounce: state.debounce,
            priority: Priority::Normal,
            account: &AccountName::default_account(),
            may_name_account: true,
        },
        StatusCode::ACCEPTED,
    )
    .await
}

/// Counts a refused delivery under its error code (successes are counted where they are known).
fn count_refusal(state: &AppState, source: &str, result: &Result<HttpResponse, ApiError>) {
    if let Err(error) = result {
        state
            .metrics
            .deliveries
            .with_label_values(&[source, error.code()])
            .inc();
    }
}

/// Receive a webhook from a configured source (authenticated with the source's own scheme).
#[utoipa::path(
    security(()),
    params(("source" = String, Path, description = "the source's name in the configuration")),
    request_body(content = Object, description = "the sender's payload, in the source's format", content_type = "application/json"),
    responses(
        (status = 202, description = "stored", body = Receipt),
        (status = 200, description = "the event does not purge and nothing was stored (Ignored, with the reason where the format gives one); or, for a vod-callback or vod-events source, stored (Receipt): VOD counts only 200 as delivered, and retries anything else twice within two seconds", body = WebhookOk),
        (status = 400, description = "malformed (a body that is not JSON)", body = ErrorBody),
        (status = 401, description = "missing, wrong or stale signature (vod-callback: X-VOD-SIGNATURE over another URL or key, X-VOD-TIMESTAMP outside the tolerance)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 408, description = "the body did not arrive within server.body_timeout; the connection is closed", body = ErrorBody),
        (status = 429, description = "over the source's ingest rate (authenticated deliveries), or a request that did not authenticate from a client address over its budget of failed requests (too_many_failures); see Retry-After", body = ErrorBody),
        (status = 503, description = "too many bodies of this source, or of this client address, are being read before authentication (busy); see Retry-After", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
#[post("/webhooks/{source}")]
pub async fn receive_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    report_unlisted_proxy(&state, &req);
    let result = webhook_inner(&state, &req, name.clone(), payload).await;
    // Unknown names are not labels: anyone can invent them.
    let label = if state.sources.contains_key(&name) {
        name.as_str()
    } else {
        "unknown"
    };
    count_refusal(&state, label, &result);
    result
}

async fn webhook_inner(
    state: &AppState,
    req: &HttpRequest,
    name: String,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(entry) = state.sources.get(&name) else {
        let error = ApiError::not_found(
            "unknown_source",
            format!("no source named {name:?} is configured"),
        );
        return Err(stranger_failed(state, &client(state, req), error));
    };
    let headers = Headers::new(
        req.headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    );
    let raw_path = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let source = &entry.source;
    // Looked up only for a warning, not on every delivery.
    let request_id = || caller_request_id(req.headers()).and_then(|v| v.to_str().ok());
    let verify = |body: &[u8]| {
        let request = Request {
            method: req.method().as_str(),
            path: raw_path,
            headers: &headers,
            body,
        };
        source.verify(&request, Ts::now())
    };
    // Logged while the client is within its budget only: past it, a flood would flood the log.
    let refused = |client: &guard::Key, error: crate::webhook::AuthError| {
        let (code, text) = (error.code(), error.to_string());
        let answer = stranger_failed(state, client, error.into());
        if !matches!(answer, ApiError::PeerLimited { .. }) {
            tracing::warn!(source = %name, code, request_id = request_id(), "webhook refused: {text}");
        }
        answer
    };
    let body = if source.authenticates_by_headers() {
        if let Err(error) = verify(&[]) {
            return Err(refused(&client(state, req), error));
        }
        require_json(req)?;
        read_body(payload, req, &state.settings.server).await?
    } else {
        // Busy is not a failure: nothing was tried.
        let busy = || ApiError::Busy {
            source_name: name.clone(),
        };
        let client = client(state, req);
        let _slot = state
            .peers
            .begin_read(&reader(state, req, &client))
            .ok_or_else(busy)?;
        let _permit = entry
            .unauthenticated_reads
            .try_acquire()
            .map_err(|_| busy())?;
        let body = match read_body(payload, req, &state.settings.server).await {
            Ok(body) => body,
            Err(error) => return Err(stranger_failed(state, &client, error)),
        };
        if let Err(error) = verify(&body) {
            return Err(refused(&client, error));
        }
        require_json(req)?;
        body
    };
    // The sender's own budget: authenticated deliveries only.
    if let Some(limiter) = &entry.limiter
        && let Err(not_until) = limiter.check()
    {
        use governor::clock::{Clock, DefaultClock};
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return Err(ApiError::RateLimited {
            source_name: name,
            retry_after_secs: retry_after_secs(wait),
        });
    }
    let request = Request {
        method: req.method().as_str(),
        path: raw_path,
        headers: &headers,
        body: &body,
    };
    let extracted = source.extract(&request).inspect_err(|error| {
        tracing::warn!(source = %name, code = error.code(), request_id = request_id(), "webhook payload refused: {error}");
    })?;
    let names_no_id = extracted
        .requests
        .iter()
        .all(|r| r.media_ids.is_empty() && r.urls.is_empty() && r.directories.is_empty());
    let ignored = match extracted.ignored_event {
        Some(event) if extracted.requests.is_empty() => Some(event),
        _ if names_no_id && !source.requires_media_ids() => {
            Some("(no media id in this delivery)".to_owned())
        }
        _ => None,
    };
    if let Some(event) = ignored {
        let reason = extracted.ignored_reason;
        tracing::debug!(source = %name, event = %event, reason = ?reason, "event does not purge");
        state
            .metrics
            .deliveries
            .with_label_values(&[name.as_str(), "ignored"])
            .inc();
        return Ok(HttpResponse::Ok().json(Ignored {
            ignored_event: event,
            reason,
        }));
    }
    let debounce = Debounce {
        quiet: source.quiet().unwrap_or(state.debounce.quiet),
        max_wait: source.max_wait().unwrap_or(state.debounce.max_wait),
    };
    let delivery_id = checked_delivery_id(source.delivery_id(&headers))?;
    let answer = if source.answers_stored_with_200() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    enqueue(
        state,
        &name,
        &entry.stored,
        delivery_id,
        extracted.requests,
        SenderDefaults {
            debounce,
            priority: source.priority(),
            account: source.account(),
            may_name_account: source.allows_account_override(),
        },
        answer,
    )
    .await
}

/// What a request takes from its sender where its body says nothing.
struct SenderDefaults<'a> {
    debounce: Debounce,
    priority: Priority,
    account: &'a AccountName,
    /// A body may name another account (`allow_account_override`, or the admin token).
    may_name_account: bool,
}

/// The lane of the account a request goes to: the one its body names, when its sender may name
/// one (`allow_account_override`, or the admin token), else its source's.
fn request_lane<'s>(
    state: &'s AppState,
    request: &PurgeRequest,
    source_account: &AccountName,
    may_name_account: bool,
) -> Result<&'s crate::api::LaneState, ApiError> {
    let refuse = |code: &'static str, why: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, why)
    };
    let name = match &request.account {
        None => source_account.as_str(),
        Some(named) if named.as_str() == source_account.as_str() => source_account.as_str(),
        Some(_) if !may_name_account => {
            return Err(refuse(
                "account_not_allowed",
                "this source does not let a body name its account (allow_account_override)"
                    .to_owned(),
            ));
        }
        Some(named) => named.as_str(),
    };
    // The configured accounts are not listed: a sender learns only that this one is unknown.
    state.lane(name).ok_or_else(|| {
        let shown: String = name.chars().take(40).collect();
        refuse(
            "unknown_account",
            format!("account {shown:?} is not configured"),
        )
    })
}

/// Validates every ID, then stores the whole request in one commit; answers `answer` (`202`,
/// or `200` for a sender that counts only `200`).
async fn enqueue(
    state: &AppState,
    source: &str,
    counters: &StoredCounters,
    delivery_id: Option<String>,
    requests: Vec<PurgeRequest>,
    defaults: SenderDefaults<'_>,
    answer: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let SenderDefaults {
        debounce,
        priority: source_priority,
        account: source_account,
        may_name_account,
    } = defaults;
    let total: usize = requests
        .iter()
        .map(|r| r.media_ids.len() + r.urls.len() + r.directories.len())
        .sum();
    let max = state.settings.queue.max_ids_per_request;
    if total > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_ids",
            format!("{total} targets in one request, at most {max} are accepted"),
        ));
    }
    let mut items = Vec::new();
    let mut rejected: Vec<RejectedId> = Vec::new();
    for (r, request) in requests.iter().enumerate() {
        let options = PurgeOptions::parse(&request.options).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_options",
                e.to_string(),
            )
        })?;
        let fingerprint = options.fingerprint();
        let lane = request_lane(state, request, source_account, may_name_account)?;
        let account = &lane.account.name;
        let priority = request.priority.unwrap_or(source_priority);
        let debounce = debounce.for_priority(priority);
        for raw in &request.media_ids {
            match state.id_rules.parse(raw) {
                Ok(media_id) => {
                    for &task in request.task.tasks() {
                        items.push(NewItem {
                            account: account.clone(),
                            media_id: media_id.clone(),
                            task,
                            options: options.clone(),
                            fingerprint: fingerprint.clone(),
                            debounce,
                            priority,
                        });
                    }
                    // Its cover and snapshots: looked up by the flusher, then purged by URL.
                    if request.include_cover {
                        if !request.task.tasks().contains(&TaskType::Refresh) {
                            return Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "unknown_task",
                                "include cover purges the cover and snapshots: it needs task Refresh or RefreshThenPreload".to_owned(),
                            ));
                        }
                        if lane.account.cdn_domains.is_empty() {
                            let e = crate::domain::UrlError::Disabled;
                            return Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                e.code(),
                                format!("include cover: {e}"),
                            ));
                        }
                        items.push(NewItem::plain(
                            account.clone(),
                            media_id.clone(),
                            TaskType::ResolveCovers,
                            debounce,
                            priority,
                        ));
                    }
                }
                Err(why) => {
                    if !rejected.iter().any(|r| &r.media_id == raw) {
                        rejected.push(RejectedId {
                            media_id: raw.clone(),
                            reason: why.to_string(),
                        });
                    }
                }
            }
        }
        // A URL the account cannot purge refuses the whole request: nothing is stored.
        let at = if requests.len() > 1 {
            format!("[{r}].")
        } else {
            String::new()
        };
        for (field, list, kind) in [
            ("urls", &request.urls, TargetKind::File),
            ("directories", &request.directories, TargetKind::Directory),
        ] {
            for (i, raw) in list.iter().enumerate() {
                let url = lane.account.cdn_domains.normalise(raw, kind).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        e.code(),
                        format!("{at}{field}[{i}]: {e}"),
                    )
                })?;
                for &task in request.task.tasks() {
                    // The parser refuses a directory prefetch; a source's default task cannot
                    // name one, since sources read no directories.
                    let Some(task) = TaskType::for_kind(task, kind) else {
                        continue;
                    };
                    items.push(NewItem::plain(
                        account.clone(),
                        MediaId::from_trusted(url.clone()),
                        task,
                        debounce,
                        priority,
                    ));
                }
            }
        }
    }
    if items.is_empty() {
        let detail = if rejected.is_empty() {
            "the request names no media id, URL or directory".to_owned()
        } else {
            let reasons: Vec<String> = rejected
                .iter()
                .map(|r| format!("{:?}: {}", r.media_id, r.reason))
                .collect();
            format!("no valid media id: {}", reasons.join("; "))
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_usable_ids",
            detail,
        ));
    }
    let receipt = commit(state, source, counters, delivery_id, items, rejected).await?;
    Ok(HttpResponse::build(answer).json(receipt))
}

/// Stores valid items in one commit (through the group committer) and returns the receipt.
pub(crate) async fn commit(
    state: &AppState,
    source: &str,
    counters: &StoredCounters,
    delivery_id: Option<String>,
    items: Vec<NewItem>,
    rejected: Vec<RejectedId>,
) -> Result<Receipt, ApiError> {
    let now = Ts::now();
    let ingest = Ingest {
        source: source.to_owned(),
        delivery_id,
        event_id: uuid::Uuid::now_v7().to_string(),
        items,
        rejected,
        now,
        delivery_expires_at: now + state.settings.store.idempotency_retention,
    };
    let receipt = state.store.ingest(ingest).await?;
    if receipt.redelivery {
        counters.redelivery.inc();
    } else {
        let m = &state.metrics;
        counters.accepted.inc();
        m.ids_accepted.inc_by(receipt.accepted.len() as u64);
        m.ids_merged.inc_by(receipt.merged.len() as u64);
        m.ids_rejected.inc_by(receipt.rejected.len() as u64);
    }
    tracing::debug!(
        source,
        event_id = %receipt.event_id,
        accepted = receipt.accepted.len(),
        merged = receipt.merged.len(),
        rejected = receipt.rejected.len(),
        redelivery = receipt.redelivery,
        "delivery stored"
    );
    Ok(receipt)
}
