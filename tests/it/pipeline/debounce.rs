//! Debounce and batching: bursts deduplicated into full batches, max_wait, the in-flight rule,
//! Refresh before Preload, and a restart in the middle.

#[allow(unused_imports)]
use super::*;

#[tokio::test]
async fn a_burst_is_deduplicated_and_packed_into_full_batches() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"3s\"\nlinger = \"1s\"\n".into(),
        ..Spawn::default()
    })
    .await;
    // 1,000 events over 200 IDs: 200 deliveries of 5 IDs, each ID named 5 times, all within the
    // quiet period (they take a fraction of a second; the quiet period is three).
    let sends = (0..200).map(|d| {
        let ids: Vec<String> = (0..5)
            .map(|k| format!("video{:03}", (d + k * 40) % 200))
            .collect();
        app.webhook(json!({"media_ids": ids}))
    });
    let responses = futures_util::future::join_all(sends).await;
    assert!(responses.iter().all(|r| r.status() == 202));

    wait_until(Duration::from_secs(10), "200 IDs sent", || async {
        sent_ids(&app.successful_calls()).len() >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = app.successful_calls();
    assert_eq!(calls.len(), 10, "200 IDs in 10 calls");
    assert!(
        calls.iter().all(|c| c.media_ids.len() == 20),
        "every call is full"
    );
    let ids = sent_ids(&calls);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(
        (ids.len(), unique.len()),
        (200, 200),
        "each ID exactly once"
    );
    app.stop().await;
}

#[tokio::test]
async fn debounce_sends_at_max_wait_and_after_the_last_event() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"2s\"\nmax_wait = \"5s\"\nlinger = \"100ms\"\n".into(),
        ..Spawn::default()
    })
    .await;
    let first = Ts::now();
    for second in 0..10u64 {
        let due = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            app.webhook(json!({"media_ids": ["debounced"]}))
                .await
                .status(),
            202,
            "event {second}"
        );
        tokio::time::sleep_until(due.into()).await;
    }
    wait_until(Duration::from_secs(6), "the second purge", || async {
        app.successful_calls().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = app.successful_calls();
    assert_eq!(
        calls.len(),
        2,
        "once at max_wait, once after the last event: {calls:?}"
    );
    let offsets: Vec<i64> = calls.iter().map(|c| c.at_ms - first.0).collect();
    // Events kept coming for ten seconds, so only the deadline can send the item before the
    // quiet period after the last one.
    assert!(
        (5_000..11_000).contains(&offsets[0]),
        "first purge at the max-wait deadline: {offsets:?}"
    );
    assert!(
        offsets[1] >= 11_000,
        "second purge quiet after the last event: {offsets:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_event_during_the_call_yields_a_second_purge() {
    let sim = SimConfig {
        faults: Faults {
            latency_ms: 1_500,
            ..Faults::default()
        },
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    };
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"100ms\"\n".into(),
        sim,
    })
    .await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["busy"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(5), "the call to start", || async {
        !app.refresh_calls().is_empty()
    })
    .await;
    let receipt: serde_json::Value = app
        .webhook(json!({"media_ids": ["busy"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        receipt["accepted"],
        json!(["busy"]),
        "a new item, not merged into the in-flight one"
    );
    wait_until(Duration::from_secs(10), "the second purge", || async {
        app.successful_calls().len() >= 2
    })
    .await;
    assert_eq!(sent_ids(&app.successful_calls()), vec!["busy", "busy"]);
    app.stop().await;
}

#[tokio::test]
async fn nothing_pending_or_claimed_is_lost_across_a_restart() {
    // First run: the flusher only looks once at start, so the items stay pending.
    let app = spawn_app(Spawn {
        extra: "[queue]\npoll_interval = \"1h\"\n".into(),
        ..Spawn::default()
    })
    .await;
    let ids: Vec<String> = (0..30).map(|i| format!("keep{i:02}")).collect();
    assert_eq!(app.purge(json!({"media_ids": ids})).await.status(), 202);
    let db_path = app.db_path.clone();
    let (sim, dir) = app.stop().await;
    assert!(
        sim.calls()
            .iter()
            .all(|c| c.action != "RefreshMediaPlayUrls"),
        "nothing was purged in the first run"
    );

    // A flusher that died mid-call: 10 items claimed into a job whose lease runs 3 s more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = Store::open(&StoreLocation::Sqlite(db_path.clone()))
        .await
        .unwrap();
    let now = Ts::now();
    let claimed = store
        .claim_batch(&ClaimBatch {
            account: vod_purge::domain::AccountName::default(),
            task: vod_purge::domain::TaskType::Refresh,
            fingerprint: PurgeOptions::default().fingerprint(),
            now,
            max: 10,
            lease_until: now + Duration::from_secs(3),
            job_id: uuid::Uuid::now_v7().to_string(),
            dry_run: false,
            urgent_only: false,
            seen: None,
        })
        .await
        .unwrap()
        .expect("items were pending");
    store.close().await;
    assert_eq!(claimed.items.len(), 10);

    let app = spawn_on(&db_path, sim, "").await;
    wait_until(Duration::from_secs(15), "all 30 IDs sent", || async {
        sent_ids(&app.successful_calls()).len() >= 30
    })
    .await;
    let calls = app.successful_calls();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sent_ids(&calls), want, "every acknowledged ID, once");
    let claimed_call = calls
        .iter()
        .find(|c| c.media_ids.contains(&"keep00".to_owned()))
        .unwrap();
    assert!(
        claimed_call.at_ms >= (now + Duration::from_secs(3)).0,
        "the claimed job waited for its lease"
    );
    let path = format!("/jobs/{}", claimed.id);
    wait_until(
        Duration::from_secs(5),
        "the claimed job recorded",
        || async { app.get_json(&path).await["status"] == "succeeded" },
    )
    .await;
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn refresh_then_preload_goes_out_in_that_order() {
    let app = spawn_app(Spawn::default()).await;
    let body = json!({"media_ids": ["both"], "task": "RefreshThenPreload"});
    assert_eq!(app.purge(body).await.status(), 202);
    wait_until(Duration::from_secs(10), "two calls", || async {
        app.successful_calls().len() >= 2
    })
    .await;
    let tasks: Vec<_> = app
        .successful_calls()
        .iter()
        .map(|c| c.task_type.clone().unwrap())
        .collect();
    assert_eq!(tasks, vec!["Refresh", "Preload"]);
    app.stop().await;
}
