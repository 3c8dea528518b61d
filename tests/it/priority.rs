//! Urgent items: a takedown skips the quiet period, goes before a backlog of normal items, and
//! may use the part of the daily quota kept back for it.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::config::Settings;
use vod_purge::sim::QuotaChange;

use crate::support::{self, SOURCE_TOKEN, TestApp, wait_until};

async fn spawn(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let extra = format!(
        r#"
        [[sources]]
        name = "takedowns"
        auth = "bearer"
        secrets = ["{SOURCE_TOKEN}"]
        format = "native"
        priority = "urgent"
        "#
    );
    support::spawn_configured(&extra, configure).await
}

fn ids(prefix: char, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:031x}")).collect()
}

/// The position of the first successful call carrying any of `wanted`, and of the last one.
fn sent_positions(app: &TestApp, wanted: &[String]) -> Vec<usize> {
    let wanted: HashSet<&String> = wanted.iter().collect();
    app.successful_calls()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.media_ids.iter().any(|id| wanted.contains(id)))
        .map(|(i, _)| i)
        .collect()
}

fn all_sent(app: &TestApp, wanted: &[String]) -> bool {
    let sent: HashSet<String> = app
        .successful_calls()
        .into_iter()
        .flat_map(|c| c.media_ids)
        .collect();
    wanted.iter().all(|id| sent.contains(id))
}

#[tokio::test]
async fn urgent_items_go_before_a_backlog_and_skip_the_quiet_period() {
    let app = spawn(|s| {
        s.vod.max_requests_per_second = 2;
        s.vod.burst = 1;
        s.vod.quota_poll_interval = Duration::ZERO;
        s.queue.quiet = Duration::from_secs(3);
        s.queue.max_wait = Duration::from_secs(10);
    })
    .await;
    let backlog = ids('b', 300);
    for chunk in backlog.chunks(100) {
        assert_eq!(
            app.webhook(json!({ "media_ids": chunk })).await.status(),
            202
        );
    }
    // The backlog becomes due after the quiet period and drains at 2 calls a second (15 calls,
    // 7.5 s).
    wait_until(Duration::from_secs(10), "the backlog to start", || async {
        !app.successful_calls().is_empty()
    })
    .await;
    let urgent = ids('u', 3);
    let before = app.successful_calls().len();
    send_urgent(&app, &urgent).await;
    wait_until(Duration::from_secs(20), "the backlog", || async {
        all_sent(&app, &backlog)
    })
    .await;
    // Positions, not times: the urgent call goes out next, after at most a call that was
    // already claimed (one more for a slow machine). Waiting out the 3 s quiet period, or
    // waiting behind the backlog, would put six calls or more before it.
    let urgent_at = sent_positions(&app, &urgent);
    assert_eq!(urgent_at.len(), 1, "one urgent call");
    assert!(
        urgent_at[0] <= before + 2,
        "the urgent call is call {} of the run; {before} had been made when it was posted",
        urgent_at[0]
    );
    let backlog_at = sent_positions(&app, &backlog);
    assert!(
        backlog_at.last() > urgent_at.first(),
        "the urgent IDs did not wait for the backlog: {urgent_at:?} {backlog_at:?}"
    );
    let job = app.get_json(&format!("/media/{}", urgent[0])).await;
    assert_eq!(job["jobs"][0]["priority"], "urgent", "{job}");
    let normal_job = app.get_json(&format!("/media/{}", backlog[0])).await;
    assert_eq!(normal_job["jobs"][0]["priority"], "normal");
    app.stop().await;
}

#[tokio::test]
async fn a_source_marks_its_items_urgent_and_an_urgent_event_makes_a_pending_item_urgent() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::ZERO;
        s.queue.quiet = Duration::from_secs(30);
        s.queue.max_wait = Duration::from_secs(60);
    })
    .await;
    let id = ids('a', 1).remove(0);
    assert_eq!(
        app.webhook(json!({ "media_ids": [id] })).await.status(),
        202
    );
    let media = app.get_json(&format!("/media/{id}")).await;
    assert_eq!(media["pending"][0]["priority"], "normal", "{media}");
    assert_eq!(app.get_json("/queue").await["urgent"], 0);
    // The same ID from the urgent source: merged into the pending item, which goes at once.
    let response = app
        .http
        .post(format!("{}/webhooks/takedowns", app.address))
        .bearer_auth(SOURCE_TOKEN)
        .json(&json!({ "media_ids": [id] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let receipt: serde_json::Value = response.json().await.unwrap();
    assert_eq!(receipt["merged"], json!([id]), "{receipt}");
    wait_until(Duration::from_secs(5), "the urgent purge", || async {
        all_sent(&app, std::slice::from_ref(&id))
    })
    .await;
    let job = &app.get_json(&format!("/media/{id}")).await["jobs"][0];
    assert_eq!(job["priority"], "urgent");
    assert_eq!(job["items"][0]["events"], 2, "{job}");
    app.stop().await;
}

#[tokio::test]
async fn urgent_items_use_the_reserve_while_normal_ones_wait() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::from_millis(200);
        s.vod.urgent_quota_reserve = "50".parse().unwrap();
        s.queue.quiet = Duration::from_millis(100);
    })
    .await;
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(100),
        preload_remaining: None,
    });
    wait_until(
        Duration::from_secs(5),
        "the poll to see the quota",
        || async { app.get_json("/queue").await["quota"][0]["remaining"] == 100 },
    )
    .await;
    let normal = ids('n', 80);
    assert_eq!(
        app.webhook(json!({ "media_ids": normal })).await.status(),
        202
    );
    // 100 left, 50 kept for urgent items: 50 normal IDs go, 30 wait.
    wait_until(Duration::from_secs(5), "half the normal IDs", || async {
        app.successful_calls()
            .iter()
            .map(|c| c.media_ids.len())
            .sum::<usize>()
            >= 50
    })
    .await;
    // The flusher's book says normal items wait for the reset.
    wait_until(Duration::from_secs(5), "normal items held", || async {
        app.get_json("/queue").await["quota"][0]["normal_held_until"].is_string()
    })
    .await;
    let sent_normal: usize = app
        .successful_calls()
        .iter()
        .map(|c| c.media_ids.len())
        .sum();
    assert_eq!(sent_normal, 50, "normal items stop at the reserve");
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 30, "{queue}");
    assert!(
        queue["quota"][0]["normal_held_until"].is_string(),
        "{queue}"
    );
    assert_eq!(queue["quota"][0]["reserve"], 50, "{queue}");

    // Urgent IDs go, and the normal ones still wait: the flusher has decided again since
    // (the urgent call), with the normal items due, and none went with the urgent ones.
    let urgent = ids('u', 10);
    send_urgent(&app, &urgent).await;
    let calls = app.successful_calls();
    let total: usize = calls.iter().map(|c| c.media_ids.len()).sum();
    assert_eq!(total, 60, "the urgent IDs went, the normal ones still wait");
    for call in calls.iter().filter(|c| c.media_ids.contains(&urgent[0])) {
        assert!(
            call.media_ids.iter().all(|id| id.starts_with('u')),
            "normal IDs in the reserve: {:?}",
            call.media_ids
        );
    }
    assert_eq!(app.get_json("/queue").await["pending"], 30);
    assert!(
        app.sim.calls().iter().all(|c| c.code.is_none()),
        "no call met the quota"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_priority_is_refused_and_nothing_is_stored() {
    let app = spawn(|s| s.vod.quota_poll_interval = Duration::ZERO).await;
    for (priority, detail) in [
        (json!("asap"), "unknown priority \"asap\""),
        (json!(1), "found a number"),
        (json!("URGENT"), "unknown priority"),
    ] {
        let response = app
            .webhook(
                json!({ "media_ids": ["a0000000000000000000000000000001"], "priority": priority }),
            )
            .await;
        assert_eq!(response.status(), 422, "{priority}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unknown_priority", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(detail),
            "{body}"
        );
    }
    assert_eq!(app.get_json("/queue").await["pending"], 0);
    app.stop().await;
}

#[test]
fn bad_quota_and_priority_settings_stop_the_start_with_the_key_named() {
    let base = "[store]\nurl = \"sqlite://unused.db\"\n";
    for (extra, key, why) in [
        (
            "[vod]\nquota_reset = \"midnight\"",
            "quota_reset",
            "time of day",
        ),
        (
            "[vod]\nquota_reset = \"24:00+08:00\"",
            "quota_reset",
            "time of day",
        ),
        (
            "[vod]\nurgent_quota_reserve = \"150%\"",
            "urgent_quota_reserve",
            "outside 0% to 100%",
        ),
        (
            "[vod]\nurgent_quota_reserve = \"lots\"",
            "urgent_quota_reserve",
            "not a share",
        ),
        ("[vod]\nmax_hold = \"0s\"", "vod.max_hold", "more than zero"),
        (
            "[vod]\nquota_probe_interval = \"0s\"",
            "vod.quota_probe_interval",
            "more than zero",
        ),
        (
            "[[sources]]\nname = \"s\"\nauth = \"none\"\nformat = \"native\"\npriority = \"asap\"",
            "priority",
            "asap",
        ),
    ] {
        let error = Settings::from_toml(&format!("{base}{extra}"))
            .err()
            .unwrap_or_else(|| panic!("{extra} is accepted"))
            .to_string();
        assert!(
            error.contains(key) && error.contains(why),
            "{extra}: {error}"
        );
    }
}

/// Posts `ids` as urgent and waits until every one of them has been sent.
async fn send_urgent(app: &TestApp, ids: &[String]) {
    let response = app
        .webhook(json!({ "media_ids": ids, "priority": "urgent" }))
        .await;
    assert_eq!(response.status(), 202);
    wait_until(Duration::from_secs(5), "the urgent IDs", || async {
        all_sent(app, ids)
    })
    .await;
}
