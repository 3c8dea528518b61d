//! Files and directories beside media IDs, and every purge followed to the edge: URL targets
//! through the API to `RefreshVodObjectCaches` / `PreloadVodObjectCaches` on the simulator, their
//! CDN tasks read back with `DescribeVodRefreshTasks` until `complete` (or `failed`, resent
//! once), cover lookups, and the quotas each kind spends.

mod follow;

use std::time::Duration;

use serde_json::{Value, json};
use vod_purge::sim::{Faults, RecordedCall, SimConfig};

use crate::support::{Spawn, TestApp, spawn_app, wait_until};

pub const CDN: &str = "cdn.example.com";

/// An application that knows the CDN domain, with fast checks and following, on `sim` (see
/// [`cdn_sim`]); `vod` is added to the `[vod]` table.
pub async fn spawn_cdn(vod: &str, sim: SimConfig) -> TestApp {
    spawn_app(Spawn {
        extra: format!(
            "[queue]\nquiet = \"100ms\"\nmax_wait = \"1s\"\nlinger = \"100ms\"\n\
             [vod]\ncdn_domains = [\"{CDN}\"]\ncheck_after = \"200ms\"\nfollow_interval = \"100ms\"\n\
             url_requests_per_second = 20\n{vod}"
        ),
        sim,
    })
    .await
}

/// A simulator serving the CDN domain, with a large quota and CDN tasks done in 150 ms.
pub fn cdn_sim() -> SimConfig {
    SimConfig {
        cdn_domains: vec![CDN.into()],
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        task_refreshing_after: Duration::from_millis(50),
        task_complete_after: Duration::from_millis(150),
        ..SimConfig::default()
    }
}

pub fn url(path: &str) -> String {
    format!("https://{CDN}/{path}")
}

/// The successful calls of `action`.
pub fn object_calls(app: &TestApp, action: &str) -> Vec<RecordedCall> {
    app.sim
        .calls()
        .into_iter()
        .filter(|c| c.action == action && c.status == 200)
        .collect()
}

/// Every item of every job: (kind, target, outcome, error code).
pub async fn items(app: &TestApp) -> Vec<(String, String, String, Option<String>)> {
    let page = app.get_json("/jobs?limit=500").await;
    page["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|job| job["items"].as_array().cloned().unwrap_or_default())
        .map(|item| {
            let text = |k: &str| item[k].as_str().unwrap_or_default().to_owned();
            (
                text("kind"),
                text("target"),
                text("outcome"),
                item["error"]["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Waits until every item naming `target` has `outcome`, and one does.
pub async fn wait_for_outcome(app: &TestApp, target: &str, outcome: &str) {
    wait_until(
        Duration::from_secs(20),
        &format!("{target} {outcome}"),
        || async {
            let all = items(app).await;
            let mine: Vec<_> = all.iter().filter(|i| i.1 == target).collect();
            !mine.is_empty() && mine.iter().any(|i| i.2 == outcome)
        },
    )
    .await;
}

#[tokio::test]
async fn a_burst_naming_200_cover_urls_many_times_goes_out_once_per_url_in_two_calls() {
    let app = spawn_cdn("", cdn_sim()).await;
    let urls: Vec<String> = (0..200).map(|i| url(&format!("v{i}/cover.jpg"))).collect();
    // Five deliveries, each naming every URL (in another spelling each time: the host's case,
    // a fragment), while the quiet period keeps restarting.
    for round in 0..5 {
        let spelled: Vec<String> = urls
            .iter()
            .map(|u| match round % 3 {
                0 => u.clone(),
                1 => u.replace(CDN, "CDN.Example.COM"),
                _ => format!("{u}#r{round}"),
            })
            .collect();
        let answer = app.webhook(json!({"urls": spelled})).await;
        assert_eq!(answer.status(), 202);
    }
    wait_until(Duration::from_secs(20), "every URL purged", || async {
        object_calls(&app, "RefreshVodObjectCaches")
            .iter()
            .map(|c| c.object_paths.len())
            .sum::<usize>()
            >= 200
    })
    .await;
    let calls = object_calls(&app, "RefreshVodObjectCaches");
    assert!(calls.len() <= 3, "{} calls", calls.len());
    let mut sent: Vec<String> = calls.iter().flat_map(|c| c.object_paths.clone()).collect();
    sent.sort();
    let mut want = urls.clone();
    want.sort();
    assert_eq!(sent, want, "each URL exactly once, normalised");
    assert!(
        calls
            .iter()
            .all(|c| c.object_type.as_deref() == Some("File"))
    );
    assert!(calls.iter().all(|c| c.object_paths.len() <= 100));
    assert!(app.refresh_calls().is_empty(), "no RefreshMediaPlayUrls");
}

#[tokio::test]
async fn directories_go_as_directory_and_preloads_as_preload_calls() {
    let app = spawn_cdn("", cdn_sim()).await;
    let answer = app
        .purge(json!([
            {"directories": [url("subtitles/v1/")]},
            {"urls": [url("v1/subtitle.vtt")], "task": "RefreshThenPreload"},
        ]))
        .await;
    assert_eq!(answer.status(), 202);
    wait_until(Duration::from_secs(20), "the three calls", || async {
        object_calls(&app, "PreloadVodObjectCaches").len() == 1
            && object_calls(&app, "RefreshVodObjectCaches").len() == 2
    })
    .await;
    let refreshes = object_calls(&app, "RefreshVodObjectCaches");
    let directory = refreshes
        .iter()
        .find(|c| c.object_type.as_deref() == Some("Directory"))
        .expect("a Directory call");
    assert_eq!(directory.object_paths, [url("subtitles/v1/")]);
    let file = refreshes
        .iter()
        .find(|c| c.object_type.as_deref() == Some("File"))
        .expect("a File call");
    let preload = &object_calls(&app, "PreloadVodObjectCaches")[0];
    assert_eq!(preload.object_paths, [url("v1/subtitle.vtt")]);
    assert!(
        file.at_ms <= preload.at_ms,
        "the prefetch follows the purge"
    );
    // /targets answers for a URL what /media/{id} answers for an ID, in any spelling.
    let spelled = url("subtitles/v1/").replace(CDN, "Cdn.Example.Com");
    let target = app
        .get_json(&format!("/targets?url={}", urlencode(&spelled)))
        .await;
    assert_eq!(target["kind"], "directory", "{target}");
    assert_eq!(target["target"], url("subtitles/v1/"));
    assert_eq!(target["jobs"][0]["task"], "DirectoryRefresh", "{target}");
    let jobs = app
        .get_json(&format!(
            "/jobs?target={}",
            urlencode(&url("v1/subtitle.vtt"))
        ))
        .await;
    let tasks: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["task"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["FilePreload", "FileRefresh"], "{jobs}");
}

fn urlencode(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

#[tokio::test]
async fn a_foreign_host_or_a_bad_url_is_refused_and_nothing_is_stored() {
    let app = spawn_cdn("", cdn_sim()).await;
    for (body, code) in [
        (
            json!({"media_ids": ["fine"], "urls": ["https://evil.example.net/a.jpg"]}),
            "url_not_allowed",
        ),
        (
            json!({"urls": [url("a.jpg"), "https://cdn.example.com.evil.net/a.jpg"]}),
            "url_not_allowed",
        ),
        (json!({"directories": [url("no-slash")]}), "invalid_url"),
        (
            json!({"urls": ["ftp://cdn.example.com/a.jpg"]}),
            "invalid_url",
        ),
        (
            json!({"urls": ["https://user:hunter2@cdn.example.com/a.jpg"]}),
            "invalid_url",
        ),
        (
            json!({"directories": [url("d/")], "task": "Preload"}),
            "unknown_task",
        ),
        (
            json!({"media_ids": ["v"], "include": ["cover"], "task": "Preload"}),
            "unknown_task",
        ),
    ] {
        let answer = app.webhook(body.clone()).await;
        assert_eq!(answer.status(), 422, "{body}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    let answer = app
        .webhook(json!({"media_ids": ["v"], "include": ["poster"]}))
        .await;
    assert_eq!(answer.status(), 400, "only the cover can be included");
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 0, "{queue}");

    // Without vod.cdn_domains, URL purge is off.
    let off = crate::support::spawn_configured("", |_| {}).await;
    let answer = off.webhook(json!({"urls": [url("a.jpg")]})).await;
    assert_eq!(answer.status(), 422);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "url_purge_disabled", "{error}");
}

#[tokio::test]
async fn include_cover_purges_the_cover_and_snapshots_of_each_media_id() {
    let app = spawn_cdn(
        "",
        SimConfig {
            nonexistent: vec!["gone".into()],
            ..cdn_sim()
        },
    )
    .await;
    // Two events for v1: one lookup (the item merges).
    for ids in [json!(["v1", "gone"]), json!(["v1"])] {
        let answer = app
            .webhook(json!({"media_ids": ids, "include": ["cover"]}))
            .await;
        assert_eq!(answer.status(), 202);
    }
    let wanted = [
        url("v1/cover.jpg"),
        url("v1/snapshots/1.jpg"),
        url("v1/snapshots/2.jpg"),
    ];
    wait_until(Duration::from_secs(20), "the cover purged", || async {
        let sent: Vec<String> = object_calls(&app, "RefreshVodObjectCaches")
            .iter()
            .flat_map(|c| c.object_paths.clone())
            .collect();
        wanted.iter().all(|w| sent.contains(w))
    })
    .await;
    let lookups: Vec<RecordedCall> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.action == "GetVideoInfo")
        .collect();
    assert_eq!(lookups.len(), 2, "one per media ID: {lookups:?}");
    // The play URLs are purged too, and the unknown ID is recorded as such, not retried.
    assert!(
        app.successful_calls()
            .iter()
            .any(|c| c.media_ids.contains(&"v1".to_owned()))
    );
    wait_for_outcome(&app, "gone", "non_existent").await;
    let failed = app.get_json("/jobs?status=failed").await;
    assert_eq!(failed["jobs"], json!([]), "{failed}");
}

#[tokio::test]
async fn each_quota_holds_only_its_own_kind() {
    let app = spawn_cdn("quota_probe_interval = \"1h\"\n", cdn_sim()).await;
    app.sim.set_dir_remaining(0);
    assert_eq!(
        app.purge(json!({"directories": [url("d/")]}))
            .await
            .status(),
        202
    );
    wait_until(Duration::from_secs(20), "the directory held", || async {
        let queue = app.get_json("/queue").await;
        queue["held"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["task"] == "Directory"))
    })
    .await;
    // Files and media IDs still go.
    assert_eq!(
        app.purge(json!({"urls": [url("a.jpg")], "media_ids": ["m1"]}))
            .await
            .status(),
        202
    );
    wait_until(
        Duration::from_secs(20),
        "the file and the media ID",
        || async {
            !object_calls(&app, "RefreshVodObjectCaches")
                .iter()
                .any(|c| c.object_type.as_deref() == Some("Directory"))
                && object_calls(&app, "RefreshVodObjectCaches")
                    .iter()
                    .any(|c| c.object_paths == [url("a.jpg")])
                && !app.successful_calls().is_empty()
        },
    )
    .await;
    let queue = app.get_json("/queue").await;
    let held: Vec<&Value> = queue["held"].as_array().unwrap().iter().collect();
    assert_eq!(held.len(), 1, "{queue}");
    assert_eq!(held[0]["reason"], "QuotaExceeded.Refresh", "{queue}");
}

#[tokio::test]
async fn a_per_minute_limit_waits_for_the_next_minute_without_spending_an_attempt() {
    let app = spawn_cdn("max_attempts = 1\n", cdn_sim()).await;
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("RefreshVodObjectCaches".into()),
        error_code: "QuotaPerMinuteExceeded.Refresh".into(),
        ..Faults::default()
    });
    assert_eq!(
        app.purge(json!({"urls": [url("a.jpg")]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(20), "the job deferred", || async {
        let page = app.get_json("/jobs?status=retrying").await;
        page["jobs"].as_array().is_some_and(|j| !j.is_empty())
    })
    .await;
    let page = app.get_json("/jobs?status=retrying").await;
    let job = &page["jobs"][0];
    assert_eq!(
        job["error"]["code"], "QuotaPerMinuteExceeded.Refresh",
        "{job}"
    );
    // With max_attempts = 1 a counted attempt would have failed the job; it waits for the
    // next minute instead.
    let next = vod_purge::domain::Ts::parse(job["next_attempt_at"].as_str().unwrap()).unwrap();
    let updated = vod_purge::domain::Ts::parse(job["updated_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.0 % 60_000, 1_000, "a second into a minute: {job}");
    assert!(
        next.0 - updated.0 > 1_000 && next.0 - updated.0 <= 61_000,
        "{job}"
    );
}

#[tokio::test]
async fn a_call_refused_as_too_large_lowers_the_batch_for_good() {
    let app = spawn_cdn(
        "urls_per_call = 40\n",
        SimConfig {
            urls_per_request: 10,
            ..cdn_sim()
        },
    )
    .await;
    let urls: Vec<String> = (0..40).map(|i| url(&format!("{i}.jpg"))).collect();
    assert_eq!(app.purge(json!({"urls": urls})).await.status(), 202);
    wait_until(Duration::from_secs(20), "the job sent", || async {
        let page = app.get_json("/jobs?status=succeeded").await;
        page["jobs"].as_array().is_some_and(|j| !j.is_empty())
    })
    .await;
    let sent: usize = object_calls(&app, "RefreshVodObjectCaches")
        .iter()
        .map(|c| c.object_paths.len())
        .sum();
    assert_eq!(sent, 40);
    let refused = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.code.as_deref() == Some("SingleRequest.OverLimit"))
        .count();
    assert_eq!(refused, 2, "40 refused, then 20, then calls of 10");
    assert!(
        object_calls(&app, "RefreshVodObjectCaches")
            .iter()
            .all(|c| c.object_paths.len() <= 10)
    );
    let page = app.get_json("/jobs?status=succeeded").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "one job: {page}");
}

#[test]
fn bad_url_settings_are_refused_naming_their_key() {
    let base = "[store]\nurl = \"sqlite://unused.db\"\n";
    for (extra, key, why) in [
        (
            "[vod]\ncdn_domains = [\"https://cdn.example.com\"]",
            "cdn_domains",
            "host name",
        ),
        (
            "[vod]\ncdn_domains = [\"cdn.example.com/videos\"]",
            "cdn_domains",
            "host name",
        ),
        (
            "[vod]\nurls_per_call = 0",
            "vod.urls_per_call",
            "outside 1 to 1000",
        ),
        (
            "[vod]\nurls_per_call = 1001",
            "vod.urls_per_call",
            "outside 1 to 1000",
        ),
        (
            "[vod]\nurl_requests_per_second = 0",
            "vod.url_requests_per_second",
            "outside 1 to 50",
        ),
        ("[vod]\nfollow_for = \"4d\"", "vod.follow_for", "3 days"),
        (
            "[[sources]]\nname = \"s\"\nauth = \"none\"\nformat = \"native\"\ninclude = [\"poster\"]",
            "include",
            "poster",
        ),
        (
            "[[sources]]\nname = \"s\"\nauth = \"none\"\nformat = \"native\"\nurl_pointers = [\"/a\"]",
            "url_pointers",
            "json-pointer",
        ),
    ] {
        let error = vod_purge::config::Settings::from_toml(&format!("{base}{extra}"))
            .err()
            .unwrap_or_else(|| panic!("{extra} is accepted"))
            .to_string();
        assert!(
            error.contains(key) && error.contains(why),
            "{extra}: {error}"
        );
    }
}

#[tokio::test]
async fn url_pointers_read_file_urls_from_a_cms_payload() {
    let app = spawn_app(Spawn {
        extra: format!(
            "[queue]\nquiet = \"100ms\"\nlinger = \"50ms\"\n[vod]\ncdn_domains = [\"{CDN}\"]\n\
             [[sources]]\nname = \"assets\"\nauth = \"none\"\nformat = \"json-pointer\"\n\
             url_pointers = [\"/entry/cover/url\", \"/entry/subtitles/*/src\"]\n"
        ),
        sim: cdn_sim(),
    })
    .await;
    let body = json!({"entry": {"cover": {"url": url("v9/cover.jpg")},
                                "subtitles": [{"src": url("v9/en.vtt")}, {"src": url("v9/fr.vtt")}]}});
    let answer = app
        .http
        .post(format!("{}/webhooks/assets", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    wait_until(
        Duration::from_secs(20),
        "the three files purged",
        || async {
            let sent: Vec<String> = object_calls(&app, "RefreshVodObjectCaches")
                .iter()
                .flat_map(|c| c.object_paths.clone())
                .collect();
            sent.len() == 3
        },
    )
    .await;
    // A URL on another host refuses the delivery whole.
    let body = json!({"entry": {"cover": {"url": "https://elsewhere.example.org/x.jpg"}}});
    let answer = app
        .http
        .post(format!("{}/webhooks/assets", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
}

#[tokio::test]
async fn an_offline_domain_fails_the_job_with_vods_message() {
    let app = spawn_cdn(
        "",
        SimConfig {
            offline_domains: vec![CDN.into()],
            ..cdn_sim()
        },
    )
    .await;
    assert_eq!(
        app.purge(json!({"urls": [url("a.jpg")]})).await.status(),
        202
    );
    wait_until(Duration::from_secs(20), "the job failed", || async {
        let page = app.get_json("/jobs?status=failed").await;
        page["jobs"].as_array().is_some_and(|j| !j.is_empty())
    })
    .await;
    let page = app.get_json("/jobs?status=failed").await;
    assert_eq!(
        page["jobs"][0]["error"]["code"], "InvalidDomain.Offline",
        "{page}"
    );
    assert_eq!(page["jobs"][0]["attempts"], 1, "not retried: {page}");
}
