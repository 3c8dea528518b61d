//! Builds the application from settings and runs it until it is told to stop.
//!
//! `main` and the integration tests use the same builder, so tests run the real thing: a real
//! listener (port 0 in tests), the real store, the real flusher and VOD client.
//!
//! Shutdown (SIGTERM, or [`ShutdownHandle::shutdown`]): `/readyz` turns 503 at once, the HTTP
//! server stops accepting and finishes the requests it has, the flusher stops claiming and waits
//! for the calls in flight to be recorded; all of it bounded by `server.shutdown_grace`. Anything
//! not finished by then is still safe: pending items are in the store, and a job whose call was
//! cut off is sent again when its lease runs out.
//!
//! Leadership: every process ingests and serves reads, but only the store's leader flushes.
//! [`leadership_loop`] asks the store once a second; on SQLite the answer is always yes, on
//! PostgreSQL a replica takes over within about a second of the leader's session ending, and a
//! leader that cannot reach the database stops flushing until it can.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::credentials::{self, CredentialSource, Renewer};
use crate::flusher::{Flusher, FlusherConfig, FlusherStatus, Sender};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::vod::{self, ClientConfig};

pub struct Application {
    /// The client of the background VOD readers (the daily quota and the submission checks);
    /// `None` in dry-run mode.
    vod_client: Option<vod::Client>,
    /// Renews the credential VOD calls are signed with; `None` in dry-run mode.
    renewer: Option<Renewer>,
    metrics: Arc<Metrics>,
    port: u16,
    server: Server,
    store: Store,
    flusher: Flusher,
    status: Arc<FlusherStatus>,
    settings: Arc<Settings>,
    shutdown: ShutdownHandle,
}

/// Starts a graceful shutdown from anywhere (signal handler, test).
#[derive(Clone)]
pub struct ShutdownHandle {
    token: CancellationToken,
    draining: Arc<AtomicBool>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.token.cancel();
    }
}

impl Application {
    /// Binds `server.listen`, opens the store and builds the VOD sender.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.server.listen).with_context(|| {
            format!(
                "cannot listen on {} (server.listen)",
                settings.server.listen
            )
        })?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let location = settings.store.url.clone();
        let store = Store::open(&location)
            .await
            .with_context(|| format!("cannot open the store {}", settings.store.url))?;
        let metrics = Arc::new(Metrics::new());
        let (sender, renewer) = if settings.vod.dry_run {
            tracing::warn!("vod.dry_run is on: nothing will be sent to VOD");
            (Sender::DryRun, None)
        } else {
            let (resolved, fetcher) = credentials::resolve_for(&settings).await?;
            for passed in &resolved.passed {
                tracing::debug!(provider = %passed.provider, reason = %passed.reason, "credential provider passed over");
            }
            tracing::info!(provider = %resolved.provider, uses = %resolved.plan.describe(),
                expires_at = ?resolved.first.expires_at.map(crate::domain::Ts::to_rfc3339), "credential chain chose a provider");
            let source = CredentialSource::new(resolved.provider, resolved.first);
            let renewer = Renewer::new(source.clone(), resolved.plan, fetcher, metrics.clone());
            let client = vod::Client::new(ClientConfig {
                endpoint: settings.vod_base_url(),
                timeout: settings.vod.timeout,
                credentials: source,
            })?;
            (Sender::Vod(client), Some(renewer))
        };
        let vod_client = match &sender {
            Sender::Vod(client) => Some(client.clone()),
            Sender::DryRun => None,
        };
        let status = Arc::new(FlusherStatus::default());
        let flusher = Flusher::new(
            store.clone(),
            sender,
            FlusherConfig::from_settings(&settings),
            status.clone(),
            metrics.clone(),
        );
        let draining = Arc::new(AtomicBool::new(false));
        let mut state = AppState::new(
            store.clone(),
            settings.clone(),
            draining.clone(),
            status.clone(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        state.credentials = vod_client.as_ref().map(|c| c.credentials().clone());
        let state = web::Data::new(state);
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(api::request_context))
                .app_data(state.clone())
                .configure(api::configure)
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace.as_secs().max(1))
        .run();
        let shutdown = ShutdownHandle {
            token: CancellationToken::new(),
            draining,
        };
        Ok(Application {
            vod_client,
            renewer,
            metrics,
            port,
            server,
            store,
            flusher,
            status,
            settings,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves and flushes until shutdown, then drains within the grace period.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            vod_client,
            renewer,
            metrics,
            server,
            store,
            flusher,
            status,
            settings,
            shutdown,
            ..
        } = self;
        let handle: ServerHandle = server.handle();
        let server_task = tokio::spawn(server);
        // The background workers, started and stopped together: each ends when the shutdown
        // token is cancelled, and one that ends before is reported.
        let token = &shutdown.token;
        let mut workers: JoinSet<&'static str> = JoinSet::new();
        workers.spawn({
            let (flusher, token) = (flusher.clone(), token.clone());
            async move {
                flusher.run(token).await;
                "flusher"
            }
        });
        workers.spawn({
            let (store, token) = (store.clone(), token.clone());
            async move {
                prune_loop(store, token).await;
                "prune"
            }
        });
        // On PostgreSQL, due times announced by the other replicas wake this one's flusher.
        if store.is_shared() {
            let (store, token) = (store.clone(), token.clone());
            workers.spawn(async move {
                store.relay_wakes(token).await;
                "due-time relay"
            });
        }
        // Every replica renews: a follower may become the leader at any moment.
        if let Some(renewer) = renewer {
            let token = token.clone();
            workers.spawn(async move {
                renewer.run(token).await;
                "credential renewal"
            });
        }
        workers.spawn({
            let (store, status, token) = (store.clone(), status.clone(), token.clone());
            async move {
                leadership_loop(store, status, token).await;
                "leadership"
            }
        });
        // The leader's other callers of VOD: the quota poll and the submission checks.
        if let Some(client) = &vod_client
            && !settings.vod.quota_poll_interval.is_zero()
        {
            let watch = crate::flusher::quota_poll::watch(
                client.clone(),
                status.clone(),
                metrics.clone(),
                settings.vod.quota_poll_interval,
                token.clone(),
            );
            workers.spawn(async move {
                watch.await;
                "quota poll"
            });
        }
        if let Some(client) = vod_client
            && !settings.vod.check_after.is_zero()
        {
            let checks = crate::flusher::checks::watch(
                client,
                store.clone(),
                status.clone(),
                metrics,
                crate::flusher::checks::CheckConfig {
                    check_after: settings.vod.check_after,
                    per_second: settings.vod.checks_per_second,
                    max_age: settings.vod.max_age,
                    resubmit_after: settings.vod.retry_max,
                    hold: crate::flusher::hold::HoldPolicy::from_settings(&settings.vod),
                },
                token.clone(),
            );
            workers.spawn(async move {
                checks.await;
                "submission checks"
            });
        }

        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                Some(ended) = workers.join_next() => match ended {
                    Ok(worker) => tracing::error!(worker, "a background worker stopped before shutdown"),
                    Err(error) => tracing::error!(error = %error, "a background worker panicked"),
                },
            }
        }
        shutdown.draining.store(true, Ordering::SeqCst);
        tracing::info!(grace = ?settings.server.shutdown_grace, "shutting down: draining requests and calls in flight");
        let grace = settings.server.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            handle.stop(true).await;
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shutdown grace period ran out; unfinished calls will be sent again after their lease"
            );
            workers.shutdown().await;
        }
        status.set_active(false);
        let _ = server_task.await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Forgets expired delivery IDs, and option sets no pending item names, once a minute.
async fn prune_loop(store: Store, token: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = store.prune_deliveries(crate::domain::Ts::now()).await {
                    tracing::warn!(error = %e, "cannot prune delivery IDs");
                }
                if let Err(e) = store.prune_option_sets().await {
                    tracing::warn!(error = %e, "cannot prune option sets");
                }
            }
        }
    }
}

/// How often a process checks (or tries to take) the leadership.
const LEADER_POLL: Duration = Duration::from_secs(1);

/// Keeps [`FlusherStatus::is_active`] equal to "this process leads the store".
///
/// A process that becomes leader of a shared store waits two polls before its first step. The
/// lock can change hands while the old leader is alive but cut off from the database; within
/// one poll it notices and stops claiming, and the wait keeps the two leaders' calls at least a
/// second apart, so the account's per-second rate is not exceeded across a handover.
async fn leadership_loop(store: Store, status: Arc<FlusherStatus>, token: CancellationToken) {
    let handover = if store.is_shared() {
        2 * LEADER_POLL
    } else {
        Duration::ZERO
    };
    let mut tick = tokio::time::interval(LEADER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leading = match store.try_acquire_leadership().await {
            Ok(leading) => leading,
            Err(error) => {
                if status.is_active() {
                    tracing::error!(error = %error, "leadership check failed");
                } else {
                    tracing::debug!(error = %error, "leadership check failed");
                }
                false
            }
        };
        if leading && !status.is_active() {
            if !handover.is_zero() {
                tracing::info!(wait = ?handover, "this process is now the flusher leader; starting after the handover wait");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(handover) => {}
                }
                if !store.try_acquire_leadership().await.unwrap_or(false) {
                    continue;
                }
            }
            tracing::info!("flusher active");
            status.set_active(true);
        } else if !leading && status.is_active() {
            tracing::warn!("lost the flusher leadership: no new calls from this process");
            status.set_active(false);
        }
    }
}
