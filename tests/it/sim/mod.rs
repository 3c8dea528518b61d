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

mod accounts;
mod gateway;
mod limits;
mod recording;
mod stall;
mod sts;
mod tasks;
mod urls;
mod video;
