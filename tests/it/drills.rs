//! Regression tests for what the drills of `bench/drills/` found.

use crate::support::{binary, stdout_of};

/// `VOD_PURGE_CONFIG` is how `serve --config` reads its file from the environment (and
/// `VOD_PURGE_ADMIN_TOKEN` the `purge` subcommand's token); the settings loader must not take
/// them for unknown settings.
#[test]
fn the_config_flag_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:18089\"\n[vod]\ndry_run = true\n",
    )
    .unwrap();
    let stdout = stdout_of(
        binary()
            .arg("check-config")
            .env_clear()
            .env("VOD_PURGE_CONFIG", &path)
            .env("VOD_PURGE_ADMIN_TOKEN", "token-for-the-purge-subcommand")
            .env("VOD_PURGE_QUEUE__QUIET", "7s"),
    );
    assert!(stdout.contains("127.0.0.1:18089"), "{stdout}");
    assert!(stdout.contains("quiet = \"7s\""), "{stdout}");
}

/// The outage drill: before the fix, every new batch and every retry still went out at the full
/// rate while VOD was down, and each job burnt its `max_attempts` within a minute and failed.
/// Now calls go out one probe per pause, and attempts during an outage do not count.
#[tokio::test]
async fn an_outage_is_probed_slowly_and_fails_no_job() {
    use serde_json::json;
    use std::time::Duration;
    use vod_purge::sim::Faults;

    use crate::support::{Spawn, spawn_app, wait_until};

    let app = spawn_app(Spawn {
        extra: "[vod]\nmax_attempts = 3\n".into(),
        ..Spawn::default()
    })
    .await;
    app.sim.set_faults(Faults {
        outage_for_ms: Some(4_000),
        ..Faults::default()
    });
    let outage_end = app.sim.faults().outage_end_ms.unwrap();
    for i in 0..6 {
        let ids: Vec<String> = (0..20).map(|j| format!("outage-{i}-{j}")).collect();
        assert_eq!(app.purge(json!({"media_ids": ids})).await.status(), 202);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_until(Duration::from_secs(30), "every ID sent", || async {
        let sent: std::collections::HashSet<String> = app
            .successful_calls()
            .into_iter()
            .flat_map(|c| c.media_ids)
            .collect();
        sent.len() == 120
    })
    .await;
    let during = app
        .refresh_calls()
        .into_iter()
        .filter(|c| c.at_ms < outage_end)
        .count();
    // Three failures in a row declare the outage; then probes 1 s and 2 s apart (and whatever
    // was already in flight). At the full rate it would be 6 batches, each tried until it failed.
    assert!(during <= 6, "{during} calls during a 4 s outage");
    // ... and the outage was tried: the three failures that declare it, and at least one probe.
    assert!(during >= 4, "{during} calls during a 4 s outage");
    let failed = app.get_json("/jobs?status=failed").await;
    assert_eq!(failed["jobs"].as_array().unwrap().len(), 0, "{failed}");
    app.stop().await;
}

mod store_at_scale {
    use std::time::Duration;

    use vod_purge::config::StoreLocation;
    use vod_purge::domain::{MediaIdRules, PurgeOptions, TaskType, Ts};
    use vod_purge::queue::Debounce;
    use vod_purge::store::*;

    fn items(ids: std::ops::Range<usize>, prefix: &str, quiet: Duration) -> Vec<NewItem> {
        let options = PurgeOptions::default();
        ids.map(|i| NewItem {
            account: vod_purge::domain::AccountName::default(),
            media_id: MediaIdRules::default()
                .parse(&format!("{prefix}{i:05}"))
                .unwrap(),
            task: TaskType::Refresh,
            fingerprint: options.fingerprint(),
            options: options.clone(),
            debounce: Debounce {
                quiet,
                max_wait: quiet * 2,
            },
            priority: vod_purge::domain::Priority::Normal,
        })
        .collect()
    }

    async fn ingest(store: &Store, items: Vec<NewItem>, now: i64) {
        store
            .ingest(Ingest {
                source: "test".into(),
                delivery_id: None,
                event_id: uuid::Uuid::now_v7().to_string(),
                items,
                rejected: vec![],
                now: Ts(now),
                delivery_expires_at: Ts(now + 60_000),
            })
            .await
            .unwrap();
    }

    async fn open() -> (Store, tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db").to_string_lossy().into_owned();
        let store = Store::open(&StoreLocation::Sqlite(path.clone()))
            .await
            .unwrap();
        (store, dir, path)
    }

    fn claim(now: i64) -> ClaimBatch {
        ClaimBatch {
            account: vod_purge::domain::AccountName::default(),
            task: TaskType::Refresh,
            fingerprint: PurgeOptions::default().fingerprint(),
            now: Ts(now),
            max: 20,
            lease_until: Ts(now + 60_000),
            job_id: uuid::Uuid::now_v7().to_string(),
            dry_run: false,
            urgent_only: false,
            seen: None,
        }
    }

    /// A claim looks at the group's oldest items first; when they are not due (a long debounce)
    /// and newer ones are, it must still return the oldest *due* items.
    #[tokio::test]
    async fn a_claim_finds_the_oldest_due_items_behind_many_that_are_not_due() {
        let (store, _dir, _) = open().await;
        let hour = Duration::from_secs(3600);
        let short = Duration::from_millis(10);
        ingest(&store, items(0..5, "early", short), 500).await;
        for chunk in 0..3 {
            ingest(
                &store,
                items(chunk * 500..(chunk + 1) * 500, "long", hour),
                1_000 + chunk as i64,
            )
            .await;
        }
        ingest(&store, items(0..300, "late", short), 2_000).await;
        let job = store.claim_batch(&claim(5_000)).await.unwrap().unwrap();
        let ids: Vec<String> = job.items.iter().map(|i| i.media_id.to_string()).collect();
        let mut want: Vec<String> = (0..5).map(|i| format!("early{i:05}")).collect();
        want.extend((0..15).map(|i| format!("late{i:05}")));
        assert_eq!(ids, want);
        let groups = store
            .due_groups(&vod_purge::domain::AccountName::default(), Ts(5_000))
            .await
            .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].due_count, 285);
        let stats = store.queue_stats(Ts(5_000)).await.unwrap();
        assert_eq!((stats.pending, stats.due), (1_785, 285));
        assert_eq!(stats.oldest_first_seen, Some(Ts(1_000)));
    }

    /// The scale drill: with many pending items, the flusher's poll (`due_groups`) and the queue
    /// figures of /queue and /metrics read every item (tens of milliseconds per 100,000 items,
    /// every 50 ms for the poll). They are index lookups now.
    #[tokio::test]
    async fn polls_and_queue_figures_are_right_on_a_large_store() {
        const N: i64 = 300_000;
        let (store, _dir, path) = open().await;
        let hour = Duration::from_secs(3600);
        ingest(&store, items(0..1, "template", hour), 1_000).await;
        // Seed directly: the template row copied N times, none due for an hour.
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
             INSERT INTO items (account, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events)
             SELECT t.account, printf('bulk%07d', i), t.task, t.fingerprint, t.source, t.first_seen + i,
                    t.last_seen + i, t.deadline, t.due_at, 1
             FROM n, (SELECT * FROM items WHERE media_id = 'template00000') AS t",
        )
        .bind(N)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        // The figures are right on a large store; that the polls read ranges of indexes, not
        // every pending item, the query plans check (`store::sqlite` unit tests).
        let now = Ts(2_000);
        assert!(
            store
                .due_groups(&vod_purge::domain::AccountName::default(), now)
                .await
                .unwrap()
                .is_empty()
        );
        let stats = store.queue_stats(now).await.unwrap();
        assert_eq!((stats.pending, stats.due), (N as u64 + 1, 0));
        assert_eq!(stats.next_due_at, Some(Ts(1_000 + 3_600_000)));
    }
}

/// The schema drill (schemathesis): methods a path does not have got the router's empty 404;
/// open endpoints were documented as needing the admin token; `/jobs` and `POST /purge`
/// accepted less than their document said.
#[tokio::test]
async fn the_api_document_matches_the_handlers() {
    use crate::support::{ADMIN_TOKEN, Spawn, spawn_app};

    let app = spawn_app(Spawn::default()).await;
    let trace = app
        .http
        .request(
            reqwest::Method::from_bytes(b"TRACE").unwrap(),
            format!("{}/queue", app.address),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(trace.status(), 405);
    assert_eq!(trace.headers()["allow"], "GET");
    let body: serde_json::Value = trace.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let put = app
        .http
        .put(format!("{}/jobs/some-id/retry", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "POST");
    let nowhere = app
        .http
        .get(format!("{}/nowhere", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);
    let body: serde_json::Value = nowhere.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // A query string that does not deserialise gets the JSON error body, not plain text.
    let duplicate = app
        .http
        .get(format!("{}/jobs?task=Refresh&task=Preload", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 400);
    let body: serde_json::Value = duplicate.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");

    let doc = app.get_json("/openapi.json").await;
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/webhooks/{source}", "post"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            serde_json::json!([{}]),
            "{path} needs no admin token"
        );
    }
    let params = doc["paths"]["/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&serde_json::json!(1), &serde_json::json!(500))
    );
    let body = &doc["paths"]["/purge"]["post"]["requestBody"]["content"]["application/json"];
    assert!(body["schema"].is_object());
    let native = &doc["components"]["schemas"]["NativeRequest"];
    // Any of the three lists may carry the targets; none is required on its own.
    for list in ["media_ids", "urls", "directories"] {
        assert_eq!(
            native["properties"][list]["items"]["type"], "string",
            "{native}"
        );
    }
    assert!(native["required"].is_null(), "{native}");
    assert!(
        doc["paths"]["/targets"]["get"].is_object(),
        "/targets is documented"
    );
    assert_eq!(native["additionalProperties"], false, "{native}");
    // The open endpoints do answer without the token; the document's 401s are real elsewhere.
    let unauthenticated = app
        .http
        .get(format!("{}/queue", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.stop().await;
}

/// Found by the fuzz drill (`config_with_extreme_values`): a huge `vod.timeout` overflowed the
/// lease check (`timeout * 2`) and panicked instead of naming the key.
#[test]
fn a_huge_timeout_is_refused_not_a_panic() {
    let err = vod_purge::config::Settings::from_toml(
        "[vod]\nendpoint = \"http://127.0.0.1:9000\"\ntimeout = \"18446744073709551615s\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("queue.lease"), "{err}");
}
