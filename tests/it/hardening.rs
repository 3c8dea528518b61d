//! The webhook endpoint on the open internet: slow bodies, floods of unauthenticated requests,
//! and the smaller findings of the hostile-input review, each as a regression test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use vod_purge::sim::{Faults, SimConfig};

use crate::support::{
    ADMIN_TOKEN, SOURCE_TOKEN, Spawn, binary, free_port, http_client, spawn_app, wait_until,
};

const GH_SECRET: &str = "gh-webhook-secret";

/// A `serve` process (dry run) with the GitHub-style HMAC source `gh`; `server` is added to
/// its `[server]` table. Returns the process and its base URL.
async fn serve(dir: &std::path::Path, server: &str) -> (Child, String) {
    let port = free_port();
    let db = dir.join("store.db").to_string_lossy().into_owned();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{server}\n\
             [store]\nurl = \"sqlite://{db}\"\n[vod]\ndry_run = true\n\
             [[sources]]\nname = \"gh\"\nauth = \"hmac\"\nsecrets = [\"{GH_SECRET}\"]\n\
             header = \"X-Hub-Signature-256\"\nprefix = \"sha256=\"\nformat = \"native\"\n\
             delivery_id_header = \"X-GitHub-Delivery\"\n"
        ),
    )
    .unwrap();
    let child = binary()
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client();
    wait_until(Duration::from_secs(10), "the service", || async {
        http.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;
    (child, base)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn github_signature(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(GH_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn github_delivery(base: &str, delivery: &str, ids: &[&str]) -> reqwest::Response {
    let body = serde_json::to_vec(&json!({ "media_ids": ids })).unwrap();
    http_client()
        .post(format!("{base}/webhooks/gh"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", github_signature(&body))
        .header("X-GitHub-Delivery", delivery)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Headers and one byte of a 1 MiB body, then nothing.
fn stall(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            b"POST /webhooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              X-Hub-Signature-256: sha256=00\r\nContent-Length: 1048576\r\n\r\n{",
        )
        .unwrap();
    stream
}

#[tokio::test]
async fn stalled_bodies_are_cut_off_with_408_and_hold_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // Many failures from one address are the next test's business, not this one's.
    let (mut child, base) = serve(
        dir.path(),
        "body_timeout = \"3s\"\npeer_failure_burst = 10000",
    )
    .await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    // Warm up: one delivery, so that lazily built state is not counted as the stall's.
    assert_eq!(
        github_delivery(&base, "warm-up", &["warm"]).await.status(),
        202
    );
    let before = rss_kib(child.id());
    let opened = Instant::now();
    let stalls: Vec<TcpStream> = (0..200).map(|_| stall(port)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(child.id());
    // A valid delivery while 200 bodies stall is answered at once.
    let asked = Instant::now();
    let response = github_delivery(&base, "during-the-stall", &["valid"]).await;
    let answered_in = asked.elapsed();
    assert_eq!(response.status(), 202);
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "answered while the stalls were open"
    );
    let growth_mib = (during.saturating_sub(before)) as f64 / 1024.0;
    println!(
        "200 stalled bodies: RSS {before} KiB -> {during} KiB (+{growth_mib:.1} MiB); a valid delivery answered in {answered_in:?}"
    );
    assert!(growth_mib <= 20.0, "RSS grew by {growth_mib:.1} MiB");

    // Each stalled connection gets 408 and is closed, within the body timeout (and slack).
    let answers = tokio::task::spawn_blocking(move || {
        stalls
            .into_iter()
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut answer = Vec::new();
                let closed = s.read_to_end(&mut answer).is_ok();
                (
                    String::from_utf8_lossy(&answer).into_owned(),
                    closed,
                    opened.elapsed(),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (answer, closed, at) in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
        assert!(*closed, "the connection was closed");
        assert!(*at < Duration::from_secs(6), "closed after {at:?}");
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn a_flood_of_unauthenticated_requests_does_not_refuse_the_real_sender() {
    let app = spawn_app(Spawn {
        extra: "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\
                [[sources]]\nname = \"limited\"\nauth = \"bearer\"\nsecrets = [\"source-token\"]\n\
                format = \"native\"\nrate_limit = 20\n"
            .into(),
        ..Spawn::default()
    })
    .await;
    let url = format!("{}/webhooks/limited", app.address);
    let attack = {
        let url = url.clone();
        tokio::spawn(async move {
            let http = http_client();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            // 1,000 requests a second for 5 s: 20 senders, one request every 20 ms each.
            let senders: Vec<_> = (0..20)
                .map(|n| {
                    let (http, url) = (http.clone(), url.clone());
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(20));
                        let mut got = Vec::new();
                        for _ in 0..250 {
                            tick.tick().await;
                            let status = http
                                .post(&url)
                                .header("X-Forwarded-For", format!("203.0.113.{n}"))
                                .json(&json!({"media_ids": ["stranger"]}))
                                .send()
                                .await
                                .map_or(0, |r| r.status().as_u16());
                            got.push(status);
                        }
                        got
                    })
                })
                .collect();
            for sender in senders {
                for status in sender.await.unwrap() {
                    *statuses.entry(status).or_default() += 1;
                }
            }
            statuses
        })
    };
    let started = Instant::now();
    let mut valid = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0..50 {
        tick.tick().await;
        let status = app
            .http
            .post(&url)
            .bearer_auth(SOURCE_TOKEN)
            .header("X-Forwarded-For", "198.51.100.1")
            .json(&json!({"media_ids": [format!("real-{n}")]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        valid.push(status);
    }
    let statuses = attack.await.unwrap();
    let attack_rate = statuses.values().sum::<usize>() as f64 / started.elapsed().as_secs_f64();
    println!("attack: {statuses:?} at {attack_rate:.0} requests/s; real sender: {valid:?}");
    assert!(valid.iter().all(|s| *s == 202), "{valid:?}");
    assert_eq!(
        statuses.get(&202),
        None,
        "no unauthenticated request was stored"
    );
    assert!(statuses.get(&429).copied().unwrap_or(0) > statuses.get(&401).copied().unwrap_or(0));
    app.stop().await;
}

#[tokio::test]
async fn the_source_rate_limit_counts_authenticated_deliveries_only() {
    let app = spawn_app(Spawn {
        extra: "[server]\npeer_failure_burst = 1000\n\
                [[sources]]\nname = \"limited\"\nauth = \"bearer\"\nsecrets = [\"source-token\"]\n\
                format = \"native\"\nrate_limit = 1\nburst = 2\n"
            .into(),
        ..Spawn::default()
    })
    .await;
    let url = format!("{}/webhooks/limited", app.address);
    for _ in 0..25 {
        let r = app
            .http
            .post(&url)
            .json(&json!({"media_ids": ["x"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let valid = |id: &'static str| {
        app.http
            .post(&url)
            .bearer_auth(SOURCE_TOKEN)
            .json(&json!({ "media_ids": [id] }))
            .send()
    };
    assert_eq!(valid("a").await.unwrap().status(), 202);
    assert_eq!(valid("b").await.unwrap().status(), 202);
    assert_eq!(
        valid("c").await.unwrap().status(),
        429,
        "the sender's own budget still applies"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_smaller_findings() {
    let app = spawn_app(Spawn {
        extra: "[[sources]]\nname = \"sw\"\nauth = \"standard-webhooks\"\n\
                secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nformat = \"native\"\n"
            .into(),
        sim: SimConfig {
            faults: Faults {
                fail_next: 1_000,
                error_code: "InvalidAccessKeyId.NotFound".into(),
                ..Faults::default()
            },
            ..Spawn::default().sim
        },
    })
    .await;
    // An Idempotency-Key longer than any sender's is refused, not stored.
    let long = "k".repeat(8000);
    let response = app
        .http
        .post(format!("{}/purge", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", &long)
        .json(&json!({"media_ids": ["long-key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_delivery_id");
    let media = app.get_json("/media/long-key").await;
    assert!(
        media["pending"].as_array().is_none_or(Vec::is_empty),
        "{media}"
    );

    // A cursor that is not one is a 400, not the first page.
    let bad_cursor = app
        .http
        .get(format!("{}/jobs?cursor=garbage", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_cursor.status(), 400);

    // A Standard Webhooks delivery with an empty webhook-id is refused even when its signature
    // matches (signed over the empty ID by the specification's algorithm).
    let body = br#"{"media_ids": ["no-id"]}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let key = base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!(".{ts}.").as_bytes());
    mac.update(body);
    let signature = format!("v1,{}", base64_encode(&mac.finalize().into_bytes()));
    let response = app
        .http
        .post(format!("{}/webhooks/sw", app.address))
        .header("Content-Type", "application/json")
        .header("webhook-id", "")
        .header("webhook-timestamp", &ts)
        .header("webhook-signature", &signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let refused: serde_json::Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "missing_signature");

    // /readyz shows VOD's credential error text to the admin only.
    assert_eq!(
        app.webhook(json!({"media_ids": ["refused"]}))
            .await
            .status(),
        202
    );
    let readyz = |token: Option<&'static str>| {
        let mut request = app.http.get(format!("{}/readyz", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    wait_until(Duration::from_secs(10), "the credential error", || async {
        readyz(None).await["vod_credentials_refused"] == true
    })
    .await;
    let open = readyz(None).await;
    assert_eq!(
        open["vod_credential_error"],
        serde_json::Value::Null,
        "{open}"
    );
    let admin = readyz(Some(ADMIN_TOKEN)).await;
    assert!(
        admin["vod_credential_error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidAccessKeyId.NotFound")),
        "{admin}"
    );
    app.stop().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_github_delivery_id_catches_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path(), "").await;
    let first: serde_json::Value =
        github_delivery(&base, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &["gh-1"])
            .await
            .json()
            .await
            .unwrap();
    let again: serde_json::Value =
        github_delivery(&base, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &["gh-1"])
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(first["redelivery"], false, "{first}");
    assert_eq!(again["redelivery"], true, "{again}");
    child.kill().unwrap();
    let _ = child.wait();
}

/// A malformed request is answered 400 and closed; actix's own "stream error" line about it is
/// not an `ERROR` in the default log (it is with `RUST_LOG=info`, which shows the test can fail).
#[tokio::test]
async fn malformed_requests_write_no_error_line() {
    async fn stderr_after_garbage(rust_log: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.toml");
        let db = dir.path().join("s.db").to_string_lossy().into_owned();
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{db}\"\n[vod]\ndry_run = true\n"),
        )
        .unwrap();
        let mut command = binary();
        command.args(["serve", "--config"]).arg(&config).env_clear();
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let http = http_client();
        wait_until(Duration::from_secs(10), "the service", || async {
            http.get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok()
        })
        .await;
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
    let default = stderr_after_garbage(None).await;
    assert!(!default.contains("ERROR"), "{default}");
    let verbose = stderr_after_garbage(Some("info")).await;
    assert!(
        verbose.contains("ERROR"),
        "the malformed request is logged at ERROR by actix: {verbose}"
    );
}
