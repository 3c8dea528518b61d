//! One lane per VOD account: the account's settings, its credential and VOD client, its flusher
//! (limiter, pacing, holds, outage probe) and the status it reports. The lanes share the store and
//! nothing that waits: a lane that is held, throttled, down or without a credential never delays
//! another, since each runs its own loops ([`crate::workers`]).

use std::sync::Arc;

use crate::api::LaneState;
use crate::config::{AccountSettings, Settings};
use crate::credentials::{self, CredentialSource, Issued, Renewer, Start};
use crate::flusher::backoff::RetryPolicy;
use crate::flusher::{Flusher, FlusherConfig, FlusherStatus, Sender};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::vod::{self, ClientConfig};

/// One account's lane.
pub(crate) struct Lane {
    pub(crate) account: AccountSettings,
    /// `None` in dry-run mode.
    pub(crate) client: Option<vod::Client>,
    pub(crate) renewer: Option<Renewer>,
    pub(crate) flusher: Flusher,
    pub(crate) status: Arc<FlusherStatus>,
}

impl Lane {
    /// Resolves the account's credential chain (unless it runs dry) and builds its flusher.
    pub(crate) async fn build(
        settings: &Settings,
        account: &AccountSettings,
        store: &Store,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Lane> {
        let name = &account.name;
        let (sender, renewer) = if account.dry_run {
            tracing::warn!(account = %name, "dry_run is on: nothing will be sent to this account's VOD");
            (Sender::DryRun, None)
        } else {
            let chain = account.chain(&settings.environment);
            let (start, fetcher) = credentials::start_for(&chain).await?;
            let (source, plan) = match start {
                Start::Ready(resolved) => {
                    for passed in &resolved.passed {
                        tracing::debug!(account = %name, provider = %passed.provider, reason = %passed.reason, "credential provider passed over");
                    }
                    tracing::info!(account = %name, provider = %resolved.provider, uses = %resolved.plan.describe(),
                        expires_at = ?resolved.first.expires_at.map(crate::domain::Ts::to_rfc3339), "credential chain chose a provider");
                    let source = CredentialSource::new(resolved.provider, resolved.first);
                    (source, resolved.plan)
                }
                // With several accounts, one whose STS or metadata service fails at start does
                // not keep the others from starting: its lane waits for its renewer. (One
                // account alone stops the start, as it always has: nothing else would run.)
                Start::Waiting {
                    provider,
                    plan,
                    why,
                } if !settings.extra_accounts.is_empty() => {
                    tracing::error!(account = %name, provider = %provider, error = %why, "no credential for this account yet: its calls wait while the renewal tries again");
                    (CredentialSource::new(provider, Issued::none_yet()), plan)
                }
                Start::Waiting { why, .. } => anyhow::bail!(why),
            };
            let renewer = Renewer::new(
                source.clone(),
                plan,
                fetcher,
                metrics.clone(),
                name.as_str(),
            );
            let client = vod::Client::new(ClientConfig {
                endpoint: account.vod_base_url(),
                timeout: settings.vod.timeout,
                credentials: source,
            })?;
            (Sender::Vod(client), Some(renewer))
        };
        let client = match &sender {
            Sender::Vod(client) => Some(client.clone()),
            Sender::DryRun => None,
        };
        metrics.start_account(name.as_str());
        let status = Arc::new(FlusherStatus::default());
        let flusher = Flusher::new(
            store.clone(),
            sender,
            flusher_config(settings, account),
            status.clone(),
            metrics.clone(),
        );
        Ok(Lane {
            account: account.clone(),
            client,
            renewer,
            flusher,
            status,
        })
    }

    /// What the HTTP handlers read of the lane.
    pub(crate) fn view(&self) -> LaneState {
        LaneState {
            account: self.account.clone(),
            status: self.status.clone(),
            hold: self.account.hold_policy(),
            credentials: self.client.as_ref().map(|c| c.credentials().clone()),
        }
    }
}

/// What the flusher of `account`'s lane runs with: its own rate, holds and CDN domains, the rest
/// shared by every lane.
pub(crate) fn flusher_config(settings: &Settings, account: &AccountSettings) -> FlusherConfig {
    let vod = &settings.vod;
    FlusherConfig {
        account: account.name.clone(),
        linger: settings.queue.linger,
        lease: settings.queue.lease,
        poll_interval: settings.queue.poll_interval,
        max_in_flight: vod.max_in_flight,
        max_rps: account.max_requests_per_second,
        burst: vod.burst.min(account.max_requests_per_second),
        retry: RetryPolicy {
            max_attempts: vod.max_attempts,
            max_age: vod.max_age,
            base: vod.retry_base,
            max: vod.retry_max,
        },
        check_after: Some(vod.check_after).filter(|d| !d.is_zero()),
        hold: account.hold_policy(),
        urls_per_call: vod.urls_per_call,
        url_rps: vod.url_requests_per_second,
        follow_for: Some(vod.follow_for).filter(|d| !d.is_zero()),
        cdn_domains: account.cdn_domains.clone(),
        lookups_per_second: vod.checks_per_second,
    }
}
