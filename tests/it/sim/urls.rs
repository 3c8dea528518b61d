//! Purging and prefetching URLs: `RefreshVodObjectCaches` and `PreloadVodObjectCaches`, their
//! parameter checks, the account's domains, shared task IDs, the quota pools, throttling, the
//! injected errors, and what is recorded.

use super::*;
#[allow(unused_imports)]
use crate::support::SendJson;
use vod_purge::sim::{CdnTask, QuotaChange};

/// A `RefreshVodObjectCaches` (or any URL action) by `testid` at `T0`, with `ObjectPath` the
/// paths joined by `\n` and, when given, an `ObjectType`.
pub(super) fn url_params(
    action: &str,
    paths: &[&str],
    object_type: Option<&str>,
) -> BTreeMap<String, String> {
    let mut params = common(action, T0);
    params.insert("ObjectPath".to_owned(), paths.join("\n"));
    if let Some(t) = object_type {
        params.insert("ObjectType".to_owned(), t.to_owned());
    }
    params
}

pub(super) async fn purge(sim: &SimHandle, paths: &[&str], object_type: Option<&str>) -> Answer {
    send(
        sim,
        "POST",
        &url_params("RefreshVodObjectCaches", paths, object_type),
    )
    .await
}

pub(super) async fn preload(sim: &SimHandle, paths: &[&str]) -> Answer {
    send(
        sim,
        "POST",
        &url_params("PreloadVodObjectCaches", paths, None),
    )
    .await
}

/// `DescribeVodRefreshQuota` at `at`: the figures by name.
pub(super) async fn quota_at(sim: &SimHandle, at: i64) -> Value {
    let answer = send(sim, "POST", &common("DescribeVodRefreshQuota", at)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Sends `params` signed as a POST with everything in a form body (for calls too long for a
/// query string).
pub(super) async fn send_form(sim: &SimHandle, params: &BTreeMap<String, String>) -> Answer {
    let mut params = params.clone();
    let signature = sign("POST", &params, "testsecret");
    params.insert("Signature".to_owned(), signature);
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let resp = http()
        .post(format!("{}/", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: resp.json().await.unwrap(),
    }
}

/// The comma-separated IDs of a `RefreshTaskId` / `PreloadTaskId`.
pub(super) fn id_list(answer: &Answer, field: &str) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ids: Vec<String> = answer.body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {}", answer.body))
        .split(',')
        .map(str::to_owned)
        .collect();
    assert!(
        ids.iter()
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        "{ids:?}"
    );
    ids
}

fn restricted() -> SimConfig {
    SimConfig {
        urls_per_request: 3,
        cdn_domains: vec!["a.example.com".to_owned(), "B.example.com".to_owned()],
        offline_domains: vec!["off.example.com".to_owned()],
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn refresh_and_preload_refuse_bad_calls_and_take_nothing() {
    let sim = fixed_sim(restricted()).await;
    let before = sim.quota();
    let ok = "http://a.example.com/1.png";
    let mut no_path = url_params("RefreshVodObjectCaches", &[], None);
    no_path.remove("ObjectPath");
    let mut no_preload_path = url_params("PreloadVodObjectCaches", &[], None);
    no_preload_path.remove("ObjectPath");
    let refresh = |paths: &[&str], t: Option<&str>| url_params("RefreshVodObjectCaches", paths, t);
    let preload = |paths: &[&str]| url_params("PreloadVodObjectCaches", paths, None);
    let four = [ok, ok, ok, ok];
    let cases = [
        (no_path, 400, "MissingParameter"),
        (refresh(&["", "\r", " "], None), 400, "MissingParameter"),
        (
            refresh(&[ok], Some("Regex")),
            400,
            "InvalidObjectType.Malformed",
        ),
        (
            refresh(&[ok], Some("IgnoreParams")),
            400,
            "InvalidObjectType.Malformed",
        ),
        (refresh(&four, None), 400, "SingleRequest.OverLimit"),
        (
            refresh(&[ok, "ftp://a.example.com/1.png"], None),
            400,
            "InvalidObjectPath.Malformed",
        ),
        (
            refresh(&["http://a.example.com/a b.png"], None),
            400,
            "InvalidObjectPath.Malformed",
        ),
        (
            refresh(&["http://a.example.com/dir"], Some("Directory")),
            400,
            "InvalidObjectPath.Malformed",
        ),
        (
            refresh(&[ok, "http://c.example.com/1.png"], None),
            404,
            "InvalidDomain.NotFound",
        ),
        (
            refresh(&["off.example.com/1.png"], None),
            404,
            "InvalidDomain.Offline",
        ),
        (no_preload_path, 400, "MissingParameter"),
        (preload(&four), 400, "SingleRequest.OverLimit"),
        (preload(&["https://"]), 400, "InvalidObjectPath.Malformed"),
        (
            preload(&["https://c.example.com/1.png"]),
            404,
            "InvalidDomain.NotFound",
        ),
        (
            preload(&["https://off.example.com/1.png"]),
            404,
            "InvalidDomain.Offline",
        ),
    ];
    for (params, status, code) in cases {
        for method in ["GET", "POST"] {
            let mut params = params.clone();
            params.insert(
                "SignatureNonce".to_owned(),
                uuid::Uuid::new_v4().to_string(),
            );
            let answer = send(&sim, method, &params).await;
            assert_eq!(
                (answer.status, answer.code()),
                (status, code),
                "{method} {params:?}: {}",
                answer.body
            );
            assert!(
                answer.body["Message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }
    assert_eq!(sim.quota(), before, "a refused call takes no quota");
    assert!(sim.tasks().is_empty(), "a refused call creates no task");

    // What is accepted: either scheme or none, `\r\n` or `\n`, any case of the ObjectType and of
    // the host, over GET and POST.
    let mut mixed = refresh(&[], None);
    mixed.insert(
        "ObjectPath".to_owned(),
        "a.example.com/1.png\r\n\r\nHTTPS://B.Example.com/2.png\nhttp://a.example.com/3.png\n"
            .to_owned(),
    );
    let answer = send(&sim, "GET", &mixed).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for object_type in ["file", "FILE", "File"] {
        let answer = send(&sim, "POST", &refresh(&[ok], Some(object_type))).await;
        assert_eq!(answer.status, 200, "{object_type}: {}", answer.body);
    }
    for object_type in ["directory", "DIRECTORY", "Directory"] {
        let answer = send(
            &sim,
            "POST",
            &refresh(&["a.example.com/dir/"], Some(object_type)),
        )
        .await;
        assert_eq!(answer.status, 200, "{object_type}: {}", answer.body);
    }
    let answer = send(&sim, "GET", &preload(&[ok, "b.example.com/x.mp4"])).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let after = sim.quota();
    assert_eq!(
        (
            before.refresh_remaining - after.refresh_remaining,
            before.dir_remaining - after.dir_remaining,
            before.preload_remaining - after.preload_remaining
        ),
        (6, 3, 2)
    );
    assert_eq!(sim.tasks().len(), 11);
    sim.stop().await;
}

#[tokio::test]
async fn urls_of_one_domain_in_one_call_share_a_task_id() {
    let sim = fixed_sim(SimConfig::default()).await;
    let paths = [
        "http://a.example.com/1.png",
        "https://b.example.com/1.png",
        "a.example.com/2.png",
        "HTTP://A.EXAMPLE.COM/3.png",
    ];
    let answer = purge(&sim, &paths, None).await;
    let ids = id_list(&answer, "RefreshTaskId");
    assert_eq!(ids.len(), 2, "one ID per domain: {ids:?}");
    assert_ne!(ids[0], ids[1]);
    let tasks = sim.tasks();
    let by_path: Vec<(&str, &str, &str)> = tasks
        .iter()
        .map(|t| {
            (
                t.object_path.as_str(),
                t.task_id.as_str(),
                t.object_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        by_path,
        [
            (paths[0], ids[0].as_str(), "file"),
            (paths[1], ids[1].as_str(), "file"),
            (paths[2], ids[0].as_str(), "file"),
            (paths[3], ids[0].as_str(), "file"),
        ]
    );
    assert!(tasks.iter().all(|t| t.owner == "testid"
        && t.created_ms == T0 * 1000
        && t.creation_time == "2025-01-15T08:30:00Z"));

    // The next call of the same domain, in the same second, gets a new ID.
    let again = id_list(
        &purge(&sim, &["a.example.com/4.png"], None).await,
        "RefreshTaskId",
    );
    assert_eq!(again.len(), 1);
    assert!(!ids.contains(&again[0]), "{again:?} reuses {ids:?}");
    let dirs = id_list(
        &purge(
            &sim,
            &["a.example.com/d1/", "b.example.com/d/", "a.example.com/d2/"],
            Some("Directory"),
        )
        .await,
        "RefreshTaskId",
    );
    assert_eq!(dirs.len(), 2);
    let prefetch = id_list(
        &preload(&sim, &["a.example.com/1.mp4", "a.example.com/2.mp4"]).await,
        "PreloadTaskId",
    );
    assert_eq!(prefetch.len(), 1);
    let kinds: Vec<(String, String)> = sim
        .tasks()
        .into_iter()
        .skip(5)
        .map(|t| (t.task_id, t.object_type))
        .collect();
    assert_eq!(
        kinds,
        [
            (dirs[0].clone(), "directory".to_owned()),
            (dirs[1].clone(), "directory".to_owned()),
            (dirs[0].clone(), "directory".to_owned()),
            (prefetch[0].clone(), "preload".to_owned()),
            (prefetch[0].clone(), "preload".to_owned()),
        ]
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_domain_gets_a_new_task_id_every_2000_urls() {
    let sim = fixed_sim(SimConfig {
        urls_per_request: 2_500,
        quota_refresh: 5_000,
        ..SimConfig::default()
    })
    .await;
    let paths: Vec<String> = (0..2_001)
        .map(|i| format!("a.example.com/{i}.png"))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut params = url_params("RefreshVodObjectCaches", &paths, None);
    params.insert(
        "ObjectPath".to_owned(),
        format!("{}\nb.example.com/x.png", paths.join("\n")),
    );
    let answer = send_form(&sim, &params).await;
    let ids = id_list(&answer, "RefreshTaskId");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let tasks = sim.tasks();
    let count = |id: &str| tasks.iter().filter(|t| t.task_id == id).count();
    assert_eq!(
        (count(&ids[0]), count(&ids[1]), count(&ids[2])),
        (2000, 1, 1)
    );
    // IDs are handed out as they are needed: the 2,001st URL of a.example.com needs one
    // before b.example.com does.
    assert_eq!(tasks[2000].object_path, "a.example.com/2000.png");
    assert_eq!(tasks[2000].task_id, ids[1]);
    assert_eq!(tasks[2001].task_id, ids[2]);
    assert_eq!(sim.quota().refresh_remaining, 5_000 - 2_002);
    sim.stop().await;
}

/// One pool for URLs, whichever call purges them; directories and prefetches apart. A call that
/// asks for more than is left is refused whole.
#[tokio::test]
async fn url_and_media_refreshes_share_a_pool_and_directories_and_preloads_have_their_own() {
    let sim = fixed_sim(SimConfig {
        quota_refresh: 5,
        quota_dir: 2,
        quota_preload: 3,
        ..SimConfig::default()
    })
    .await;
    let remain = |q: &Value| {
        (
            q["UrlRemain"].as_str().unwrap().to_owned(),
            q["DirRemain"].as_str().unwrap().to_owned(),
            q["PreloadRemain"].as_str().unwrap().to_owned(),
        )
    };
    let left =
        |url: &str, dir: &str, preload: &str| (url.to_owned(), dir.to_owned(), preload.to_owned());
    assert_eq!(remain(&quota_at(&sim, T0).await), left("5", "2", "3"));

    let urls = ["a.example.com/1", "a.example.com/2", "a.example.com/3"];
    assert_eq!(purge(&sim, &urls, None).await.status, 200);
    assert_eq!(remain(&quota_at(&sim, T0).await), left("2", "2", "3"));
    let media = send(&sim, "POST", &refresh_params(&["m1"], T0)).await;
    assert_eq!(media.status, 200, "{}", media.body);
    assert_eq!(remain(&quota_at(&sim, T0).await), left("1", "2", "3"));

    let tasks_before = sim.tasks().len();
    let over = purge(&sim, &urls[..2], None).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Refresh"));
    let over = send(&sim, "POST", &refresh_params(&["m2", "m3"], T0)).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Refresh"));
    let dirs = [
        "a.example.com/d1/",
        "a.example.com/d2/",
        "a.example.com/d3/",
    ];
    let over = purge(&sim, &dirs, Some("Directory")).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Refresh"));
    let over = preload(
        &sim,
        &[
            "a.example.com/p1",
            "a.example.com/p2",
            "a.example.com/p3",
            "a.example.com/p4",
        ],
    )
    .await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Preload"));
    assert_eq!(
        sim.tasks().len(),
        tasks_before,
        "refused calls create nothing"
    );
    assert_eq!(remain(&quota_at(&sim, T0).await), left("1", "2", "3"));

    assert_eq!(purge(&sim, &dirs[..2], Some("Directory")).await.status, 200);
    assert_eq!(remain(&quota_at(&sim, T0).await), left("1", "0", "3"));
    let three = ["a.example.com/p1", "a.example.com/p2", "a.example.com/p3"];
    assert_eq!(preload(&sim, &three).await.status, 200);
    let mut media_preload = refresh_params(&["m4"], T0);
    media_preload.insert("TaskType".to_owned(), "Preload".to_owned());
    let over = send(&sim, "POST", &media_preload).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Preload"));
    assert_eq!(purge(&sim, &urls[..1], None).await.status, 200);
    let quota = quota_at(&sim, T0).await;
    assert_eq!(remain(&quota), left("0", "0", "0"));
    for (field, want) in [
        ("UrlQuota", "5"),
        ("DirQuota", "2"),
        ("PreloadQuota", "3"),
        ("BlockQuota", "500"),
        ("blockRemain", "500"),
    ] {
        assert_eq!(quota[field], want, "{field} in {quota}");
    }
    assert_eq!(
        (
            sim.quota().refresh_remaining,
            sim.quota().dir_remaining,
            sim.quota().preload_remaining
        ),
        (0, 0, 0)
    );

    // The directory quota can be given back at runtime, like the others.
    let view: Value = http()
        .put(format!("{}/_sim/quota", sim.base_url()))
        .json(&serde_json::json!({"dir_remaining": 1, "preload_remaining": 2}))
        .send_json()
        .await;
    assert_eq!(
        (
            view["dir_remaining"].as_u64(),
            view["preload_remaining"].as_u64()
        ),
        (Some(1), Some(2))
    );
    sim.set_quota(QuotaChange {
        refresh_remaining: Some(4),
        preload_remaining: None,
    });
    assert_eq!(remain(&quota_at(&sim, T0).await), left("4", "1", "2"));
    sim.set_dir_remaining(0);
    assert_eq!(remain(&quota_at(&sim, T0).await), left("4", "0", "2"));

    // All pools reset together at midnight China time (T0 is 16:30 there).
    let next_day = T0 + 8 * 3600;
    sim.set_clock(Some(next_day));
    assert_eq!(remain(&quota_at(&sim, next_day).await), left("5", "2", "3"));
    sim.stop().await;
}

#[tokio::test]
async fn url_calls_are_throttled_per_action_at_their_own_rate() {
    // The fixed clock stops the limiter's time: what passes depends on the count alone.
    let sim = fixed_sim(SimConfig {
        qps: 3,
        url_qps: Some(2),
        ..SimConfig::default()
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            purge(&sim, &["a.example.com/1"], None)
                .await
                .code()
                .to_owned(),
        );
    }
    for _ in 0..3 {
        codes.push(preload(&sim, &["a.example.com/1"]).await.code().to_owned());
    }
    assert_eq!(codes, ["", "", "Throttling", "", "", "Throttling"]);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let mut video = common("GetVideoInfo", T0);
        video.insert("VideoId".to_owned(), "v1".to_owned());
        codes.push(send(&sim, "GET", &video).await.code().to_owned());
    }
    for _ in 0..4 {
        let answer = send(&sim, "POST", &common("DescribeVodRefreshTasks", T0)).await;
        codes.push(answer.code().to_owned());
    }
    assert_eq!(codes, ["", "", "", "Throttling", "", "", "", "Throttling"]);
    let throttled = purge(&sim, &["a.example.com/1"], None).await;
    assert_eq!(throttled.status, 503);
    // Three purges answered 200 at most: two per action.
    assert_eq!(sim.tasks().len(), 4);
    sim.stop().await;
}

/// The errors the CDN answers when it is busy, injected for the next calls of one action: each
/// is answered with its code and status, and takes nothing.
#[tokio::test]
async fn injected_errors_answer_the_next_calls_of_one_action() {
    let sim = fixed_sim(SimConfig::default()).await;
    let table = [
        (
            "RefreshVodObjectCaches",
            "QuotaPerMinuteExceeded.Refresh",
            400,
        ),
        ("RefreshVodObjectCaches", "TooMany.Refresh", 400),
        ("PreloadVodObjectCaches", "PreloadQueueFull", 403),
        ("PreloadVodObjectCaches", "PreloadQueueFull/400", 400),
        ("DescribeVodRefreshTasks", "Throttling", 503),
        ("GetVideoInfo", "InternalError", 500),
    ];
    let call = |action: &'static str| {
        let mut params = match action {
            "RefreshVodObjectCaches" | "PreloadVodObjectCaches" => {
                url_params(action, &["a.example.com/1.png"], None)
            }
            _ => common(action, T0),
        };
        params.insert("VideoId".to_owned(), "v1".to_owned());
        params
    };
    for (action, spec, status) in table {
        let faults = Faults {
            fail_next: 2,
            fail_action: Some(action.to_owned()),
            error_code: spec.to_owned(),
            ..Faults::default()
        };
        // Set over HTTP, as a test of another process would.
        let put = http()
            .put(format!("{}/_sim/faults", sim.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 200);
        let quota = sim.quota();
        let tasks = sim.tasks().len();
        let code = spec.split('/').next().unwrap();
        // Another action passes meanwhile.
        let other = send(&sim, "POST", &common("DescribeVodRefreshQuota", T0)).await;
        assert_eq!(other.status, 200, "{}", other.body);
        for n in 0..2 {
            let answer = send(&sim, "POST", &call(action)).await;
            assert_eq!(
                (answer.status, answer.code()),
                (status, code),
                "{action} {spec} #{n}: {}",
                answer.body
            );
            assert!(
                answer.body["Message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert_eq!(
            sim.quota(),
            quota,
            "{action}: an injected error takes no quota"
        );
        assert_eq!(sim.tasks().len(), tasks, "{action}: and creates no task");
        let third = send(&sim, "POST", &call(action)).await;
        assert_eq!(third.status, 200, "{action}: {}", third.body);
        let recorded = sim.calls();
        let codes: Vec<Option<&str>> = recorded
            .iter()
            .rev()
            .take(3)
            .map(|c| c.code.as_deref())
            .collect();
        assert_eq!(codes, [None, Some(code), Some(code)]);
    }
    let messages = [
        ("QuotaPerMinuteExceeded.Refresh", "RefreshVodObjectCaches"),
        ("TooMany.Refresh", "RefreshVodObjectCaches"),
        ("PreloadQueueFull", "PreloadVodObjectCaches"),
    ];
    for (code, action) in messages {
        sim.set_faults(Faults {
            fail_next: 1,
            fail_action: Some(action.to_owned()),
            error_code: code.to_owned(),
            ..Faults::default()
        });
        let answer = send(&sim, "POST", &call(action)).await;
        let message = answer.body["Message"].as_str().unwrap();
        assert!(!message.starts_with("Injected"), "{code}: {message}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn url_calls_are_recorded_with_their_urls_and_object_type() {
    let sim = fixed_sim(SimConfig::default()).await;
    purge(
        &sim,
        &["a.example.com/1.png", "", "b.example.com/2.png"],
        None,
    )
    .await;
    purge(&sim, &["a.example.com/d/"], Some("directory")).await;
    preload(&sim, &["a.example.com/3.mp4"]).await;
    let refused = purge(&sim, &["a.example.com/x"], Some("Regex")).await;
    assert_eq!(refused.code(), "InvalidObjectType.Malformed");
    let calls: Vec<RecordedCall> = http()
        .get(format!("{}/_sim/calls", sim.base_url()))
        .send_json()
        .await;
    let seen: Vec<(&str, Vec<&str>, Option<&str>, u16)> = calls
        .iter()
        .map(|c| {
            (
                c.action.as_str(),
                c.object_paths.iter().map(String::as_str).collect(),
                c.object_type.as_deref(),
                c.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "RefreshVodObjectCaches",
                vec!["a.example.com/1.png", "b.example.com/2.png"],
                Some("File"),
                200
            ),
            (
                "RefreshVodObjectCaches",
                vec!["a.example.com/d/"],
                Some("directory"),
                200
            ),
            (
                "PreloadVodObjectCaches",
                vec!["a.example.com/3.mp4"],
                None,
                200
            ),
            (
                "RefreshVodObjectCaches",
                vec!["a.example.com/x"],
                Some("Regex"),
                400
            ),
        ]
    );
    assert_eq!(
        calls[0].params["ObjectPath"],
        "a.example.com/1.png\n\nb.example.com/2.png"
    );
    // The tasks over HTTP, as a test of another process reads them.
    let tasks: Vec<CdnTask> = http()
        .get(format!("{}/_sim/tasks", sim.base_url()))
        .send_json()
        .await;
    assert_eq!(tasks, sim.tasks());
    let paths: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t.object_path.as_str(), t.object_type.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("a.example.com/1.png", "file"),
            ("b.example.com/2.png", "file"),
            ("a.example.com/d/", "directory"),
            ("a.example.com/3.mp4", "preload"),
        ]
    );
    sim.stop().await;
}
