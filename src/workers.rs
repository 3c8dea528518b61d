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
use crate::flusher::FlusherStatus;
use crate::lanes::Lane;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the background tasks need, built by `Application::build`.
pub(crate) struct Workers {
    /// One lane per account, `default` first.
    pub(crate) lanes: Vec<Lane>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Store,
    pub(crate) settings: Arc<Settings>,
}

impl Workers {
    /// The status of every lane (leadership is set on all of them at once).
    pub(crate) fn statuses(&self) -> Vec<Arc<FlusherStatus>> {
        self.lanes.iter().map(|lane| lane.status.clone()).collect()
    }

    pub(crate) fn spawn(self, token: &CancellationToken) -> JoinSet<&'static str> {
        let mut workers: JoinSet<&'static str> = JoinSet::new();
        workers.spawn({
            let (store, token) = (self.store.clone(), token.clone());
            // Every account with items is configured: the start refuses a store where one is not.
            let accounts: Vec<crate::domain::AccountName> = self
                .lanes
                .iter()
                .map(|lane| lane.account.name.clone())
                .collect();
            async move {
                prune_loop(store, accounts, token).await;
                "prune"
            }
        });
        if self.store.is_shared() {
            let (store, token) = (self.store.clone(), token.clone());
            workers.spawn(async move {
                store.relay_wakes(token).await;
                "due-time relay"
            });
        }
        workers.spawn({
            let (store, statuses, token) = (self.store.clone(), self.statuses(), token.clone());
            async move {
                leadership_loop(store, statuses, token).await;
                "leadership"
            }
        });
        for lane in self.lanes {
            spawn_lane(
                &mut workers,
                lane,
                &self.settings,
                &self.store,
                &self.metrics,
                token,
            );
        }
        workers
    }
}

/// The loops of one account: its flusher, its credential renewal, and (with a client) its quota
/// poll, submission checks and CDN task follower. None of them waits on another lane's.
fn spawn_lane(
    workers: &mut JoinSet<&'static str>,
    lane: Lane,
    settings: &Settings,
    store: &Store,
    metrics: &Arc<Metrics>,
    token: &CancellationToken,
) {
    let vod = &settings.vod;
    let account = lane.account.name.clone();
    workers.spawn({
        let (flusher, token) = (lane.flusher.clone(), token.clone());
        async move {
            flusher.run(token).await;
            "flusher"
        }
    });
    if let Some(renewer) = lane.renewer {
        let token = token.clone();
        workers.spawn(async move {
            renewer.run(token).await;
            "credential renewal"
        });
    }
    let Some(client) = lane.client else {
        return;
    };
    if !vod.quota_poll_interval.is_zero() {
        let watch = crate::flusher::quota_poll::watch(
            account.clone(),
            client.clone(),
            lane.status.clone(),
            metrics.clone(),
            vod.quota_poll_interval,
            token.clone(),
        );
        workers.spawn(async move {
            watch.await;
            "quota poll"
        });
    }
    if !vod.check_after.is_zero() {
        let checks = crate::flusher::checks::watch(
            client.clone(),
            store.clone(),
            lane.status.clone(),
            metrics.clone(),
            crate::flusher::checks::CheckConfig {
                account: account.clone(),
                check_after: vod.check_after,
                per_second: vod.checks_per_second,
                max_age: vod.max_age,
                resubmit_after: vod.retry_max,
                hold: lane.account.hold_policy(),
                follow_for: Some(vod.follow_for).filter(|d| !d.is_zero()),
            },
            token.clone(),
        );
        workers.spawn(async move {
            checks.await;
            "submission checks"
        });
    }
    if !vod.follow_for.is_zero() {
        let follow = crate::flusher::follow::watch(
            client,
            store.clone(),
            lane.status.clone(),
            metrics.clone(),
            crate::flusher::follow::FollowConfig {
                account,
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
}

/// How often the store's side tables are pruned, and PostgreSQL's queue counts folded.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const FOLD_COUNTS_EVERY: Duration = Duration::from_secs(10);

async fn prune_loop(
    store: Store,
    accounts: Vec<crate::domain::AccountName>,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(FOLD_COUNTS_EVERY);
    let mut pruned: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = store.fold_item_counts().await {
                    tracing::warn!(error = %e, "cannot fold the queue's counts");
                }
                if pruned.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                    continue;
                }
                pruned = Some(std::time::Instant::now());
                if let Err(e) = store.prune_deliveries(crate::domain::Ts::now()).await {
                    tracing::warn!(error = %e, "cannot prune delivery IDs");
                }
                if let Err(e) = store.prune_option_sets(&accounts).await {
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
async fn leadership_loop(
    store: Store,
    statuses: Vec<Arc<FlusherStatus>>,
    token: CancellationToken,
) {
    let set_active = |active: bool| {
        for status in &statuses {
            status.set_active(active);
        }
    };
    let status = statuses[0].clone();
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
            set_active(true);
        } else if !leading && status.is_active() {
            tracing::warn!("lost the flusher leadership: no new calls from this process");
            set_active(false);
        }
    }
}
