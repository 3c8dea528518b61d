//! Killed while the CDN tasks of a purge are followed to the edge: the tasks are stored with the
//! call's success (a file) and the submission check (a media ID's play URLs); the next process
//! reads them to `complete`.

use serde_json::json;

use super::*;

/// Every item of every job: (target, outcome).
async fn outcomes(service: &Service) -> Vec<(String, String)> {
    let page = service.get("/jobs?limit=500").await;
    page["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|job| job["items"].as_array().cloned().unwrap_or_default())
        .map(|i| {
            let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (text("target"), text("outcome"))
        })
        .collect()
}

on_each_backend! {
    /// The CDN completes the tasks 4 s after their call: the process is killed while they are
    /// open, and the next one, started on the same store, follows them to `complete`.
    async fn killed_while_cdn_tasks_are_followed(backing: &Backing) {
        let sim = sim::start(SimConfig {
            quota_refresh: 10_000_000,
            quota_preload: 10_000_000,
            task_complete_after: Duration::from_secs(4),
            ..SimConfig::default()
        })
        .await
        .expect("the simulator starts");
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        // A long URL (1,900 bytes): stored once in the key of its task row, within an index
        // entry's limit on PostgreSQL.
        let file = format!("https://cdn.example.com/followed/{}.jpg", "c".repeat(1_860));
        let file = file.as_str();
        first
            .post_body(&json!({"media_ids": ["followed"], "urls": [file]}))
            .await;
        wait_until(Duration::from_secs(10), "the calls made and checked", || async {
            let seen = outcomes(&first).await;
            seen.contains(&("followed".to_owned(), "submitted".to_owned()))
                && seen.contains(&(file.to_owned(), "sent".to_owned()))
        })
        .await;
        let open = sim.tasks().iter().filter(|t| t.status != "Complete").count();
        assert!(open >= 2, "the file's task and the play URLs' are open at the kill");
        first.kill();

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        wait_until(Duration::from_secs(20), "both followed to complete", || async {
            let seen = outcomes(&second).await;
            seen.contains(&("followed".to_owned(), "complete".to_owned()))
                && seen.contains(&(file.to_owned(), "complete".to_owned()))
        })
        .await;
    }
}
