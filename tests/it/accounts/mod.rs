//! Several VOD accounts from one deployment: each source's IDs reach only its account's
//! endpoint, signed with that account's key; one account down never slows another; a start
//! without a credential for an account names it.

mod credentials;
mod migration;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::sim::{self, Account, RecordedCall, SimConfig, SimHandle};

use crate::support::{ADMIN_TOKEN, TestApp, settings, spawn_with_settings, temp_store, wait_until};

const INTL_TOKEN: &str = "intl-token";

/// A simulator for the international account: its own AccessKey.
async fn intl_sim(listen: Option<std::net::SocketAddr>) -> SimHandle {
    sim::start(SimConfig {
        listen,
        accounts: vec![Account::new("intlid", "intlsecret")],
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// The test settings with an `intl` account on `intl_endpoint` and a source `intl-cms` for it.
fn two_accounts(
    db: &str,
    default: &SimHandle,
    intl_endpoint: &str,
    extra: &str,
) -> vod_purge::config::Settings {
    settings(
        db,
        &default.base_url(),
        &format!(
            "[[accounts]]\nname = \"intl\"\nendpoint = \"{intl_endpoint}\"\n\
             access_key_id = \"intlid\"\naccess_key_secret = \"intlsecret\"\n\
             [[sources]]\nname = \"intl-cms\"\nauth = \"bearer\"\nsecrets = [\"{INTL_TOKEN}\"]\n\
             format = \"native\"\naccount = \"intl\"\n{extra}"
        ),
    )
}

async fn spawn_two(intl_endpoint: &str, extra: &str) -> (TestApp, tempfile::TempDir) {
    let default = sim::start(SimConfig {
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (dir, db) = temp_store();
    let settings = two_accounts(&db, &default, intl_endpoint, extra);
    (spawn_with_settings(settings, default).await, dir)
}

async fn post(
    app: &TestApp,
    source: &str,
    token: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    app.webhook_to(source, token, body).await
}

/// The media IDs of the successful `RefreshMediaPlayUrls` calls, with the keys that signed them.
fn sent(calls: &[RecordedCall]) -> (BTreeSet<String>, BTreeSet<String>) {
    let purges = calls
        .iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls" && c.status == 200);
    let ids = purges.clone().flat_map(|c| c.media_ids.clone()).collect();
    let keys = purges.map(|c| c.access_key_id.clone()).collect();
    (ids, keys)
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

#[tokio::test]
async fn each_sources_ids_reach_only_its_accounts_endpoint_signed_with_its_key() {
    let intl = intl_sim(None).await;
    let (app, _dir) = spawn_two(&intl.base_url(), "").await;
    let cn = ids("cnvideo", 5);
    let sg = ids("sgvideo", 5);
    assert_eq!(app.webhook(json!({"media_ids": cn})).await.status(), 202);
    let r = post(&app, "intl-cms", INTL_TOKEN, json!({"media_ids": sg})).await;
    assert_eq!(r.status(), 202);
    // The same media ID in both accounts is two items, one purge in each.
    assert_eq!(
        app.webhook(json!({"media_ids": ["sharedvideo1"]}))
            .await
            .status(),
        202
    );
    let r = post(
        &app,
        "intl-cms",
        INTL_TOKEN,
        json!({"media_ids": ["sharedvideo1"]}),
    )
    .await;
    assert_eq!(r.status(), 202);
    // The admin /purge may name the account.
    assert_eq!(
        app.purge(json!({"media_ids": ["adminsgvideo1"], "account": "intl"}))
            .await
            .status(),
        202
    );
    let want_default: BTreeSet<String> = cn
        .iter()
        .cloned()
        .chain(["sharedvideo1".to_owned()])
        .collect();
    let want_intl: BTreeSet<String> = sg
        .iter()
        .cloned()
        .chain(["sharedvideo1".to_owned(), "adminsgvideo1".to_owned()])
        .collect();
    wait_until(Duration::from_secs(10), "both accounts purged", || async {
        sent(&app.sim.calls()).0 == want_default && sent(&intl.calls()).0 == want_intl
    })
    .await;
    let (_, default_keys) = sent(&app.sim.calls());
    let (_, intl_keys) = sent(&intl.calls());
    assert_eq!(default_keys, BTreeSet::from(["testid".to_owned()]));
    assert_eq!(intl_keys, BTreeSet::from(["intlid".to_owned()]));
    // Nothing signed by one account reached the other's endpoint, even refused.
    assert!(app.sim.calls().iter().all(|c| c.access_key_id == "testid"));
    assert!(intl.calls().iter().all(|c| c.access_key_id == "intlid"));

    // The jobs say their account, and filter by it.
    let jobs = app.get_json("/jobs?account=intl&limit=100").await;
    let listed: BTreeSet<String> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["items"].as_array().unwrap().clone())
        .map(|i| i["media_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, want_intl, "{jobs}");
    let r = app
        .http
        .get(format!("{}/jobs?account=nope", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn a_body_names_its_account_only_where_allowed_and_only_a_known_one() {
    let intl = intl_sim(None).await;
    let (app, _dir) = spawn_two(&intl.base_url(), "").await;
    let code = |r: serde_json::Value| r["error"]["code"].as_str().unwrap_or_default().to_owned();
    // "cms" does not allow a body to name its account.
    let r = app
        .webhook(json!({"media_ids": ["abc123"], "account": "intl"}))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(code(r.json().await.unwrap()), "account_not_allowed");
    // Naming its own account is no override.
    let r = app
        .webhook(json!({"media_ids": ["abc123"], "account": "default"}))
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .purge(json!({"media_ids": ["abc124"], "account": "nope"}))
        .await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(body.clone()), "unknown_account");
    assert!(
        !body.to_string().contains("intl"),
        "no configured account is listed: {body}"
    );
    // Not a name at all: the body is malformed.
    let r = app
        .purge(json!({"media_ids": ["abc125"], "account": 7}))
        .await;
    assert_eq!(r.status(), 400);
    // Nothing of a refused request was stored.
    let queue = app.get_json("/queue").await;
    assert!(queue["pending"].as_u64().unwrap() <= 1, "{queue}");
    app.stop().await;
}

#[tokio::test]
async fn one_account_down_leaves_the_other_draining_and_its_work_goes_out_when_back() {
    // The international endpoint is a closed port until its simulator starts on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let intl_addr = closed.local_addr().unwrap();
    drop(closed);
    let (app, _dir) = spawn_two(&format!("http://{intl_addr}"), "").await;
    let sg = ids("sgvideo", 60);
    let r = post(&app, "intl-cms", INTL_TOKEN, json!({"media_ids": sg})).await;
    assert_eq!(r.status(), 202);
    // While intl is down, the default account drains a backlog of its own.
    let cn = ids("cnvideo", 600);
    for chunk in cn.chunks(200) {
        assert_eq!(app.webhook(json!({"media_ids": chunk})).await.status(), 202);
    }
    let want: BTreeSet<String> = cn.iter().cloned().collect();
    wait_until(
        Duration::from_secs(20),
        "the default account drained",
        || async { sent(&app.sim.calls()).0 == want },
    )
    .await;
    // The calls of the default account went at its pace, not the outage's: 30 calls at 50/s.
    let purges: Vec<i64> = app
        .sim
        .calls()
        .iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls")
        .map(|c| c.at_ms)
        .collect();
    let span = purges.iter().max().unwrap() - purges.iter().min().unwrap();
    assert_eq!(purges.len(), 30, "no call of the default account failed");
    assert!(span < 5_000, "30 calls took {span} ms");
    // The intl items are still there, not failed.
    let jobs = app.get_json("/jobs?account=intl&status=failed").await;
    assert!(jobs["jobs"].as_array().unwrap().is_empty(), "{jobs}");

    // VOD of the intl account comes back: all its work goes out.
    let intl = intl_sim(Some(intl_addr)).await;
    let want: BTreeSet<String> = sg.iter().cloned().collect();
    wait_until(
        Duration::from_secs(30),
        "the intl account drained",
        || async { sent(&intl.calls()).0 == want },
    )
    .await;
    assert!(
        sent(&app.sim.calls())
            .0
            .iter()
            .all(|id| id.starts_with("cn"))
    );
    app.stop().await;
}

#[tokio::test]
async fn an_account_without_a_credential_stops_the_start_naming_it() {
    let default = sim::start(SimConfig::default()).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (dir, db) = temp_store();
    let mut unpinned = settings(
        &db,
        &default.base_url(),
        &format!(
            "[[accounts]]\nname = \"intl\"\nendpoint = \"{nowhere}\"\nmetadata_endpoint = \"{nowhere}\"\n"
        ),
    );
    // The process's own keys are the default account's, never another's.
    unpinned.environment = vod_purge::credentials::Environment::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
    ]);
    let error = match vod_purge::startup::Application::build(unpinned).await {
        Ok(_) => panic!("the start must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("account \"intl\""), "{error}");
    assert!(error.contains("ecs-ram-role"), "{error}");
    // The machine's instance role is not taken by falling through the chain...
    assert!(error.contains("pins it for this account"), "{error}");
    assert!(error.contains("accounts[intl].access_key_id"), "{error}");
    assert!(!error.contains("testsecret"), "{error}");
    // ...but when the account pins it.
    let db2 = dir.path().join("pinned.db").to_string_lossy().into_owned();
    let base = default.base_url();
    let pinned = settings(
        &db2,
        &base,
        &format!(
            "[[accounts]]\nname = \"intl\"\nendpoint = \"{base}\"\ncredentials = \"ecs-ram-role\"\nmetadata_endpoint = \"{base}\"\n"
        ),
    );
    let app = spawn_with_settings(pinned, default).await;
    let r = app
        .purge(json!({"media_ids": ["ecsrole1"], "account": "intl"}))
        .await;
    assert_eq!(r.status(), 202);
    wait_until(Duration::from_secs(10), "the intl purge", || async {
        app.sim.calls().iter().any(|c| {
            c.status == 200
                && c.media_ids.contains(&"ecsrole1".to_owned())
                && c.access_key_id.starts_with("STS.")
        })
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn work_stored_for_an_account_the_configuration_no_longer_names_stops_the_start() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (app, dir) = spawn_two(&nowhere, "").await;
    let r = post(
        &app,
        "intl-cms",
        INTL_TOKEN,
        json!({"media_ids": ids("sgleft", 3)}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let db = app.db_path.clone();
    let (sim, _) = app.stop().await;
    // The intl account is gone from the configuration: its three IDs would never be sent.
    let without = settings(&db, &sim.base_url(), "");
    let error = match vod_purge::startup::Application::build(without).await {
        Ok(_) => panic!("the start must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("intl (3 pending items, 0 jobs)"), "{error}");
    // With the account back (running dry), the work goes out.
    let back = two_accounts(&db, &sim, &nowhere, "");
    let mut back = back;
    back.extra_accounts[0].dry_run = true;
    let app = spawn_with_settings(back, sim).await;
    wait_until(
        Duration::from_secs(10),
        "the stranded work recorded",
        || async {
            let jobs = app.get_json("/jobs?account=intl").await;
            jobs["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["dry_run"] == true)
        },
    )
    .await;
    app.stop().await;
    drop(dir);
}

/// One simulator serving both accounts, as one VOD serves two AccessKeys of two accounts: the
/// international account's quota runs out and its calls are throttled at 5 per second, while
/// the default account drains at its own pace; the held work goes out once the quota is back.
#[tokio::test]
async fn one_accounts_used_up_quota_and_throttling_leave_the_other_draining() {
    let sim = sim::start(SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account {
                qps: Some(5),
                ..Account::new("intlid", "intlsecret")
            },
        ],
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (_dir, db) = temp_store();
    let base = sim.base_url();
    let mut settings = two_accounts(&db, &sim, &base, "");
    settings.extra_accounts[0].quota_probe_interval = Duration::from_secs(1);
    let app = spawn_with_settings(settings, sim).await;
    // The intl account has used up its day's quota; the default account has all of its own.
    let used_up = vod_purge::sim::QuotaChange {
        refresh_remaining: Some(0),
        preload_remaining: None,
    };
    assert!(app.sim.set_quota_of("intlid", used_up).is_some());
    let sg = ids("sgheld", 400);
    for chunk in sg.chunks(200) {
        let r = post(&app, "intl-cms", INTL_TOKEN, json!({"media_ids": chunk})).await;
        assert_eq!(r.status(), 202);
    }
    wait_until(
        Duration::from_secs(15),
        "the intl account held on its quota",
        || async {
            let queue = app.get_json("/queue").await;
            queue["accounts"][1]["held"]
                .as_array()
                .is_some_and(|h| !h.is_empty())
        },
    )
    .await;
    let cn = ids("cnfree", 600);
    for chunk in cn.chunks(200) {
        assert_eq!(app.webhook(json!({"media_ids": chunk})).await.status(), 202);
    }
    let want: BTreeSet<String> = cn.iter().cloned().collect();
    wait_until(
        Duration::from_secs(15),
        "the default account drained",
        || async { sent(&app.sim.calls()).0.is_superset(&want) },
    )
    .await;
    let calls = app.sim.calls();
    let default_calls: Vec<&RecordedCall> = calls
        .iter()
        .filter(|c| c.access_key_id == "testid" && c.action == "RefreshMediaPlayUrls")
        .collect();
    assert!(
        default_calls.iter().all(|c| c.status == 200),
        "the default account was never refused"
    );
    // Each account spent its own quota.
    assert!(app.sim.quota_of("testid").unwrap().refresh_remaining < 1_000_000);
    assert_eq!(app.sim.quota_of("intlid").unwrap().refresh_remaining, 0);
    let intl_refused = calls
        .iter()
        .filter(|c| c.access_key_id == "intlid" && c.status != 200)
        .count();
    assert!(intl_refused > 0, "the intl account met its quota");

    // The intl quota comes back: its held work goes out.
    let _ = app.sim.set_quota_of(
        "intlid",
        vod_purge::sim::QuotaChange {
            refresh_remaining: Some(1_000_000),
            preload_remaining: None,
        },
    );
    let want: BTreeSet<String> = sg.iter().cloned().collect();
    wait_until(
        Duration::from_secs(30),
        "the intl account drained",
        || async { sent(&app.sim.calls()).0.is_superset(&want) },
    )
    .await;
    app.stop().await;
}
