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

fn sim_config(lifetime: Duration) -> SimConfig {
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
    let sim = sim::start(sim_config(lifetime)).await.unwrap();
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

fn assert_no_expired_token_was_sent(app: &TestApp) {
    let refused: Vec<_> = app
        .refresh_calls()
        .into_iter()
        .filter(|c| c.status != 200)
        .map(|c| c.code)
        .collect();
    assert!(refused.is_empty(), "refused purge calls: {refused:?}");
}

#[tokio::test]
async fn static_keys_from_the_configuration_and_the_environment() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").to_string_lossy().into_owned();
    // The configuration's keys come first, even with the variables set.
    let mut configured = settings(&db, &sim.base_url(), "");
    configured.environment = Environment::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "other"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "other-secret"),
    ]);
    let app = spawn_with_settings(configured, sim).await;
    assert_eq!(
        purge_one(&app, "static-config").await.access_key_id,
        "testid"
    );
    let (sim, _) = app.stop().await;

    let env = Environment::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
    ]);
    let app = spawn_chain(sim, env, "auto").await;
    assert_eq!(purge_one(&app, "static-env").await.access_key_id, "testid");
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("vod_purge_credential_expiry_seconds{"),
        "keys that do not expire have no expiry: {metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rrsa_renews_before_expiry_and_reads_the_token_file_again() {
    let (app, token_file) = rrsa_app(
        Duration::from_secs(3),
        "auto",
        "eyJ.first-token.sig
",
        |_| {},
    )
    .await;
    let first = purge_one(&app, "rrsa-1").await;
    assert!(first.access_key_id.starts_with("STS."), "{first:?}");
    assert!(first.params.contains_key("SecurityToken"));

    // A 3-second credential is renewed after about 1.5 s.
    wait_until(Duration::from_secs(10), "a renewal", || async {
        calls_of(&app.sim, "AssumeRoleWithOIDC").len() >= 2
    })
    .await;
    std::fs::write(&token_file, "eyJ.second-token.sig\n").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the new token to be sent",
        || async {
            calls_of(&app.sim, "AssumeRoleWithOIDC")
                .iter()
                .any(|c| c.params["OIDCToken"] == "eyJ.second-token.sig")
        },
    )
    .await;
    let sts_calls = calls_of(&app.sim, "AssumeRoleWithOIDC");
    let first_call = &sts_calls[0];
    assert_eq!(first_call.params["RoleArn"], ROLE);
    assert_eq!(first_call.params["OIDCProviderArn"], OIDC_PROVIDER);
    assert_eq!(first_call.params["RoleSessionName"], "vod-purge-test");
    assert_eq!(first_call.params["OIDCToken"], "eyJ.first-token.sig");
    assert!(!first_call.params.contains_key("AccessKeyId"), "unsigned");

    let later = purge_one(&app, "rrsa-2").await;
    assert_ne!(later.access_key_id, first.access_key_id, "a renewed key");
    assert_no_expired_token_was_sent(&app);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"vod_purge_credential_renewals_total{provider="oidc",result="success"}"#),
        "{metrics}"
    );
    let left = crate::support::metric_value(
        &metrics,
        r#"vod_purge_credential_expiry_seconds{provider="oidc"}"#,
    );
    assert!(left > 0.0 && left <= 3.0, "seconds left: {left}");
    app.stop().await;
}

#[tokio::test]
async fn the_instance_ram_role_with_imdsv2_required_and_with_imdsv1_only() {
    for (mode, auth) in [(ImdsMode::V2Required, "v2"), (ImdsMode::V1Only, "v1")] {
        let sim = sim::start(SimConfig {
            imds: mode,
            ..sim_config(Duration::from_secs(3600))
        })
        .await
        .unwrap();
        // `auto` with nothing else configured ends at the metadata service; the role is
        // discovered.
        let app = spawn_chain(sim, Environment::default(), "auto").await;
        let call = purge_one(&app, "ecs").await;
        assert!(call.access_key_id.starts_with("STS."), "{mode:?}");
        let reads = calls_of(&app.sim, "ImdsCredentials");
        assert_eq!(reads[0].params["role"], "vod-purge-role", "{mode:?}");
        assert_eq!(reads[0].params["auth"], auth, "{mode:?}");
        assert_eq!(calls_of(&app.sim, "ImdsRole")[0].params["auth"], auth);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_profile_modes_and_the_credentials_file_types() {
    // The simulator also accepts the fixed STS key of the `sts` profile.
    let mut sim = sim::start(SimConfig {
        accounts: vec![
            sim::Account::new("testid", "testsecret"),
            sim::Account::sts("STS.fixed", "fixedsecret", vec!["fixed-token".into()]),
        ],
        ..sim_config(Duration::from_secs(3600))
    })
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("oidc-token");
    std::fs::write(&token_file, "eyJ.ini-token.sig").unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    std::fs::write(
        home.path().join(".aliyun/config.json"),
        json!({
            "current": "ak",
            "profiles": [
                {"name": "ak", "mode": "AK", "access_key_id": "testid", "access_key_secret": "testsecret"},
                {"name": "sts", "mode": "StsToken", "access_key_id": "STS.fixed", "access_key_secret": "fixedsecret", "sts_token": "fixed-token"},
                {"name": "role", "mode": "RamRoleArn", "access_key_id": "testid", "access_key_secret": "testsecret",
                 "ram_role_arn": ROLE, "ram_session_name": "cli-role", "expired_seconds": 900}
            ]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(home.path().join(".alibabacloud")).unwrap();
    std::fs::write(
        home.path().join(".alibabacloud/credentials.ini"),
        format!(
            "[default]\ntype = access_key\naccess_key_id = testid\naccess_key_secret = testsecret\n\n\
             [role]\ntype = ram_role_arn\naccess_key_id = testid\naccess_key_secret = testsecret\nrole_arn = {ROLE}\nrole_session_name = ini-role\n\n\
             [oidc]\ntype = oidc_role_arn\noidc_provider_arn = {OIDC_PROVIDER}\noidc_token_file_path = {}\nrole_arn = {ROLE}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let env = |profile: &str| {
        Environment::default()
            .with_home(home.path())
            .with_var("ALIBABA_CLOUD_PROFILE", profile)
    };
    // (choice, profile, what the purge call is signed with, the STS call it took)
    let cases = [
        ("cli-profile", "ak", "testid", None),
        ("cli-profile", "sts", "STS.fixed", None),
        ("cli-profile", "role", "STS.", Some("AssumeRole")),
        ("credentials-file", "default", "testid", None),
        ("credentials-file", "role", "STS.", Some("AssumeRole")),
        (
            "credentials-file",
            "oidc",
            "STS.",
            Some("AssumeRoleWithOIDC"),
        ),
    ];
    for (choice, profile, signed_with, sts_action) in cases {
        sim.clear_calls();
        let app = spawn_chain(sim, env(profile), choice).await;
        let call = purge_one(&app, "profile").await;
        assert!(
            call.access_key_id.starts_with(signed_with),
            "{choice} {profile}: {call:?}"
        );
        if let Some(action) = sts_action {
            let sts = calls_of(&app.sim, action);
            assert_eq!(sts.len(), 1, "{choice} {profile}");
            assert_eq!(sts[0].status, 200, "{choice} {profile}: {sts:?}");
            assert_eq!(sts[0].params["RoleArn"], ROLE);
            if action == "AssumeRole" {
                // Signed with the profile's key, and the simulator checked the signature.
                assert_eq!(sts[0].access_key_id, "testid");
            }
        }
        (sim, _) = app.stop().await;
    }
}

#[tokio::test]
async fn a_credentials_uri() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let uri = format!("{}/_sim/credentials", sim.base_url());
    let env = Environment::from_pairs([("ALIBABA_CLOUD_CREDENTIALS_URI", uri.as_str())]);
    let app = spawn_chain(sim, env, "credentials-uri").await;
    let call = purge_one(&app, "uri").await;
    assert!(call.access_key_id.starts_with("STS."));
    assert_eq!(calls_of(&app.sim, "CredentialsUri").len(), 1);
    app.stop().await;
}

/// Posts one webhook per 100 ms for `seconds`, each with a new ID; returns the accepted IDs.
async fn stream_webhooks(app: &TestApp, prefix: &str, seconds: u64) -> Vec<String> {
    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let id = format!("{prefix}-{n}");
        n += 1;
        if app.webhook(json!({"media_ids": [id]})).await.status() == 202 {
            accepted.push(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accepted
}

async fn wait_all_purged(app: &TestApp, ids: &[String]) {
    wait_until(
        Duration::from_secs(30),
        "every accepted ID to be purged",
        || async {
            let sent: std::collections::HashSet<String> = app
                .successful_calls()
                .into_iter()
                .flat_map(|c| c.media_ids)
                .collect();
            ids.iter().all(|id| sent.contains(id))
        },
    )
    .await;
}

#[tokio::test]
async fn credentials_that_live_three_seconds_while_webhooks_stream_for_twenty() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    let accepted = stream_webhooks(&app, "stream", 20).await;
    assert!(accepted.len() >= 150, "only {} accepted", accepted.len());
    wait_all_purged(&app, &accepted).await;
    let renewals = calls_of(&app.sim, "AssumeRoleWithOIDC").len();
    assert!(
        renewals >= 8,
        "{renewals} credentials in 20 s of 3-second ones"
    );
    let keys: std::collections::HashSet<String> = app
        .successful_calls()
        .into_iter()
        .map(|c| c.access_key_id)
        .collect();
    assert!(
        keys.len() >= 5,
        "calls were signed with {} keys",
        keys.len()
    );
    assert_no_expired_token_was_sent(&app);
    app.stop().await;
}

async fn job_attempts(app: &TestApp, id: &str) -> serde_json::Value {
    let page = app.get_json(&format!("/jobs?media_id={id}")).await;
    page["jobs"][0]["attempts"].clone()
}

#[tokio::test]
async fn an_expired_token_answer_renews_and_resends_once_without_spending_an_attempt() {
    // No quota poll: the injected answer is for the purge call.
    let no_quota_poll =
        |s: &mut vod_purge::config::Settings| s.vod.quota_poll_interval = Duration::ZERO;
    let (app, _) = rrsa_app(
        Duration::from_secs(3600),
        "oidc",
        "eyJ.token.sig",
        no_quota_poll,
    )
    .await;
    // VOD's clock says the token has expired, though its Expiration is an hour away.
    app.sim.set_faults(Faults {
        fail_next: 1,
        error_code: "InvalidSecurityToken.Expired".into(),
        ..Faults::default()
    });
    let sent = purge_one(&app, "refused-once").await;
    let refresh = app.refresh_calls();
    assert_eq!(
        refresh.len(),
        2,
        "one refused call and one resend: {refresh:?}"
    );
    assert_eq!(
        refresh[0].code.as_deref(),
        Some("InvalidSecurityToken.Expired")
    );
    assert_ne!(
        refresh[0].access_key_id, sent.access_key_id,
        "re-signed with a new key"
    );
    assert_eq!(
        calls_of(&app.sim, "AssumeRoleWithOIDC").len(),
        2,
        "one forced renewal"
    );
    assert_eq!(job_attempts(&app, "refused-once").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn sts_down_for_ten_seconds_while_the_credential_runs_out() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    purge_one(&app, "before").await;
    app.sim.set_faults(Faults {
        sts_error_code: Some("ServiceUnavailable/503".into()),
        ..Faults::default()
    });
    let accepted = stream_webhooks(&app, "outage", 10).await;
    let during: Vec<_> = calls_of(&app.sim, "AssumeRoleWithOIDC")
        .into_iter()
        .filter(|c| c.status == 503)
        .collect();
    assert!(during.len() >= 3, "renewals were retried: {}", during.len());
    app.sim.set_faults(Faults::default());
    wait_all_purged(&app, &accepted).await;
    let failed = app.get_json("/jobs?status=failed").await;
    assert_eq!(failed["jobs"], json!([]), "no job failed");
    assert_no_expired_token_was_sent(&app);
    for id in [&accepted[0], accepted.last().unwrap()] {
        assert_eq!(job_attempts(&app, id).await, 1, "{id}");
    }
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"vod_purge_credential_renewals_total{provider="oidc",result="failure"}"#),
        "{metrics}"
    );
    app.stop().await;
}

/// The chain resolved as the application would at start.
async fn resolve(sim: &SimHandle, env: Environment, choice: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let settings = chain_settings(dir.path(), sim, env, choice);
    credentials::resolve_for(&settings)
        .await
        .map(|(r, _)| r.provider.to_string())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn bad_credential_sources_are_named_and_auto_goes_on() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("broken.json"), "{\"profiles\": [").unwrap();
    std::fs::write(path("broken.ini"), "[default\ntype = access_key\n").unwrap();
    std::fs::write(
        path("odd.json"),
        r#"{"current": "x", "profiles": [{"name": "x", "mode": "Telepathy"}]}"#,
    )
    .unwrap();
    std::fs::write(path("empty-token"), "  \n").unwrap();
    std::fs::write(path("token"), "eyJ.token.sig").unwrap();
    let no_ecs = Environment::from_pairs([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);

    let cli = |file: &str| {
        no_ecs
            .clone()
            .with_var("ALIBABA_CLOUD_CONFIG_FILE", &path(file))
    };
    let err = resolve(&sim, cli("broken.json"), "cli-profile")
        .await
        .unwrap_err();
    assert!(
        err.contains("cli-profile: ") && err.contains("broken.json is not a CLI configuration"),
        "{err}"
    );
    let err = resolve(&sim, cli("odd.json"), "cli-profile")
        .await
        .unwrap_err();
    assert!(
        err.contains("odd.json profile \"x\": unknown mode \"Telepathy\""),
        "{err}"
    );
    let ini = no_ecs
        .clone()
        .with_var("ALIBABA_CLOUD_CREDENTIALS_FILE", &path("broken.ini"));
    let err = resolve(&sim, ini, "credentials-file").await.unwrap_err();
    assert!(
        err.contains("credentials-file: ") && err.contains("broken.ini is not an INI file"),
        "{err}"
    );

    let oidc = |token: &str| oidc_env(Path::new(&path(token)));
    let err = resolve(&sim, oidc("empty-token"), "oidc")
        .await
        .unwrap_err();
    assert!(
        err.contains("oidc: ") && err.contains("empty-token is empty"),
        "{err}"
    );
    sim.set_faults(Faults {
        sts_error_code: Some("AuthenticationFail.OIDCToken.Expired".into()),
        ..Faults::default()
    });
    let err = resolve(&sim, oidc("token"), "oidc").await.unwrap_err();
    assert!(
        err.contains("STS AssumeRoleWithOIDC: AuthenticationFail.OIDCToken.Expired (HTTP 400)"),
        "{err}"
    );
    sim.set_faults(Faults {
        metadata_code: Some("Failed".into()),
        ..Faults::default()
    });
    let err = resolve(&sim, Environment::default(), "ecs-ram-role")
        .await
        .unwrap_err();
    assert!(
        err.contains("ecs-ram-role: role \"vod-purge-role\": the answer's Code is \"Failed\""),
        "{err}"
    );
    sim.set_faults(Faults::default());
    let missing_role = Environment::from_pairs([("ALIBABA_CLOUD_ECS_METADATA", "no-such-role")]);
    let err = resolve(&sim, missing_role, "ecs-ram-role")
        .await
        .unwrap_err();
    assert!(
        err.contains("no RAM role \"no-such-role\" (metadata service: HTTP 404)"),
        "{err}"
    );

    // `auto` passes over the broken CLI file and the broken OIDC setup, and takes the INI file.
    std::fs::write(
        path("good.ini"),
        "[default]\ntype = access_key\naccess_key_id = testid\naccess_key_secret = testsecret\n",
    )
    .unwrap();
    let env = oidc("empty-token")
        .with_var("ALIBABA_CLOUD_CONFIG_FILE", &path("broken.json"))
        .with_var("ALIBABA_CLOUD_CREDENTIALS_FILE", &path("good.ini"));
    assert_eq!(
        resolve(&sim, env, "auto").await,
        Ok("credentials-file".to_owned())
    );
    // And with nothing that works, the error lists every provider.
    let err = resolve(&sim, cli("broken.json"), "auto").await.unwrap_err();
    for provider in [
        "config: not configured",
        "env: not configured",
        "oidc: not configured",
        "cli-profile: ",
        "credentials-file: not configured",
        "ecs-ram-role: not configured",
        "credentials-uri: not configured",
    ] {
        assert!(err.contains(provider), "{err} lacks {provider}");
    }
    sim.stop().await;
}

#[test]
fn check_config_says_which_provider_was_chosen_and_why_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[server]\nadmin_token = \"t\"\n").unwrap();
    let out = crate::support::check_config(
        &path,
        [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tExample".to_owned()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "never-printed-secret".to_owned(),
            ),
        ],
    );
    let stdout = &out.stdout;
    assert!(out.success, "{}", out.stderr);
    assert!(
        stdout.contains("# credentials: config skipped: not configured: vod.access_key_id and vod.access_key_secret are empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# credentials: using env (AccessKey LTAI5tExample)"),
        "{stdout}"
    );
    assert!(!stdout.contains("never-printed-secret"), "{stdout}");
}

/// The `env` entries of a manifest's container with literal values (`- name:` then `value:`).
fn manifest_env(path: &str) -> Vec<(String, String)> {
    let yaml = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let name = pair[0]
                .strip_prefix("- name: ")?
                .split_whitespace()
                .next()?;
            let value = pair[1].strip_prefix("value: ")?.trim_matches('"');
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The ACK manifest's variables, with its ConfigMap, make the service assume the role through
/// RRSA (STS and the token file redirected to the simulator and a temporary file).
#[tokio::test]
async fn the_rrsa_manifest_configures_the_oidc_provider() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.projected.sig").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::ops::configmap_config("ack-rrsa")).unwrap();
    let env = manifest_env("k8s/ack-rrsa/deployment.yaml");
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "VOD_PURGE_VOD__CREDENTIALS",
    ] {
        assert!(
            names.contains(&needed),
            "{needed} is not in the manifest: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("ACCESS_KEY")),
        "no AccessKey: {names:?}"
    );
    let sts = format!("{}/sts", sim.base_url());
    let token = token.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        // The test's values come last and win over the manifest's.
        let mut vars: Vec<(&str, String)> =
            env.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        vars.extend([
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token),
            ("VOD_PURGE_VOD__STS_ENDPOINT", sts),
            (
                "CMS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            ),
            ("VOD_PURGE_STORE__URL", "postgres://vod@db/vod".to_owned()),
        ]);
        crate::support::check_config(&config, vars)
    })
    .await
    .unwrap();
    let stdout = &out.stdout;
    assert!(out.success, "{}", out.stderr);
    assert!(
        stdout.contains("# credentials: using oidc (AssumeRoleWithOIDC of acs:ram::"),
        "{stdout}"
    );
    let sts = calls_of(&sim, "AssumeRoleWithOIDC");
    assert_eq!(sts.len(), 1);
    assert_eq!(sts[0].params["OIDCToken"], "eyJ.projected.sig");
    sim.stop().await;
}
