//! The single process of the embedded store, killed while it takes webhooks.

use super::*;

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
    first.process.kill(); // SIGKILL, mid-ingest
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
    first.process.kill(); // SIGKILL, under merges
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
        late = crate::support::unpurged(&acked, successful(&calls));
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
