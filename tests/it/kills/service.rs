//! One `vod-purge serve` process of a drill, and the knobs its configuration is written from.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Acked, Backing};
use crate::support::{ADMIN_TOKEN, SOURCE_TOKEN, Served, free_port, http_client, serve_logging_to};

/// `vod.timeout`: a drill kills the process within this long of the claim it catches.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The settings a drill changes; every interval is short so that a drill takes seconds.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `queue.lease` (at least twice [`CALL_TIMEOUT`]): how long after its claim the job of a
    /// call in flight at the kill is sent again.
    pub lease: &'static str,
    /// `vod.quota_probe_interval`.
    pub probe_interval: &'static str,
    /// `vod.check_after`.
    pub check_after: &'static str,
    /// `vod.retry_max`, also how long a resubmission waits before it is sent.
    pub retry_max: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            lease: "4s",
            probe_interval: "300ms",
            check_after: "200ms",
            retry_max: "200ms",
        }
    }
}

/// A `serve` process; killed when dropped.
pub struct Service {
    process: Served,
    pub address: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts process `n` on the drill's store, calling VOD at `endpoint`, and waits until it is
    /// ready. A call that hangs stays in flight for [`CALL_TIMEOUT`]; the quota poll is off, so
    /// that only a probe can end a hold.
    pub async fn start(backing: &Backing, n: usize, endpoint: &str, knobs: &Knobs) -> Service {
        let Knobs {
            lease,
            probe_interval,
            check_after,
            retry_max,
        } = knobs;
        let dir = backing.dir.path();
        let port = free_port();
        let config = dir.join(format!("service{n}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
                [server]
                listen = "127.0.0.1:{port}"
                admin_token = "{ADMIN_TOKEN}"
                [store]
                url = "{store}"
                [vod]
                endpoint = "{endpoint}"
                access_key_id = "testid"
                access_key_secret = "testsecret"
                timeout = "{timeout}ms"
                retry_base = "50ms"
                retry_max = "{retry_max}"
                quota_poll_interval = "0s"
                quota_probe_interval = "{probe_interval}"
                urgent_quota_reserve = "0%"
                check_after = "{check_after}"
                cdn_domains = ["cdn.example.com"]
                follow_interval = "200ms"
                [queue]
                quiet = "100ms"
                max_wait = "1s"
                linger = "50ms"
                lease = "{lease}"
                poll_interval = "20ms"
                [[sources]]
                name = "cms"
                auth = "bearer"
                secrets = ["{SOURCE_TOKEN}"]
                format = "native"
                "#,
                store = backing.store_url,
                timeout = CALL_TIMEOUT.as_millis(),
            ),
        )
        .unwrap();
        let log = dir.join(format!("service{n}.log"));
        let service = Service {
            process: serve_logging_to(&config, &log),
            address: format!("http://127.0.0.1:{port}"),
            http: http_client(),
        };
        let started = std::time::Instant::now();
        while service
            .readyz()
            .await
            .is_none_or(|(status, _)| status != 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "process {n} not ready after 20 s:\n{}",
                service.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }

    /// SIGKILL: the process ends where it stands, nothing is flushed or released.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The `/readyz` status and body, or `None` while the process does not answer.
    pub async fn readyz(&self) -> Option<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}/readyz", self.address))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    /// Whether this process runs the flusher (the leader).
    pub async fn is_leader(&self) -> bool {
        matches!(self.readyz().await, Some((_, body)) if body["flusher_active"] == true)
    }

    /// Posts `ids` to the webhook source; they must be acknowledged (202).
    pub async fn post(&self, ids: &[String], acked: &mut Acked) {
        let sent_at = super::now_ms();
        let response = self
            .http
            .post(format!("{}/webhooks/cms", self.address))
            .bearer_auth(SOURCE_TOKEN)
            .json(&json!({ "media_ids": ids }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{ids:?}");
        acked.0.extend(ids.iter().map(|id| (id.clone(), sent_at)));
    }

    /// An admin `GET` of `path`, as JSON.
    /// Posts a native body to the `cms` source, which must answer `202`.
    pub async fn post_body(&self, body: &Value) {
        let response = self
            .http
            .post(format!("{}/webhooks/cms", self.address))
            .bearer_auth(SOURCE_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{body}");
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// The jobs with `status`, newest first.
    pub async fn jobs(&self, status: &str) -> Vec<Value> {
        let page = self.get(&format!("/jobs?status={status}&limit=500")).await;
        page["jobs"].as_array().cloned().unwrap_or_default()
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(20)
    }
}
