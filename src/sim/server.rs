//! The HTTP side of the simulator: the RPC endpoint `/`, the `/_sim` inspection and steering
//! endpoints, and `start`/`SimHandle` for tests and the `sim` subcommand.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::actions::split_media_ids;
use super::config::SimConfig;
use super::faults::{Faults, TaskFailure};
use super::gateway::{self, Incoming};
use super::ledger::{Pool, QuotaChange, QuotaSetting, QuotaView};
use super::reply::{ApiError, error_body, json_response, new_request_id};
use super::state::{RecordedCall, SimState, lock};
use super::tasks::CdnTask;
use super::urls::split_object_paths;
use super::{stall, sts};

/// A running simulator. Dropping it leaves the server running until the runtime ends; call
/// [`SimHandle::stop`] to shut it down.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    server: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

/// Starts a simulator on `cfg.listen`, or on a free port of 127.0.0.1. Must be called inside a
/// tokio runtime (a `#[tokio::test]` is fine).
pub async fn start(cfg: SimConfig) -> std::io::Result<SimHandle> {
    let addr = cfg
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    start_with_listener(TcpListener::bind(addr)?, cfg).await
}

/// Starts a simulator on a listener the caller bound (`cfg.listen` is ignored).
pub async fn start_with_listener(
    listener: TcpListener,
    cfg: SimConfig,
) -> std::io::Result<SimHandle> {
    let state = Arc::new(SimState::new(&cfg)?);
    let addr = listener.local_addr()?;
    let data = web::Data::from(Arc::clone(&state));
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(SimHandle {
        addr,
        state,
        server: handle,
        task,
    })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, the `endpoint` to give the VOD client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every recorded call, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.state.calls).all()
    }

    /// Every call that arrived while its action was stalled (the `stall_action` fault), oldest
    /// first, with status 0: what reached the simulator and was not answered then.
    pub fn stalled(&self) -> Vec<RecordedCall> {
        lock(&self.state.stalled).all()
    }

    /// The temporary keys STS, the metadata service and the credentials URI handed out, with
    /// their AccessKeyIds, oldest first.
    pub fn issued_keys(&self) -> Vec<(String, super::state::IssuedKey)> {
        lock(&self.state.issued).all()
    }

    pub fn clear_calls(&self) {
        lock(&self.state.calls).clear();
    }

    /// Replaces the fault settings.
    ///
    /// # Panics
    /// On settings `PUT /_sim/faults` would refuse (an `error_rate` outside 0..=1, a malformed
    /// `error_code`): this is a test helper, and a wrong fault setup is a bug in the test.
    pub fn set_faults(&self, faults: Faults) {
        match faults.normalised(self.state.clock.now_ms()) {
            Ok(faults) => self.state.replace_faults(faults),
            Err(msg) => panic!("invalid simulator faults: {msg}"),
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.state.faults).clone()
    }

    /// Today's quotas of the default account (the first configured) and what is left of them,
    /// as `GET /_sim/quota` shows them.
    pub fn quota(&self) -> QuotaView {
        let now = self.state.clock.now_secs();
        lock(&self.state.quota)
            .of(&self.state.default_account)
            .view(now)
    }

    /// Today's quotas of the account `access_key_id` acts for (a configured account's key, an
    /// STS key the simulator handed out, or [`ROLE_ACCOUNT`](super::ROLE_ACCOUNT)), as `GET
    /// /_sim/quota?access_key_id=ID` shows them; `None` for a key the simulator does not know.
    pub fn quota_of(&self, access_key_id: &str) -> Option<QuotaView> {
        let account = self.state.known_account(access_key_id)?;
        let now = self.state.clock.now_secs();
        Some(lock(&self.state.quota).of(&account).view(now))
    }

    /// Today's quotas of every account, by account (a configured account's AccessKeyId, or
    /// [`ROLE_ACCOUNT`](super::ROLE_ACCOUNT)), as `GET /_sim/quotas` shows them.
    pub fn quotas(&self) -> BTreeMap<String, QuotaView> {
        lock(&self.state.quota).views(self.state.clock.now_secs())
    }

    /// Sets what is left of today's quotas of every account, as `PUT /_sim/quota` does.
    pub fn set_quota(&self, change: QuotaChange) {
        let now = self.state.clock.now_secs();
        for pools in lock(&self.state.quota).all() {
            pools.set_remaining(&change, now);
        }
    }

    /// Sets what is left of today's quotas of the account `access_key_id` acts for (see
    /// [`SimHandle::quota_of`]), as `PUT /_sim/quota?access_key_id=ID` does; its quotas after
    /// the change, or `None`, changing nothing, for a key the simulator does not know.
    #[must_use = "None means the key is unknown and nothing changed"]
    pub fn set_quota_of(&self, access_key_id: &str, change: QuotaChange) -> Option<QuotaView> {
        let account = self.state.known_account(access_key_id)?;
        let now = self.state.clock.now_secs();
        let mut book = lock(&self.state.quota);
        let pools = book.of(&account);
        pools.set_remaining(&change, now);
        Some(pools.view(now))
    }

    /// Sets what is left of today's directory quota of every account, as `PUT /_sim/quota`
    /// with `{"dir_remaining": N}` does.
    pub fn set_dir_remaining(&self, left: u64) {
        let now = self.state.clock.now_secs();
        for pools in lock(&self.state.quota).all() {
            pools.set_left(Pool::Dir, Some(left), now);
        }
    }

    /// As [`SimHandle::set_dir_remaining`], for the account `access_key_id` acts for only (see
    /// [`SimHandle::quota_of`]); its quotas after the change, or `None`, changing nothing, for a
    /// key the simulator does not know.
    #[must_use = "None means the key is unknown and nothing changed"]
    pub fn set_dir_remaining_of(&self, access_key_id: &str, left: u64) -> Option<QuotaView> {
        let account = self.state.known_account(access_key_id)?;
        let now = self.state.clock.now_secs();
        let mut book = lock(&self.state.quota);
        let pools = book.of(&account);
        pools.set_left(Pool::Dir, Some(left), now);
        Some(pools.view(now))
    }

    /// Every CDN task kept (of every account), oldest first, in the state the simulator's clock
    /// puts it in now (`GET /_sim/tasks`).
    pub fn tasks(&self) -> Vec<CdnTask> {
        lock(&self.state.tasks).all(self.state.clock.now_ms(), self.state.life)
    }

    /// Makes the next `times` CDN tasks created whose `ObjectPath` contains `pattern` end
    /// `Failed` with `description` (`Origin Timeout` when `None`), on top of the faults in
    /// force: adds a `fail_tasks` entry.
    pub fn fail_tasks(&self, pattern: &str, times: u32, description: Option<&str>) {
        lock(&self.state.faults).fail_tasks.push(TaskFailure {
            pattern: pattern.to_owned(),
            times,
            description: description.map(str::to_owned),
        });
    }

    /// Fixes the simulator's clock at `epoch_secs` (to replay captured requests), or lets it run.
    pub fn set_clock(&self, epoch_secs: Option<i64>) {
        self.state.clock.set(epoch_secs);
    }

    /// As [`SimHandle::set_clock`], to the millisecond.
    pub fn set_clock_ms(&self, epoch_ms: Option<i64>) {
        self.state.clock.set_ms(epoch_ms);
    }

    /// Stops accepting, lets in-flight calls finish (at most one second), and waits.
    pub async fn stop(self) {
        self.server.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "simulator server ended with an error"),
            Err(err) => tracing::warn!(%err, "simulator server task failed"),
        }
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(rpc))
            .route(web::post().to(rpc))
            .default_service(web::to(unsupported_method)),
    )
    .service(
        web::resource("/_sim/calls")
            .route(web::get().to(list_calls))
            .route(web::delete().to(clear_calls)),
    )
    .route("/_sim/stalled", web::get().to(list_stalled))
    .service(
        web::resource("/_sim/faults")
            .route(web::get().to(get_faults))
            .route(web::put().to(put_faults)),
    )
    .route("/_sim/tasks", web::get().to(list_tasks))
    .service(
        web::resource("/_sim/quota")
            .route(web::get().to(get_quota))
            .route(web::put().to(put_quota)),
    )
    .route("/_sim/quotas", web::get().to(list_quotas))
    .service(
        web::resource("/sts/")
            .route(web::get().to(sts::sts))
            .route(web::post().to(sts::sts)),
    )
    .route("/latest/api/token", web::put().to(sts::imds_token))
    .route(
        "/latest/meta-data/ram/security-credentials/",
        web::get().to(sts::imds_role),
    )
    .route(
        "/latest/meta-data/ram/security-credentials/{role}",
        web::get().to(sts::imds_credentials),
    )
    .route("/_sim/credentials", web::get().to(sts::credentials_uri))
    .default_service(web::to(not_found));
}

fn host_id(req: &HttpRequest) -> String {
    req.connection_info().host().to_owned()
}

/// The VOD RPC endpoint: every call is answered, recorded, and delayed by `latency_ms` (the
/// calls of `latency_action` only, when that is set).
async fn rpc(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some((status, body)) = stall::hang(&req, &body, &state).await {
        return json_response(status, &body);
    }
    let (status, answer) = answer_rpc(&req, &body, &state, gateway::handle);
    let (latency_ms, only) = {
        let faults = lock(&state.faults);
        (faults.latency_ms, faults.latency_action.clone())
    };
    // The request is read again for its action only when the latency names one.
    let delayed = latency_ms > 0
        && only.is_none_or(|only| {
            let content_type = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let incoming = gateway::collect_params(req.query_string(), content_type, &body);
            incoming.params.get("Action") == Some(&only)
        });
    if delayed {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    json_response(status, &answer)
}

/// Reads an RPC request (query and form body), answers it with `handler` (adding `RequestId`,
/// or building the error body) and records the call. Returns the status and the body.
pub(super) fn answer_rpc(
    req: &HttpRequest,
    body: &[u8],
    state: &SimState,
    handler: impl Fn(&SimState, &str, &Incoming) -> Result<Value, ApiError>,
) -> (u16, Value) {
    let at_ms = state.clock.now_ms();
    let method = req.method().as_str().to_owned();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let incoming = gateway::collect_params(req.query_string(), content_type, body);
    let outcome = handler(state, &method, &incoming);

    let request_id = new_request_id();
    let (status, body, code) = match outcome {
        Ok(mut value) => {
            if let Value::Object(map) = &mut value {
                map.insert("RequestId".to_owned(), Value::String(request_id));
            }
            (200, value, None)
        }
        Err(err) => (
            err.status,
            error_body(&err, &request_id, &host_id(req)),
            Some(err.code),
        ),
    };

    lock(&state.calls).push(recorded(req, incoming, at_ms, status, code));
    (status, body)
}

/// The record of a call to `/` (its parameters but the signature) answered with `status`.
pub(super) fn recorded(
    req: &HttpRequest,
    mut incoming: Incoming,
    at_ms: i64,
    status: u16,
    code: Option<String>,
) -> RecordedCall {
    incoming.params.remove("Signature");
    let param = |name: &str| incoming.params.get(name).cloned();
    let action = param("Action").unwrap_or_default();
    let url_call = matches!(
        action.as_str(),
        "RefreshVodObjectCaches" | "PreloadVodObjectCaches"
    );
    RecordedCall {
        at_ms,
        method: req.method().as_str().to_owned(),
        access_key_id: param("AccessKeyId").unwrap_or_default(),
        media_ids: param("MediaIds")
            .map(|ids| split_media_ids(&ids))
            .unwrap_or_default(),
        task_type: param("TaskType"),
        object_paths: param("ObjectPath")
            .filter(|_| url_call)
            .map(|paths| split_object_paths(&paths))
            .unwrap_or_default(),
        object_type: (action == "RefreshVodObjectCaches").then(|| {
            param("ObjectType")
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| "File".to_owned())
        }),
        action,
        status,
        code,
        params: incoming.params,
    }
}

async fn unsupported_method(req: HttpRequest) -> HttpResponse {
    let err = ApiError::new(
        400,
        "UnsupportedHTTPMethod",
        "This http method is not supported.",
    );
    json_response(
        err.status,
        &error_body(&err, &new_request_id(), &host_id(&req)),
    )
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let err = ApiError::new(
        404,
        "InvalidApi.NotFound",
        "Specified api is not found, please check your url and method.",
    );
    json_response(
        err.status,
        &error_body(&err, &new_request_id(), &host_id(&req)),
    )
}

async fn list_calls(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&state.calls).all())
}

async fn list_stalled(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&state.stalled).all())
}

async fn list_tasks(state: web::Data<SimState>) -> HttpResponse {
    let tasks = lock(&state.tasks).all(state.clock.now_ms(), state.life);
    HttpResponse::Ok().json(tasks)
}

async fn clear_calls(state: web::Data<SimState>) -> HttpResponse {
    lock(&state.calls).clear();
    HttpResponse::NoContent().finish()
}

async fn get_faults(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&state.faults).clone())
}

async fn put_faults(body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let parsed = serde_json::from_slice::<Faults>(&body)
        .map_err(|e| e.to_string())
        .and_then(|faults| faults.normalised(state.clock.now_ms()));
    match parsed {
        Ok(faults) => {
            state.replace_faults(faults.clone());
            HttpResponse::Ok().json(faults)
        }
        Err(message) => HttpResponse::BadRequest().json(serde_json::json!({ "error": message })),
    }
}

/// The account the query of a `/_sim/quota` request names: `Ok(None)` without
/// `access_key_id` (the default account for a read, every account for a change); the answer to
/// send instead for another parameter (400) or a key the simulator does not know (404).
fn quota_account(req: &HttpRequest, state: &SimState) -> Result<Option<String>, Box<HttpResponse>> {
    let mut named = None;
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if name != "access_key_id" || named.is_some() {
            return Err(Box::new(HttpResponse::BadRequest().json(serde_json::json!({
                "error": format!("unexpected query parameter {name:?}: only one access_key_id is taken")
            }))));
        }
        named = Some(value.into_owned());
    }
    match named {
        None => Ok(None),
        Some(key) => match state.known_account(&key) {
            Some(account) => Ok(Some(account)),
            None => Err(Box::new(HttpResponse::NotFound().json(serde_json::json!({
                "error": format!("no account acts for the access key {key:?}")
            })))),
        },
    }
}

/// `GET /_sim/quota`: the quotas of the default account (the first configured), or with
/// `?access_key_id=ID` those of the account that key acts for.
async fn get_quota(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let account = match quota_account(&req, &state) {
        Ok(account) => account.unwrap_or_else(|| state.default_account.clone()),
        Err(answer) => return *answer,
    };
    let now = state.clock.now_secs();
    HttpResponse::Ok().json(lock(&state.quota).of(&account).view(now))
}

/// `GET /_sim/quotas`: every account's quotas, by account.
async fn list_quotas(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&state.quota).views(state.clock.now_secs()))
}

/// `PUT /_sim/quota` with `{"refresh_remaining": 0}` uses up today's URL refresh quota;
/// `{"refresh_remaining": 2000}` gives it back, as the reset at midnight would.
/// `preload_remaining` and `dir_remaining` do the same for the other pools. It changes every
/// account's pools, or with `?access_key_id=ID` only those of the account that key acts for,
/// and answers with the quotas of that account (of the default account without one).
async fn put_quota(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let account = match quota_account(&req, &state) {
        Ok(account) => account,
        Err(answer) => return *answer,
    };
    match serde_json::from_slice::<QuotaSetting>(&body) {
        Ok(setting) => {
            let now = state.clock.now_secs();
            let mut book = lock(&state.quota);
            match &account {
                Some(account) => book.of(account).apply(&setting, now),
                None => {
                    for pools in book.all() {
                        pools.apply(&setting, now);
                    }
                }
            }
            let shown = account.as_deref().unwrap_or(&state.default_account);
            HttpResponse::Ok().json(book.of(shown).view(now))
        }
        Err(error) => {
            HttpResponse::BadRequest().json(serde_json::json!({ "error": error.to_string() }))
        }
    }
}
