//! The simulator over real HTTP: captured SDK requests are accepted, bad ones are refused the
//! way the gateway refuses them, and everything is recorded.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;
use vod_purge::sim::{self, Account, Faults, RecordedCall, SimConfig, SimHandle};
use vod_purge::vod::signing::{percent_encode, sign, string_to_sign};

use crate::vod_signing::vectors;

/// A fixed instant for tests that set the simulator clock: 2025-01-15T08:30:00Z.
const T0: i64 = 1_736_929_800;

pub fn http() -> reqwest::Client {
    crate::support::http_client()
}

fn iso(epoch_secs: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(epoch_secs)
        .unwrap()
        .format(&format)
        .unwrap()
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The common parameters of a request by `testid` at `at` (epoch seconds).
fn common(action: &str, at: i64) -> BTreeMap<String, String> {
    [
        ("Action", action.to_owned()),
        ("Version", "2017-03-21".to_owned()),
        ("Format", "JSON".to_owned()),
        ("AccessKeyId", "testid".to_owned()),
        ("SignatureMethod", "HMAC-SHA1".to_owned()),
        ("SignatureVersion", "1.0".to_owned()),
        ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
        ("Timestamp", iso(at)),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into()
}

fn refresh_params(ids: &[&str], at: i64) -> BTreeMap<String, String> {
    let mut params = common("RefreshMediaPlayUrls", at);
    params.insert("MediaIds".to_owned(), ids.join(","));
    params.insert("TaskType".to_owned(), "Refresh".to_owned());
    params
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:032x}")).collect()
}

/// The URL of `params` signed with `secret` (no signature when `secret` is `None`).
fn signed_url(
    sim: &SimHandle,
    method: &str,
    params: &BTreeMap<String, String>,
    secret: Option<&str>,
) -> String {
    let mut params = params.clone();
    if let Some(secret) = secret {
        let signature = sign(method, &params, secret);
        params.insert("Signature".to_owned(), signature);
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{}/?{}", sim.base_url(), query.join("&"))
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("")
    }
}

async fn send_url(method: &str, url: &str) -> Answer {
    let resp = http()
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.json().await.unwrap();
    Answer {
        status,
        content_type,
        body,
    }
}

async fn send(sim: &SimHandle, method: &str, params: &BTreeMap<String, String>) -> Answer {
    send_url(method, &signed_url(sim, method, params, Some("testsecret"))).await
}

async fn fixed_sim(cfg: SimConfig) -> SimHandle {
    let sim = sim::start(cfg).await.unwrap();
    sim.set_clock(Some(T0));
    sim
}

#[tokio::test]
async fn captured_sdk_requests_are_accepted() {
    let vectors = vectors();
    let sts_tokens: Vec<String> = vectors
        .iter()
        .filter(|v| v.params["AccessKeyId"] == "STS.NTx7example")
        .map(|v| v.params["SecurityToken"].clone())
        .collect();
    assert_eq!(sts_tokens.len(), 2);
    let cfg = SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account::sts("STS.NTx7example", "testsecret", sts_tokens),
        ],
        ..SimConfig::default()
    };
    let sim = sim::start(cfg).await.unwrap();
    let mut replayed = 0;
    for v in vectors.iter().filter(|v| v.wire.is_some()) {
        let wire = v.wire.as_ref().unwrap();
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let at = time::PrimitiveDateTime::parse(&v.params["Timestamp"], &format)
            .unwrap()
            .assume_utc();
        sim.set_clock(Some(at.unix_timestamp()));
        let mut req = http()
            .request(
                Method::from_bytes(v.method.as_bytes()).unwrap(),
                format!("{}{}", sim.base_url(), wire.url_path),
            )
            .body(wire.body.clone());
        if let Some(ct) = &wire.content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{}: {body}", v.name);
        replayed += 1;

        let call = sim.calls().pop().unwrap();
        assert_eq!(
            call.params, v.params,
            "{}: the simulator decoded other parameters",
            v.name
        );
        assert_eq!(call.status, 200);
    }
    assert_eq!(replayed, 7);
    sim.stop().await;
}

#[tokio::test]
async fn a_captured_request_with_one_byte_changed_is_refused() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "refresh-post-formbody-legacy-sdk")
        .unwrap();
    let wire = v.wire.unwrap();
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_clock(Some(1_736_930_025)); // 2025-01-15T08:33:45Z
    let body = wire.body.replace("100%25", "101%25");
    let resp = http()
        .post(format!("{}{}", sim.base_url(), wire.url_path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    sim.stop().await;
}

#[tokio::test]
async fn wrong_secret_gets_signature_does_not_match_with_the_server_string() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let params = refresh_params(&["a1"], now_secs());
    let answer = send_url(
        "POST",
        &signed_url(&sim, "POST", &params, Some("wrongsecret")),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "SignatureDoesNotMatch")
    );
    assert_eq!(answer.content_type, "application/json;charset=utf-8");
    let message = answer.body["Message"].as_str().unwrap();
    let want = format!(
        "Specified signature is not matched with our calculation. server string to sign is:{}",
        string_to_sign("POST", &params)
    );
    assert_eq!(message, want);
    for field in ["RequestId", "HostId", "Recommend"] {
        assert!(
            answer.body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_a_bad_signature_does_not_burn_it() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let params = refresh_params(&["a1"], now_secs());
    let forged = send_url("POST", &signed_url(&sim, "POST", &params, Some("nope"))).await;
    assert_eq!(forged.code(), "SignatureDoesNotMatch");
    let url = signed_url(&sim, "POST", &params, Some("testsecret"));
    let first = send_url("POST", &url).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = send_url("POST", &url).await;
    assert_eq!((again.status, again.code()), (400, "SignatureNonceUsed"));
    sim.stop().await;
}

#[tokio::test]
async fn timestamps_must_be_fresh_and_well_formed() {
    let sim = fixed_sim(SimConfig::default()).await;
    let stale = send(&sim, "POST", &refresh_params(&["a1"], T0 - 16 * 60)).await;
    assert_eq!(
        (stale.status, stale.code()),
        (400, "InvalidTimeStamp.Expired")
    );
    let future = send(&sim, "POST", &refresh_params(&["a1"], T0 + 16 * 60)).await;
    assert_eq!(future.code(), "InvalidTimeStamp.Expired");
    let edge = send(&sim, "POST", &refresh_params(&["a1"], T0 - 15 * 60)).await;
    assert_eq!(edge.status, 200, "{}", edge.body);
    let mut params = refresh_params(&["a1"], T0);
    params.insert("Timestamp".to_owned(), "2025-01-15 08:30:00".to_owned());
    assert_eq!(
        send(&sim, "POST", &params).await.code(),
        "InvalidTimeStamp.Format"
    );
    sim.stop().await;
}

#[tokio::test]
async fn gateway_refusals() {
    let cfg = SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account::sts("STS.k", "testsecret", vec!["tok".to_owned()]),
        ],
        ..SimConfig::default()
    };
    let sim = fixed_sim(cfg).await;
    let base = refresh_params(&["a1"], T0);
    let with = |name: &str, value: Option<&str>| {
        let mut p = base.clone();
        p.insert(
            "SignatureNonce".to_owned(),
            uuid::Uuid::new_v4().to_string(),
        );
        match value {
            Some(v) => p.insert(name.to_owned(), v.to_owned()),
            None => p.remove(name),
        };
        p
    };
    let cases = [
        (with("Action", None), 400, "MissingParameter"),
        (with("Timestamp", None), 400, "MissingParameter"),
        (with("SignatureNonce", None), 400, "IncompleteSignature"),
        (
            with("Action", Some("DeleteEverything")),
            404,
            "InvalidAction.NotFound",
        ),
        (
            with("AccessKeyId", Some("nobody")),
            404,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            with("AccessKeyId", Some("STS.k")),
            400,
            "MissingSecurityToken",
        ),
        (with("Version", Some("2014-05-26")), 400, "InvalidVersion"),
        (
            with("SignatureMethod", Some("HMAC-SHA256")),
            400,
            "InvalidSignatureMethod",
        ),
    ];
    for (params, status, code) in cases {
        let answer = send(&sim, "POST", &params).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{params:?}");
    }
    let unsigned = send_url("POST", &signed_url(&sim, "POST", &base, None)).await;
    assert_eq!(unsigned.code(), "IncompleteSignature");
    let mut sts = with("AccessKeyId", Some("STS.k"));
    sts.insert("SecurityToken".to_owned(), "other".to_owned());
    assert_eq!(
        send(&sim, "POST", &sts).await.code(),
        "InvalidSecurityToken.MismatchWithAccessKey"
    );
    sts.insert("SecurityToken".to_owned(), "tok".to_owned());
    assert_eq!(send(&sim, "POST", &sts).await.status, 200);
    let lower = with("Format", Some("json"));
    assert_eq!(send(&sim, "GET", &lower).await.status, 200);
    let mut jobs = common("GetMediaRefreshJobs", T0);
    jobs.insert("MediaRefreshJobId".to_owned(), "x".to_owned());
    assert_eq!(
        send(&sim, "POST", &jobs).await.code(),
        "UnsupportedHTTPMethod"
    );
    sim.stop().await;
}

#[tokio::test]
async fn refresh_parameters_are_validated() {
    let sim = fixed_sim(SimConfig::default()).await;
    let twenty_one = ids(21);
    let twenty_one: Vec<&str> = twenty_one.iter().map(String::as_str).collect();
    let over = send(&sim, "POST", &refresh_params(&twenty_one, T0)).await;
    assert_eq!((over.status, over.code()), (400, "InvalidParameter"));
    let twenty = send(&sim, "POST", &refresh_params(&twenty_one[..20], T0)).await;
    assert_eq!(twenty.status, 200, "{}", twenty.body);

    let bad = [
        ("TaskType", "refresh"),
        ("TaskType", "Purge"),
        ("Formats", "mp4,avi"),
        ("StreamType", "subtitle"),
        ("ResultType", "All"),
        ("SliceFlag", "yes"),
        ("SliceCount", "0"),
        ("SliceCount", "21"),
        ("SliceCount", "five"),
        ("UserData", "not json"),
        ("UserData", "[1,2]"),
        ("MediaIds", "a1,,b2"),
    ];
    for (name, value) in bad {
        let mut params = refresh_params(&["a1"], T0);
        params.insert(name.to_owned(), value.to_owned());
        let answer = send(&sim, "POST", &params).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "InvalidParameter"),
            "{name}={value}"
        );
    }
    let good = [
        ("SliceFlag", "TRUE"),
        ("SliceFlag", "False"),
        ("SliceCount", "20"),
        ("Formats", "MP4, m3u8"),
        ("StreamType", "video,audio"),
        ("ResultType", "Multiple"),
        ("UserData", r#"{"Extend":{"a":"b c"}}"#),
        ("MediaIds", "a1, b2"),
    ];
    for (name, value) in good {
        let mut params = refresh_params(&["a1"], T0);
        params.insert(name.to_owned(), value.to_owned());
        let answer = send(&sim, "POST", &params).await;
        assert_eq!(answer.status, 200, "{name}={value}: {}", answer.body);
    }
    let mut missing = refresh_params(&["a1"], T0);
    missing.remove("TaskType");
    assert_eq!(
        send(&sim, "POST", &missing).await.code(),
        "MissingParameter"
    );
    sim.stop().await;
}

#[tokio::test]
async fn fifty_one_calls_of_one_action_within_one_second_are_throttled() {
    // The clock is fixed, so all 51 calls fall into the same instant whatever the machine's speed.
    let sim = fixed_sim(SimConfig::default()).await;
    let mut statuses = Vec::new();
    for _ in 0..51 {
        let answer = send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
        statuses.push((answer.status, answer.code().to_owned()));
    }
    assert!(
        statuses[..50].iter().all(|(s, _)| *s == 200),
        "{statuses:?}"
    );
    assert_eq!(statuses[50], (503, "Throttling".to_owned()));
    // VOD limits each operation on its own: polling a job in the same instant is not throttled.
    let mut jobs = common("GetMediaRefreshJobs", T0);
    jobs.insert("MediaRefreshJobId".to_owned(), "x".to_owned());
    let poll = send(&sim, "GET", &jobs).await;
    assert_eq!(poll.status, 200, "{}", poll.body);
    let throttled = sim
        .calls()
        .into_iter()
        .filter(|c| c.code.as_deref() == Some("Throttling"))
        .count();
    assert_eq!(throttled, 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_token_bucket_runs_on_real_time_too() {
    // Burst 2, one token per 500 ms: three back-to-back calls on loopback cannot all pass.
    let sim = sim::start(SimConfig {
        qps: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            send(&sim, "POST", &refresh_params(&["a1"], now_secs()))
                .await
                .code()
                .to_owned(),
        );
    }
    assert_eq!(codes, ["", "", "Throttling"]);
    sim.stop().await;
}

#[tokio::test]
async fn quota_is_counted_per_media_id_and_refused_when_used_up() {
    let sim = fixed_sim(SimConfig {
        quota_refresh: 3,
        quota_preload: 1,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1", "a2"], T0))
            .await
            .status,
        200
    );
    let over = send(&sim, "POST", &refresh_params(&["a3", "a4"], T0)).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Refresh"));
    let mut preload = refresh_params(&["a1", "a2"], T0);
    preload.insert("TaskType".to_owned(), "Preload".to_owned());
    assert_eq!(
        send(&sim, "POST", &preload).await.code(),
        "QuotaExceeded.Preload"
    );
    let quota = send(&sim, "POST", &common("DescribeVodRefreshQuota", T0)).await;
    assert_eq!(quota.status, 200, "{}", quota.body);
    assert_eq!(quota.body["UrlQuota"], "3");
    assert_eq!(quota.body["UrlRemain"], "1");
    assert_eq!(quota.body["PreloadRemain"], "1");
    assert_eq!(quota.body["blockRemain"], "500");
    sim.stop().await;
}

#[tokio::test]
async fn calls_and_faults_over_http() {
    let sim = fixed_sim(SimConfig::default()).await;
    let answer = send(&sim, "POST", &refresh_params(&["a1", " b2"], T0)).await;
    assert_eq!(answer.status, 200);
    let calls: Vec<RecordedCall> = http()
        .get(format!("{}/_sim/calls", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (
            call.action.as_str(),
            call.access_key_id.as_str(),
            call.status
        ),
        ("RefreshMediaPlayUrls", "testid", 200)
    );
    assert_eq!(call.media_ids, ["a1", "b2"]);
    assert_eq!(call.task_type.as_deref(), Some("Refresh"));
    assert_eq!(call.at_ms, T0 * 1000);
    assert!(!call.params.contains_key("Signature") && call.params.contains_key("SignatureNonce"));

    let faults = Faults {
        fail_next: 1,
        error_code: "ServiceUnavailable".to_owned(),
        ..Faults::default()
    };
    let put = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let failed = send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
    assert_eq!((failed.status, failed.code()), (503, "ServiceUnavailable"));
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1"], T0))
            .await
            .status,
        200
    );
    let bad = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&Faults {
            error_rate: 2.0,
            ..Faults::default()
        });
    assert_eq!(bad.send().await.unwrap().status().as_u16(), 400);

    let outage = Faults {
        outage_for_ms: Some(60_000),
        ..Faults::default()
    };
    sim.set_faults(outage);
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1"], T0))
            .await
            .code(),
        "ServiceUnavailable"
    );
    sim.set_faults(Faults::default());
    // A fault answer is still recorded.
    let codes: Vec<Option<String>> = sim.calls().into_iter().map(|c| c.code).collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.as_deref() == Some("ServiceUnavailable"))
            .count(),
        2
    );

    let deleted = http()
        .delete(format!("{}/_sim/calls", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(sim.calls().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn calls_log_file_gets_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let sim = fixed_sim(SimConfig {
        calls_log: Some(path.clone()),
        ..SimConfig::default()
    })
    .await;
    send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
    send(&sim, "POST", &refresh_params(&["a1"], T0 - 3600)).await;
    sim.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let calls: Vec<RecordedCall> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].code.as_deref(), Some("InvalidTimeStamp.Expired"));
}

/// A key handed out by the simulator's credentials URI.
async fn issued_key(sim: &SimHandle) -> (String, String, String) {
    let url = format!("{}/_sim/credentials", sim.base_url());
    let body: Value = http().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["Code"], "Success", "{body}");
    let field = |name: &str| body[name].as_str().unwrap().to_owned();
    (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
    )
}

#[tokio::test]
async fn issued_sts_keys_work_until_they_expire_and_only_with_their_token() {
    let sim = fixed_sim(SimConfig {
        sts_lifetime: std::time::Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await;
    let (id, secret, token) = issued_key(&sim).await;
    let (other_id, _, other_token) = issued_key(&sim).await;
    assert_ne!((&id, &token), (&other_id, &other_token));
    let call = |at: i64, token: Option<&str>| {
        let mut params = refresh_params(&["a"], at);
        params.insert("AccessKeyId".to_owned(), id.clone());
        if let Some(token) = token {
            params.insert("SecurityToken".to_owned(), token.to_owned());
        }
        signed_url(&sim, "POST", &params, Some(&secret))
    };
    assert_eq!(send_url("POST", &call(T0, Some(&token))).await.status, 200);
    let table = [
        (T0, None, "MissingSecurityToken"),
        (
            T0,
            Some(other_token.as_str()),
            "InvalidSecurityToken.MismatchWithAccessKey",
        ),
    ];
    for (at, token, code) in table {
        assert_eq!(send_url("POST", &call(at, token)).await.code(), code);
    }
    sim.set_clock(Some(T0 + 60));
    let expired = send_url("POST", &call(T0 + 60, Some(&token))).await;
    assert_eq!(
        (expired.status, expired.code()),
        (400, "InvalidSecurityToken.Expired")
    );
}

/// An STS call's query and form body; `secret` signs both together (Signature 1.0).
async fn sts_call(
    sim: &SimHandle,
    query: &BTreeMap<String, String>,
    form: &BTreeMap<String, String>,
    secret: Option<&str>,
) -> Answer {
    let mut query = query.clone();
    if let Some(secret) = secret {
        let mut all = query.clone();
        all.extend(form.clone());
        query.insert("Signature".to_owned(), sign("POST", &all, secret));
    }
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let resp = http()
        .post(format!("{}/sts/?{}", sim.base_url(), encoded.join("&")))
        .form(form)
        .send()
        .await
        .unwrap();
    Answer {
        status: resp.status().as_u16(),
        content_type: String::new(),
        body: resp.json().await.unwrap(),
    }
}

#[tokio::test]
async fn sts_assume_role_is_signed_and_assume_role_with_oidc_is_not() {
    let sim = fixed_sim(SimConfig::default()).await;
    let mut query = common("AssumeRole", T0);
    query.insert("Version".to_owned(), "2015-04-01".to_owned());
    let form: BTreeMap<String, String> = [
        ("RoleArn", "acs:ram::1:role/r"),
        ("RoleSessionName", "session-1"),
        ("DurationSeconds", "900"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let ok = sts_call(&sim, &query, &form, Some("testsecret")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.body["Credentials"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("STS.")
    );
    assert_eq!(ok.body["Credentials"]["Expiration"], iso(T0 + 3600));
    // The form body is signed too: a signature over the query alone does not match.
    let mut query2 = common("AssumeRole", T0);
    query2.insert("Version".to_owned(), "2015-04-01".to_owned());
    let mut only_query = query2.clone();
    only_query.insert("Signature".to_owned(), sign("POST", &query2, "testsecret"));
    let bad = sts_call(&sim, &only_query, &form, None).await;
    assert_eq!(bad.code(), "SignatureDoesNotMatch");

    let oidc_query: BTreeMap<String, String> = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("Timestamp", &iso(T0)),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let mut oidc_form = form.clone();
    oidc_form.insert(
        "OIDCProviderArn".to_owned(),
        "acs:ram::1:oidc-provider/p".to_owned(),
    );
    oidc_form.insert("OIDCToken".to_owned(), "eyJ.t.s".to_owned());
    let ok = sts_call(&sim, &oidc_query, &oidc_form, None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body["OIDCTokenInfo"].is_object());
    let table = [
        ("OIDCToken", "", "MissingParameter"),
        ("DurationSeconds", "100", "InvalidParameter.DurationSeconds"),
        (
            "RoleSessionName",
            "has space",
            "InvalidParameter.RoleSessionName",
        ),
    ];
    for (name, value, code) in table {
        let mut form = oidc_form.clone();
        form.insert(name.to_owned(), value.to_owned());
        assert_eq!(
            sts_call(&sim, &oidc_query, &form, None).await.code(),
            code,
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_metadata_service_enforces_imdsv2_when_told() {
    let sim = sim::start(SimConfig {
        imds: vod_purge::sim::ImdsMode::V2Required,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let base = sim.base_url();
    let role_path = format!("{base}/latest/meta-data/ram/security-credentials/");
    let no_token = http().get(&role_path).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let no_ttl = http()
        .put(format!("{base}/latest/api/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ttl.status(), 400);
    let token = http()
        .put(format!("{base}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |path: String| {
        http()
            .get(path)
            .header("X-aliyun-ecs-metadata-token", token.clone())
            .send()
    };
    let role = get(role_path.clone()).await.unwrap().text().await.unwrap();
    assert_eq!(role, "vod-purge-role");
    let creds: Value = get(format!("{role_path}{role}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creds["Code"], "Success");
    assert!(
        creds["SecurityToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        get(format!("{role_path}other")).await.unwrap().status(),
        404
    );
}

/// Renewed STS keys of a role act for the same account: a job created with one is listed with
/// the next (a check after a renewal must find the job it checks).
#[tokio::test]
async fn a_job_is_seen_with_the_next_sts_key_of_the_role() {
    let sim = fixed_sim(SimConfig::default()).await;
    let (first, first_secret, first_token) = issued_key(&sim).await;
    let (next, next_secret, next_token) = issued_key(&sim).await;
    let signed = |action: &str,
                  method: &str,
                  id: &str,
                  secret: &str,
                  token: &str,
                  extra: &[(&str, &str)]| {
        let mut params = common(action, T0);
        params.insert("AccessKeyId".to_owned(), id.to_owned());
        params.insert("SecurityToken".to_owned(), token.to_owned());
        for (k, v) in extra {
            params.insert((*k).to_owned(), (*v).to_owned());
        }
        signed_url(&sim, method, &params, Some(secret))
    };
    let created = send_url(
        "POST",
        &signed(
            "RefreshMediaPlayUrls",
            "POST",
            &first,
            &first_secret,
            &first_token,
            &[("MediaIds", "a1"), ("TaskType", "Refresh")],
        ),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let job = created.body["MediaRefreshJobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = send_url(
        "GET",
        &signed(
            "GetMediaRefreshJobs",
            "GET",
            &next,
            &next_secret,
            &next_token,
            &[("MediaRefreshJobId", &job)],
        ),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body["MediaRefreshJobs"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    // Another account's key does not see it.
    let mut params = common("GetMediaRefreshJobs", T0);
    params.insert("MediaRefreshJobId".to_owned(), job);
    let other = send(&sim, "GET", &params).await;
    assert_eq!(
        other.body["MediaRefreshJobs"].as_array().map(Vec::len),
        Some(0),
        "{}",
        other.body
    );
}

/// Another client's share of the account: the `qps` fault lowers the per-second limit at
/// runtime, and lifting it restores the configured one.
#[tokio::test]
async fn the_rate_limit_can_be_lowered_at_runtime() {
    // The fixed clock stops the limiter's time: what passes depends on the count alone.
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        qps: Some(2),
        ..Faults::default()
    });
    let mut codes = Vec::new();
    for _ in 0..3 {
        let answer = send(&sim, "POST", &refresh_params(&["a"], T0)).await;
        codes.push(answer.code().to_owned());
    }
    assert_eq!(codes, ["", "", "Throttling"]);
    sim.set_faults(Faults::default());
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a"], T0)).await.status,
        200
    );
    let refused = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"qps": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_per_second_window_counts_each_second_apart() {
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        qps: Some(2),
        qps_window: true,
        ..Faults::default()
    });
    let mut codes = Vec::new();
    // Two seconds of the fixed clock, three calls each: the third of each second is refused.
    for second in [T0, T0 + 1] {
        sim.set_clock(Some(second));
        for _ in 0..3 {
            let answer = send(&sim, "POST", &refresh_params(&["a"], second)).await;
            codes.push(answer.code().to_owned());
        }
    }
    assert_eq!(codes, ["", "", "Throttling", "", "", "Throttling"]);
}

#[tokio::test]
async fn the_quota_left_can_be_read_and_set() {
    let sim = fixed_sim(SimConfig {
        quota_refresh: 40,
        ..SimConfig::default()
    })
    .await;
    let quota: serde_json::Value = http()
        .put(format!("{}/_sim/quota", sim.base_url()))
        .json(&serde_json::json!({"refresh_remaining": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quota["refresh_remaining"], 1);
    assert_eq!(quota["refresh_quota"], 40);
    let two = send(&sim, "POST", &refresh_params(&["a", "b"], T0)).await;
    assert_eq!(two.code(), "QuotaExceeded.Refresh");
    let one = send(&sim, "POST", &refresh_params(&["a"], T0)).await;
    assert_eq!(one.status, 200);
    assert_eq!(sim.quota().refresh_remaining, 0);
    let refused = http()
        .put(format!("{}/_sim/quota", sim.base_url()))
        .json(&serde_json::json!({"refresh_left": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
