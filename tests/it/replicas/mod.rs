//! Processes that die: several replicas on one PostgreSQL database (one flusher at a time,
//! failover when the leader dies, a leader cut off from the database stepping down and coming
//! back), and the single process of the embedded store killed while it takes webhooks.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vod_purge::sim::{self, RecordedCall, SimConfig};

use crate::support::postgres::fresh_database;
use crate::support::{
    ADMIN_TOKEN, SOURCE_TOKEN, Served, free_port, http_client, serve_logging_to, spawn_on,
    wait_until,
};

/// The configured outbound rate of the failover test: low, so that a drain lasts seconds.
const RPS: usize = 5;

fn sim_config() -> SimConfig {
    SimConfig {
        quota_refresh: 10_000_000,
        quota_preload: 10_000_000,
        ..SimConfig::default()
    }
}

/// One `vod-purge serve` process; killed when dropped.
struct Replica {
    process: Served,
    address: String,
}

impl Replica {
    fn start(dir: &Path, n: usize, db_url: &str, sim_url: &str) -> Replica {
        let port = free_port();
        let config = dir.join(format!("replica{n}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
                [server]
                listen = "127.0.0.1:{port}"
                admin_token = "{ADMIN_TOKEN}"
                shutdown_grace = "5s"
                [store]
                url = "{db_url}"
                [vod]
                endpoint = "{sim_url}"
                access_key_id = "testid"
                access_key_secret = "testsecret"
                max_requests_per_second = {RPS}
                timeout = "1s"
                retry_base = "50ms"
                retry_max = "200ms"
                [queue]
                quiet = "200ms"
                max_wait = "2s"
                linger = "100ms"
                lease = "3s"
                poll_interval = "20ms"
                [[sources]]
                name = "cms"
                auth = "bearer"
                secrets = ["{SOURCE_TOKEN}"]
                format = "native"
                "#
            ),
        )
        .unwrap();
        let log = dir.join(format!("replica{n}.log"));
        Replica {
            process: serve_logging_to(&config, &log),
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The `/readyz` status and body, or `None` while the process does not answer.
    async fn readyz(&self, http: &reqwest::Client) -> Option<(u16, serde_json::Value)> {
        let response = http
            .get(format!("{}/readyz", self.address))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    async fn is_active(&self, http: &reqwest::Client) -> bool {
        matches!(self.readyz(http).await, Some((_, body)) if body["flusher_active"] == true)
    }

    fn log_tail(&self) -> String {
        self.process.log_tail(15)
    }
}

fn successful(calls: &[RecordedCall]) -> Vec<&RecordedCall> {
    calls
        .iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls" && c.status == 200)
        .collect()
}

/// Waits until every one of `ids` has gone out in a successful call.
async fn wait_until_sent(sim: &sim::SimHandle, ids: &[String], within: Duration) {
    wait_until(within, "every acknowledged ID sent", || async {
        let sent: BTreeSet<String> = successful(&sim.calls())
            .iter()
            .flat_map(|c| c.media_ids.clone())
            .collect();
        ids.iter().all(|id| sent.contains(id))
    })
    .await;
}

/// The most successful calls the simulator received within any one second.
fn busiest_second(calls: &[&RecordedCall]) -> usize {
    calls
        .iter()
        .map(|c| {
            calls
                .iter()
                .filter(|u| u.at_ms >= c.at_ms && u.at_ms < c.at_ms + 1_000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

mod embedded;
mod postgres;
