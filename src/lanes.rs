//! One lane per VOD account: the account's settings, its credential and VOD client, its flusher
//! (limiter, pacing, holds, outage probe) and the status it reports. The lanes share the store and
//! nothing that waits: a lane that is held, throttled, down or without a credential never delays
//! another, since each runs its own loops ([`crate::workers`]).

use std::sync::Arc;

use crate::api::LaneState;
use crate::config::{AccountSettings, Settings};
use crate::credentials::{self, CredentialSource, Renewer};
use crate::flusher::hold::HoldPolicy;
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
            let (resolved, fetcher) = credentials::resolve_for(&chain).await?;
            for passed in &resolved.passed {
                tracing::debug!(account = %name, provider = %passed.provider, reason = %passed.reason, "credential provider passed over");
            }
            tracing::info!(account = %name, provider = %resolved.provider, uses = %resolved.plan.describe(),
                expires_at = ?resolved.first.expires_at.map(crate::domain::Ts::to_rfc3339), "credential chain chose a provider");
            let source = CredentialSource::new(resolved.provider, resolved.first);
            let renewer = Renewer::new(
                source.clone(),
                resolved.plan,
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
            FlusherConfig::for_account(settings, account),
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
            hold: HoldPolicy::for_account(&self.account),
            credentials: self.client.as_ref().map(|c| c.credentials().clone()),
        }
    }
}
