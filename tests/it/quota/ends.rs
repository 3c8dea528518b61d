//! What ends a hold and what does not: answers that say nothing about the quota, a poll that
//! shows less than a batch, the reserve of urgent items, `vod.max_hold`; and what a hold leaves
//! flowing (the other task type, a resubmission that starts held).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::sim::{Faults, QuotaChange, SimConfig};

use super::*;
use crate::support::{self, Spawn, TestApp, wait_until};

/// The `held_since` of every held job.
async fn holds_began(app: &TestApp) -> Vec<String> {
    let mut since: Vec<String> = jobs_with(app, "held")
        .await
        .iter()
        .map(|j| j["held_since"].as_str().unwrap().to_owned())
        .collect();
    since.sort();
    since
}

/// `RefreshMediaPlayUrls` calls (any answer) that arrived at or after `at_ms`.
fn refresh_calls_since(app: &TestApp, at_ms: i64) -> usize {
    app.refresh_calls()
        .iter()
        .filter(|c| c.at_ms >= at_ms)
        .count()
}

/// Waits until the flusher has completed a step that began after this call: it has read the
/// holds and the last reading since.
async fn a_flusher_step(app: &TestApp) {
    let after = vod_purge::domain::Ts::now();
    wait_until(Duration::from_secs(10), "a flusher step", || async {
        let ready = app.get_json("/readyz").await;
        ready["flusher_last_step"]
            .as_str()
            .and_then(vod_purge::domain::Ts::parse)
            .is_some_and(|t| t > after)
    })
    .await;
}

/// Waits until the calls in flight when the quota ran out have been answered.
async fn no_call_in_flight(app: &TestApp) {
    wait_until(Duration::from_secs(10), "the calls in flight", || async {
        app.get_json("/queue").await["in_flight_batches"] == 0
    })
    .await;
}

#[tokio::test]
async fn a_probe_met_by_an_outage_keeps_the_hold() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::ZERO;
        s.vod.quota_probe_interval = Duration::from_millis(500);
    })
    .await;
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    no_call_in_flight(&app).await;
    let hold = app.get_json("/queue").await["held"][0].clone();

    // VOD answers 503 from now on: the probes meet it, and say nothing about the quota.
    app.sim.set_faults(Faults {
        error_rate: 1.0,
        error_code: "ServiceUnavailable".into(),
        fail_action: Some("RefreshMediaPlayUrls".into()),
        ..Faults::default()
    });
    let outage_from = vod_purge::domain::Ts::now().0;
    wait_until(
        Duration::from_secs(15),
        "three probes in the outage",
        || async {
            app.refresh_calls()
                .iter()
                .filter(|c| {
                    c.at_ms >= outage_from && c.code.as_deref() == Some("ServiceUnavailable")
                })
                .count()
                >= 3
        },
    )
    .await;
    // Each call was a probe: one at a time, the held jobs still held since the same moments.
    let calls: Vec<i64> = app
        .refresh_calls()
        .iter()
        .filter(|c| c.at_ms >= outage_from)
        .map(|c| c.at_ms)
        .collect();
    for pair in calls.windows(2) {
        assert!(pair[1] - pair[0] >= 450, "one probe at a time: {calls:?}");
    }
    // `/queue` counts the probe in flight among the held jobs.
    let now = app.get_json("/queue").await["held"][0].clone();
    assert_eq!(
        (&now["task"], &now["since"], &now["jobs"], &now["reason"]),
        (
            &hold["task"],
            &hold["since"],
            &hold["jobs"],
            &hold["reason"]
        ),
        "the hold goes on: {hold} then {now}"
    );
    let held = jobs_with(&app, "held").await;
    assert!(
        held.iter()
            .all(|j| j["error"]["code"] == "QuotaExceeded.Refresh"),
        "{held:?}"
    );
    assert!(
        held.iter().any(|j| j["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ServiceUnavailable"))),
        "a probed job says what its probe met: {held:?}"
    );

    // VOD and the quota are back: everything goes out.
    app.sim.set_faults(Faults::default());
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(1_000_000),
        preload_remaining: None,
    });
    wait_until(Duration::from_secs(15), "every ID sent", || async {
        all_sent(&app)
    })
    .await;
    nothing_failed_and_nothing_held(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_poll_that_shows_less_than_a_batch_keeps_the_hold() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::from_millis(200);
        s.vod.quota_probe_interval = Duration::from_secs(3600);
    })
    .await;
    fail_the_quota_poll(&app);
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    no_call_in_flight(&app).await;
    let began = holds_began(&app).await;

    // Five URLs left, fewer than a held job carries: the polls read it and the hold stays.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(5),
        preload_remaining: None,
    });
    app.sim.set_faults(Faults::default());
    let from = vod_purge::domain::Ts::now().0;
    wait_until(Duration::from_secs(10), "three polls", || async {
        app.sim
            .calls()
            .iter()
            .filter(|c| c.action == "DescribeVodRefreshQuota" && c.status == 200 && c.at_ms >= from)
            .count()
            >= 3
    })
    .await;
    wait_until(Duration::from_secs(10), "the reading of 5", || async {
        support::has_sample(
            &app.metrics().await,
            r#"vod_purge_vod_quota_remaining{account="default",kind="refresh"} 5"#,
        )
    })
    .await;
    // The flusher reads the holds and the reading at every step.
    a_flusher_step(&app).await;
    assert_eq!(
        refresh_calls_since(&app, from),
        0,
        "no release, no retry, no new hold"
    );
    assert_eq!(holds_began(&app).await, began);
    app.stop().await;
}

#[tokio::test]
async fn released_jobs_leave_the_urgent_reserve_to_urgent_items() {
    // A daily quota of 2,000 with 200 kept for urgent items.
    let app = support::spawn_app(Spawn {
        extra: r#"
            [vod]
            quota_poll_interval = "200ms"
            quota_probe_interval = "1h"
            urgent_quota_reserve = "200"
        "#
        .into(),
        sim: SimConfig {
            quota_refresh: 2_000,
            quota_preload: 500,
            ..SimConfig::default()
        },
    })
    .await;
    fail_the_quota_poll(&app);
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    no_call_in_flight(&app).await;
    let sent_before: HashSet<String> = app
        .successful_calls()
        .into_iter()
        .flat_map(|c| c.media_ids)
        .collect();

    // 150 left, inside the reserve: the poll ends the hold (the probe's batch fits) but the
    // released jobs carry normal items and wait; an urgent purge goes.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(150),
        preload_remaining: None,
    });
    app.sim.set_faults(Faults::default());
    wait_until(Duration::from_secs(10), "the hold to end", || async {
        app.get_json("/queue").await["held"] == json!([])
    })
    .await;
    let urgent = "f".repeat(32);
    let response = app
        .purge(json!({ "media_ids": [urgent], "priority": "urgent" }))
        .await;
    assert_eq!(response.status(), 202);
    wait_until(Duration::from_secs(10), "the urgent purge", || async {
        app.successful_calls()
            .iter()
            .any(|c| c.media_ids.contains(&urgent))
    })
    .await;
    let sent_after: HashSet<String> = app
        .successful_calls()
        .into_iter()
        .flat_map(|c| c.media_ids)
        .filter(|id| *id != urgent)
        .collect();
    assert_eq!(sent_after, sent_before, "no normal ID spent the reserve");
    assert!(!jobs_with(&app, "retrying").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_job_held_past_max_hold_fails_without_a_call() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::ZERO;
        s.vod.quota_probe_interval = Duration::from_secs(3600);
        s.vod.max_hold = Duration::from_secs(2);
    })
    .await;
    // One batch into a used-up quota, and nothing else pending.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(0),
        preload_remaining: None,
    });
    let ids: Vec<String> = (0..20).map(|i| format!("{:032x}", 4000 + i)).collect();
    assert_eq!(app.webhook(json!({ "media_ids": ids })).await.status(), 202);
    wait_for_the_hold(&app).await;
    no_call_in_flight(&app).await;
    let held = jobs_with(&app, "held").await;
    assert_eq!(held.len(), 1, "{held:?}");
    let calls = app.refresh_calls().len();
    let id = held[0]["id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(15), "the held job to fail", || async {
        app.get_json(&format!("/jobs/{id}")).await["status"] == "failed"
    })
    .await;
    let job = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(job["error"]["code"], "QuotaExceeded.Refresh", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("vod.max_hold"), "{job}");
    assert!(
        job["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] == "failed"),
        "{job}"
    );
    assert_eq!(
        app.refresh_calls().len(),
        calls,
        "no call for a job past max_hold"
    );
    assert_eq!(app.get_json("/queue").await["held"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_preload_hold_leaves_refresh_flowing() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::ZERO;
        s.vod.quota_probe_interval = Duration::from_secs(3600);
    })
    .await;
    app.sim.set_quota(QuotaChange {
        refresh_remaining: None,
        preload_remaining: Some(0),
    });
    let preload: Vec<String> = (0..40).map(|i| format!("{:032x}", 1000 + i)).collect();
    let response = app
        .webhook(json!({ "media_ids": preload, "task": "Preload" }))
        .await;
    assert_eq!(response.status(), 202);
    wait_until(Duration::from_secs(10), "the Preload hold", || async {
        app.get_json("/queue").await["held"][0]["task"] == "Preload"
    })
    .await;
    let refresh: Vec<String> = (0..60).map(|i| format!("{:032x}", 2000 + i)).collect();
    let response = app.webhook(json!({ "media_ids": refresh })).await;
    assert_eq!(response.status(), 202);
    wait_until(Duration::from_secs(10), "the Refresh IDs sent", || async {
        let sent: HashSet<String> = app
            .successful_calls()
            .into_iter()
            .filter(|c| c.task_type.as_deref() == Some("Refresh"))
            .flat_map(|c| c.media_ids)
            .collect();
        refresh.iter().all(|id| sent.contains(id))
    })
    .await;
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["held"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(queue["held"][0]["task"], "Preload", "{queue}");
    assert!(
        !app.successful_calls()
            .iter()
            .any(|c| c.task_type.as_deref() == Some("Preload")),
        "no Preload went through"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_check_that_reports_a_used_up_quota_resubmits_the_id_held() {
    let sim = SimConfig {
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        quota_per_id: true,
        ..SimConfig::default()
    };
    let app = support::spawn_app(Spawn {
        extra: r#"
            [vod]
            quota_poll_interval = "0s"
            quota_probe_interval = "3s"
            check_after = "200ms"
            urgent_quota_reserve = "0%"
        "#
        .into(),
        sim,
    })
    .await;
    // 19 left for a call of 20: VOD accepts it and reports the last ID's submission failed.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(19),
        preload_remaining: None,
    });
    let ids: Vec<String> = (0..20).map(|i| format!("{:032x}", 3000 + i)).collect();
    assert_eq!(app.webhook(json!({ "media_ids": ids })).await.status(), 202);
    wait_until(Duration::from_secs(10), "a held resubmission", || async {
        jobs_with(&app, "held")
            .await
            .iter()
            .any(|j| j["resubmission_of"].is_string())
    })
    .await;
    let held = &jobs_with(&app, "held").await[0];
    assert_eq!(held["error"]["code"], "QuotaExceeded.Refresh", "{held}");
    assert_eq!(held["items"].as_array().unwrap().len(), 1, "{held}");
    let id = held["items"][0]["media_id"].as_str().unwrap().to_owned();
    let original = app
        .get_json(&format!(
            "/jobs/{}",
            held["resubmission_of"].as_str().unwrap()
        ))
        .await;
    let reported = original["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["media_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(reported["outcome"], "submit_failed", "{original}");
    assert_eq!(
        reported["error"]["code"], "QuotaExceeded.Refresh",
        "{original}"
    );

    // The quota comes back: the probe sends it, and its submission goes through.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(1_000_000),
        preload_remaining: None,
    });
    let job_id = held["id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(15), "the resubmission sent", || async {
        app.get_json(&format!("/jobs/{job_id}")).await["status"] == "succeeded"
    })
    .await;
    let sent = app
        .successful_calls()
        .iter()
        .filter(|c| c.media_ids.contains(&id))
        .count();
    assert_eq!(sent, 2, "sent in the first call and once more");
    app.stop().await;
}

#[tokio::test]
async fn a_reading_taken_before_the_hold_began_does_not_end_it() {
    // No reading reaches the service until the one below.
    let app = support::spawn_app(Spawn {
        extra: r#"
            [vod]
            quota_poll_interval = "100ms"
            quota_probe_interval = "1h"
            urgent_quota_reserve = "0%"
        "#
        .into(),
        sim: SimConfig {
            quota_refresh: 1_000,
            quota_preload: 1_000,
            faults: Faults {
                error_rate: 1.0,
                fail_action: Some("DescribeVodRefreshQuota".into()),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    })
    .await;
    // A reading of the whole quota leaves; its answer takes 1.5 s to come back (under the
    // client's 2 s timeout).
    app.sim.set_faults(Faults {
        latency_ms: 1_500,
        latency_action: Some("DescribeVodRefreshQuota".into()),
        ..Faults::default()
    });
    let from = vod_purge::domain::Ts::now().0;
    wait_until(Duration::from_secs(10), "a reading on its way", || async {
        app.sim
            .calls()
            .iter()
            .any(|c| c.action == "DescribeVodRefreshQuota" && c.status == 200 && c.at_ms >= from)
    })
    .await;
    let read_at = app
        .sim
        .calls()
        .iter()
        .find(|c| c.action == "DescribeVodRefreshQuota" && c.status == 200 && c.at_ms >= from)
        .unwrap()
        .at_ms;
    // Meanwhile another client uses the quota up, and a batch meets it.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(0),
        preload_remaining: None,
    });
    let ids: Vec<String> = (0..20).map(|i| format!("{:032x}", 5000 + i)).collect();
    assert_eq!(app.webhook(json!({ "media_ids": ids })).await.status(), 202);
    wait_for_the_hold(&app).await;
    no_call_in_flight(&app).await;
    let hold = app.get_json("/queue").await["held"][0].clone();
    let since = vod_purge::domain::Ts::parse(hold["since"].as_str().unwrap()).unwrap();
    assert!(
        since.0 < read_at + 1_500,
        "the hold must begin before the reading arrives for this test to mean anything"
    );
    let answered = quota_answers(&app).len();
    // The reading arrives (the whole quota left, minus the batch sent since it left)...
    wait_until(Duration::from_secs(10), "the reading", || async {
        support::has_sample(
            &app.metrics().await,
            r#"vod_purge_vod_quota_remaining{account="default",kind="refresh"} 1000"#,
        )
    })
    .await;
    // ...and says nothing about the hold, which began after it was taken.
    a_flusher_step(&app).await;
    let now = app.get_json("/queue").await["held"][0].clone();
    assert_eq!(
        now["since"], hold["since"],
        "the hold goes on: {hold} then {now}"
    );
    assert_eq!(
        quota_answers(&app).len(),
        answered,
        "no release, no new quota answer"
    );
    app.stop().await;
}
