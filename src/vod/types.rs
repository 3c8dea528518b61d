//! Typed requests and responses of the three VOD operations the service uses.
//!
//! On the wire every parameter and most response fields are strings, lists are comma-separated
//! and quota numbers are quoted; these types give callers vectors and integers instead, and
//! tolerate missing optional fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::VodError;
use crate::domain::{PurgeOptions, TaskType};

/// The documented maximum number of media IDs in one `RefreshMediaPlayUrls` call.
pub const MAX_MEDIA_IDS: usize = 20;

/// One `RefreshMediaPlayUrls` call. Empty lists and `None` leave the parameter out, which VOD
/// reads as "all" (formats, definitions, stream types) or as its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRequest {
    pub media_ids: Vec<String>,
    pub task_type: TaskType,
    pub formats: Vec<String>,
    pub definitions: Vec<String>,
    pub stream_type: Vec<String>,
    pub result_type: Option<String>,
    pub slice_flag: Option<bool>,
    /// Only sent when `slice_flag` is `Some(true)`.
    pub slice_count: Option<u32>,
    /// JSON text.
    pub user_data: Option<String>,
}

impl RefreshRequest {
    /// A request with every option left to VOD's defaults.
    pub fn new(media_ids: Vec<String>, task_type: TaskType) -> RefreshRequest {
        RefreshRequest {
            media_ids,
            task_type,
            formats: Vec::new(),
            definitions: Vec::new(),
            stream_type: Vec::new(),
            result_type: None,
            slice_flag: None,
            slice_count: None,
            user_data: None,
        }
    }

    /// A request carrying a normalised option set. `ResultType` and `SliceFlag` are always sent so
    /// the call does not depend on VOD's defaults; `SliceCount` only with `SliceFlag=true`.
    pub fn from_options(
        media_ids: Vec<String>,
        task_type: TaskType,
        opts: &PurgeOptions,
    ) -> RefreshRequest {
        RefreshRequest {
            media_ids,
            task_type,
            formats: opts.formats.iter().cloned().collect(),
            definitions: opts.definitions.iter().cloned().collect(),
            stream_type: opts.stream_types.iter().cloned().collect(),
            result_type: Some(opts.result_type().to_owned()),
            slice_flag: Some(opts.slice_flag),
            slice_count: opts.slice_flag.then_some(opts.slice_count),
            user_data: opts.user_data.clone(),
        }
    }

    /// The operation parameters (common ones are added by the client). Refuses an empty list,
    /// more than 20 IDs, and IDs that are empty or contain a comma or whitespace.
    pub fn to_params(&self) -> Result<BTreeMap<String, String>, VodError> {
        if self.media_ids.is_empty() || self.media_ids.len() > MAX_MEDIA_IDS {
            return Err(VodError::InvalidRequest(format!(
                "RefreshMediaPlayUrls takes 1 to {MAX_MEDIA_IDS} media IDs, got {}",
                self.media_ids.len()
            )));
        }
        if let Some(bad) = self
            .media_ids
            .iter()
            .find(|id| id.is_empty() || id.chars().any(|c| c == ',' || c.is_whitespace()))
        {
            return Err(VodError::InvalidRequest(format!(
                "media ID {bad:?} is empty or contains a separator"
            )));
        }
        let mut params = BTreeMap::new();
        params.insert("MediaIds".to_owned(), self.media_ids.join(","));
        if !matches!(self.task_type, TaskType::Refresh | TaskType::Preload) {
            return Err(VodError::InvalidRequest(format!(
                "RefreshMediaPlayUrls purges media IDs, not a {} task",
                self.task_type
            )));
        }
        params.insert(
            "TaskType".to_owned(),
            self.task_type.vod_task_type().to_owned(),
        );
        for (name, values) in [
            ("Formats", &self.formats),
            ("Definitions", &self.definitions),
            ("StreamType", &self.stream_type),
        ] {
            if !values.is_empty() {
                params.insert(name.to_owned(), values.join(","));
            }
        }
        if let Some(result_type) = &self.result_type {
            params.insert("ResultType".to_owned(), result_type.clone());
        }
        if let Some(flag) = self.slice_flag {
            params.insert("SliceFlag".to_owned(), flag.to_string());
            if let (true, Some(count)) = (flag, self.slice_count) {
                params.insert("SliceCount".to_owned(), count.to_string());
            }
        }
        if let Some(user_data) = &self.user_data {
            params.insert("UserData".to_owned(), user_data.clone());
        }
        Ok(params)
    }
}

/// The most URLs VOD takes in one `RefreshVodObjectCaches` or `PreloadVodObjectCaches` call.
pub const MAX_OBJECT_PATHS: usize = 1000;

/// One `RefreshVodObjectCaches` (files or directories) or `PreloadVodObjectCaches` (files) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRequest {
    /// Normalised URLs, sent as given (scheme included).
    pub paths: Vec<String>,
    /// `FileRefresh`, `FilePreload` or `DirectoryRefresh`.
    pub task: TaskType,
}

impl ObjectRequest {
    /// The operation parameters: `ObjectPath` joined with `\n`, and for a purge `ObjectType`.
    /// Refuses an empty list, more than 1,000 paths, a path with a line break, and media tasks.
    pub fn to_params(&self) -> Result<BTreeMap<String, String>, VodError> {
        if self.paths.is_empty() || self.paths.len() > MAX_OBJECT_PATHS {
            return Err(VodError::InvalidRequest(format!(
                "{} takes 1 to {MAX_OBJECT_PATHS} URLs, got {}",
                self.task.action(),
                self.paths.len()
            )));
        }
        if self
            .paths
            .iter()
            .any(|p| p.is_empty() || p.contains(['\n', '\r']))
        {
            return Err(VodError::InvalidRequest(
                "a URL is empty or contains a line break".to_owned(),
            ));
        }
        let object_type = match self.task {
            TaskType::FileRefresh => Some("File"),
            TaskType::DirectoryRefresh => Some("Directory"),
            TaskType::FilePreload => None,
            TaskType::Refresh | TaskType::Preload | TaskType::ResolveCovers => {
                return Err(VodError::InvalidRequest(format!(
                    "{} is not a URL task",
                    self.task
                )));
            }
        };
        let mut params = BTreeMap::from([("ObjectPath".to_owned(), self.paths.join("\n"))]);
        if let Some(object_type) = object_type {
            params.insert("ObjectType".to_owned(), object_type.to_owned());
        }
        Ok(params)
    }
}

/// The answer to `RefreshVodObjectCaches` (`RefreshTaskId`) or `PreloadVodObjectCaches`
/// (`PreloadTaskId`): the CDN task IDs, comma-separated on the wire (the URLs of one domain
/// submitted in the same second share one).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct ObjectResponse {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    #[serde(alias = "PreloadTaskId", deserialize_with = "comma_list")]
    pub refresh_task_id: Vec<String>,
}

/// One page of `DescribeVodRefreshTasks`: the CDN tasks of the account created between
/// `StartTime` and `EndTime`, of one `ObjectType` and `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct RefreshTasksPage {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    #[serde(deserialize_with = "u64_or_zero")]
    pub total_count: u64,
    #[serde(deserialize_with = "tasks_or_empty")]
    pub tasks: Vec<CdnTask>,
}

/// One CDN task as `DescribeVodRefreshTasks` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct CdnTask {
    #[serde(deserialize_with = "string_or_empty")]
    pub task_id: String,
    #[serde(deserialize_with = "string_or_empty")]
    pub object_path: String,
    /// `file`, `directory` or `preload`.
    #[serde(deserialize_with = "string_or_empty")]
    pub object_type: String,
    /// `Pending`, `Refreshing`, `Complete` or `Failed`.
    #[serde(deserialize_with = "string_or_empty")]
    pub status: String,
    /// Why it failed (`Origin Timeout`, `Origin Return StatusCode 5XX`, ...).
    #[serde(deserialize_with = "string_or_empty")]
    pub description: String,
}

/// The answer to `GetVideoInfo`, as far as the service reads it: the cover and snapshot URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct VideoInfo {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    pub video: Video,
}

/// A video's fields the service reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct Video {
    #[serde(deserialize_with = "string_or_empty")]
    pub video_id: String,
    #[serde(rename(deserialize = "CoverURL"), deserialize_with = "string_or_empty")]
    pub cover_url: String,
    /// `{"Snapshot": [...]}` on the wire.
    #[serde(deserialize_with = "snapshots_or_empty")]
    pub snapshots: Vec<String>,
}

fn snapshots_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize, Default)]
    struct Snapshots {
        #[serde(rename = "Snapshot", default)]
        snapshot: Option<Vec<String>>,
    }
    Ok(Option::<Snapshots>::deserialize(d)?
        .and_then(|s| s.snapshot)
        .unwrap_or_default())
}

/// `{"Tasks": {"Task": [...]}}` on the wire; absent or empty means none.
fn tasks_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CdnTask>, D::Error> {
    #[derive(Deserialize, Default)]
    struct Tasks {
        #[serde(rename = "Task", default)]
        task: Option<Vec<CdnTask>>,
    }
    Ok(Option::<Tasks>::deserialize(d)?
        .and_then(|t| t.task)
        .unwrap_or_default())
}

/// A count VOD may send as a number or as a string.
fn u64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<Count>::deserialize(d)? {
        Some(Count::Number(n)) => n,
        Some(Count::Text(s)) => s.trim().parse().unwrap_or(0),
        None => 0,
    })
}

/// Splits VOD's comma-separated lists; spaces around items are trimmed and empty items dropped.
fn split_list(raw: Option<String>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(split_list(Option::<String>::deserialize(d)?))
}

fn string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The answer to `RefreshMediaPlayUrls`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct RefreshResponse {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    #[serde(deserialize_with = "string_or_empty")]
    pub media_refresh_job_id: String,
    /// IDs VOD does not know; they were not purged and retrying will not help.
    #[serde(deserialize_with = "comma_list")]
    pub non_exist_media_ids: Vec<String>,
    /// IDs the credentials may not operate on.
    #[serde(deserialize_with = "comma_list")]
    pub forbidden_media_ids: Vec<String>,
}

/// The answer to `GetMediaRefreshJobs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct GetMediaRefreshJobsResponse {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    #[serde(deserialize_with = "jobs_or_empty")]
    pub media_refresh_jobs: Vec<MediaRefreshJob>,
}

fn jobs_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MediaRefreshJob>, D::Error> {
    Ok(Option::<Vec<MediaRefreshJob>>::deserialize(d)?.unwrap_or_default())
}

/// VOD's submission status of one media ID of a refresh job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct MediaRefreshJob {
    #[serde(deserialize_with = "string_or_empty")]
    pub media_refresh_job_id: String,
    #[serde(deserialize_with = "string_or_empty")]
    pub media_id: String,
    /// `Refresh` or `Preload`.
    #[serde(deserialize_with = "string_or_empty")]
    pub task_type: String,
    /// `success` or `fail`: whether the per-URL CDN tasks were submitted, not whether they finished.
    #[serde(deserialize_with = "string_or_empty")]
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[serde(deserialize_with = "comma_list")]
    pub success_play_urls: Vec<String>,
    #[serde(deserialize_with = "comma_list")]
    pub task_ids: Vec<String>,
    pub user_data: Option<String>,
    pub gmt_create: Option<String>,
    pub gmt_modified: Option<String>,
    /// JSON text echoing the filter parameters.
    pub filter_policy: Option<String>,
}

/// The account's daily purge and prefetch quota (`DescribeVodRefreshQuota`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(deserialize = "PascalCase"), default)]
pub struct RefreshQuota {
    #[serde(deserialize_with = "string_or_empty")]
    pub request_id: String,
    #[serde(deserialize_with = "quoted_u64")]
    pub url_quota: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub url_remain: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub dir_quota: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub dir_remain: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub preload_quota: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub preload_remain: u64,
    #[serde(deserialize_with = "quoted_u64")]
    pub block_quota: u64,
    /// Lower-case `blockRemain` on the wire (sic).
    #[serde(
        rename(deserialize = "blockRemain"),
        alias = "BlockRemain",
        default,
        deserialize_with = "quoted_u64"
    )]
    pub block_remain: u64,
}

/// Quota numbers arrive as strings (`"2000"`); numbers are accepted too, absent or empty is 0.
fn quoted_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(0),
        Some(Raw::Number(n)) => Ok(n),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(0),
        Some(Raw::Text(s)) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RawOptions;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("id{i}")).collect()
    }

    #[test]
    fn minimal_request_params() {
        let params = RefreshRequest::new(ids(2), TaskType::Refresh)
            .to_params()
            .unwrap();
        let want: BTreeMap<String, String> = [("MediaIds", "id0,id1"), ("TaskType", "Refresh")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(params, want);
    }

    #[test]
    fn id_count_limits() {
        for n in [0, 21] {
            let err = RefreshRequest::new(ids(n), TaskType::Refresh)
                .to_params()
                .unwrap_err();
            assert!(matches!(err, VodError::InvalidRequest(_)), "{n}");
        }
        assert!(
            RefreshRequest::new(ids(20), TaskType::Refresh)
                .to_params()
                .is_ok()
        );
        for bad in ["", "a,b", "a b"] {
            let req = RefreshRequest::new(vec![bad.to_owned()], TaskType::Refresh);
            assert!(req.to_params().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn from_options_sends_what_the_options_say() {
        let raw: RawOptions = serde_json::from_value(serde_json::json!({
            "formats": ["mp4", "m3u8"], "definitions": ["hd"], "result_type": "multiple",
            "slice_flag": true, "slice_count": 7, "user_data": {"Extend": {"a": 1}}
        }))
        .unwrap();
        let opts = PurgeOptions::parse(&raw).unwrap();
        let params = RefreshRequest::from_options(ids(1), TaskType::Preload, &opts)
            .to_params()
            .unwrap();
        assert_eq!(params["Formats"], "m3u8,mp4");
        assert_eq!(params["Definitions"], "HD");
        assert!(!params.contains_key("StreamType"));
        assert_eq!(params["ResultType"], "Multiple");
        assert_eq!(params["SliceFlag"], "true");
        assert_eq!(params["SliceCount"], "7");
        assert_eq!(params["UserData"], r#"{"Extend":{"a":1}}"#);
        assert_eq!(params["TaskType"], "Preload");

        let defaults =
            RefreshRequest::from_options(ids(1), TaskType::Refresh, &PurgeOptions::default());
        let params = defaults.to_params().unwrap();
        assert_eq!(params["ResultType"], "Single");
        assert_eq!(params["SliceFlag"], "false");
        assert!(!params.contains_key("SliceCount"));
        assert!(!params.contains_key("Formats"));
        assert!(!params.contains_key("UserData"));
    }

    #[test]
    fn refresh_tasks_and_video_info_read_as_vod_writes_them() {
        let page: RefreshTasksPage = serde_json::from_str(
            r#"{"RequestId":"r","PageNumber":1,"PageSize":50,"TotalCount":"2","Tasks":{"Task":[
                {"TaskId":"7","ObjectPath":"https://cdn.example.com/a.jpg","ObjectType":"file","Status":"Failed",
                 "Process":"0%","CreationTime":"2026-12-06T12:00:00Z","Description":"Origin Timeout"},
                {"TaskId":"8","ObjectPath":"https://cdn.example.com/b.jpg","Status":"Complete"}]}}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, 2);
        assert_eq!(page.tasks[0].description, "Origin Timeout");
        assert_eq!(page.tasks[1].object_type, "");
        let empty: RefreshTasksPage =
            serde_json::from_str(r#"{"RequestId":"r","TotalCount":0,"Tasks":{}}"#).unwrap();
        assert!(empty.tasks.is_empty());
        let info: VideoInfo = serde_json::from_str(
            r#"{"RequestId":"r","Video":{"VideoId":"v","CoverURL":"https://cdn.example.com/v/c.jpg",
                "Snapshots":{"Snapshot":["https://cdn.example.com/v/1.jpg"]},"Title":"t"}}"#,
        )
        .unwrap();
        assert_eq!(info.video.cover_url, "https://cdn.example.com/v/c.jpg");
        assert_eq!(info.video.snapshots, ["https://cdn.example.com/v/1.jpg"]);
    }

    #[test]
    fn refresh_response_lists() {
        let body = r#"{"RequestId":"R","MediaRefreshJobId":"J","NonExistMediaIds":"a, b ,","ForbiddenMediaIds":""}"#;
        let resp: RefreshResponse = serde_json::from_str(body).unwrap();
        assert_eq!(resp.request_id, "R");
        assert_eq!(resp.media_refresh_job_id, "J");
        assert_eq!(resp.non_exist_media_ids, ["a", "b"]);
        assert!(resp.forbidden_media_ids.is_empty());
        let sparse: RefreshResponse =
            serde_json::from_str(r#"{"RequestId":"R","NonExistMediaIds":null}"#).unwrap();
        assert!(sparse.non_exist_media_ids.is_empty() && sparse.media_refresh_job_id.is_empty());
    }

    #[test]
    fn jobs_response_tolerates_missing_fields() {
        let body = r#"{"RequestId":"R","MediaRefreshJobs":[
            {"MediaRefreshJobId":"J","MediaId":"m","TaskType":"Refresh","Status":"success",
             "SuccessPlayUrls":"http://a/1.mp4,http://a/2.m3u8","TaskIds":"1,2","GmtCreate":"2025-01-15T08:30:00Z"},
            {"MediaRefreshJobId":"J","MediaId":"n","Status":"fail","ErrorCode":"PreloadQueueFull"}]}"#;
        let resp: GetMediaRefreshJobsResponse = serde_json::from_str(body).unwrap();
        assert_eq!(resp.media_refresh_jobs.len(), 2);
        assert_eq!(resp.media_refresh_jobs[0].task_ids, ["1", "2"]);
        assert_eq!(resp.media_refresh_jobs[0].success_play_urls.len(), 2);
        assert_eq!(
            resp.media_refresh_jobs[1].error_code.as_deref(),
            Some("PreloadQueueFull")
        );
        assert!(resp.media_refresh_jobs[1].task_ids.is_empty());
        let empty: GetMediaRefreshJobsResponse =
            serde_json::from_str(r#"{"RequestId":"R"}"#).unwrap();
        assert!(empty.media_refresh_jobs.is_empty());
    }

    #[test]
    fn quota_values_are_strings_on_the_wire() {
        let body = r#"{"RequestId":"R","UrlQuota":"2000","UrlRemain":"1996","DirQuota":"100","DirRemain":"99",
            "PreloadQuota":"500","PreloadRemain":"500","BlockQuota":"500","blockRemain":"498"}"#;
        let quota: RefreshQuota = serde_json::from_str(body).unwrap();
        assert_eq!(
            (quota.url_quota, quota.url_remain, quota.dir_remain),
            (2000, 1996, 99)
        );
        assert_eq!(
            (quota.preload_quota, quota.block_quota, quota.block_remain),
            (500, 500, 498)
        );
        assert!(serde_json::from_str::<RefreshQuota>(r#"{"UrlQuota":"lots"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<RefreshQuota>(r#"{"UrlQuota":7}"#)
                .unwrap()
                .url_quota,
            7
        );
    }
}
