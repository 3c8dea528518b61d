//! CDN tasks: their lifecycle on the simulator's clock, failures, the task IDs of media jobs,
//! and `DescribeVodRefreshTasks` (parameters, time window, paging, filters, accounts).

use std::time::Duration;

use super::urls::{id_list, preload, purge};
use super::*;
#[allow(unused_imports)]
use crate::support::{SendJson, wait_until};
use vod_purge::sim::CdnTask;

/// `DescribeVodRefreshTasks` by `testid` at `at` (epoch seconds), with `pairs` added.
async fn describe_at(sim: &SimHandle, pairs: &[(&str, &str)], at: i64) -> Answer {
    let mut params = common("DescribeVodRefreshTasks", at);
    for (name, value) in pairs {
        params.insert((*name).to_owned(), (*value).to_owned());
    }
    send(sim, "POST", &params).await
}

async fn describe(sim: &SimHandle, pairs: &[(&str, &str)]) -> Answer {
    describe_at(sim, pairs, T0).await
}

/// The tasks of an answer, checking its shape.
fn listed(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut keys: Vec<&str> = answer
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["PageNumber", "PageSize", "RequestId", "Tasks", "TotalCount"]
    );
    let tasks = answer.body["Tasks"]["Task"].as_array().unwrap().clone();
    for task in &tasks {
        let mut keys: Vec<&str> = task
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "CreationTime",
                "Description",
                "ObjectPath",
                "ObjectType",
                "Process",
                "Status",
                "TaskId"
            ]
        );
        assert!(task.as_object().unwrap().values().all(Value::is_string));
    }
    tasks
}

fn total(answer: &Answer) -> u64 {
    answer.body["TotalCount"].as_u64().unwrap()
}

fn field<'a>(tasks: &'a [Value], name: &str) -> Vec<&'a str> {
    tasks.iter().map(|t| t[name].as_str().unwrap()).collect()
}

#[tokio::test]
async fn tasks_move_from_pending_to_refreshing_to_complete_on_the_clock() {
    let sim = fixed_sim(SimConfig::default()).await;
    let paths = ["a.example.com/1.png", "a.example.com/2.png"];
    let ids = id_list(&purge(&sim, &paths, None).await, "RefreshTaskId");
    assert_eq!(ids.len(), 1);
    let table = [
        (0, "Pending", "0%"),
        (99, "Pending", "0%"),
        (100, "Refreshing", "50%"),
        (299, "Refreshing", "50%"),
        (300, "Complete", "100%"),
        (3_600_000, "Complete", "100%"),
    ];
    for (ms, status, process) in table {
        sim.set_clock_ms(Some(T0 * 1000 + ms));
        let answer = describe_at(&sim, &[("TaskId", &ids[0])], T0 + ms / 1000).await;
        let tasks = listed(&answer);
        assert_eq!(total(&answer), 2, "+{ms} ms");
        assert_eq!(field(&tasks, "Status"), [status, status], "+{ms} ms");
        assert_eq!(field(&tasks, "Process"), [process, process], "+{ms} ms");
        assert_eq!(field(&tasks, "ObjectPath"), paths);
        assert_eq!(field(&tasks, "TaskId"), [ids[0].as_str(), ids[0].as_str()]);
        assert_eq!(field(&tasks, "ObjectType"), ["file", "file"]);
        assert_eq!(
            field(&tasks, "CreationTime"),
            ["2025-01-15T08:30:00Z", "2025-01-15T08:30:00Z"]
        );
        assert_eq!(field(&tasks, "Description"), ["", ""]);
        let seen: Vec<String> = sim.tasks().into_iter().map(|t| t.status).collect();
        assert_eq!(seen, [status, status], "the simulator's own view agrees");
    }
    sim.stop().await;

    // The durations are configurable.
    let sim = fixed_sim(SimConfig {
        task_refreshing_after: Duration::from_secs(2),
        task_complete_after: Duration::from_secs(10),
        ..SimConfig::default()
    })
    .await;
    purge(&sim, &paths[..1], None).await;
    let mut seen = Vec::new();
    for ms in [1_999, 2_000, 9_999, 10_000] {
        sim.set_clock_ms(Some(T0 * 1000 + ms));
        seen.push(sim.tasks()[0].status.clone());
    }
    assert_eq!(seen, ["Pending", "Refreshing", "Refreshing", "Complete"]);
    sim.stop().await;
}

/// On a running clock a task completes by itself: a client polling for it sees it move forward,
/// never back.
#[tokio::test]
async fn tasks_complete_on_a_running_clock() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let mut params = super::urls::url_params("RefreshVodObjectCaches", &["a.example.com/1"], None);
    params.insert("Timestamp".to_owned(), iso(now_secs()));
    let ids = id_list(&send(&sim, "POST", &params).await, "RefreshTaskId");
    let order = ["Pending", "Refreshing", "Complete"];
    let last = std::cell::Cell::new(0);
    let (sim_ref, last_ref, id) = (&sim, &last, ids[0].as_str());
    wait_until(
        Duration::from_secs(10),
        "the task complete",
        || async move {
            let answer = describe_at(sim_ref, &[("TaskId", id)], now_secs()).await;
            let tasks = listed(&answer);
            let status = tasks[0]["Status"].as_str().unwrap();
            let at = order
                .iter()
                .position(|s| *s == status)
                .unwrap_or_else(|| panic!("{status}"));
            assert!(
                at >= last_ref.get(),
                "{status} after {}",
                order[last_ref.get()]
            );
            last_ref.set(at);
            status == "Complete"
        },
    )
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn failed_tasks_end_failed_with_their_description() {
    let sim = fixed_sim(SimConfig::default()).await;
    let put = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"fail_tasks": [
            {"pattern": ".m3u8", "times": 1, "description": "Origin Return StatusCode 5XX"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    sim.fail_tasks("/bad/", 2, None);
    assert_eq!(sim.faults().fail_tasks.len(), 2);

    let paths = [
        "a.example.com/bad/1.png",
        "a.example.com/good/1.png",
        "a.example.com/bad/2.png",
        "a.example.com/bad/3.png",
    ];
    let ids = id_list(&purge(&sim, &paths, None).await, "RefreshTaskId");
    sim.set_clock_ms(Some(T0 * 1000 + 150));
    let tasks = listed(&describe(&sim, &[("TaskId", &ids[0])]).await);
    assert_eq!(
        field(&tasks, "Status"),
        ["Refreshing"; 4],
        "a failing task looks like any other until it ends"
    );
    assert_eq!(field(&tasks, "Description"), [""; 4]);
    sim.set_clock_ms(Some(T0 * 1000 + 300));
    let tasks = listed(&describe(&sim, &[("TaskId", &ids[0])]).await);
    // Same creation time and ID: ordered by path.
    let rows: Vec<(&str, &str, &str, &str)> = tasks
        .iter()
        .map(|t| {
            (
                t["ObjectPath"].as_str().unwrap(),
                t["Status"].as_str().unwrap(),
                t["Process"].as_str().unwrap(),
                t["Description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a.example.com/bad/1.png", "Failed", "0%", "Origin Timeout"),
            ("a.example.com/bad/2.png", "Failed", "0%", "Origin Timeout"),
            ("a.example.com/bad/3.png", "Complete", "100%", ""),
            ("a.example.com/good/1.png", "Complete", "100%", ""),
        ]
    );
    let left: Vec<String> = sim
        .faults()
        .fail_tasks
        .into_iter()
        .map(|f| f.pattern)
        .collect();
    assert_eq!(left, [".m3u8"], "the used-up entry is gone");

    // The play URLs of a media job fail the same way.
    let mut params = refresh_params(&["m1"], T0);
    params.insert("Formats".to_owned(), "mp4,m3u8".to_owned());
    let job = send(&sim, "POST", &params).await;
    assert_eq!(job.status, 200, "{}", job.body);
    let mut poll = common("GetMediaRefreshJobs", T0);
    poll.insert(
        "MediaRefreshJobId".to_owned(),
        job.body["MediaRefreshJobId"].as_str().unwrap().to_owned(),
    );
    let jobs = send(&sim, "GET", &poll).await;
    let item = &jobs.body["MediaRefreshJobs"][0];
    assert_eq!(item["Status"], "success", "the submission itself succeeded");
    let urls: Vec<&str> = item["SuccessPlayUrls"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    let task_ids: Vec<&str> = item["TaskIds"].as_str().unwrap().split(',').collect();
    assert_eq!(urls.len(), 2);
    sim.set_clock_ms(Some(T0 * 1000 + 600));
    for (url, task_id) in urls.iter().zip(&task_ids) {
        let tasks = listed(&describe(&sim, &[("TaskId", task_id)]).await);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["ObjectPath"], *url);
        let want = if url.ends_with(".m3u8") {
            ("Failed", "Origin Return StatusCode 5XX")
        } else {
            ("Complete", "")
        };
        assert_eq!(
            (
                tasks[0]["Status"].as_str().unwrap(),
                tasks[0]["Description"].as_str().unwrap()
            ),
            want,
            "{url}"
        );
    }
    assert!(sim.faults().fail_tasks.is_empty());

    let failed = describe(&sim, &[("ObjectType", "file"), ("Status", "Failed")]).await;
    assert_eq!(total(&failed), 3, "{}", failed.body);
    let complete = describe(&sim, &[("ObjectType", "file"), ("Status", "Complete")]).await;
    assert_eq!(total(&complete), 3, "{}", complete.body);
    sim.stop().await;
}

#[tokio::test]
async fn task_ids_of_media_jobs_resolve_to_their_play_urls() {
    let sim = fixed_sim(SimConfig {
        cdn_domains: vec!["media.example.com".to_owned()],
        nonexistent: vec!["gone".to_owned()],
        failing: vec!["stuck".to_owned()],
        ..SimConfig::default()
    })
    .await;
    let mut params = refresh_params(&["m1", "m2", "gone", "stuck"], T0);
    params.insert("Formats".to_owned(), "mp4,m3u8".to_owned());
    params.insert("Definitions".to_owned(), "HD,SD".to_owned());
    let job = send(&sim, "POST", &params).await;
    assert_eq!(job.status, 200, "{}", job.body);
    let mut poll = common("GetMediaRefreshJobs", T0);
    poll.insert(
        "MediaRefreshJobId".to_owned(),
        job.body["MediaRefreshJobId"].as_str().unwrap().to_owned(),
    );
    let jobs = send(&sim, "GET", &poll).await;
    let items = jobs.body["MediaRefreshJobs"].as_array().unwrap();
    let media: Vec<&str> = items
        .iter()
        .map(|i| i["MediaId"].as_str().unwrap())
        .collect();
    assert_eq!(media, ["m1", "m2", "stuck"]);
    let mut all_ids = Vec::new();
    for item in &items[..2] {
        let urls: Vec<&str> = item["SuccessPlayUrls"]
            .as_str()
            .unwrap()
            .split(',')
            .collect();
        let task_ids: Vec<&str> = item["TaskIds"].as_str().unwrap().split(',').collect();
        assert_eq!(urls.len(), 4, "{item}");
        assert_eq!(
            task_ids.len(),
            urls.len(),
            "one task ID per play URL: {item}"
        );
        for (url, task_id) in urls.iter().zip(&task_ids) {
            assert!(url.starts_with("https://media.example.com/"), "{url}");
            let answer = describe(&sim, &[("TaskId", task_id)]).await;
            let tasks = listed(&answer);
            assert_eq!(total(&answer), 1, "{task_id}");
            assert_eq!(tasks[0]["ObjectPath"], *url);
            assert_eq!(tasks[0]["ObjectType"], "file");
            assert_eq!(tasks[0]["TaskId"], *task_id);
            all_ids.push(task_id.to_string());
        }
    }
    let distinct: std::collections::HashSet<&String> = all_ids.iter().collect();
    assert_eq!(distinct.len(), 8, "every play URL has a task of its own");
    assert_eq!(items[2]["Status"], "fail");
    assert_eq!(
        items[2]["TaskIds"], "",
        "a failed submission created no task"
    );
    assert_eq!(sim.tasks().len(), 8);

    // A preload's play URLs are preload tasks; a play URL can also be purged by URL.
    let mut params = refresh_params(&["m3"], T0);
    params.insert("TaskType".to_owned(), "Preload".to_owned());
    assert_eq!(send(&sim, "POST", &params).await.status, 200);
    let preloads = describe(
        &sim,
        &[
            ("ObjectType", "preload"),
            ("DomainName", "MEDIA.example.com"),
        ],
    )
    .await;
    assert_eq!(total(&preloads), 2, "{}", preloads.body);
    let url = sim.tasks()[0].object_path.clone();
    assert_eq!(purge(&sim, &[&url], None).await.status, 200);
    let by_path = describe(&sim, &[("ObjectPath", &url)]).await;
    assert_eq!(total(&by_path), 2, "the media task and the URL task");
    sim.stop().await;
}

#[tokio::test]
async fn describe_refuses_bad_parameters() {
    let sim = fixed_sim(SimConfig::default()).await;
    let table: [(&[(&str, &str)], &str); 16] = [
        (&[("TaskId", "1,2")], "InvalidTaskId.Malformed"),
        (&[("TaskId", "12a")], "InvalidTaskId.Malformed"),
        (
            &[("ObjectType", "File")],
            "InvalidObjectType.ValueNotSupported",
        ),
        (
            &[("ObjectType", "regex")],
            "InvalidObjectType.ValueNotSupported",
        ),
        (
            &[("ObjectType", "file"), ("Status", "Done")],
            "InvalidStatus.ValueNotSupported",
        ),
        (&[("Status", "Complete")], "MissingParameter.ObjectType"),
        (
            &[("DomainName", "a.example.com")],
            "MissingParameter.ObjectType",
        ),
        (&[("PageSize", "0")], "InvalidParameter"),
        (&[("PageSize", "51")], "InvalidParameter"),
        (&[("PageNumber", "0")], "InvalidParameter"),
        (&[("PageNumber", "one")], "InvalidParameter"),
        (
            &[
                ("StartTime", "2025-01-15T08:00"),
                ("EndTime", "2025-01-15T08:30:00Z"),
            ],
            "InvalidStartTime.Malformed",
        ),
        (
            &[("StartTime", "2025-01-15T08:00:00Z"), ("EndTime", "08:30")],
            "InvalidEndTime.Malformed",
        ),
        (
            &[("StartTime", "2025-01-15T08:00:00Z")],
            "MissingTimeParameter",
        ),
        (
            &[
                ("StartTime", "2025-01-15T08:00:00Z"),
                ("EndTime", "2025-01-15T07:00:00Z"),
            ],
            "InvalidEndTime.Mismatch",
        ),
        (
            &[
                ("StartTime", "2025-01-12T08:29:59Z"),
                ("EndTime", "2025-01-15T08:00:00Z"),
            ],
            "InvalidTime",
        ),
    ];
    for (pairs, code) in table {
        for method in ["GET", "POST"] {
            let mut params = common("DescribeVodRefreshTasks", T0);
            for (name, value) in pairs {
                params.insert((*name).to_owned(), (*value).to_owned());
            }
            let answer = send(&sim, method, &params).await;
            assert_eq!(
                (answer.status, answer.code()),
                (400, code),
                "{method} {pairs:?}: {}",
                answer.body
            );
        }
    }
    let mut params = common("DescribeVodRefreshTasks", T0);
    params.insert("EndTime".to_owned(), "2025-01-15T08:00:00Z".to_owned());
    assert_eq!(
        send(&sim, "GET", &params).await.code(),
        "MissingTimeParameter"
    );

    // What is accepted, over GET too: every documented value, the bounds of the page.
    for pairs in [
        &[("ObjectType", "directory"), ("Status", "Pending")][..],
        &[("ObjectType", "preload"), ("Status", "Refreshing")],
        &[
            ("ObjectType", "file"),
            ("Status", "Failed"),
            ("DomainName", "a.example.com"),
        ],
        &[("PageSize", "50"), ("PageNumber", "42949672")],
        &[("PageSize", "1")],
        &[
            ("StartTime", "2025-01-12T08:30:00Z"),
            ("EndTime", "2025-01-12T08:30:00Z"),
        ],
        &[("TaskId", "123")],
    ] {
        let mut params = common("DescribeVodRefreshTasks", T0);
        for (name, value) in pairs {
            params.insert((*name).to_owned(), (*value).to_owned());
        }
        let answer = send(&sim, "GET", &params).await;
        assert_eq!(answer.status, 200, "{pairs:?}: {}", answer.body);
        assert_eq!(total(&answer), 0);
    }
    sim.stop().await;
}

#[tokio::test]
async fn the_time_window_is_inclusive_and_three_days_deep() {
    let sim = fixed_sim(SimConfig::default()).await;
    let first = id_list(
        &purge(&sim, &["a.example.com/1"], None).await,
        "RefreshTaskId",
    );
    // 999 ms later: still the same second of CreationTime.
    sim.set_clock_ms(Some(T0 * 1000 + 999));
    purge(&sim, &["a.example.com/2"], None).await;
    sim.set_clock(Some(T0 + 10));
    let mut late = super::urls::url_params("RefreshVodObjectCaches", &["a.example.com/3"], None);
    late.insert("Timestamp".to_owned(), iso(T0 + 10));
    let third = id_list(&send(&sim, "POST", &late).await, "RefreshTaskId");
    let window = async |start: i64, end: i64| {
        let (start, end) = (iso(start), iso(end));
        let answer = describe_at(&sim, &[("StartTime", &start), ("EndTime", &end)], T0 + 10).await;
        let tasks = listed(&answer);
        field(&tasks, "ObjectPath")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(window(T0, T0).await, ["a.example.com/2", "a.example.com/1"]);
    assert_eq!(window(T0 + 1, T0 + 10).await, ["a.example.com/3"]);
    assert_eq!(window(T0 + 10, T0 + 10).await, ["a.example.com/3"]);
    assert_eq!(window(T0 + 1, T0 + 9).await, Vec::<String>::new());
    assert_eq!(window(T0 - 60, T0 + 60).await.len(), 3);
    // Three days back from now is the limit.
    let horizon = T0 + 10 - 3 * 86_400;
    assert_eq!(window(horizon, T0 + 10).await.len(), 3);
    let too_old = describe_at(
        &sim,
        &[("StartTime", &iso(horizon - 1)), ("EndTime", &iso(T0))],
        T0 + 10,
    )
    .await;
    assert_eq!((too_old.status, too_old.code()), (400, "InvalidTime"));

    // Three days on, the first tasks have left the window, even asked for by ID.
    let later = T0 + 3 * 86_400 + 5;
    sim.set_clock(Some(later));
    let answer = describe_at(&sim, &[], later).await;
    assert_eq!(field(&listed(&answer), "TaskId"), [third[0].as_str()]);
    let by_id = describe_at(&sim, &[("TaskId", &first[0])], later).await;
    assert_eq!(total(&by_id), 0);
    sim.stop().await;
}

#[tokio::test]
async fn tasks_are_listed_newest_first_in_pages() {
    let sim = fixed_sim(SimConfig::default()).await;
    let one: Vec<String> = (0..30)
        .map(|i| format!("a.example.com/p1/{i:02}"))
        .collect();
    let two: Vec<String> = (0..30)
        .map(|i| format!("a.example.com/p2/{i:02}"))
        .collect();
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // Sent in reverse order: within one task the rows are ordered by path all the same.
    let mut reversed = refs(&one);
    reversed.reverse();
    let first = id_list(&purge(&sim, &reversed, None).await, "RefreshTaskId");
    sim.set_clock_ms(Some(T0 * 1000 + 1000));
    let second = id_list(&purge(&sim, &refs(&two), None).await, "RefreshTaskId");

    let default = describe(&sim, &[]).await;
    let tasks = listed(&default);
    assert_eq!(
        (
            default.body["PageNumber"].as_u64(),
            default.body["PageSize"].as_u64(),
            total(&default)
        ),
        (Some(1), Some(20), 60)
    );
    assert_eq!(field(&tasks, "ObjectPath"), refs(&two[..20]));

    let page1 = describe(&sim, &[("PageSize", "50")]).await;
    let page2 = describe(&sim, &[("PageSize", "50"), ("PageNumber", "2")]).await;
    let page3 = describe(&sim, &[("PageSize", "50"), ("PageNumber", "3")]).await;
    assert_eq!((total(&page1), total(&page2), total(&page3)), (60, 60, 60));
    assert_eq!(page2.body["PageNumber"], 2);
    assert_eq!(page2.body["PageSize"], 50);
    let (tasks1, tasks2) = (listed(&page1), listed(&page2));
    assert!(listed(&page3).is_empty());
    let mut want = refs(&two);
    want.extend(refs(&one));
    assert_eq!(field(&tasks1, "ObjectPath"), want[..50]);
    assert_eq!(field(&tasks2, "ObjectPath"), want[50..]);
    assert_eq!(field(&tasks2, "TaskId"), [first[0].as_str(); 10]);
    assert_eq!(field(&tasks1, "TaskId")[0], second[0]);

    let by_id = describe(&sim, &[("TaskId", &first[0]), ("PageSize", "50")]).await;
    assert_eq!(total(&by_id), 30);
    assert_eq!(listed(&by_id).len(), 30);
    let exact = describe(&sim, &[("ObjectPath", "a.example.com/p1/07")]).await;
    assert_eq!(field(&listed(&exact), "TaskId"), [first[0].as_str()]);
    for other in [
        "http://a.example.com/p1/07",
        "a.example.com/p1/0",
        "a.example.com/P1/07",
    ] {
        assert_eq!(
            total(&describe(&sim, &[("ObjectPath", other)]).await),
            0,
            "{other}"
        );
    }
    let domain =
        async |name: &str| describe(&sim, &[("ObjectType", "file"), ("DomainName", name)]).await;
    assert_eq!(total(&domain("a.example.com").await), 60);
    assert_eq!(total(&domain("b.example.com").await), 0);
    assert_eq!(
        total(&describe(&sim, &[("ObjectType", "directory")]).await),
        0
    );

    // 150 ms after the second call: its tasks are refreshing, the first call's complete.
    sim.set_clock_ms(Some(T0 * 1000 + 1150));
    let status =
        async |name: &str| describe(&sim, &[("ObjectType", "file"), ("Status", name)]).await;
    let refreshing = status("Refreshing").await;
    assert_eq!(total(&refreshing), 30);
    assert_eq!(field(&listed(&refreshing), "TaskId")[0], second[0]);
    let complete = status("Complete").await;
    assert_eq!(total(&complete), 30);
    assert_eq!(field(&listed(&complete), "TaskId")[0], first[0]);
    assert_eq!(total(&status("Pending").await), 0);
    sim.stop().await;
}

#[tokio::test]
async fn tasks_are_private_to_their_account() {
    let sim = fixed_sim(SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account::new("otherid", "testsecret"),
        ],
        ..SimConfig::default()
    })
    .await;
    let as_other = |mut params: BTreeMap<String, String>| {
        params.insert("AccessKeyId".to_owned(), "otherid".to_owned());
        params
    };
    let mine = id_list(
        &purge(&sim, &["a.example.com/mine"], None).await,
        "RefreshTaskId",
    );
    let theirs = id_list(
        &send(
            &sim,
            "POST",
            &as_other(super::urls::url_params(
                "RefreshVodObjectCaches",
                &["a.example.com/theirs"],
                None,
            )),
        )
        .await,
        "RefreshTaskId",
    );
    let list_as_other = |pairs: &[(&str, &str)]| {
        let mut params = as_other(common("DescribeVodRefreshTasks", T0));
        for (name, value) in pairs {
            params.insert((*name).to_owned(), (*value).to_owned());
        }
        params
    };
    let theirs_seen = send(&sim, "POST", &list_as_other(&[])).await;
    assert_eq!(field(&listed(&theirs_seen), "TaskId"), [theirs[0].as_str()]);
    let peek = send(&sim, "POST", &list_as_other(&[("TaskId", &mine[0])])).await;
    assert_eq!(total(&peek), 0, "another account's task ID finds nothing");
    let peek = send(
        &sim,
        "POST",
        &list_as_other(&[("ObjectPath", "a.example.com/mine")]),
    )
    .await;
    assert_eq!(total(&peek), 0);
    let mine_seen = describe(&sim, &[]).await;
    assert_eq!(field(&listed(&mine_seen), "TaskId"), [mine[0].as_str()]);
    let owners: Vec<String> = sim.tasks().into_iter().map(|t: CdnTask| t.owner).collect();
    assert_eq!(owners, ["testid", "otherid"]);
    // Preloads too.
    let pre = id_list(&preload(&sim, &["a.example.com/p"]).await, "PreloadTaskId");
    let peek = send(&sim, "POST", &list_as_other(&[("TaskId", &pre[0])])).await;
    assert_eq!(total(&peek), 0);
    sim.stop().await;
}
