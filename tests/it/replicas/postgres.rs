//! Several replicas on one PostgreSQL database: failover, and a leader cut off from the database.

use super::*;

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
    replicas[leader].process.kill(); // SIGKILL
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
    // The simulator records arrivals: on this loaded machine a call's trip can take 200 ms more
    // than the next one's, bringing one departure into the previous second. Two leaders sending
    // at once would put twice the rate into a second; one call over it is the trip's jitter.
    assert!(
        busiest_second(&calls) <= RPS + 1,
        "at most {RPS} calls in any second (one more by arrival jitter), across the handover: {:?}",
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
