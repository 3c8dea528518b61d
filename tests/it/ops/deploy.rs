//! What the repository ships: the Kubernetes configuration and the README's quick start.

use super::*;

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
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start_serving(
        binary()
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--sim-listen", &format!("127.0.0.1:{sim_port}")])
            .args(["--db", &dir.path().join("demo.db").to_string_lossy()])
            .env_clear(),
        &format!("{base}/healthz"),
    )
    .await;
    let http = http_client();
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
    // The purge is one successful RefreshMediaPlayUrls call with the ID; the quota poll and the
    // submission check are other calls, in whatever order they came.
    let calls = http.get(format!("http://127.0.0.1:{sim_port}/_sim/calls"));
    let calls: Vec<vod_purge::sim::RecordedCall> =
        calls.send().await.unwrap().json().await.unwrap();
    let purges: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls" && c.status == 200)
        .collect();
    assert_eq!(purges.len(), 1, "{calls:?}");
    assert_eq!(purges[0].media_ids, [id]);
    child.kill().unwrap();
    child.wait().unwrap();
}
