//! VOD's daily quota: a used-up quota holds the work of its task type instead of failing it, one
//! probe goes out per probe interval, and the hold ends through a probe, the quota poll, or the
//! daily reset. The reset arithmetic itself is a table in `flusher::hold`; `ends.rs` has what
//! must not end a hold, and what a hold leaves flowing.

mod ends;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::config::Settings;
use vod_purge::sim::{Faults, QuotaChange, RecordedCall};

use crate::support::{self, TestApp, wait_until};

pub(super) const IDS: usize = 300;
/// What is left of the refresh quota when the drain starts: five full batches.
pub(super) const LEFT: u64 = 100;

/// The application with no quota kept for urgent items and `configure` applied.
pub(super) async fn spawn(configure: impl FnOnce(&mut Settings)) -> TestApp {
    support::spawn_configured("", |s| {
        s.vod.urgent_quota_reserve = "0%".parse().unwrap();
        configure(s);
    })
    .await
}

pub(super) fn media_ids() -> Vec<String> {
    (0..IDS).map(|i| format!("{i:032x}")).collect()
}

/// Posts the IDs, 50 to a request, once the quota has only [`LEFT`] IDs left.
pub(super) async fn drain_into_a_used_up_quota(app: &TestApp) {
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(LEFT),
        preload_remaining: None,
    });
    for chunk in media_ids().chunks(50) {
        let response = app.webhook(json!({ "media_ids": chunk })).await;
        assert_eq!(response.status(), 202);
    }
}

pub(super) fn quota_answers(app: &TestApp) -> Vec<RecordedCall> {
    app.refresh_calls()
        .into_iter()
        .filter(|c| c.code.as_deref() == Some("QuotaExceeded.Refresh"))
        .collect()
}

/// Every ID has been sent in a successful call.
pub(super) fn all_sent(app: &TestApp) -> bool {
    let sent: HashSet<String> = app
        .successful_calls()
        .into_iter()
        .flat_map(|c| c.media_ids)
        .collect();
    media_ids().iter().all(|id| sent.contains(id))
}

pub(super) async fn jobs_with(app: &TestApp, status: &str) -> Vec<serde_json::Value> {
    let page = app
        .get_json(&format!("/jobs?status={status}&limit=500"))
        .await;
    page["jobs"].as_array().unwrap().clone()
}

/// Waits until the quota has held jobs, and checks what `/jobs`, `/queue` and `/metrics` say.
pub(super) async fn wait_for_the_hold(app: &TestApp) {
    wait_until(
        Duration::from_secs(10),
        "jobs held on the quota",
        || async { !jobs_with(app, "held").await.is_empty() },
    )
    .await;
    let held = jobs_with(app, "held").await;
    for job in &held {
        assert_eq!(job["error"]["code"], "QuotaExceeded.Refresh", "{job}");
        assert!(job["held_since"].is_string(), "{job}");
        assert!(job["next_attempt_at"].is_string(), "{job}");
    }
    let queue = app.get_json("/queue").await;
    let hold = &queue["held"][0];
    assert_eq!(hold["task"], "Refresh", "{queue}");
    assert_eq!(hold["reason"], "QuotaExceeded.Refresh", "{queue}");
    assert!(hold["jobs"].as_u64().unwrap() >= 1, "{queue}");
    let metrics = app.metrics().await;
    assert!(
        support::metric_value(
            &metrics,
            "vod_purge_quota_held_jobs{account=\"default\",task=\"Refresh\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        support::metric_value(
            &metrics,
            "vod_purge_quota_held_jobs{account=\"default\",task=\"Preload\"}"
        ),
        0.0
    );
}

/// Nothing failed, and the hold is over.
pub(super) async fn nothing_failed_and_nothing_held(app: &TestApp) {
    assert_eq!(
        jobs_with(app, "failed").await,
        Vec::<serde_json::Value>::new()
    );
    wait_until(Duration::from_secs(5), "the hold to end", || async {
        jobs_with(app, "held").await.is_empty() && app.get_json("/queue").await["held"] == json!([])
    })
    .await;
}

#[tokio::test]
async fn a_used_up_quota_holds_the_jobs_and_a_probe_each_interval_resumes_them() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::ZERO;
        s.vod.quota_probe_interval = Duration::from_secs(1);
    })
    .await;
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    assert_eq!(jobs_with(&app, "failed").await.len(), 0, "no job fails");

    // While held, one probe per interval. The answers to the calls in flight when the quota ran
    // out arrive together with the first quota answer; the probes come an interval apart, by
    // the simulator's clock (a slow machine only spaces them further).
    let first = quota_answers(&app)[0].at_ms;
    wait_until(Duration::from_secs(10), "three probes", || async {
        quota_answers(&app)
            .iter()
            .filter(|c| c.at_ms >= first + 900)
            .count()
            >= 3
    })
    .await;
    let probes: Vec<i64> = quota_answers(&app)
        .iter()
        .map(|c| c.at_ms)
        .filter(|at| *at >= first + 900)
        .collect();
    for pair in probes.windows(2) {
        assert!(
            pair[1] - pair[0] >= 950,
            "one probe a second while held, probes at {probes:?}"
        );
    }
    assert!(!all_sent(&app));
    let held: Vec<String> = jobs_with(&app, "held")
        .await
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();

    // The quota comes back: the next probe goes through and ends the hold.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(1_000_000),
        preload_remaining: None,
    });
    wait_until(Duration::from_secs(10), "every ID sent", || async {
        all_sent(&app)
    })
    .await;
    nothing_failed_and_nothing_held(&app).await;
    let metrics = app.metrics().await;
    assert!(hold_ends(&metrics, "probe") >= 1.0, "{metrics}");
    assert_eq!(hold_ends(&metrics, "poll"), 0.0, "{metrics}");
    // The jobs that were held went out themselves, their hold over.
    for id in held {
        let job = app.get_json(&format!("/jobs/{id}")).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert!(job["held_since"].is_null(), "{job}");
    }
    app.stop().await;
}

/// How many Refresh holds ended `by` a probe or the poll, by `/metrics`.
pub(super) fn hold_ends(metrics: &str, by: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("vod_purge_quota_hold_ends_total{account=\"default\","))
        .filter(|l| l.contains(&format!("by=\"{by}\"")) && l.contains("task=\"Refresh\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Every `DescribeVodRefreshQuota` fails from now on.
pub(super) fn fail_the_quota_poll(app: &TestApp) {
    app.sim.set_faults(Faults {
        error_rate: 1.0,
        fail_action: Some("DescribeVodRefreshQuota".into()),
        ..Faults::default()
    });
}

#[tokio::test]
async fn the_quota_poll_ends_a_hold_without_a_probe() {
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::from_millis(300);
        s.vod.quota_probe_interval = Duration::from_secs(3600);
        // The next reset twelve hours away, whatever the time of day.
        let minute_of_day = (vod_purge::domain::Ts::now().0 / 60_000 + 12 * 60) % (24 * 60);
        let reset = format!("{:02}:{:02}+00:00", minute_of_day / 60, minute_of_day % 60);
        s.vod.quota_reset = reset.parse().unwrap();
    })
    .await;
    // The poll fails while the quota runs out, so the batches are not bounded by it.
    fail_the_quota_poll(&app);
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    // No probe is due within the hour.
    let first_probe = jobs_with(&app, "held")
        .await
        .iter()
        .map(|j| vod_purge::domain::Ts::parse(j["next_attempt_at"].as_str().unwrap()).unwrap())
        .min()
        .unwrap();
    assert!(first_probe > vod_purge::domain::Ts::now() + Duration::from_secs(3000));

    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(1_000_000),
        preload_remaining: None,
    });
    app.sim.set_faults(Faults::default());
    wait_until(Duration::from_secs(10), "every ID sent", || async {
        all_sent(&app)
    })
    .await;
    // The poll ended the hold, not a probe (none was due before the hour).
    let metrics = app.metrics().await;
    assert_eq!(hold_ends(&metrics, "poll"), 1.0, "{metrics}");
    assert_eq!(hold_ends(&metrics, "probe"), 0.0, "{metrics}");
    nothing_failed_and_nothing_held(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn the_daily_reset_ends_a_hold_when_the_poll_is_unavailable() {
    // The reset a few seconds from now, written as a time of day in UTC: taken right before the
    // application starts, with room for the hold to begin before it (checked below).
    let reset_at = vod_purge::domain::Ts::now() + Duration::from_secs(6);
    let seconds = reset_at.0.div_euclid(1000).rem_euclid(86_400);
    let reset = format!(
        "{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    let app = spawn(|s| {
        s.vod.quota_poll_interval = Duration::from_millis(300);
        s.vod.quota_probe_interval = Duration::from_secs(3600);
        s.vod.quota_reset = reset.parse().unwrap();
    })
    .await;
    fail_the_quota_poll(&app);
    drain_into_a_used_up_quota(&app).await;
    wait_for_the_hold(&app).await;
    assert!(
        vod_purge::domain::Ts::now() < reset_at,
        "the hold began before the reset"
    );
    let held = jobs_with(&app, "held").await;
    let probe_at = held
        .iter()
        .map(|j| j["next_attempt_at"].as_str().unwrap().to_owned())
        .min()
        .unwrap();
    assert_eq!(
        vod_purge::domain::Ts::parse(&probe_at).unwrap().0 / 1000,
        reset_at.0 / 1000,
        "the probe is due at the reset, {reset}"
    );
    // The calls in flight when the quota ran out have been answered: from now until the reset,
    // nothing goes out but probes (none within the hour).
    wait_until(Duration::from_secs(5), "the calls in flight", || async {
        app.get_json("/queue").await["in_flight_batches"] == 0
    })
    .await;
    let sent_at_hold = app.successful_calls().len();
    // The simulator's own day rolls over at its midnight; here the quota comes back at ours.
    app.sim.set_quota(QuotaChange {
        refresh_remaining: Some(1_000_000),
        preload_remaining: None,
    });
    wait_until(Duration::from_secs(12), "every ID sent", || async {
        all_sent(&app)
    })
    .await;
    // Between the hold and the reset, nothing went out.
    let reset_second = reset_at.0 / 1000 * 1000;
    let before_reset = app
        .successful_calls()
        .iter()
        .filter(|c| c.at_ms < reset_second)
        .count();
    assert_eq!(before_reset, sent_at_hold, "calls before the reset");
    nothing_failed_and_nothing_held(&app).await;
    app.stop().await;
}
