//! The VOD simulator: a real HTTP server that speaks the VOD RPC protocol.
//!
//! It lets the tests, the benchmarks and anyone without an Alibaba Cloud account run the whole
//! service end to end. It follows `vod-api.md` §8: it verifies Signature 1.0 with its own
//! verifier (independent of the client's signer), rejects replayed nonces and stale
//! timestamps, throttles each AccessKey with a token bucket per action, validates
//! `RefreshMediaPlayUrls`, answers `GetMediaRefreshJobs` and `DescribeVodRefreshQuota` from the
//! jobs and daily quota it keeps (a `--failing` ID's submission is reported failed), records
//! every call, and injects faults on request.
//!
//! It also plays the CDN behind VOD (`vod-api.md` §2.2–2.5, §7): `RefreshVodObjectCaches` and
//! `PreloadVodObjectCaches` purge and prefetch URLs (checked against `--cdn-domain`,
//! `--offline-domain` and `--urls-per-request`), and every URL, directory and submitted play URL
//! becomes a CDN task that `DescribeVodRefreshTasks` reports `Pending`, `Refreshing`, then
//! `Complete` (after `--task-refreshing-after` and `--task-complete-after`, read off the clock), or
//! `Failed` when the `fail_tasks` fault picked it. `GetVideoInfo` answers every video that is not
//! `--nonexistent` with a cover and snapshots on the first CDN domain. The daily quotas are
//! three pools that reset together: URLs (`--quota-refresh`, also `--quota-url`: the URLs of
//! `RefreshVodObjectCaches` and the media IDs of `RefreshMediaPlayUrls` refreshes), directories
//! (`--quota-dir`) and prefetches (`--quota-preload`, URLs and media IDs alike).
//!
//! It serves several accounts at once, each an AccessKey (`--account`, `--accounts-file`) with
//! its own jobs, CDN tasks, daily pools and rates: an account of the accounts file may set its
//! `qps`, `url_qps` and quotas (the flags' values otherwise) and its numeric `uid` (see
//! [`Account`]). An account spends only its own pools, `DescribeVodRefreshQuota` reports the
//! caller's account's, and `QuotaExceeded.*` answers when the caller's account's pool is used
//! up. The STS keys handed out belong to an account too (see `sts.rs`): the signer's for
//! `AssumeRole`, unless the role's ARN names another account's `uid`; the `uid`'s account, else
//! [`ROLE_ACCOUNT`], for `AssumeRoleWithOIDC`; [`ROLE_ACCOUNT`] for the metadata service. That
//! account has the flags' limits.
//!
//! Besides `/` it serves `GET`/`DELETE /_sim/calls` (recorded calls) and `GET`/`PUT /_sim/faults`
//! (fault settings as JSON, see [`Faults`]; a `PUT` replaces them all, omitted fields take their
//! defaults). `GET /_sim/tasks` lists the CDN tasks of every account in their current state.
//! Among the faults `qps` lowers the per-second limit at runtime, as another client taking
//! a share of the account's limit does, and `stall_action` makes the calls of one action hang
//! until it is cleared (`GET /_sim/stalled` lists them as they arrive). `GET`/`PUT /_sim/quota`
//! shows and sets what is left of today's quotas (`{"refresh_remaining": 0}` uses the URL
//! quota up; a larger figure gives it back, as the reset at midnight does; `preload_remaining`
//! and `dir_remaining` likewise). Without a query, `GET` shows the first account's quotas and
//! `PUT` changes every account's; `?access_key_id=ID` names one account (by its key, an STS key
//! handed out for it, or [`ROLE_ACCOUNT`]). `GET /_sim/quotas` shows every account's.
//!
//! It also plays the parts of Alibaba Cloud that hand out short-lived credentials
//! (`docs/alibaba-credentials.md`), each credential valid for `--sts-lifetime`: STS at `/sts/`
//! (`AssumeRoleWithOIDC` unsigned, `AssumeRole` signed with Signature 1.0), the ECS metadata
//! service at its own paths (`/latest/api/token`, `/latest/meta-data/ram/security-credentials/`,
//! IMDSv2 enforced or absent with `--imds`), and a credentials URI at `/_sim/credentials`. The
//! VOD gateway refuses a call with an expired token (`InvalidSecurityToken.Expired`) or with a
//! token of another key (`InvalidSecurityToken.MismatchWithAccessKey`).
//!
//! Choices where the real service is unknown or would get in the way:
//! - only JSON answers (`Format=XML` is refused; a missing `Format` is read as JSON);
//! - `GetMediaRefreshJobs` accepts GET only (its declared method) and answers an unknown job
//!   with an empty list;
//! - a parameter given twice (in the query, or in both query and body) is refused;
//! - the daily quota counts media IDs (existing, permitted ones) for `RefreshMediaPlayUrls` and
//!   URLs for the URL calls, and resets at midnight UTC+8;
//! - the choices of the URL calls are listed in `urls.rs`.

mod actions;
mod clock;
mod config;
mod faults;
mod gateway;
mod ledger;
mod reply;
mod server;
mod stall;
mod state;
mod sts;
mod tasks;
mod urls;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use faults::parse_error_code;

pub use config::{Account, ImdsMode, SimConfig, load_accounts_file};
pub use faults::{Faults, TaskFailure};
pub use ledger::{QuotaChange, QuotaView};
pub use server::{SimHandle, start, start_with_listener};
pub use state::{IssuedKey, ROLE_ACCOUNT, RecordedCall};
pub use tasks::CdnTask;

/// Command-line arguments of `vod-purge sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// An accepted AccessKey as ID:SECRET, or ID:SECRET:TOKEN for an `STS.` key (repeatable).
    /// Without any account, testid / testsecret is accepted.
    #[arg(long = "account", value_name = "ID:SECRET", value_parser = Account::parse_spec)]
    pub accounts: Vec<Account>,
    /// TOML file with `[[accounts]]` tables (access_key_id, access_key_secret, security_tokens;
    /// optional limits of the account: qps, url_qps, quota_refresh, quota_preload, quota_dir;
    /// optional uid, the account's numeric ID named by role ARNs).
    #[arg(long, value_name = "FILE")]
    pub accounts_file: Option<PathBuf>,
    /// Calls per second allowed per AccessKey and action before `Throttling` (503), for every
    /// account that sets no `qps` of its own.
    #[arg(long, default_value_t = 50)]
    pub qps: u32,
    /// A media ID to report in `NonExistMediaIds` (repeatable).
    #[arg(long = "nonexistent", value_name = "ID")]
    pub nonexistent: Vec<String>,
    /// A media ID to report in `ForbiddenMediaIds` (repeatable).
    #[arg(long = "forbidden", value_name = "ID")]
    pub forbidden: Vec<String>,
    /// A media ID whose submission fails: accepted by the call, then reported by
    /// `GetMediaRefreshJobs` with `Status` `fail` (repeatable).
    #[arg(long = "failing", value_name = "ID")]
    pub failing: Vec<String>,
    /// A used-up quota is reported per media ID by `GetMediaRefreshJobs` (`Status` `fail`,
    /// `QuotaExceeded.*`) instead of refusing the call.
    #[arg(long)]
    pub quota_per_id: bool,
    /// Probability (0 to 1) that an authenticated call fails with --error-code.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Code of injected failures, optionally with a status: InternalError, Throttling, X/502.
    #[arg(long, default_value = "InternalError")]
    pub error_code: String,
    /// Milliseconds added before every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Append every call as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    pub calls_log: Option<PathBuf>,
    /// Accepted clock skew of `Timestamp`, e.g. 15m or 31m.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub tolerance: Duration,
    /// Lifetime of the STS credentials handed out by /sts/, the metadata paths and
    /// /_sim/credentials, e.g. 1h or 30s.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub sts_lifetime: Duration,
    /// Which metadata-service requests work.
    #[arg(long, value_enum, default_value = "both")]
    pub imds: ImdsMode,
    /// The instance RAM role the metadata service names.
    #[arg(long, default_value = "vod-purge-role")]
    pub ecs_role: String,
    /// The daily quotas and the settings of the CDN side (boxed: `SimArgs` is a variant of the binary's command enum,
    /// which should stay small).
    #[command(flatten)]
    pub cdn: Box<CdnArgs>,
}

/// The flags of `vod-purge sim` for the daily quotas and the CDN side (URL calls, their tasks).
#[derive(Debug, clap::Args)]
pub struct CdnArgs {
    /// Daily URL refresh quota (`UrlQuota`) of each account that sets none of its own: one unit
    /// per URL of `RefreshVodObjectCaches`, one per media ID of a `RefreshMediaPlayUrls` refresh.
    #[arg(long, visible_alias = "quota-url", default_value_t = 2000)]
    pub quota_refresh: u64,
    /// Daily preload quota (`PreloadQuota`) of each account that sets none of its own: one unit
    /// per URL of `PreloadVodObjectCaches`, one per media ID of a `RefreshMediaPlayUrls` preload.
    #[arg(long, default_value_t = 500)]
    pub quota_preload: u64,
    /// Calls per second allowed per AccessKey for each of `RefreshVodObjectCaches` and
    /// `PreloadVodObjectCaches` before `Throttling` (503), for every account that sets no
    /// `url_qps` of its own; the account's qps (--qps or its own) when not given.
    #[arg(long)]
    pub url_qps: Option<u32>,
    /// Daily directory refresh quota (`DirQuota`) of each account that sets none of its own, one
    /// unit per directory.
    #[arg(long, default_value_t = 100)]
    pub quota_dir: u64,
    /// Most URLs in one `RefreshVodObjectCaches` / `PreloadVodObjectCaches` call
    /// (`SingleRequest.OverLimit` beyond).
    #[arg(long, default_value_t = 1000)]
    pub urls_per_request: usize,
    /// A CDN domain of the account (repeatable). With any, URL calls naming another host get
    /// `InvalidDomain.NotFound`; the first is the host of covers, snapshots and play URLs.
    #[arg(long = "cdn-domain", value_name = "DOMAIN")]
    pub cdn_domains: Vec<String>,
    /// A domain of the account that is offline: URL calls naming it get `InvalidDomain.Offline`
    /// (repeatable).
    #[arg(long = "offline-domain", value_name = "DOMAIN")]
    pub offline_domains: Vec<String>,
    /// How long a CDN task stays `Pending`, e.g. 100ms or 2s.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub task_refreshing_after: Duration,
    /// How long after its creation a CDN task is `Complete` (or `Failed`), e.g. 300ms or 5m.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub task_complete_after: Duration,
    /// How many CDN tasks are kept for `DescribeVodRefreshTasks` (the oldest dropped first).
    #[arg(long, default_value_t = 100_000)]
    pub max_tasks: usize,
}

impl SimArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let mut accounts = self.accounts.clone();
        if let Some(path) = &self.accounts_file {
            accounts.extend(load_accounts_file(path)?);
        }
        if accounts.is_empty() {
            accounts = SimConfig::default().accounts;
        }
        config::check_accounts(&accounts).map_err(anyhow::Error::msg)?;
        parse_error_code(&self.error_code).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.error_rate),
            "--error-rate must be between 0 and 1"
        );
        anyhow::ensure!(self.qps >= 1, "--qps must be at least 1");
        anyhow::ensure!(self.cdn.url_qps != Some(0), "--url-qps must be at least 1");
        anyhow::ensure!(
            self.cdn.urls_per_request >= 1,
            "--urls-per-request must be at least 1"
        );
        anyhow::ensure!(
            self.cdn.task_complete_after >= self.cdn.task_refreshing_after,
            "--task-complete-after must not be shorter than --task-refreshing-after"
        );
        anyhow::ensure!(
            self.sts_lifetime >= Duration::from_secs(1),
            "--sts-lifetime must be at least 1s"
        );
        Ok(SimConfig {
            listen: Some(self.listen),
            accounts,
            qps: self.qps,
            url_qps: self.cdn.url_qps,
            tolerance: self.tolerance,
            nonexistent: self.nonexistent.clone(),
            forbidden: self.forbidden.clone(),
            failing: self.failing.clone(),
            quota_per_id: self.quota_per_id,
            faults: Faults {
                error_rate: self.error_rate,
                error_code: self.error_code.clone(),
                latency_ms: self.latency_ms,
                ..Faults::default()
            },
            calls_log: self.calls_log.clone(),
            quota_refresh: self.cdn.quota_refresh,
            quota_preload: self.cdn.quota_preload,
            quota_dir: self.cdn.quota_dir,
            urls_per_request: self.cdn.urls_per_request,
            cdn_domains: self.cdn.cdn_domains.clone(),
            offline_domains: self.cdn.offline_domains.clone(),
            task_refreshing_after: self.cdn.task_refreshing_after,
            task_complete_after: self.cdn.task_complete_after,
            max_tasks: self.cdn.max_tasks,
            sts_lifetime: self.sts_lifetime,
            imds: self.imds,
            ecs_role: self.ecs_role.clone(),
            ..SimConfig::default()
        })
    }
}

/// `vod-purge sim`: serves until Ctrl-C.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let defaulted = args.accounts.is_empty() && args.accounts_file.is_none();
        let accounts = cfg.accounts.clone();
        let sim = start(cfg)
            .await
            .with_context(|| format!("starting the simulator on {}", args.listen))?;
        for account in &accounts {
            // The simulator's keys are test keys by design; printing them is the point.
            println!(
                "accepting AccessKey {} / {}",
                account.access_key_id, account.access_key_secret
            );
        }
        if defaulted {
            println!(
                "(no --account or --accounts-file given, so the default test account is used)"
            );
        }
        println!("VOD simulator listening on {}", sim.base_url());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        println!("stopping");
        sim.stop().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<SimConfig> {
        let cli = Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))?;
        cli.sim.to_config()
    }

    #[test]
    fn the_cdn_settings_have_defaults_and_flags() {
        let cfg = config(&[]).unwrap();
        let default = SimConfig::default();
        assert_eq!(
            (
                cfg.quota_refresh,
                cfg.quota_preload,
                cfg.quota_dir,
                cfg.urls_per_request,
                cfg.url_qps,
                cfg.max_tasks,
            ),
            (2000, 500, 100, 1000, None, 100_000)
        );
        assert_eq!(
            (cfg.task_refreshing_after, cfg.task_complete_after),
            (default.task_refreshing_after, default.task_complete_after)
        );
        assert!(cfg.cdn_domains.is_empty() && cfg.offline_domains.is_empty());

        let cfg = config(&[
            "--quota-url",
            "7",
            "--quota-dir",
            "3",
            "--urls-per-request",
            "10",
            "--url-qps",
            "5",
            "--cdn-domain",
            "a.example.com",
            "--cdn-domain",
            "b.example.com",
            "--offline-domain",
            "off.example.com",
            "--task-refreshing-after",
            "1s",
            "--task-complete-after",
            "5m",
            "--max-tasks",
            "50",
        ])
        .unwrap();
        assert_eq!(cfg.quota_refresh, 7, "--quota-url is --quota-refresh");
        assert_eq!(
            (
                cfg.quota_dir,
                cfg.urls_per_request,
                cfg.url_qps,
                cfg.max_tasks
            ),
            (3, 10, Some(5), 50)
        );
        assert_eq!(cfg.cdn_domains, ["a.example.com", "b.example.com"]);
        assert_eq!(cfg.offline_domains, ["off.example.com"]);
        assert_eq!(
            (cfg.task_refreshing_after, cfg.task_complete_after),
            (Duration::from_secs(1), Duration::from_secs(300))
        );
        assert_eq!(config(&["--quota-refresh", "9"]).unwrap().quota_refresh, 9);

        for bad in [
            &["--url-qps", "0"][..],
            &["--urls-per-request", "0"],
            &[
                "--task-refreshing-after",
                "2s",
                "--task-complete-after",
                "1s",
            ],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
    }
}
