//! Processes that die: several replicas on one PostgreSQL database (one flusher at a time,
//! failover when the leader dies, a leader cut off from the database stepping down and coming
//! back), and the single process of the embedded store killed while it takes webhooks.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vod_purge::sim::{self, RecordedCall, SimConfig};

use crate::support::postgres::fresh_database;
use crate::support::{
    ADMIN_TOKEN, SOURCE_TOKEN, binary, free_port, http_client, spawn_on, wait_until,
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
    child: Child,
    address: String,
    log: std::path::PathBuf,
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
        let child = binary()
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vod-purge starts");
        Replica {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
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
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_drain_is_replaced_and_nothing_is_lost() {
    let Some(db) = fresh_database("failover").await else {
        return;
    };
    let sim = sim::start(sim_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| Replica::start(dir.path(), n, &db.url, &sim.base_url()))
        .collect();
    let http = http_client();

    // All three ready, exactly one of them flushing.
    let started = Instant::now();
    loop {
        let mut ready = 0;
        for r in &replicas {
            ready += matches!(r.readyz(&http).await, Some((200, _))) as usize;
        }
        if ready == 3 {
            break;
        }
        let logs: Vec<String> = replicas.iter().map(Replica::log_tail).collect();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{ready} of 3 replicas ready after 20 s; logs:\n{}",
            logs.join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(Duration::from_secs(10), "a leader", || async {
        for r in &replicas {
            if r.is_active(&http).await {
                return true;
            }
        }
        false
    })
    .await;
    let mut active = vec![];
    for (i, r) in replicas.iter().enumerate() {
        if r.is_active(&http).await {
            active.push(i);
        }
    }
    assert_eq!(active.len(), 1, "exactly one active flusher: {active:?}");
    let leader = active[0];

    // 400 IDs in 20 deliveries spread over the three replicas: a drain of 20 calls at 5 per
    // second, about four seconds.
    let ids: Vec<String> = (0..400).map(|i| format!("fail{i:04}")).collect();
    for (n, chunk) in ids.chunks(20).enumerate() {
        let r = &replicas[n % 3];
        let response = http
            .post(format!("{}/webhooks/cms", r.address))
            .bearer_auth(SOURCE_TOKEN)
            .json(&json!({ "media_ids": chunk }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "delivery {n}");
    }

    wait_until(
        Duration::from_secs(10),
        "the drain to be under way",
        || async { successful(&sim.calls()).len() >= 5 },
    )
    .await;
    replicas[leader].child.kill().unwrap(); // SIGKILL
    replicas[leader].child.wait().unwrap();
    let killed_at = Instant::now();
    let sent_before_kill = successful(&sim.calls()).len();
    assert!(
        sent_before_kill < 20,
        "the kill must land mid-drain ({sent_before_kill} calls already)"
    );

    let mut new_leader = None;
    while new_leader.is_none() {
        for (i, r) in replicas.iter().enumerate() {
            if i != leader && r.is_active(&http).await {
                new_leader = Some(i);
            }
        }
        let logs: Vec<String> = replicas.iter().map(Replica::log_tail).collect();
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no new leader within 10 s; logs:\n{}",
            logs.join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed_at.elapsed();

    wait_until_sent(&sim, &ids, Duration::from_secs(30)).await;
    let calls = sim.calls();
    let calls = successful(&calls);
    assert!(
        busiest_second(&calls) <= RPS,
        "at most {RPS} calls in any second, across the handover: {:?}",
        calls.iter().map(|c| c.at_ms).collect::<Vec<_>>()
    );
    let mut active = vec![];
    for (i, r) in replicas.iter().enumerate() {
        if i != leader && r.is_active(&http).await {
            active.push(i);
        }
    }
    assert_eq!(
        active,
        vec![new_leader.unwrap()],
        "still exactly one leader"
    );
    eprintln!(
        "failover: new leader after {took_over:?}; {} calls for {} IDs",
        calls.len(),
        ids.len()
    );
}

#[tokio::test]
async fn a_leader_cut_off_from_the_database_stops_flushing_and_recovers() {
    let Some(db) = fresh_database("database_loss").await else {
        return;
    };
    let sim = sim::start(sim_config()).await.unwrap();
    let app = spawn_on(
        "unused",
        sim,
        &format!(
            "[store]\nurl = \"{}\"\n[queue]\nquiet = \"100ms\"\n",
            db.url
        ),
    )
    .await;
    let readyz = || async {
        let response = app
            .http
            .get(format!("{}/readyz", app.address))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    wait_until(Duration::from_secs(10), "leader", || async {
        let (status, body) = readyz().await;
        status == 200 && body["flusher_active"] == true
    })
    .await;
    assert_eq!(
        app.purge(json!({"media_ids": ["before"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(5), "sent", || async {
        app.successful_calls().len() == 1
    })
    .await;

    // The database refuses this replica: every session ends and no new one opens.
    db.block().await;
    wait_until(
        Duration::from_secs(10),
        "unready and not flushing",
        || async {
            let (status, body) = readyz().await;
            status == 503 && body["flusher_active"] == false
        },
    )
    .await;
    let (_, body) = readyz().await;
    assert!(
        body["store"].as_str().unwrap().starts_with("unreachable"),
        "{body}"
    );
    let refused = app.purge(json!({"media_ids": ["during"]})).await.status();
    assert_eq!(
        refused, 503,
        "nothing can be stored, so nothing is acknowledged, and the sender should retry"
    );

    db.unblock().await;
    wait_until(
        Duration::from_secs(15),
        "ready and leading again",
        || async {
            let (status, body) = readyz().await;
            status == 200 && body["flusher_active"] == true
        },
    )
    .await;
    assert_eq!(
        app.purge(json!({"media_ids": ["after"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(5), "sent after recovery", || async {
        app.successful_calls().len() == 2
    })
    .await;
    let ids: Vec<String> = app
        .successful_calls()
        .iter()
        .flat_map(|c| c.media_ids.clone())
        .collect();
    assert_eq!(ids, vec!["before", "after"]);
    app.stop().await;
}

/// A simulator and one `serve` process on a fresh SQLite file, ready.
async fn embedded_replica() -> (sim::SimHandle, tempfile::TempDir, String, Replica) {
    let sim = sim::start(sim_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("vod-purge.db").display());
    let replica = Replica::start(dir.path(), 0, &db_url, &sim.base_url());
    let http = http_client();
    wait_until(Duration::from_secs(20), "the service", || async {
        matches!(replica.readyz(&http).await, Some((200, _)))
    })
    .await;
    (sim, dir, db_url, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_killed_mid_ingest_loses_nothing_it_acknowledged() {
    let (sim, dir, db_url, mut first) = embedded_replica().await;
    let http = http_client();

    // Eight senders, each up to 40 deliveries of two new IDs; the IDs of every 202 are kept.
    const SENDERS: usize = 8;
    const DELIVERIES: usize = 40;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (http, address, acked) = (http.clone(), first.address.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0..DELIVERIES {
                    let ids = [format!("kill{sender}x{n}a"), format!("kill{sender}x{n}b")];
                    let answer = http
                        .post(format!("{address}/webhooks/cms"))
                        .bearer_auth(SOURCE_TOKEN)
                        .json(&json!({ "media_ids": ids }))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == 202 => acked.lock().unwrap().extend(ids),
                        // The process is gone: what was not answered 202 was not promised.
                        _ => return,
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "deliveries under way", || async {
        acked.lock().unwrap().len() >= 100
    })
    .await;
    first.child.kill().unwrap(); // SIGKILL, mid-ingest
    first.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() < SENDERS * DELIVERIES * 2,
        "the kill must land while deliveries are still coming ({} IDs acknowledged)",
        acked.len()
    );

    // A new process on the same file sends every acknowledged ID.
    let second = Replica::start(dir.path(), 1, &db_url, &sim.base_url());
    wait_until_sent(&sim, &acked, Duration::from_secs(40)).await;
    drop(second);
    sim.stop().await;
}

/// The crash drill with repeated IDs: events merge into pending items (and into items whose
/// call is in flight, which the in-flight rule turns into new items) while the process is
/// killed. Every event answered `202` must be followed by a purge of its ID that started after
/// the event was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_killed_under_merges_purges_after_every_acknowledged_event() {
    let (sim, dir, db_url, mut first) = embedded_replica().await;
    let http = http_client();

    // Eight senders, each up to 150 deliveries of two IDs out of a pool of 30, one every 50 ms:
    // almost every event merges, and an ID is never quiet long enough, so its purges are forced by
    // queue.max_wait (2 s). Each 202 is kept with the time its request was sent.
    const SENDERS: usize = 8;
    const DELIVERIES: usize = 150;
    const POOL: usize = 30;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (http, address, acked) = (http.clone(), first.address.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0..DELIVERIES {
                    let pick = |k: usize| format!("merge{}", (n * 7 + sender * 3 + k * 11) % POOL);
                    let ids = [pick(0), pick(1)];
                    let sent_at = now_ms();
                    let answer = http
                        .post(format!("{address}/webhooks/cms"))
                        .bearer_auth(SOURCE_TOKEN)
                        .json(&json!({ "media_ids": ids }))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == 202 => {
                            acked.lock().unwrap().extend(ids.map(|id| (id, sent_at)))
                        }
                        _ => return,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    // Some purges go out before the kill, so that later events fall behind calls in flight.
    wait_until(
        Duration::from_secs(20),
        "deliveries and purges under way",
        || async { acked.lock().unwrap().len() >= 300 && successful(&sim.calls()).len() >= 3 },
    )
    .await;
    first.child.kill().unwrap(); // SIGKILL, under merges
    first.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked: Vec<(String, i64)> = acked.lock().unwrap().clone();
    assert!(
        acked.len() < SENDERS * DELIVERIES * 2,
        "the kill must land while deliveries are still coming ({} events acknowledged)",
        acked.len()
    );
    let ids: BTreeSet<&String> = acked.iter().map(|(id, _)| id).collect();
    assert!(
        ids.len() <= POOL && acked.len() > 2 * ids.len(),
        "mostly merges"
    );

    // A new process on the same file: for every acknowledged event, a purge of its ID after it.
    let second = Replica::start(dir.path(), 1, &db_url, &sim.base_url());
    let mut late: Vec<(String, i64)>;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let calls = sim.calls();
        let purges = successful(&calls);
        late = acked
            .iter()
            .filter(|(id, sent_at)| {
                !purges
                    .iter()
                    .any(|c| c.at_ms >= *sent_at && c.media_ids.contains(id))
            })
            .cloned()
            .collect();
        if late.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        late.is_empty(),
        "{} of {} acknowledged events have no purge after them, e.g. {:?}; restarted replica: {}",
        late.len(),
        acked.len(),
        &late[..late.len().min(5)],
        second.log_tail()
    );
    drop(second);
    sim.stop().await;
}
