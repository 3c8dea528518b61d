//! Slow bodies, floods of unauthenticated requests, and the source rate limit.

use super::*;

#[tokio::test]
async fn stalled_bodies_are_cut_off_with_408_and_hold_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // Many failures from one address are the next test's business, not this one's; and one
    // address may hold an eighth of the unauthenticated reads, 256 of 2048 here.
    let (mut child, base) = serve(
        dir.path(),
        "body_timeout = \"3s\"\npeer_failure_burst = 10000\nunauthenticated_reads = 2048",
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
    // Answered while the stalls were still open: none of them has had its 408 yet.
    let still_open = stalls
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let open = matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            open
        })
        .count();
    assert_eq!(
        still_open,
        stalls.len(),
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
