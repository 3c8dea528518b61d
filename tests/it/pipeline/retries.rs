//! Sending: retries of throttled and failed calls, per-ID results, the rate, the dry run.

#[allow(unused_imports)]
use super::*;

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_success() {
    for code in ["Throttling", "InternalError", "ServiceUnavailable"] {
        let app = spawn_app(Spawn::default()).await;
        app.sim.set_faults(Faults {
            fail_next: 2,
            error_code: code.into(),
            ..Faults::default()
        });
        assert_eq!(
            app.purge(json!({"media_ids": ["retry-me"]})).await.status(),
            202
        );
        wait_until(Duration::from_secs(15), "success", || async {
            app.successful_calls().len() == 1
        })
        .await;
        let calls = app.refresh_calls();
        assert_eq!(calls.len(), 3, "{code}: two failures then success");
        assert!(calls[..2].iter().all(|c| c.code.as_deref() == Some(code)));
        let nonces: std::collections::HashSet<_> = calls
            .iter()
            .map(|c| c.params["SignatureNonce"].clone())
            .collect();
        assert_eq!(nonces.len(), 3, "every attempt is signed afresh");
        wait_until(Duration::from_secs(5), "job recorded", || async {
            job_of(&app, "retry-me").await["status"] == "succeeded"
        })
        .await;
        assert_eq!(job_of(&app, "retry-me").await["attempts"], 3);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_retry_is_not_held_back_by_a_large_backlog() {
    // 2,000 IDs at 10 calls per second keep the flusher busy for 10 s; the failed job is due
    // again after 1 to 2 s and must go out long before the backlog is done.
    let app = spawn_app(Spawn {
        extra:
            "[vod]\nmax_requests_per_second = 10\nretry_base = \"2s\"\nretry_max = \"4s\"\n[queue]\nquiet = \"300ms\"\n"
                .into(),
        ..Spawn::default()
    })
    .await;
    app.sim.set_faults(Faults {
        fail_next: 1,
        error_code: "InternalError".into(),
        ..Faults::default()
    });
    assert_eq!(
        app.purge(json!({"media_ids": ["retry-me"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(10), "the first attempt", || async {
        app.refresh_calls().len() == 1
    })
    .await;
    for half in 0..2 {
        let ids: Vec<String> = (0..1000).map(|i| format!("backlog{half}-{i:03}")).collect();
        assert_eq!(app.purge(json!({"media_ids": ids})).await.status(), 202);
    }
    wait_until(Duration::from_secs(40), "everything sent", || async {
        sent_ids(&app.successful_calls()).len() >= 2001
    })
    .await;
    let calls = app.refresh_calls();
    assert_eq!(calls.len(), 102, "1 failure, 1 retry, 100 backlog calls");
    let retry = calls
        .iter()
        .rposition(|c| c.media_ids == ["retry-me"])
        .unwrap();
    assert!(
        retry < 70,
        "the retry was call {retry} of {}: it waited behind the backlog",
        calls.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_permanent_error_fails_the_job_and_an_operator_retry_sends_it_again() {
    let app = spawn_app(Spawn::default()).await;
    app.sim.set_faults(Faults {
        fail_next: 1,
        error_code: "Forbidden.RAM".into(),
        ..Faults::default()
    });
    assert_eq!(
        app.purge(json!({"media_ids": ["doomed"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(10), "job failed", || async {
        job_of(&app, "doomed").await["status"] == "failed"
    })
    .await;
    let job = job_of(&app, "doomed").await;
    assert_eq!(job["error"]["code"], "Forbidden.RAM");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Forbidden.RAM")
    );
    assert_eq!(job["items"][0]["outcome"], "failed");
    assert_eq!(
        app.refresh_calls().len(),
        1,
        "a permanent error is not retried"
    );

    let id = job["id"].as_str().unwrap();
    let retry = app
        .post_empty(format!("/jobs/{id}/retry"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(retry.status(), 202);
    wait_until(Duration::from_secs(10), "retried job succeeds", || async {
        job_of(&app, "doomed").await["status"] == "succeeded"
    })
    .await;
    assert_eq!(app.successful_calls().len(), 1);
    let again = app
        .post_empty(format!("/jobs/{id}/retry"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(again.status(), 409, "only failed jobs can be retried");
    app.stop().await;
}

#[tokio::test]
async fn non_existent_and_forbidden_ids_are_recorded_per_id() {
    let sim = SimConfig {
        nonexistent: vec!["ghost".into()],
        forbidden: vec!["secret".into()],
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    };
    let app = spawn_app(Spawn {
        sim,
        ..Spawn::default()
    })
    .await;
    assert_eq!(
        app.purge(json!({"media_ids": ["real", "ghost", "secret"]}))
            .await
            .status(),
        202
    );
    wait_until(Duration::from_secs(10), "job done", || async {
        job_of(&app, "real").await["status"] == "succeeded"
    })
    .await;
    let job = job_of(&app, "real").await;
    let outcomes: HashMap<String, String> = job["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["media_id"].as_str().unwrap().to_owned(),
                i["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(outcomes["real"], "sent");
    assert_eq!(outcomes["ghost"], "non_existent");
    assert_eq!(outcomes["secret"], "forbidden");
    assert!(job["vod_job_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(job["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn the_configured_rate_is_never_exceeded() {
    let app = spawn_app(Spawn {
        extra: "[vod]\nmax_requests_per_second = 10\n[queue]\nquiet = \"300ms\"\n".into(),
        ..Spawn::default()
    })
    .await;
    let ids: Vec<String> = (0..500).map(|i| format!("backlog{i:03}")).collect();
    assert_eq!(app.purge(json!({"media_ids": ids})).await.status(), 202);
    wait_until(Duration::from_secs(20), "500 IDs sent", || async {
        sent_ids(&app.successful_calls()).len() >= 500
    })
    .await;
    let calls = app.refresh_calls();
    assert_eq!(calls.len(), 25, "500 IDs in 25 calls");
    let times: Vec<i64> = calls.iter().map(|c| c.at_ms).collect();
    let busiest = times
        .iter()
        .map(|&t| times.iter().filter(|&&u| u >= t && u < t + 1_000).count())
        .max()
        .unwrap();
    assert!(busiest <= 10, "{busiest} calls within one second");
    app.stop().await;
}

#[tokio::test]
async fn dry_run_records_what_would_have_been_sent() {
    let app = spawn_app(Spawn {
        extra: "[vod]\ndry_run = true\ncheck_after = \"100ms\"\n".into(),
        ..Spawn::default()
    })
    .await;
    assert_eq!(app.purge(json!({"media_ids": ["dry"]})).await.status(), 202);
    wait_until(Duration::from_secs(10), "dry job", || async {
        job_of(&app, "dry").await["status"] == "succeeded"
    })
    .await;
    // Well past check_after: a dry run created no VOD job, so there is nothing to check.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = job_of(&app, "dry").await;
    assert_eq!(job["dry_run"], true);
    assert_eq!(job["items"][0]["outcome"], "sent");
    assert!(job["next_check_at"].is_null());
    assert!(app.sim.calls().is_empty(), "nothing reached VOD");
    app.stop().await;
}
