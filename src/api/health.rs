//! Liveness and readiness.
//!
//! `/healthz` answers while the process can serve HTTP at all. `/readyz` says whether this pod
//! should get traffic: the store answers, its schema is current, and no shutdown has begun. VOD
//! being unreachable does not make the pod unready (ingest is still safe and durable), but a
//! credential error from VOD is reported in the details. Whether this replica is the one running
//! the flusher (`flusher_active`) is reported too, and does not affect readiness either.
//!
//! `/readyz` needs no token, so its error texts (the store's, VOD's) are shown only to a caller
//! who may read the API (the admin token, when one is configured); others see that there is an
//! error, not what it says.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::domain::Quota;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub store: String,
    pub draining: bool,
    /// Whether VOD's last answer was a credential error (does not affect readiness).
    pub vod_credentials_refused: bool,
    /// That error's text, shown with the admin token only.
    pub vod_credential_error: Option<String>,
    /// The accounts whose calls wait for a credential (none was obtained yet, or the last one
    /// expired and its renewal keeps failing); does not affect readiness.
    #[serde(default)]
    pub vod_credentials_missing: Vec<String>,
    /// Whether this process is the store's leader and runs the flusher (one per store).
    pub flusher_active: bool,
    /// When the flusher last completed a step (absent on replicas that do not flush).
    pub flusher_last_step: Option<String>,
}

/// The process is alive.
#[utoipa::path(security(()), responses((status = 200, description = "alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The process should receive traffic.
#[utoipa::path(security(()), responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let detail = state.authorize_read(&req).is_ok();
    let text = |what: &str, e: &dyn std::fmt::Display| {
        if detail {
            format!("{what}: {e}")
        } else {
            what.to_owned()
        }
    };
    let draining = state.draining.load(Ordering::SeqCst);
    let store = match state.store.ping().await {
        Err(e) => text("unreachable", &e),
        Ok(()) => match state.store.migrated().await {
            Ok(true) => "ok".to_owned(),
            Ok(false) => "migrations pending".to_owned(),
            Err(e) => text("cannot read migrations", &e),
        },
    };
    let ready = !draining && store == "ok";
    // Any account's refused credential, named by its account.
    let credential_error = state.lanes.iter().find_map(|lane| {
        lane.status
            .credential_error()
            .map(|e| format!("account {}: {e}", lane.account.name))
    });
    let body = Readiness {
        ready,
        store,
        draining,
        vod_credentials_refused: credential_error.is_some(),
        vod_credential_error: credential_error.filter(|_| detail),
        vod_credentials_missing: state
            .lanes
            .iter()
            .filter(|lane| {
                lane.credentials
                    .as_ref()
                    .is_some_and(|c| c.usable(crate::domain::Ts::now()).is_none())
            })
            .map(|lane| lane.account.name.to_string())
            .collect(),
        flusher_active: state.flusher().is_active(),
        flusher_last_step: state.flusher().last_step().map(|t| t.to_rfc3339()),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics (text format). The queue gauges are read from the store at each scrape.
#[utoipa::path(security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let now = crate::domain::Ts::now();
    let stats = state
        .store
        .queue_stats(now)
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot read queue figures for /metrics"))
        .ok();
    let queues = stats.as_ref().map(|s| &s.accounts);
    if let Some(stats) = &stats {
        m.jobs_in_flight.set(stats.in_flight_jobs as i64);
        m.jobs_retrying.set(stats.retrying_jobs as i64);
    }
    m.flusher_active.set(i64::from(state.flusher().is_active()));
    for lane in &state.lanes {
        let account = lane.account.name.as_str();
        if let Some(stats) = &stats {
            for task in Quota::ALL {
                let hold = stats
                    .held
                    .iter()
                    .find(|h| h.quota == task && h.account.as_str() == account);
                m.quota_held_jobs
                    .with_label_values(&[account, task.as_str()])
                    .set(hold.map_or(0, |h| h.jobs as i64));
                m.quota_held_until
                    .with_label_values(&[account, task.as_str()])
                    .set(hold.and_then(|h| h.until).map_or(0, |t| t.0 / 1000));
            }
        }
        if let Some(queues) = &queues {
            let queue = queues.iter().find(|q| q.account.as_str() == account);
            m.queue_pending
                .with_label_values(&[account])
                .set(queue.map_or(0, |q| q.pending as i64));
            m.queue_due
                .with_label_values(&[account])
                .set(queue.map_or(0, |q| q.due as i64));
            m.queue_oldest_age.with_label_values(&[account]).set(
                queue
                    .and_then(|q| q.oldest_first_seen)
                    .map_or(0.0, |t| now.since(t).as_secs_f64()),
            );
        }
        if let Some(source) = &lane.credentials
            && let Some(left) = source.expires_in(now)
        {
            m.credential_expiry
                .with_label_values(&[account, source.provider().as_str()])
                .set(left.as_secs_f64());
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}
