//! The operations the simulator serves, after the gateway checks have passed: the media ones
//! here (`RefreshMediaPlayUrls`, `GetMediaRefreshJobs`, `GetVideoInfo`,
//! `DescribeVodRefreshQuota`), the URL ones in `urls.rs`.
//!
//! Value checks follow `vod-api.md` §8 item 8. Where the real service's behaviour is unknown the
//! simulator picks the stricter reading and says so: `Formats` and `StreamType` are compared
//! case-insensitively, empty values mean "not given", `Definitions` is not checked (its full
//! value list is not documented), and a call whose IDs are all unknown still creates an (empty)
//! job.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::ledger::{JobItem, Pool};
use super::reply::ApiError;
use super::state::{SimState, lock};
use super::tasks::{NewTask, TaskKind};
use super::urls;

const FORMATS: [&str; 6] = ["mp4", "m3u8", "mp3", "flv", "webm", "ts"];
const STREAM_TYPES: [&str; 2] = ["video", "audio"];
const MAX_IDS: usize = 20;

/// Runs `action` for an authenticated caller; the `RequestId` is added by the caller.
pub fn dispatch(
    state: &SimState,
    method: &str,
    action: &str,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    match action {
        "RefreshMediaPlayUrls" => refresh_media_play_urls(state, access_key_id, params),
        // The metadata declares GET only for this one; the simulator enforces it so that a client
        // using POST finds out here rather than in production.
        "GetMediaRefreshJobs" if method != "GET" => Err(ApiError::new(
            400,
            "UnsupportedHTTPMethod",
            "This http method is not supported.",
        )),
        "GetMediaRefreshJobs" => get_media_refresh_jobs(state, access_key_id, params),
        "DescribeVodRefreshQuota" => describe_vod_refresh_quota(state, access_key_id),
        "RefreshVodObjectCaches" => urls::refresh_object_caches(state, access_key_id, params),
        "PreloadVodObjectCaches" => urls::preload_object_caches(state, access_key_id, params),
        "DescribeVodRefreshTasks" => urls::describe_refresh_tasks(state, access_key_id, params),
        "GetVideoInfo" => get_video_info(state, params),
        _ => Err(ApiError::new(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}

/// `MediaIds` split at commas with spaces trimmed, as the recorder and the validator read it.
pub fn split_media_ids(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A parameter that is absent or empty counts as not given.
pub(super) fn given<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn check_list(
    params: &BTreeMap<String, String>,
    name: &str,
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let Some(raw) = given(params, name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|item| {
            let item = item.trim().to_ascii_lowercase();
            if allowed.contains(&item.as_str()) {
                Ok(item)
            } else {
                Err(ApiError::invalid(format!(
                    "The specified parameter \"{name}\" contains an invalid value {item:?}."
                )))
            }
        })
        .collect()
}

/// What VOD accepts as a video ID: 1 to 64 of `A-Z a-z 0-9 _ -`.
fn well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// UTC `yyyy-MM-ddTHH:mm:ssZ`, the form of every time VOD answers with.
pub(super) fn gmt(now_secs: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(now_secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn refresh_media_play_urls(
    state: &SimState,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let raw_ids = given(params, "MediaIds").ok_or_else(|| ApiError::missing("MediaIds"))?;
    if raw_ids.split(',').any(|id| id.trim().is_empty()) {
        return Err(ApiError::invalid(
            "The specified parameter \"MediaIds\" contains an empty ID.",
        ));
    }
    let ids = split_media_ids(raw_ids);
    if ids.len() > MAX_IDS {
        return Err(ApiError::invalid(format!(
            "The specified parameter \"MediaIds\" has {} IDs; at most {MAX_IDS} are allowed.",
            ids.len()
        )));
    }
    let task_type = given(params, "TaskType").ok_or_else(|| ApiError::missing("TaskType"))?;
    if !matches!(task_type, "Refresh" | "Preload") {
        return Err(ApiError::invalid(format!(
            "The specified parameter \"TaskType\" is not valid: {task_type:?}; expected Refresh or Preload."
        )));
    }
    let formats = check_list(params, "Formats", &FORMATS)?;
    check_list(params, "StreamType", &STREAM_TYPES)?;
    let result_type = given(params, "ResultType").unwrap_or("Single");
    if !matches!(result_type, "Single" | "Multiple") {
        return Err(ApiError::invalid(
            "The specified parameter \"ResultType\" must be Single or Multiple.",
        ));
    }
    let slice_flag = match given(params, "SliceFlag") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "The specified parameter \"SliceFlag\" must be true or false.",
            ));
        }
    };
    let slice_count = match given(params, "SliceCount") {
        None => 5,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=20).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "The specified parameter \"SliceCount\" must be an integer from 1 to 20.",
                ));
            }
        },
    };
    let user_data = given(params, "UserData");
    if let Some(text) = user_data
        && !serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
    {
        return Err(ApiError::invalid(
            "The specified parameter \"UserData\" must be a JSON object.",
        ));
    }

    let mut seen = HashSet::new();
    let (mut ok, mut non_exist, mut forbidden) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
        if !well_formed(id) || state.nonexistent.contains(id) {
            non_exist.push(id.clone());
        } else if state.forbidden.contains(id) {
            forbidden.push(id.clone());
        } else {
            ok.push(id.clone());
        }
    }

    let now = state.clock.now_secs();
    let preload = task_type == "Preload";
    let units = u64::try_from(ok.len()).unwrap_or(u64::MAX);
    let (quota_code, kind) = if preload {
        ("QuotaExceeded.Preload", "preload")
    } else {
        ("QuotaExceeded.Refresh", "refresh")
    };
    let quota_message = format!("The {kind} quota of the day has been used up.");
    // In per-ID mode the IDs past what is left are accepted and reported failed later.
    // A refresh draws from the URL pool, which `RefreshVodObjectCaches` draws from too.
    // Each account draws from its own pools.
    let pool = if preload { Pool::Preload } else { Pool::Url };
    let owner = state.account_of(access_key_id);
    let within_quota = if state.quota_per_id {
        usize::try_from(lock(&state.quota).of(&owner).take_up_to(pool, units, now))
            .unwrap_or(usize::MAX)
    } else if lock(&state.quota).of(&owner).take(pool, units, now) {
        ok.len()
    } else {
        return Err(ApiError::new(400, quota_code, quota_message));
    };

    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let definitions: Vec<String> = given(params, "Definitions")
        .map(|d| {
            d.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec!["HD".to_owned()]);
    let formats = if formats.is_empty() {
        vec!["mp4".to_owned(), "m3u8".to_owned()]
    } else {
        formats
    };
    let filter_policy = json!({
        "Formats": given(params, "Formats").unwrap_or(""),
        "Definitions": given(params, "Definitions").unwrap_or(""),
        "StreamType": given(params, "StreamType").unwrap_or(""),
        "ResultType": result_type,
        "SliceFlag": slice_flag,
        "SliceCount": slice_count,
    })
    .to_string();
    let failing_now = lock(&state.faults).failing_submissions.clone();
    let host = play_host(state);
    // Each media ID's submission: its failure, or the play URLs it submitted.
    let submissions: Vec<Submission<'_>> = ok
        .iter()
        .enumerate()
        .map(|(position, media_id)| {
            let failure = if position >= within_quota {
                Some((quota_code, quota_message.as_str()))
            } else {
                (state.failing.contains(media_id) || failing_now.contains(media_id))
                    .then(|| submission_failure(task_type))
            };
            // A failed submission submitted no URL.
            let definitions = if failure.is_some() {
                &[][..]
            } else {
                &definitions[..]
            };
            let urls: Vec<String> = definitions
                .iter()
                .flat_map(|d| {
                    formats
                        .iter()
                        .map(move |f| format!("https://{host}/{media_id}/{d}.{f}"))
                })
                .collect();
            (media_id, failure, urls)
        })
        .collect();
    // One CDN task per submitted play URL, each with an ID of its own.
    let entries: Vec<NewTask> = {
        let mut faults = lock(&state.faults);
        submissions
            .iter()
            .flat_map(|(_, _, urls)| urls)
            .map(|url| NewTask {
                failure: faults.task_failure(url),
                path: url.clone(),
                host: host.to_owned(),
            })
            .collect()
    };
    let kind = if preload {
        TaskKind::Preload
    } else {
        TaskKind::File
    };
    let ids = lock(&state.tasks).create(&owner, kind, state.clock.now_ms(), entries, false);
    let mut ids = ids.into_iter();
    let items = submissions
        .into_iter()
        .map(|(media_id, failure, urls)| {
            let task_ids: Vec<String> = ids
                .by_ref()
                .take(urls.len())
                .map(|id| id.to_string())
                .collect();
            JobItem {
                media_refresh_job_id: job_id.clone(),
                media_id: media_id.clone(),
                task_type: task_type.to_owned(),
                status: if failure.is_some() { "fail" } else { "success" }.to_owned(),
                error_code: failure.map(|(code, _)| code.to_owned()),
                error_message: failure.map(|(_, message)| message.to_owned()),
                filter_policy: filter_policy.clone(),
                success_play_urls: urls.join(","),
                task_ids: task_ids.join(","),
                user_data: user_data.map(str::to_owned),
                gmt_create: gmt(now),
                gmt_modified: gmt(now),
            }
        })
        .collect();
    lock(&state.jobs).insert(job_id.clone(), owner, items);

    Ok(json!({
        "MediaRefreshJobId": job_id,
        "NonExistMediaIds": non_exist.join(","),
        "ForbiddenMediaIds": forbidden.join(","),
    }))
}

/// The bucket an action's calls count against: each known action has its own, every other name
/// shares one (so that invented names cannot grow the limiter without bound).
pub fn rate_group(action: &str) -> &str {
    match action {
        "RefreshMediaPlayUrls"
        | "GetMediaRefreshJobs"
        | "DescribeVodRefreshQuota"
        | "RefreshVodObjectCaches"
        | "PreloadVodObjectCaches"
        | "DescribeVodRefreshTasks"
        | "GetVideoInfo" => action,
        _ => "other",
    }
}

/// The calls limited by `url_qps` rather than `qps`.
pub fn is_url_call(action: &str) -> bool {
    matches!(action, "RefreshVodObjectCaches" | "PreloadVodObjectCaches")
}

/// The host of the play URLs of media jobs: the account's first CDN domain, or the simulator's
/// own name when none is configured (as before there were domains).
fn play_host(state: &SimState) -> &str {
    state
        .cdn_domains
        .first()
        .map_or("vod-sim.example.com", String::as_str)
}

/// The host of the covers and snapshots `GetVideoInfo` answers with.
fn media_host(state: &SimState) -> &str {
    state
        .cdn_domains
        .first()
        .map_or("cdn.example.com", String::as_str)
}

/// One media ID's submission: the ID, its failure (code, message) if it failed, and the play
/// URLs it submitted (none when it failed).
type Submission<'a> = (&'a String, Option<(&'a str, &'a str)>, Vec<String>);

/// The error a failing media ID's submission reports, by task (codes from `vod-api.md` §6.2).
fn submission_failure(task_type: &str) -> (&'static str, &'static str) {
    if task_type == "Preload" {
        (
            "PreloadQueueFull",
            "Preload queue is full, please try again later!",
        )
    } else {
        ("TooMany.Refresh", "The refresh queue is full.")
    }
}

fn get_media_refresh_jobs(
    state: &SimState,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let job_id =
        given(params, "MediaRefreshJobId").ok_or_else(|| ApiError::missing("MediaRefreshJobId"))?;
    let owner = state.account_of(access_key_id);
    let items = lock(&state.jobs).items(job_id, &owner, given(params, "MediaId"));
    Ok(json!({ "MediaRefreshJobs": items }))
}

/// `DescribeVodRefreshQuota`: the pools of the caller's account.
fn describe_vod_refresh_quota(state: &SimState, access_key_id: &str) -> Result<Value, ApiError> {
    let now = state.clock.now_secs();
    let owner = state.account_of(access_key_id);
    let mut book = lock(&state.quota);
    let quota = book.of(&owner);
    // All strings on the wire, and `blockRemain` really is lower-case. Nothing the simulator
    // does takes from the block quota.
    Ok(json!({
        "UrlQuota": quota.refresh_quota.to_string(),
        "UrlRemain": quota.left(Pool::Url, now).to_string(),
        "DirQuota": quota.dir_quota.to_string(),
        "DirRemain": quota.left(Pool::Dir, now).to_string(),
        "PreloadQuota": quota.preload_quota.to_string(),
        "PreloadRemain": quota.left(Pool::Preload, now).to_string(),
        "BlockQuota": quota.block_quota.to_string(),
        "blockRemain": quota.block_quota.to_string(),
    }))
}

/// When every video of the simulator was created: a fixed instant, so answers do not depend on
/// when the simulator started.
const VIDEO_CREATION_TIME: &str = "2025-01-01T00:00:00Z";

/// `GetVideoInfo`: every well-formed ID not listed as nonexistent is a normal video with a
/// cover and two snapshots on the account's first CDN domain (`vod-api.md` §2.5).
fn get_video_info(state: &SimState, params: &BTreeMap<String, String>) -> Result<Value, ApiError> {
    let video_id = given(params, "VideoId")
        .ok_or_else(|| ApiError::missing("VideoId"))?
        .trim();
    if !well_formed(video_id) || state.nonexistent.contains(video_id) {
        return Err(ApiError::new(
            404,
            "InvalidVideo.NotFound",
            format!("The video {video_id:?} does not exist."),
        ));
    }
    let host = media_host(state);
    Ok(json!({
        "Video": {
            "VideoId": video_id,
            "Title": format!("Video {video_id}"),
            "Status": "Normal",
            "Duration": 120.5,
            "CoverURL": format!("https://{host}/{video_id}/cover.jpg"),
            "Snapshots": {
                "Snapshot": [
                    format!("https://{host}/{video_id}/snapshots/1.jpg"),
                    format!("https://{host}/{video_id}/snapshots/2.jpg"),
                ],
            },
            "CreationTime": VIDEO_CREATION_TIME,
        },
    }))
}
