//! The alert rules and the Grafana dashboard in `monitoring/` name only metrics that the
//! service exports, and every series a rule selects by a label value (`outcome="retryable"`,
//! `status="failed"`, ...) is one the service writes once it is in the state the rule is
//! about. (`promtool check rules` and `promtool test rules` run in `.ci/run`.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use vod_purge::sim::{Faults, SimConfig};

use crate::credentials::{rrsa_app_on, sim_config};
use crate::support::{TestApp, wait_until};

fn read(path: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // A YAML double-quoted scalar continues on the next line after a backslash, without the
    // break and the indentation; quotes escaped in it (and in JSON strings) are the
    // expression's quotes.
    let continued = regex::Regex::new(r"\\\n[ \t]*").unwrap();
    continued.replace_all(&text, "").replace("\\\"", "\"")
}

/// Every `vod_purge_*` name in a file.
fn names_in(path: &str) -> BTreeSet<String> {
    let text = read(path);
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

/// A series a rule selects: the metric, a label and the value it must have.
type Matcher = (String, String, String);

/// Every `name{label="value"}` matcher in a file; a `label=~"a|b"` matcher of plain words
/// gives one per word (each is a state the rule watches for); `!=` and `!~` select nothing.
fn matchers_in(path: &str) -> BTreeSet<Matcher> {
    let text = read(path);
    let mut matchers = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("vod_purge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        rest = &tail[end..];
        let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            continue;
        };
        for part in inner.0.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (label, op, value) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| {
                    part.split_once(op)
                        .map(|(l, v)| (l.trim(), *op, v.trim().trim_matches('"')))
                })
                .unwrap_or_else(|| panic!("{path}: cannot read the matcher {part:?}"));
            let values: Vec<&str> = match op {
                "=" => vec![value],
                "=~" => value.split('|').collect(),
                _ => continue,
            };
            // A dashboard variable (`account=~"$account"`) is chosen by the viewer.
            for value in values.into_iter().filter(|v| !v.starts_with('$')) {
                assert!(
                    value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                    "{path}: {name}{{{part}}}: not a plain value, this test cannot check it"
                );
                matchers.insert((name.to_owned(), label.to_owned(), value.to_owned()));
            }
        }
    }
    matchers
}

/// A family's series as `/metrics` writes them: `name{...} v` or `name v`.
fn exported(metrics: &str, name: &str) -> bool {
    metrics.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

/// Whether `/metrics` has a series of `name` whose `label` is `value`.
fn has_series(metrics: &str, (name, label, value): &Matcher) -> bool {
    let wanted = format!("{label}=\"{value}\"");
    metrics.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name.as_str())
            .and_then(|r| r.strip_prefix('{'))
            .and_then(|r| r.split_once('}'))
            .is_some_and(|(labels, _)| labels.split(',').any(|pair| pair == wanted))
    })
}

#[test]
fn the_matchers_of_the_rules_are_read() {
    let matchers = matchers_in("monitoring/prometheus-rules.yml");
    let wanted = [
        ("vod_purge_jobs_finished_total", "status", "failed"),
        ("vod_purge_vod_calls_total", "outcome", "retryable"),
        (
            "vod_purge_deliveries_total",
            "outcome",
            "timestamp_out_of_tolerance",
        ),
    ];
    for (name, label, value) in wanted {
        let matcher = (name.to_owned(), label.to_owned(), value.to_owned());
        assert!(matchers.contains(&matcher), "{matcher:?} in {matchers:?}");
    }
    // The Operator's copy says the same (its expressions are YAML strings, some continued).
    assert_eq!(matchers, matchers_in("monitoring/prometheusrule.yaml"));
    let metrics = "# TYPE x counter\n\
                   vod_purge_vod_calls_total{code=\"\",outcome=\"success\"} 3\n\
                   vod_purge_vod_calls_total_other{outcome=\"retryable\"} 1\n";
    let series = |label: &str, value: &str| {
        (
            "vod_purge_vod_calls_total".to_owned(),
            label.to_owned(),
            value.to_owned(),
        )
    };
    assert!(has_series(metrics, &series("outcome", "success")));
    assert!(!has_series(metrics, &series("outcome", "retryable")));
    assert!(!has_series(metrics, &series("outcome", "succ")));
}

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One refused delivery of each kind the signature alert counts.
async fn refused_deliveries(app: &TestApp) {
    let post = |source: &str| {
        app.http
            .post(format!("{}/webhooks/{source}", app.address))
            .json(&json!({"media_ids": ["x"]}))
    };
    let requests = [
        post("cms").bearer_auth("wrong"),
        post("cms"),
        post("gh"),
        post("gh").header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64))),
        post("gh").header("X-Hub-Signature-256", "sha256=not-hex"),
        post("sw")
            .header("webhook-id", "msg_stale")
            .header("webhook-timestamp", "1000000000")
            .header(
                "webhook-signature",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            ),
    ];
    for request in requests {
        let status = request.send().await.unwrap().status();
        assert!(status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn every_series_the_rules_and_the_dashboard_select_is_exported() {
    let mut wanted = names_in("monitoring/prometheus-rules.yml");
    let from_rules = wanted.len();
    wanted.extend(names_in("monitoring/grafana-dashboard.json"));
    wanted.extend(names_in("monitoring/prometheusrule.yaml"));
    assert!(from_rules >= 8 && wanted.len() >= 20, "{wanted:?}");
    let mut matchers = matchers_in("monitoring/prometheus-rules.yml");
    matchers.extend(matchers_in("monitoring/prometheusrule.yaml"));
    matchers.extend(matchers_in("monitoring/grafana-dashboard.json"));
    assert!(matchers.len() >= 10, "{matchers:?}");

    // The service is driven through every state a rule watches: STS credentials that are
    // renewed (and once refused), a purge, a job VOD refuses, a call retried, a quota poll, a
    // submission check that fails once and a submission that fails, and refused deliveries.
    let tune = |s: &mut vod_purge::config::Settings| {
        s.vod.check_after = Duration::from_millis(200);
        s.vod.follow_interval = Duration::from_millis(200);
        s.vod.quota_poll_interval = Duration::from_secs(1);
        let more = vod_purge::config::Settings::from_toml(&format!(
            "[store]\nurl = \"sqlite://unused.db\"\n\
             [[sources]]\nname = \"gh\"\nauth = \"hmac\"\nsecrets = [\"gh-secret\"]\n\
             header = \"X-Hub-Signature-256\"\nprefix = \"sha256=\"\nformat = \"native\"\n\
             [[sources]]\nname = \"sw\"\nauth = \"standard-webhooks\"\nsecrets = [\"{SW_SECRET}\"]\n\
             format = \"native\"\n"
        ))
        .unwrap();
        s.sources.extend(more.sources);
    };
    let sim = SimConfig {
        failing: vec!["stuck".into()],
        ..sim_config(Duration::from_secs(3))
    };
    let (app, _) = rrsa_app_on(sim, "oidc", "eyJ.token.sig", tune).await;

    // STS refuses until a renewal has failed.
    app.sim.set_faults(Faults {
        sts_error_code: Some("ServiceUnavailable/503".into()),
        ..Faults::default()
    });
    let renewal_failed = (
        "vod_purge_credential_renewals_total".to_owned(),
        "result".to_owned(),
        "failure".to_owned(),
    );
    wait_until(Duration::from_secs(20), "a failed renewal", || async {
        has_series(&app.metrics().await, &renewal_failed)
    })
    .await;
    // VOD refuses the next purge for good: its job fails.
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("RefreshMediaPlayUrls".into()),
        error_code: "InvalidParameter".into(),
        ..Faults::default()
    });
    assert_eq!(
        app.webhook(json!({"media_ids": ["doomed"]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(20), "the failed job", || async {
        app.get_json("/jobs?status=failed").await["jobs"]
            .as_array()
            .is_some_and(|jobs| !jobs.is_empty())
    })
    .await;
    // A 500 answer: the job is retried and goes through.
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("RefreshMediaPlayUrls".into()),
        ..Faults::default()
    });
    assert_eq!(
        app.webhook(json!({"media_ids": ["retried"]}))
            .await
            .status(),
        202
    );
    wait_until(Duration::from_secs(20), "the retried purge", || async {
        app.successful_calls()
            .iter()
            .any(|c| c.media_ids.iter().any(|m| m == "retried"))
    })
    .await;
    // The next submission check fails once; "stuck" fails its submission.
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("GetMediaRefreshJobs".into()),
        ..Faults::default()
    });
    assert_eq!(
        app.webhook(json!({"media_ids": ["watched", "stuck"]}))
            .await
            .status(),
        202
    );
    refused_deliveries(&app).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = app.metrics().await;
        let missing: Vec<&String> = wanted.iter().filter(|n| !exported(&metrics, n)).collect();
        let unseen: Vec<&Matcher> = matchers
            .iter()
            .filter(|m| !has_series(&metrics, m))
            .collect();
        if missing.is_empty() && unseen.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let calls: Vec<(String, u16, Option<String>)> = app
                .sim
                .calls()
                .into_iter()
                .map(|c| (c.action, c.status, c.code))
                .collect();
            panic!(
                "not in /metrics after 20 s: {missing:?}, series {unseen:?}; the simulator saw {calls:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
