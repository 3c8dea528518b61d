//! The purge pipeline end to end: HTTP in, the real store and flusher, the simulator out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use vod_purge::config::StoreLocation;
use vod_purge::domain::{PurgeOptions, Ts};
use vod_purge::sim::{Faults, SimConfig};
use vod_purge::store::{ClaimBatch, Store};

use crate::support::{ADMIN_TOKEN, Spawn, spawn_app, spawn_on, wait_until};

fn sent_ids(calls: &[vod_purge::sim::RecordedCall]) -> Vec<String> {
    let mut ids: Vec<String> = calls.iter().flat_map(|c| c.media_ids.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_burst_is_deduplicated_and_packed_into_full_batches() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"1s\"\nlinger = \"1s\"\n".into(),
        ..Spawn::default()
    })
    .await;
    // 1,000 events over 200 IDs: 200 deliveries of 5 IDs, each ID named 5 times.
    let started = Instant::now();
    let sends = (0..200).map(|d| {
        let ids: Vec<String> = (0..5)
            .map(|k| format!("video{:03}", (d + k * 40) % 200))
            .collect();
        app.webhook(json!({"media_ids": ids}))
    });
    let responses = futures_util::future::join_all(sends).await;
    let spread = started.elapsed();
    assert!(
        spread < Duration::from_secs(1),
        "the burst must fit in linger, took {spread:?}"
    );
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
    assert!(
        (5_000..6_000).contains(&offsets[0]),
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
            task: vod_purge::domain::TaskType::Refresh,
            fingerprint: PurgeOptions::default().fingerprint(),
            now,
            max: 10,
            lease_until: now + Duration::from_secs(3),
            job_id: uuid::Uuid::now_v7().to_string(),
            dry_run: false,
            urgent_only: false,
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

async fn job_of(app: &crate::support::TestApp, media_id: &str) -> serde_json::Value {
    let media = app.get_json(&format!("/media/{media_id}")).await;
    media["jobs"][0].clone()
}

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

#[tokio::test]
async fn redelivery_gets_the_first_answer_and_stores_nothing_new() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"30s\"\nmax_wait = \"60s\"\n".into(),
        ..Spawn::default()
    })
    .await;
    let send = |ids: serde_json::Value| {
        app.http
            .post(format!("{}/purge", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "delivery-1")
            .json(&json!({"media_ids": ids}))
            .send()
    };
    let first: serde_json::Value = send(json!(["one"])).await.unwrap().json().await.unwrap();
    let second: serde_json::Value = send(json!(["one", "two"]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["event_id"], second["event_id"]);
    assert_eq!(second["redelivery"], true);
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_its_status_and_nothing_is_stored() {
    let app = spawn_app(Spawn::default()).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let big = "x".repeat(70_000);
    let many: Vec<String> = (0..1001).map(|i| format!("v{i}")).collect();
    // (path, token, content type, body, status, code)
    // (path, bearer token, content type, body, status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            "{not json".into(),
            400,
            "malformed_json",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "text/plain",
            r#"{"media_ids":["a"]}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            format!(r#"{{"media_ids":["{big}"]}}"#),
            413,
            "body_too_large",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":[]}"#.into(),
            422,
            "no_usable_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":["a,b","c d"]}"#.into(),
            422,
            "no_usable_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            json!({"media_ids": many}).to_string(),
            422,
            "too_many_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":["a"],"task":"Nuke"}"#.into(),
            422,
            "unknown_task",
        ),
        (
            "/purge",
            None,
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "missing_token",
        ),
        (
            "/purge",
            Some("wrong"),
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "invalid_token",
        ),
        (
            "/webhooks/cms",
            None,
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "missing_token",
        ),
        (
            "/webhooks/cms",
            Some("wrong"),
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "invalid_token",
        ),
        (
            "/webhooks/cms",
            Some(crate::support::SOURCE_TOKEN),
            "application/json",
            "[1,".into(),
            400,
            "malformed_json",
        ),
        (
            "/webhooks/nope",
            Some(crate::support::SOURCE_TOKEN),
            "application/json",
            "{}".into(),
            404,
            "unknown_source",
        ),
    ];
    for (path, token, content_type, body, status, code) in cases {
        let mut request = app
            .http
            .post(url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {code}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{path}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 0, "nothing was stored");

    // Valid and invalid IDs together: the valid ones are stored, the others reported.
    let receipt: serde_json::Value = app
        .purge(json!({"media_ids": ["good", "bad,id"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["accepted"], json!(["good"]));
    assert_eq!(receipt["rejected"][0]["media_id"], "bad,id");
    app.stop().await;
}

#[tokio::test]
async fn reads_need_the_admin_token_when_one_is_set() {
    let app = spawn_app(Spawn::default()).await;
    for path in ["/jobs", "/queue", "/media/x", "/jobs/x"] {
        let status = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        let status = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let page = app.get_json("/jobs?status=failed&limit=5").await;
    assert_eq!(page["jobs"], json!([]));
    let bad = app
        .http
        .get(format!("{}/jobs?status=weird", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

/// An application with a short debounce whose simulator fails the submission of "stuck";
/// `vod` is the body of the `[vod]` table.
async fn spawn_failing_stuck(vod: &str) -> crate::support::TestApp {
    spawn_app(Spawn {
        extra: format!(
            "[queue]\nquiet = \"100ms\"\nmax_wait = \"1s\"\nlinger = \"50ms\"\n[vod]\n{vod}"
        ),
        sim: SimConfig {
            failing: vec!["stuck".into()],
            ..Spawn::default().sim
        },
    })
    .await
}

#[tokio::test]
async fn submissions_are_checked_and_a_failed_one_is_shown_with_vods_code() {
    // The automatic resubmission of "stuck" waits retry_max, beyond the end of this test.
    let app = spawn_failing_stuck("check_after = \"300ms\"\nretry_max = \"60s\"\n").await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["fine", "stuck"], "task": "Preload"}))
            .await
            .status(),
        202
    );
    let outcomes = |page: &serde_json::Value| -> Vec<(String, String, Option<String>)> {
        page["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|job| job["items"].as_array().cloned().unwrap_or_default())
            .map(|item| {
                (
                    item["media_id"].as_str().unwrap_or_default().to_owned(),
                    item["outcome"].as_str().unwrap_or_default().to_owned(),
                    item["error"]["code"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    // The failed ID is also resubmitted in a job of its own, due only a minute later: the job
    // sent now is the succeeded one.
    wait_until(
        Duration::from_secs(10),
        "both submissions checked",
        || async {
            let page = app.get_json("/jobs?status=succeeded").await;
            outcomes(&page)
                .iter()
                .all(|(_, outcome, _)| outcome.starts_with("submit"))
                && !outcomes(&page).is_empty()
        },
    )
    .await;
    let page = app.get_json("/jobs?status=succeeded").await;
    let mut seen = outcomes(&page);
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("fine".to_owned(), "submitted".to_owned(), None),
            (
                "stuck".to_owned(),
                "submit_failed".to_owned(),
                Some("PreloadQueueFull".to_owned())
            ),
        ]
    );
    let job = &page["jobs"][0];
    assert_eq!(job["status"], "succeeded");
    assert!(job["next_check_at"].is_null(), "nothing left to check");
    let checks: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.action == "GetMediaRefreshJobs")
        .collect();
    assert_eq!(checks.len(), 1, "one check answers both IDs: {checks:?}");
    assert_eq!(checks[0].status, 200);

    let metrics = app.metrics().await;
    for line in [
        r#"vod_purge_media_submissions_total{code="",result="submitted"} 1"#,
        r#"vod_purge_media_submissions_total{code="PreloadQueueFull",result="submit_failed"} 1"#,
    ] {
        assert!(
            crate::support::has_sample(&metrics, line),
            "{line} in\n{metrics}"
        );
    }

    // An operator queues the failed ID again: only it goes out, as a Preload with the job's
    // options.
    let job_id = job["id"].as_str().unwrap().to_owned();
    let resubmit = |id: &str, token| app.post_empty(format!("/jobs/{id}/resubmit"), token);
    assert_eq!(resubmit(&job_id, None).await.status(), 401);
    assert_eq!(
        resubmit("no-such-job", Some(ADMIN_TOKEN)).await.status(),
        404
    );
    let answer = resubmit(&job_id, Some(ADMIN_TOKEN)).await;
    assert_eq!(answer.status(), 202);
    let receipt: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(receipt["accepted"], json!(["stuck"]), "{receipt}");
    wait_until(Duration::from_secs(10), "the second call", || async {
        app.successful_calls().len() == 2
    })
    .await;
    let again = &app.successful_calls()[1];
    assert_eq!(again.media_ids, vec!["stuck"]);
    assert_eq!(again.params["TaskType"], "Preload");
    app.stop().await;
}

#[tokio::test]
async fn only_a_job_with_a_failed_submission_can_be_resubmitted() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"100ms\"\nlinger = \"50ms\"\n[vod]\ncheck_after = \"100ms\"\n"
            .into(),
        ..Spawn::default()
    })
    .await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["fine"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(10), "the check", || async {
        job_of(&app, "fine").await["items"][0]["outcome"] == "submitted"
    })
    .await;
    let id = job_of(&app, "fine").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = app
        .post_empty(format!("/jobs/{id}/resubmit"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(answer.status(), 409);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "nothing_to_resubmit", "{body}");
    app.stop().await;
}

/// Purges `media_id` (the only purge since the simulator's calls were last cleared), then makes
/// the simulator fail the next call, the submission check, with `code`.
async fn purge_then_fail_the_check(app: &crate::support::TestApp, media_id: &str, code: &str) {
    assert_eq!(
        app.webhook(json!({ "media_ids": [media_id] }))
            .await
            .status(),
        202
    );
    wait_until(Duration::from_secs(10), "the purge", || async {
        app.successful_calls().len() == 1
    })
    .await;
    app.sim.set_faults(Faults {
        fail_next: 1,
        error_code: code.into(),
        ..Faults::default()
    });
}

#[tokio::test]
async fn a_check_that_fails_retryably_is_asked_again_and_a_permanent_failure_stops_the_checks() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"100ms\"\nmax_wait = \"1s\"\nlinger = \"50ms\"\n\
                [vod]\ncheck_after = \"200ms\"\n"
            .into(),
        ..Spawn::default()
    })
    .await;
    let checks = |app: &crate::support::TestApp| -> Vec<(u16, Option<String>)> {
        app.sim
            .calls()
            .into_iter()
            .filter(|c| c.action == "GetMediaRefreshJobs")
            .map(|c| (c.status, c.code))
            .collect()
    };

    // The purge call goes through; the first check then meets a 500 and is made again.
    purge_then_fail_the_check(&app, "again", "InternalError").await;
    wait_until(Duration::from_secs(10), "the second check", || async {
        job_of(&app, "again").await["items"][0]["outcome"] == "submitted"
    })
    .await;
    assert_eq!(
        checks(&app),
        vec![(500, Some("InternalError".to_owned())), (200, None)]
    );
    assert!(crate::support::has_sample(
        &app.metrics().await,
        r#"vod_purge_submission_check_errors_total{code="InternalError"} 1"#
    ));

    // A permanent error ends the job's checks: the ID stays "sent", and nothing is asked again.
    app.sim.clear_calls();
    purge_then_fail_the_check(&app, "denied", "Forbidden.RAM/403").await;
    wait_until(Duration::from_secs(10), "the refused check", || async {
        !checks(&app).is_empty()
    })
    .await;
    wait_until(
        Duration::from_secs(5),
        "the check to be given up",
        || async { job_of(&app, "denied").await["next_check_at"].is_null() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(checks(&app), vec![(403, Some("Forbidden.RAM".to_owned()))]);
    assert_eq!(job_of(&app, "denied").await["items"][0]["outcome"], "sent");
    app.stop().await;
}

#[tokio::test]
async fn an_id_whose_submission_keeps_failing_is_resubmitted_until_the_budget_runs_out() {
    let started = Instant::now();
    let app = spawn_failing_stuck(
        "check_after = \"100ms\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\nmax_age = \"5s\"\n",
    )
    .await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["stuck", "fine"], "task": "Preload"}))
            .await
            .status(),
        202
    );
    let sends = |media_id: &str| {
        app.successful_calls()
            .iter()
            .filter(|c| c.media_ids.iter().any(|m| m == media_id))
            .count()
    };
    wait_until(Duration::from_secs(10), "two resubmissions", || async {
        sends("stuck") >= 3
    })
    .await;
    // max_age after the first job, nothing is resubmitted any more.
    tokio::time::sleep_until((started + Duration::from_secs(7)).into()).await;
    let settled = sends("stuck");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(sends("stuck"), settled, "no resubmission after max_age");
    assert_eq!(sends("fine"), 1, "a submitted ID is never sent again");
    let resubmitted = app
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("vod_purge_media_resubmitted_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(resubmitted, Some(settled as u64 - 1));
    // Each resubmission names the job it came from: one chain back to the first job.
    let page = app.get_json("/jobs?media_id=stuck&limit=100").await;
    let jobs = page["jobs"].as_array().unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    let parents: Vec<Option<&str>> = jobs.iter().map(|j| j["resubmission_of"].as_str()).collect();
    // Newest first: each job's parent is the next one in the list, and the oldest has none.
    let mut expected: Vec<Option<&str>> = ids[1..].iter().copied().map(Some).collect();
    expected.push(None);
    assert_eq!(parents, expected, "jobs {ids:?}");
    app.stop().await;
}
