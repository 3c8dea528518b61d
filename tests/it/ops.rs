//! What an operator relies on: the OpenAPI document, metrics, configuration checks, and a
//! graceful shutdown of the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use vod_purge::config::StoreLocation;
use vod_purge::sim::{Faults, SimConfig};
use vod_purge::store::{JobFilter, Store};

use crate::support::{ADMIN_TOKEN, Spawn, binary, free_port, http_client, spawn_app, wait_until};

#[tokio::test]
async fn every_route_answers_and_is_in_the_openapi_document() {
    let app = spawn_app(Spawn::default()).await;
    let doc = app.get_json("/openapi.json").await;
    for (method, path) in vod_purge::api::ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in /openapi.json");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
        let concrete = path.replace("{source}", "cms").replace("{id}", "x");
        let url = format!("{}{concrete}", app.address);
        let request = match *method {
            "get" => app.http.get(url),
            _ => app
                .http
                .post(url)
                .header("content-type", "application/json")
                .body("{}"),
        };
        let response = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        // Unrouted requests get 405 (known path) or a 404 with code not_found.
        assert!(
            status != 405 && !body.contains("\"not_found\""),
            "{method} {path} is not routed: {status} {body}"
        );
    }
    let documented = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum::<usize>();
    assert_eq!(
        documented,
        vod_purge::api::ROUTES.len(),
        "the document lists a route that is not registered"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn a_callers_request_id_is_returned() {
    let app = spawn_app(Spawn::default()).await;
    let id_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let url = format!("{}/healthz", app.address);
    // The caller's own is returned, on errors too.
    let given = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .header("x-request-id", "ingress-7f3a:1.2_x")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status().as_u16(), 401);
    assert_eq!(id_of(&given).as_deref(), Some("ingress-7f3a:1.2_x"));
    // None given, or one that is not a short token: none is made up.
    let long = "x".repeat(129);
    for sent in [None, Some("two words"), Some(long.as_str())] {
        let mut request = app.http.get(&url);
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(id_of(&response), None, "{sent:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_deliveries_calls_and_queue() {
    let app = spawn_app(Spawn::default()).await;
    assert_eq!(
        app.purge(json!({"media_ids": ["m1", "m2", "bad,id"]}))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.webhook(json!({"media_ids": ["m1"]})).await.status(),
        202
    );
    let refused = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    wait_until(Duration::from_secs(10), "the call", || async {
        app.successful_calls().len() == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "metrics", || async {
        let text = app.metrics().await;
        crate::support::has_sample(
            &text,
            r#"vod_purge_vod_calls_total{code="",outcome="success"} 1"#,
        )
    })
    .await;
    // No token needed for metrics.
    let text = app.metrics().await;
    for line in [
        r#"vod_purge_deliveries_total{outcome="accepted",source="admin"} 1"#,
        r#"vod_purge_deliveries_total{outcome="accepted",source="cms"} 1"#,
        r#"vod_purge_deliveries_total{outcome="missing_token",source="cms"} 1"#,
        r#"vod_purge_media_ids_total{result="accepted"} 2"#,
        r#"vod_purge_media_ids_total{result="merged"} 1"#,
        r#"vod_purge_media_ids_total{result="rejected"} 1"#,
        r#"vod_purge_batch_size_count 1"#,
        r#"vod_purge_jobs_finished_total{status="succeeded"} 1"#,
        "vod_purge_queue_pending_items 0",
        "vod_purge_vod_call_duration_seconds_bucket",
        "vod_purge_rate_limiter_wait_seconds_total",
    ] {
        assert!(
            crate::support::has_sample(&text, line),
            "missing {line:?} in\n{text}"
        );
    }
    app.stop().await;
}

#[test]
fn check_config_names_the_wrong_key_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[vod]\nmax_requests_per_second = 80\ndry_run = true\n",
            "vod.max_requests_per_second",
        ),
        (
            "[vod]\ndry_run = true\n[queue]\nquiet = \"two seconds\"\n",
            "queue.quiet",
        ),
        (
            "[vod]\ndry_run = true\n[server]\nlisten_on = \"x\"\n",
            "listen_on",
        ),
        (
            "[vod]\nregion = \"cn-shanghai\"\n",
            "no credential for VOD: no provider of the default chain produced one; config: not configured: vod.access_key_id",
        ),
        (
            "[vod]\ndry_run = true\n[[sources]]\nname = \"cms\"\nauth = \"hmac\"\nsecrets = [\"s\"]\nformat = \"native\"\n",
            "header",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = binary()
            .args(["check-config", "--config"])
            .arg(&path)
            .env_clear()
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(key), "{text:?}: {stderr}");
    }
    // A single `_` where `__` belongs is named, with the fix.
    let path = dir.path().join("plain.toml");
    std::fs::write(&path, "[vod]\ndry_run = true\n").unwrap();
    let out = binary()
        .args(["check-config", "--config"])
        .arg(&path)
        .env_clear()
        .env("VOD_PURGE_QUEUE_QUIET", "5s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("queue_quiet") && stderr.contains("VOD_PURGE_QUEUE__QUIET"),
        "{stderr}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[vod]\naccess_key_id = \"id\"\naccess_key_secret = \"hunter2\"\n[[sources]]\nname = \"cms\"\nauth = \"bearer\"\nsecrets = [\"tok3n\"]\nformat = \"native\"\n",
    )
    .unwrap();
    let out = binary()
        .args(["check-config", "--config"])
        .arg(&good)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("max_requests_per_second = 50"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("tok3n"),
        "secrets leaked:\n{stdout}"
    );
    assert!(stdout.contains("<redacted>"));
}

#[tokio::test]
async fn sigterm_drains_the_call_in_flight_and_loses_nothing() {
    let sim = vod_purge::sim::start(SimConfig {
        faults: Faults {
            latency_ms: 2_000,
            ..Faults::default()
        },
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db").to_string_lossy().into_owned();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\nshutdown_grace = \"10s\"\n\
             [store]\nurl = \"sqlite://{db}\"\n[vod]\nendpoint = \"{}\"\naccess_key_id = \"testid\"\naccess_key_secret = \"testsecret\"\ntimeout = \"5s\"\n\
             [queue]\nquiet = \"100ms\"\nlinger = \"50ms\"\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let mut child = binary()
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = http_client();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(10), "the service", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let ids: Vec<String> = (0..25).map(|i| format!("term{i:02}")).collect();
    let first = http
        .post(format!("{base}/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"media_ids": ids[..20]}))
        .send();
    assert_eq!(first.await.unwrap().status(), 202);
    // The purge call, not the quota poll that an active flusher makes at start.
    wait_until(Duration::from_secs(10), "a call in flight", || async {
        sim.calls()
            .iter()
            .any(|c| c.action == "RefreshMediaPlayUrls")
    })
    .await;
    // Acknowledged while the first call is in flight: must survive the shutdown.
    let late = http
        .post(format!("{base}/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"media_ids": ids[20..]}))
        .send();
    assert_eq!(late.await.unwrap().status(), 202);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");

    // Every acknowledged ID was either sent (and recorded) or is still stored for the next start.
    let store = Store::open(&StoreLocation::Sqlite(db)).await.unwrap();
    let jobs = store
        .list_jobs(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut accounted: Vec<String> = Vec::new();
    for job in &jobs {
        assert_ne!(job.status, vod_purge::store::JobStatus::Failed);
        accounted.extend(job.items.iter().map(|i| i.media_id.to_string()));
    }
    for id in &ids {
        if !accounted.contains(id) {
            assert_eq!(
                store.pending_for_media(id).await.unwrap().len(),
                1,
                "{id} was lost"
            );
        }
    }
    let first_job = jobs
        .iter()
        .find(|j| j.items.len() == 20)
        .expect("the in-flight batch");
    assert_eq!(
        first_job.status,
        vod_purge::store::JobStatus::Succeeded,
        "the call in flight was finished and recorded"
    );
    store.close().await;
    sim.stop().await;
}

/// The `config.toml` embedded in each variant's ConfigMap, as the pod would load it.
pub fn configmap_config(variant: &str) -> String {
    let path = format!(
        "{}/k8s/{variant}/configmap.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "config.toml: |")
        .skip(1);
    let first = lines.next().expect("config.toml has content");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent),
        )
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_configmaps_are_valid_configurations() {
    let dir = tempfile::tempdir().unwrap();
    for variant in ["sqlite", "postgres"] {
        let path = dir.path().join(format!("{variant}.toml"));
        std::fs::write(&path, configmap_config(variant)).unwrap();
        let out = binary()
            .args(["check-config", "--config"])
            .arg(&path)
            .env_clear()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
            .env(
                "CMS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )
            .env("VOD_PURGE_STORE__URL", "postgres://vod@db/vod")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{variant}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The README's quick start: `vod-purge demo`, a webhook with the demo token, then the job.
#[tokio::test]
async fn the_readme_quick_start_works() {
    let dir = tempfile::tempdir().unwrap();
    let (port, sim_port) = (free_port(), free_port());
    let mut child = binary()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sim-listen",
            &format!("127.0.0.1:{sim_port}"),
        ])
        .args(["--db", &dir.path().join("demo.db").to_string_lossy()])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = http_client();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(10), "the demo", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let id = "d0b7d0ff0d3f71f0bfd2e7f4b6a40101";
    let response = http
        .post(format!("{base}/webhooks/cms"))
        .bearer_auth("demo-secret")
        .json(&json!({"media_ids": [id], "task": "Refresh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let media = || async {
        http.get(format!("{base}/media/{id}"))
            .bearer_auth("demo-token")
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    wait_until(Duration::from_secs(10), "the job", || async {
        media().await["jobs"][0]["status"] == "succeeded"
    })
    .await;
    // As the README says: about ten seconds after the call, VOD's answer about the submission.
    wait_until(Duration::from_secs(20), "the submission check", || async {
        media().await["jobs"][0]["items"][0]["outcome"] == "submitted"
    })
    .await;
    let calls: serde_json::Value = http
        .get(format!("http://127.0.0.1:{sim_port}/_sim/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls[0]["media_ids"], json!([id]));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn the_daily_quota_is_published_as_metrics() {
    let sim = SimConfig {
        quota_refresh: 2_000,
        quota_preload: 500,
        ..SimConfig::default()
    };
    let app = spawn_app(Spawn {
        extra: "[vod]\nquota_poll_interval = \"100ms\"\n".into(),
        sim,
    })
    .await;
    assert_eq!(
        app.purge(json!({"media_ids": ["q1", "q2", "q3"]}))
            .await
            .status(),
        202
    );
    wait_until(
        Duration::from_secs(10),
        "the quota after the purge",
        || async {
            let text = app.metrics().await;
            crate::support::has_sample(&text, r#"vod_purge_vod_quota_daily{kind="refresh"} 2000"#)
                && crate::support::has_sample(
                    &text,
                    r#"vod_purge_vod_quota_remaining{kind="refresh"} 1997"#,
                )
                && crate::support::has_sample(
                    &text,
                    r#"vod_purge_vod_quota_remaining{kind="preload"} 500"#,
                )
        },
    )
    .await;
    app.stop().await;
}
