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
//! The background work (the flusher, the submission checks, the quota poll, leadership,
//! credential renewal, wake-ups and housekeeping) is [`Workers`], started and stopped together.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::lanes::Lane;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::workers::Workers;

pub struct Application {
    port: u16,
    server: Server,
    /// The background work, started by [`Application::run_until_stopped`].
    workers: Workers,
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
        // One lane per account, each with its own credential, client, limiter and holds. An
        // account whose chain finds no credential stops the start, naming the account.
        // Work stored for an account the configuration no longer names would never be sent.
        let stranded: Vec<String> = store
            .accounts_with_work()
            .await
            .context("cannot read the accounts with stored work")?
            .into_iter()
            .filter(|(account, _, _)| settings.account(account.as_str()).is_none())
            .map(|(account, items, jobs)| format!("{account} ({items} pending items, {jobs} jobs)"))
            .collect();
        if !stranded.is_empty() {
            anyhow::bail!(
                "the store holds work of accounts the configuration does not name: {}; add their [[accounts]] tables back (with dry_run = true their work is recorded as sent without a call)",
                stranded.join(", ")
            );
        }
        // The accounts' chains are walked at once: a slow one does not add to the others.
        let accounts = settings.accounts();
        let lanes = futures_util::future::try_join_all(
            accounts
                .iter()
                .map(|account| Lane::build(&settings, account, &store, &metrics)),
        )
        .await?;
        let draining = Arc::new(AtomicBool::new(false));
        let state = AppState::new(
            store.clone(),
            settings.clone(),
            draining.clone(),
            lanes.iter().map(Lane::view).collect(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
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
        let workers = Workers {
            lanes,
            metrics,
            store,
            settings,
        };
        Ok(Application {
            port,
            server,
            workers,
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
            server,
            workers,
            shutdown,
            ..
        } = self;
        let (store, statuses, settings) = (
            workers.store.clone(),
            workers.statuses(),
            workers.settings.clone(),
        );
        let handle: ServerHandle = server.handle();
        let server_task = tokio::spawn(server);
        // The background workers, started and stopped together: each ends when the shutdown
        // token is cancelled, and one that ends before is reported.
        let token = &shutdown.token;
        let mut workers = workers.spawn(token);
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
        for status in &statuses {
            status.set_active(false);
        }
        let _ = server_task.await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
