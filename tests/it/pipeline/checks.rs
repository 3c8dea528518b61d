//! Submission checks and resubmission.

#[allow(unused_imports)]
use super::*;

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
        r#"vod_purge_media_submissions_total{account="default",code="",result="submitted"} 1"#,
        r#"vod_purge_media_submissions_total{account="default",code="PreloadQueueFull",result="submit_failed"} 1"#,
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
        r#"vod_purge_submission_check_errors_total{account="default",code="InternalError"} 1"#
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
