//! A graceful shutdown of the real binary.

use super::*;

#[tokio::test]
async fn sigterm_drains_the_call_in_flight_and_loses_nothing() {
    let sim = vod_purge::sim::start(SimConfig {
        faults: Faults {
            latency_ms: 2_000,
            ..Faults::default()
        },
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db").to_string_lossy().into_owned();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\nshutdown_grace = \"10s\"\n\
             [store]\nurl = \"sqlite://{db}\"\n[vod]\nendpoint = \"{}\"\naccess_key_id = \"testid\"\naccess_key_secret = \"testsecret\"\ntimeout = \"5s\"\n\
             [queue]\nquiet = \"100ms\"\nlinger = \"50ms\"\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start_serving(
        binary()
            .args(["serve", "--config"])
            .arg(&config)
            .env_clear(),
        &format!("{base}/readyz"),
    )
    .await;
    let http = http_client();
    let ids: Vec<String> = (0..25).map(|i| format!("term{i:02}")).collect();
    let first = http
        .post(format!("{base}/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"media_ids": ids[..20]}))
        .send();
    assert_eq!(first.await.unwrap().status(), 202);
    // The purge call, not the quota poll that an active flusher makes at start.
    wait_until(Duration::from_secs(10), "a call in flight", || async {
        sim.calls()
            .iter()
            .any(|c| c.action == "RefreshMediaPlayUrls")
    })
    .await;
    // Acknowledged while the first call is in flight: must survive the shutdown.
    let late = http
        .post(format!("{base}/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"media_ids": ids[20..]}))
        .send();
    assert_eq!(late.await.unwrap().status(), 202);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");

    // Every acknowledged ID was either sent (and recorded) or is still stored for the next start.
    let store = Store::open(&StoreLocation::Sqlite(db)).await.unwrap();
    let jobs = store
        .list_jobs(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut accounted: Vec<String> = Vec::new();
    for job in &jobs {
        assert_ne!(job.status, vod_purge::store::JobStatus::Failed);
        accounted.extend(job.items.iter().map(|i| i.media_id.to_string()));
    }
    for id in &ids {
        if !accounted.contains(id) {
            assert_eq!(
                store.pending_for_media(id).await.unwrap().len(),
                1,
                "{id} was lost"
            );
        }
    }
    let first_job = jobs
        .iter()
        .find(|j| j.items.len() == 20)
        .expect("the in-flight batch");
    assert_eq!(
        first_job.status,
        vod_purge::store::JobStatus::Succeeded,
        "the call in flight was finished and recorded"
    );
    store.close().await;
    sim.stop().await;
}
