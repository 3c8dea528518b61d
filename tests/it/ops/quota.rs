//! The daily quota, as the metrics publish it.

use super::*;

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
            crate::support::has_sample(
                &text,
                r#"vod_purge_vod_quota_daily{account="default",kind="refresh"} 2000"#,
            ) && crate::support::has_sample(
                &text,
                r#"vod_purge_vod_quota_remaining{account="default",kind="refresh"} 1997"#,
            ) && crate::support::has_sample(
                &text,
                r#"vod_purge_vod_quota_remaining{account="default",kind="preload"} 500"#,
            )
        },
    )
    .await;
    app.stop().await;
}
