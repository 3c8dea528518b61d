//! Purges followed to the edge: `complete` once every CDN task is done, `failed` with the CDN's
//! reason (and sent once more), the time to purge, and a restart while tasks are followed.

use super::*;
use crate::support::{has_sample, spawn_on};

#[tokio::test]
async fn media_ids_and_files_reach_complete_and_the_time_to_purge_is_measured() {
    let app = spawn_cdn("", cdn_sim()).await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["m1"], "urls": [url("a.jpg")]}))
            .await
            .status(),
        202
    );
    wait_for_outcome(&app, "m1", "complete").await;
    wait_for_outcome(&app, &url("a.jpg"), "complete").await;
    // The media ID's tasks came from GetMediaRefreshJobs, one per play URL, and were read with
    // DescribeVodRefreshTasks by status and time window, not one call per task.
    let listings: Vec<RecordedCall> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.action == "DescribeVodRefreshTasks")
        .collect();
    assert!(!listings.is_empty());
    assert!(listings.iter().all(|c| !c.params.contains_key("TaskId")
        && c.params["PageSize"] == "50"
        && ["Complete", "Failed"].contains(&c.params["Status"].as_str())));
    let metrics = app.metrics().await;
    for kind in ["media", "file"] {
        assert!(
            has_sample(
                &metrics,
                &format!(
                    "vod_purge_time_to_complete_seconds_count{{account=\"default\",kind=\"{kind}\"}} 1"
                )
            ),
            "{kind}: {metrics}"
        );
    }
    let status = app.get_json("/ui/status.json").await;
    let figures = &status["time_to_complete"];
    assert_eq!(figures["count"], 2, "{status}");
    assert!(
        figures["p50"].as_f64().unwrap() > 0.0 && figures["p99"].as_f64().unwrap() < 20.0,
        "{figures}"
    );
}

#[tokio::test]
async fn a_failed_cdn_task_shows_its_reason_and_is_sent_once_more() {
    let app = spawn_cdn("", cdn_sim()).await;
    // Every task of this file fails twice: the resubmission fails too, and is not sent again.
    app.sim
        .fail_tasks("broken.jpg", 2, Some("Origin Return StatusCode 5XX"));
    assert_eq!(
        app.purge(json!({"urls": [url("broken.jpg"), url("fine.jpg")]}))
            .await
            .status(),
        202
    );
    wait_until(
        Duration::from_secs(20),
        "the resubmission failed too",
        || async {
            items(&app)
                .await
                .iter()
                .filter(|i| i.1 == url("broken.jpg") && i.2 == "failed")
                .count()
                == 2
        },
    )
    .await;
    let all = items(&app).await;
    let broken: Vec<_> = all.iter().filter(|i| i.1 == url("broken.jpg")).collect();
    assert!(
        broken
            .iter()
            .all(|i| i.3.as_deref() == Some("CdnTaskFailed")),
        "{all:?}"
    );
    let job = app
        .get_json(&format!(
            "/jobs?target={}",
            super::urlencode(&url("broken.jpg"))
        ))
        .await;
    assert!(
        job["jobs"][0]["items"][0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Origin Return StatusCode 5XX")),
        "{job}"
    );
    assert!(job["jobs"][0]["resubmission_of"].is_string(), "{job}");
    wait_for_outcome(&app, &url("fine.jpg"), "complete").await;
    // Once only: two calls carried the broken file.
    let carried = object_calls(&app, "RefreshVodObjectCaches")
        .iter()
        .filter(|c| c.object_paths.contains(&url("broken.jpg")))
        .count();
    assert_eq!(carried, 2);
    let metrics = app.metrics().await;
    assert!(
        has_sample(
            &metrics,
            "vod_purge_followed_items_total{account=\"default\",result=\"failed\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn tasks_followed_across_a_restart_still_reach_complete() {
    // Tasks take 3 s to complete: the application stops while they are followed.
    let sim = SimConfig {
        task_complete_after: Duration::from_secs(3),
        ..cdn_sim()
    };
    let app = spawn_cdn("", sim).await;
    assert_eq!(
        app.purge(json!({"urls": [url("slow.jpg")], "media_ids": ["slow"]}))
            .await
            .status(),
        202
    );
    wait_until(
        Duration::from_secs(20),
        "the calls made and checked",
        || async {
            let all = items(&app).await;
            all.iter().any(|i| i.1 == "slow" && i.2 == "submitted")
                && all.iter().any(|i| i.1 == url("slow.jpg") && i.2 == "sent")
        },
    )
    .await;
    let db = app.db_path.clone();
    let (sim, dir) = app.stop().await;
    let app = spawn_on(
        &db,
        sim,
        &format!(
            "[vod]\ncdn_domains = [\"{CDN}\"]\ncheck_after = \"200ms\"\nfollow_interval = \"100ms\"\n"
        ),
    )
    .await
    .keeping(dir.expect("the store's directory"));
    wait_for_outcome(&app, "slow", "complete").await;
    wait_for_outcome(&app, &url("slow.jpg"), "complete").await;
}
