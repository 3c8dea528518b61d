//! Each account has its own credential chain: the default account on static keys, another on
//! RRSA (its own role, its own STS); one account's STS failing stops only that account.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::sim::{self, Faults, SimConfig};

use super::{INTL_TOKEN, ids, post, sent};
use crate::support::{settings, spawn_with_settings, wait_until};

const ROLE: &str = "acs:ram::5678901234567890:role/vod-purge-intl";
const OIDC_PROVIDER: &str = "acs:ram::5678901234567890:oidc-provider/ack-rrsa-intl";

/// The test settings (store in `dir`) with an account `intl` on `intl`'s VOD, whose credential is
/// RRSA with its own role and STS (the token in `dir`); `extra` is TOML added to them.
fn rrsa_intl(
    dir: &tempfile::TempDir,
    default: &sim::SimHandle,
    intl: &sim::SimHandle,
    extra: &str,
) -> vod_purge::config::Settings {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJ.intl.token").unwrap();
    let db = dir
        .path()
        .join("vod-purge.db")
        .to_string_lossy()
        .into_owned();
    let base = intl.base_url();
    settings(
        &db,
        &default.base_url(),
        &format!(
            "[[accounts]]\nname = \"intl\"\nendpoint = \"{base}\"\ncredentials = \"oidc\"\n\
             sts_endpoint = \"{base}/sts\"\nrole_arn = \"{ROLE}\"\noidc_provider_arn = \"{OIDC_PROVIDER}\"\n\
             oidc_token_file = \"{}\"\n{extra}",
            token_file.display()
        ),
    )
}

#[tokio::test]
async fn one_account_on_rrsa_another_on_static_keys_and_its_sts_failing_stops_only_it() {
    let default = sim::start(SimConfig {
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The international account's VOD and STS: credentials that live 3 s, renewed at 2 s.
    let intl = sim::start(SimConfig {
        accounts: vec![sim::Account::new("intlbase", "intlbasesecret")],
        sts_lifetime: Duration::from_secs(3),
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = rrsa_intl(
        &dir,
        &default,
        &intl,
        &format!(
            "[[sources]]\nname = \"intl-cms\"\nauth = \"bearer\"\nsecrets = [\"{INTL_TOKEN}\"]\n\
             format = \"native\"\naccount = \"intl\"\n"
        ),
    );
    // The process's own RRSA variables name another role: the default account's, unused here
    // (it signs with its configured keys), and never the intl account's.
    settings.environment = vod_purge::credentials::Environment::from_pairs([
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/not-intl"),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/not-intl",
        ),
    ]);
    let app = spawn_with_settings(settings, default).await;

    assert_eq!(
        app.webhook(json!({"media_ids": ["cnkey1"]})).await.status(),
        202
    );
    let r = post(
        &app,
        "intl-cms",
        INTL_TOKEN,
        json!({"media_ids": ["sgkey1"]}),
    )
    .await;
    assert_eq!(r.status(), 202);
    wait_until(Duration::from_secs(10), "both accounts purged", || async {
        sent(&app.sim.calls()).0.contains("cnkey1") && sent(&intl.calls()).0.contains("sgkey1")
    })
    .await;
    assert_eq!(
        sent(&app.sim.calls()).1,
        BTreeSet::from(["testid".to_owned()])
    );
    let intl_keys = sent(&intl.calls()).1;
    assert!(
        intl_keys.iter().all(|k| k.starts_with("STS.")),
        "{intl_keys:?}"
    );
    let assumed: Vec<String> = intl
        .calls()
        .iter()
        .filter(|c| c.action == "AssumeRoleWithOIDC")
        .map(|c| c.params.get("RoleArn").cloned().unwrap_or_default())
        .collect();
    assert!(
        !assumed.is_empty() && assumed.iter().all(|r| r == ROLE),
        "{assumed:?}"
    );

    // The intl account's STS fails from now on: its credential runs out, and its calls wait.
    intl.set_faults(Faults {
        sts_error_code: Some("InternalError".to_owned()),
        ..Faults::default()
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sg = ids("sgwait", 5);
    let r = post(&app, "intl-cms", INTL_TOKEN, json!({"media_ids": sg})).await;
    assert_eq!(r.status(), 202);
    // The default account goes on as before.
    let cn = ids("cnstill", 40);
    assert_eq!(app.webhook(json!({"media_ids": cn})).await.status(), 202);
    let want: BTreeSet<String> = cn.iter().cloned().collect();
    wait_until(
        Duration::from_secs(10),
        "the default account's purges",
        || async { sent(&app.sim.calls()).0.is_superset(&want) },
    )
    .await;
    assert!(
        sent(&intl.calls())
            .0
            .iter()
            .all(|id| !id.starts_with("sgwait"))
    );

    // STS is back: the intl account renews and its work goes out.
    intl.set_faults(Faults::default());
    let want: BTreeSet<String> = sg.iter().cloned().collect();
    wait_until(
        Duration::from_secs(20),
        "the intl account's purges",
        || async { sent(&intl.calls()).0.is_superset(&want) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_accounts_sts_down_at_start_leaves_the_others_running_and_it_starts_once_sts_is_back() {
    let default = sim::start(SimConfig::default()).await.unwrap();
    let intl = sim::start(SimConfig {
        accounts: vec![sim::Account::new("intlbase", "intlbasesecret")],
        faults: Faults {
            sts_error_code: Some("InternalError".to_owned()),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = rrsa_intl(&dir, &default, &intl, "");
    // The start succeeds: the default account needs nothing from the intl account's STS.
    let app = spawn_with_settings(settings, default).await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["cnup1"]})).await.status(),
        202
    );
    let r = app
        .purge(json!({"media_ids": ["sgwaits1"], "account": "intl"}))
        .await;
    assert_eq!(r.status(), 202);
    wait_until(
        Duration::from_secs(10),
        "the default account's purge",
        || async { sent(&app.sim.calls()).0.contains("cnup1") },
    )
    .await;
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["vod_credentials_missing"], json!(["intl"]), "{ready}");
    assert!(sent(&intl.calls()).0.is_empty());
    intl.set_faults(Faults::default());
    wait_until(
        Duration::from_secs(20),
        "the intl purge once STS is back",
        || async { sent(&intl.calls()).0.contains("sgwaits1") },
    )
    .await;
    app.stop().await;
}
