//! The alert rules and the Grafana dashboard in `monitoring/` name only metrics that the
//! service exports. (`promtool check rules` and `promtool test rules` run in `.ci/run`.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::sim::Faults;

use crate::credentials::rrsa_app;

/// Every `vod_purge_*` name in a file.
fn names_in(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("vod_purge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// A family's series as `/metrics` writes them: `name{...} v` or `name v`.
fn exported(metrics: &str, name: &str) -> bool {
    metrics.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let mut wanted = names_in("monitoring/prometheus-rules.yml");
    let from_rules = wanted.len();
    wanted.extend(names_in("monitoring/grafana-dashboard.json"));
    wanted.extend(names_in("monitoring/prometheusrule.yaml"));
    assert!(from_rules >= 8 && wanted.len() >= 20, "{wanted:?}");
    // Every family shows up once the service has done everything once: STS credentials that
    // are renewed, a purge, a quota poll, a submission check that fails once and then reports,
    // and a refused delivery.
    let tune = |s: &mut vod_purge::config::Settings| {
        s.vod.check_after = Duration::from_millis(200);
        s.vod.quota_poll_interval = Duration::from_secs(1);
    };
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", tune).await;
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("GetMediaRefreshJobs".into()),
        ..Faults::default()
    });
    assert_eq!(
        app.webhook(json!({"media_ids": ["watched"]}))
            .await
            .status(),
        202
    );
    let refused = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .bearer_auth("wrong")
        .json(&json!({"media_ids": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = app.metrics().await;
        let missing: Vec<&String> = wanted.iter().filter(|n| !exported(&metrics, n)).collect();
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let calls: Vec<(String, u16, Option<String>)> = app
                .sim
                .calls()
                .into_iter()
                .map(|c| (c.action, c.status, c.code))
                .collect();
            panic!("not in /metrics after 20 s: {missing:?}; the simulator saw {calls:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
