//! The background work of a process, started and stopped together under one cancellation token:
//! the flusher and, on the leader only, the other callers of VOD (the submission checks and the
//! quota poll); on every process the leadership checks, the credential renewal, the due-time
//! relay (PostgreSQL) and housekeeping. Each task is named; `Application::run_until_stopped`
//! reports one that ends before the shutdown and joins them all within the grace period.
//!
//! Leadership: every process ingests and serves reads, but only the store's leader flushes.
//! [`leadership_loop`] asks the store once a second; on SQLite the answer is always yes, on
//! PostgreSQL a replica takes over within about a second of the leader's session ending, and a
//! leader that cannot reach the database stops flushing until it can.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::credentials::Renewer;
use crate::flusher::{Flusher, FlusherStatus};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::vod;

/// What the background tasks need, built by `Application::build`.
pub(crate) struct Workers {
    /// The client of the leader's other VOD callers (the submission checks and the quota
    /// poll); `None` in dry-run mode.
    pub(crate) vod_client: Option<vod::Client>,
    /// Renews the credential VOD calls are signed with; `None` in dry-run mode.
    pub(crate) renewer: Option<Renewer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Store,
    pub(crate) flusher: Flusher,
    pub(crate) status: Arc<FlusherStatus>,
    pub(crate) settings: Arc<Settings>,
}

impl Workers {
    /// Starts every task; each ends when `token` is cancelled and then answers its name.
    pub(crate) fn spawn(self, token: &CancellationToken) -> JoinSet<&'static str> {
        let mut workers: JoinSet<&'static str> = JoinSet::new();
        workers.spawn({
            let (flusher, token) = (self.flusher.clone(), token.clone());
            async move {
                flusher.run(token).await;
                "flusher"
            }
        });
        workers.spawn({
            let (store, token) = (self.store.clone(), token.clone());
            async move {
                prune_loop(store, token).await;
                "prune"
            }
        });
        // On PostgreSQL, due times announced by the other replicas wake this one's flusher.
        if self.store.is_shared() {
            let (store, token) = (self.store.clone(), token.clone());
            workers.spawn(async move {
                store.relay_wakes(token).await;
                "due-time relay"
            });
        }
        // Every replica renews: a follower may become the leader at any moment.
        if let Some(renewer) = self.renewer {
            let token = token.clone();
            workers.spawn(async move {
                renewer.run(token).await;
                "credential renewal"
            });
        }
        workers.spawn({
            let (store, status, token) = (self.store.clone(), self.status.clone(), token.clone());
            async move {
                leadership_loop(store, status, token).await;
                "leadership"
            }
        });
        // The leader's other callers of VOD: the quota poll and the submission checks.
        let vod = &self.settings.vod;
        if let Some(client) = &self.vod_client
            && !vod.quota_poll_interval.is_zero()
        {
            let watch = crate::flusher::quota_poll::watch(
                client.clone(),
                self.status.clone(),
                self.metrics.clone(),
                vod.quota_poll_interval,
                token.clone(),
            );
            workers.spawn(async move {
                watch.await;
                "quota poll"
            });
        }
        if let Some(client) = &self.vod_client
            && !vod.check_after.is_zero()
        {
            let checks = crate::flusher::checks::watch(
                client.clone(),
                self.store.clone(),
                self.status.clone(),
                self.metrics.clone(),
                crate::flusher::checks::CheckConfig {
                    check_after: vod.check_after,
                    per_second: vod.checks_per_second,
                    max_age: vod.max_age,
                    resubmit_after: vod.retry_max,
                    hold: crate::flusher::hold::HoldPolicy::from_settings(vod),
                    follow_for: Some(vod.follow_for).filter(|d| !d.is_zero()),
                },
                token.clone(),
            );
            workers.spawn(async move {
                checks.await;
                "submission checks"
            });
        }
        if let Some(client) = &self.vod_client
            && !vod.follow_for.is_zero()
        {
            let follow = crate::flusher::follow::watch(
                client.clone(),
                self.store.clone(),
                self.status.clone(),
                self.metrics.clone(),
                crate::flusher::follow::FollowConfig {
                    interval: vod.follow_interval,
                    per_second: vod.checks_per_second,
                    max_age: vod.max_age,
                },
                token.clone(),
            );
            workers.spawn(async move {
                follow.await;
                "CDN task follower"
            });
        }
        workers
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
