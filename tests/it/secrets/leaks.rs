//! One test per remote the service signs or authenticates a request for (VOD, STS, the metadata
//! service, a credentials URI): the remote fails, and nothing the service shows or logs holds
//! a secret the request carried or the credential it got.

use std::time::Duration;

use vod_purge::sim::{self, Account, SimConfig, SimHandle};

use super::{Relay, Served, assert_none_shown};

const ROLE: &str = "acs:ram::1234567890123456:role/vod-purge";

async fn simulator(lifetime: Duration, accounts: Vec<Account>) -> SimHandle {
    let mut config = SimConfig {
        sts_lifetime: lifetime,
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        ..SimConfig::default()
    };
    config.accounts.extend(accounts);
    sim::start(config).await.unwrap()
}

/// The STS keys the simulator handed out: their secrets and tokens.
fn issued_secrets(sim: &SimHandle) -> Vec<(&'static str, String)> {
    let keys = sim.issued_keys();
    assert!(!keys.is_empty(), "the simulator handed out a key");
    keys.into_iter()
        .flat_map(|(_, key)| {
            [
                ("an issued secret", key.secret),
                ("an issued token", key.token),
            ]
        })
        .collect()
}

/// What a signed query looks like, whoever's it is.
fn signed_query_parts() -> Vec<(&'static str, String)> {
    ["Signature=", "SecurityToken=", "SignatureNonce="]
        .into_iter()
        .map(|part| ("a signed query", part.to_owned()))
        .collect()
}

#[tokio::test]
async fn vod_unreachable_shows_no_signed_query_nor_token() {
    // The credential comes from the instance role; VOD's address refuses connections.
    let sim = simulator(Duration::from_secs(3600), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", crate::support::free_port());
    let served = Served::start(
        dir.path(),
        &format!(
            "endpoint = \"{closed}\"\ncredentials = \"ecs-ram-role\"\nmetadata_endpoint = \"{}\"\n",
            sim.base_url()
        ),
        &[],
    )
    .await;
    served.webhook(&["unreachable-1", "unreachable-2"]).await;
    let message = served.wait_for_job_error("cannot reach VOD").await;
    let host = closed.trim_start_matches("http://");
    assert!(message.contains(host), "the host is named: {message}");
    served.wait_for_log("cannot reach VOD").await;

    let mut secrets = issued_secrets(&sim);
    secrets.extend(signed_query_parts());
    assert_none_shown(&served.everything_shown().await, &secrets);
}

#[tokio::test]
async fn a_refusal_that_quotes_the_string_to_sign_shows_no_token() {
    // An STS key with the wrong secret: VOD's SignatureDoesNotMatch quotes its string to sign,
    // which holds the security token.
    let token = "CAISfixed+token/with=signs0123456789";
    let sim = simulator(
        Duration::from_secs(3600),
        vec![Account::sts(
            "STS.fixed",
            "the-real-secret",
            vec![token.into()],
        )],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        dir.path(),
        &format!("endpoint = \"{}\"\ncredentials = \"env\"\n", sim.base_url()),
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.fixed".to_owned()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "a-wrong-secret-of-ours".to_owned(),
            ),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", token.to_owned()),
        ],
    )
    .await;
    served.webhook(&["mis-signed"]).await;
    let message = served.wait_for_job_error("SignatureDoesNotMatch").await;
    assert!(message.contains("string to sign"), "{message}");
    let calls = sim.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.code.as_deref() == Some("SignatureDoesNotMatch")),
        "{calls:?}"
    );

    let mut secrets = signed_query_parts();
    secrets.extend([
        ("the security token", token.to_owned()),
        (
            "the token, encoded",
            "CAISfixed%2Btoken%2Fwith%3Dsigns".to_owned(),
        ),
        ("the token, encoded twice", "CAISfixed%252Btoken".to_owned()),
        ("the secret", "a-wrong-secret-of-ours".to_owned()),
    ]);
    assert_none_shown(&served.everything_shown().await, &secrets);
}

#[tokio::test]
async fn sts_unreachable_shows_neither_the_base_token_nor_the_signature() {
    // A CLI profile that assumes a role with a fixed STS key: AssumeRole's query carries that
    // key's token and the signature.
    let (base_secret, base_token) = ("base-secret-0123456789", "CAISbase-token-0123456789");
    let sim = simulator(
        Duration::from_secs(3),
        vec![Account::sts(
            "STS.base",
            base_secret,
            vec![base_token.into()],
        )],
    )
    .await;
    let sts = Relay::start(sim.addr()).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    std::fs::write(
        home.path().join(".aliyun/config.json"),
        serde_json::json!({
            "current": "role",
            "profiles": [
                {"name": "base", "mode": "StsToken", "access_key_id": "STS.base",
                 "access_key_secret": base_secret, "sts_token": base_token},
                {"name": "role", "mode": "ChainableRamRoleArn", "source_profile": "base",
                 "ram_role_arn": ROLE, "ram_session_name": "leak-test"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let served = Served::start(
        home.path(),
        &format!(
            "endpoint = \"{}\"\ncredentials = \"cli-profile\"\nsts_endpoint = \"{}/sts\"\n",
            sim.base_url(),
            sts.base_url()
        ),
        &[("HOME", home.path().to_string_lossy().into_owned())],
    )
    .await;
    assert_eq!(sim.calls()[0].action, "AssumeRole");
    sts.cut();
    // A 3-second credential is renewed after 1.5 s; the renewal fails.
    served.wait_for_log("credential renewal failed").await;
    served.webhook(&["during-the-sts-outage"]).await;

    let mut secrets = issued_secrets(&sim);
    secrets.extend(signed_query_parts());
    secrets.extend([
        ("the base key's token", base_token.to_owned()),
        ("the base key's secret", base_secret.to_owned()),
        ("STS's path and query", "/sts/?".to_owned()),
    ]);
    let shown = served.everything_shown().await;
    assert_none_shown(&shown, &secrets);
    let host = sts.base_url().replace("http://", "");
    assert!(shown.contains(&format!("cannot reach {host}")), "{shown}");
}

#[tokio::test]
async fn the_metadata_service_unreachable_shows_no_key_nor_path() {
    let sim = simulator(Duration::from_secs(3), vec![]).await;
    let metadata = Relay::start(sim.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        dir.path(),
        &format!(
            "endpoint = \"{}\"\ncredentials = \"ecs-ram-role\"\nmetadata_endpoint = \"{}\"\n",
            sim.base_url(),
            metadata.base_url()
        ),
        &[],
    )
    .await;
    metadata.cut();
    served.wait_for_log("credential renewal failed").await;
    served.webhook(&["during-the-metadata-outage"]).await;

    let mut secrets = issued_secrets(&sim);
    secrets.push((
        "the metadata path (the endpoint is named by its host)",
        "/latest/".to_owned(),
    ));
    let shown = served.everything_shown().await;
    assert_none_shown(&shown, &secrets);
    let host = metadata.base_url().replace("http://", "");
    assert!(shown.contains(&format!("cannot reach {host}")), "{shown}");
}

#[tokio::test]
async fn a_credentials_uri_unreachable_shows_no_query_token() {
    let query_token = "uri-query-token-0123456789";
    let sim = simulator(Duration::from_secs(3), vec![]).await;
    let relay = Relay::start(sim.addr()).await;
    let uri = format!(
        "{}/_sim/credentials?token={query_token}&v=1",
        relay.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let vod = format!(
        "endpoint = \"{}\"\ncredentials = \"credentials-uri\"\n",
        sim.base_url()
    );
    let env = [("ALIBABA_CLOUD_CREDENTIALS_URI", uri.clone())];
    let served = Served::start(dir.path(), &vod, &env).await;
    relay.cut();
    served.wait_for_log("credential renewal failed").await;
    served.webhook(&["during-the-uri-outage"]).await;

    let mut secrets = issued_secrets(&sim);
    secrets.extend([
        ("the URI's query token", query_token.to_owned()),
        ("the URI's path", "/_sim/credentials".to_owned()),
    ]);
    assert_none_shown(&served.everything_shown().await, &secrets);

    // A start that fails on the same URI says why without it.
    let again = tempfile::tempdir().unwrap();
    let mut refused = Served::spawn(again.path(), &vod, &env);
    assert!(!refused.ended().await, "a start without a credential fails");
    let log = refused.log();
    assert!(log.contains("credentials-uri"), "{log}");
    assert_none_shown(&log, &secrets[secrets.len() - 2..]);
}
