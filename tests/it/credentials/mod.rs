//! The credential chain end to end: each provider obtains its credential from the simulator's
//! STS, metadata service or credentials URI, the service purges with it, renews it before it
//! expires, and rides out a renewal that fails.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use vod_purge::credentials::{self, Environment};
use vod_purge::sim::{self, Faults, ImdsMode, RecordedCall, SimConfig, SimHandle};

use crate::support::{TestApp, settings, spawn_with_settings, wait_until};

const ROLE: &str = "acs:ram::1234567890123456:role/vod-purge";
const OIDC_PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";

pub(crate) fn sim_config(lifetime: Duration) -> SimConfig {
    SimConfig {
        sts_lifetime: lifetime,
        quota_refresh: 10_000_000,
        quota_preload: 10_000_000,
        ..SimConfig::default()
    }
}

/// Test settings without the simulator's static keys: the credential comes from `env` through
/// the chain (`choice`), with STS and the metadata service on the simulator.
fn chain_settings(
    dir: &Path,
    sim: &SimHandle,
    env: Environment,
    choice: &str,
) -> vod_purge::config::Settings {
    let db = dir.join("vod-purge.db").to_string_lossy().into_owned();
    let base = sim.base_url();
    let mut settings = settings(
        &db,
        &base,
        &format!(
            "[vod]\naccess_key_id = \"\"\naccess_key_secret = \"\"\ncredentials = \"{choice}\"\n\
             sts_endpoint = \"{base}/sts\"\nmetadata_endpoint = \"{base}\"\n"
        ),
    );
    settings.environment = env;
    settings
}

async fn spawn_chain(sim: SimHandle, env: Environment, choice: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let settings = chain_settings(dir.path(), &sim, env, choice);
    spawn_with_settings(settings, sim).await.keeping(dir)
}

/// The RRSA variables with the token in `token_file`.
fn oidc_env(token_file: &Path) -> Environment {
    Environment::from_pairs([
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "vod-purge-test"),
    ])
    .with_var(
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        token_file.to_str().unwrap(),
    )
}

/// An application whose credential comes from RRSA (`choice` "auto" or "oidc") with STS
/// credentials that live `lifetime`; `adjust` may change its settings. The token file holds
/// `token` and its path is returned, with the directory that keeps it.
pub(crate) async fn rrsa_app(
    lifetime: Duration,
    choice: &str,
    token: &str,
    adjust: impl FnOnce(&mut vod_purge::config::Settings),
) -> (TestApp, std::path::PathBuf) {
    rrsa_app_on(sim_config(lifetime), choice, token, adjust).await
}

/// [`rrsa_app`] with a simulator started from `sim` (see [`sim_config`]).
pub(crate) async fn rrsa_app_on(
    sim: SimConfig,
    choice: &str,
    token: &str,
    adjust: impl FnOnce(&mut vod_purge::config::Settings),
) -> (TestApp, std::path::PathBuf) {
    let sim = sim::start(sim).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let mut settings = chain_settings(dir.path(), &sim, oidc_env(&token_file), choice);
    adjust(&mut settings);
    let app = spawn_with_settings(settings, sim).await.keeping(dir);
    (app, token_file)
}

fn calls_of(sim: &SimHandle, action: &str) -> Vec<RecordedCall> {
    sim.calls()
        .into_iter()
        .filter(|c| c.action == action)
        .collect()
}

/// Sends one webhook for `id` and waits for a successful purge of it; returns that call.
async fn purge_one(app: &TestApp, id: &str) -> RecordedCall {
    assert_eq!(app.webhook(json!({"media_ids": [id]})).await.status(), 202);
    wait_until(Duration::from_secs(10), "the purge of the ID", || async {
        app.successful_calls()
            .iter()
            .any(|c| c.media_ids.iter().any(|m| m == id))
    })
    .await;
    app.successful_calls()
        .into_iter()
        .find(|c| c.media_ids.iter().any(|m| m == id))
        .unwrap()
}

/// Each credential the simulator handed out was replaced while it was still valid: every key
/// after the first was issued before the one before it expired. (Callers wait while no valid
/// credential is held, so a renewal that came late would show nowhere else.) Returns how many
/// keys were handed out.
fn assert_renewed_before_expiry(sim: &SimHandle) -> usize {
    let keys = sim.issued_keys();
    for pair in keys.windows(2) {
        let ((old_id, old), (new_id, new)) = (&pair[0], &pair[1]);
        assert!(
            new.issued_ms < old.expires_ms,
            "{new_id} was issued {} ms after {old_id} had expired",
            new.issued_ms - old.expires_ms
        );
    }
    keys.len()
}

fn assert_no_expired_token_was_sent(app: &TestApp) {
    let refused: Vec<_> = app
        .refresh_calls()
        .into_iter()
        .filter(|c| c.status != 200)
        .map(|c| c.code)
        .collect();
    assert!(refused.is_empty(), "refused purge calls: {refused:?}");
}

mod chain;
mod providers;
mod renewal;
