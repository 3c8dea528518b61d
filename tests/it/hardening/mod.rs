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

mod bodies;
mod budget;
mod findings;
