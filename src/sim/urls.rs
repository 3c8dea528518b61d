//! The URL-based operations of VOD's CDN side (`vod-api.md` §2.2, §2.4, §7):
//! `RefreshVodObjectCaches` and `PreloadVodObjectCaches` turn URLs into CDN tasks against the
//! daily quotas, and `DescribeVodRefreshTasks` reads the tasks back.
//!
//! Where the reference is silent the simulator picks the stricter or the simpler reading:
//! - a URL is taken with `http://`, `https://` or no scheme; its host must be a domain name
//!   (letters, digits, `-`, `_`, dots between non-empty labels) with an optional port, and the
//!   URL must hold no whitespace; anything else is `InvalidObjectPath.Malformed`;
//! - the task keeps the URL as the call gave it, so `ObjectPath` finds it by the same text;
//! - a URL given twice in one call is two tasks and two units of quota;
//! - the checks run in this order: `ObjectPath` missing, `ObjectType`, too many URLs, each URL's
//!   form, each URL's domain (offline, then unknown), the quota. A refused call creates nothing
//!   and takes no quota;
//! - `DescribeVodRefreshTasks` only ever shows the last 3 days, and takes `ObjectType` in the
//!   documented lower case only; `PageNumber` and `PageSize` out of range are `InvalidParameter`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::actions::given;
use super::ledger::Pool;
use super::reply::ApiError;
use super::state::{SimState, lock};
use super::tasks::{NewTask, STATUSES, TaskFilter, TaskKind, id_list};
use super::verify::parse_timestamp;

/// How far back `DescribeVodRefreshTasks` reaches.
const QUERY_HORIZON_SECS: i64 = 3 * 86_400;
const MAX_PAGE_NUMBER: u64 = 42_949_672;
const MAX_PAGE_SIZE: u64 = 50;
const DEFAULT_PAGE_SIZE: u64 = 20;

/// A URL of `ObjectPath`, checked: as it was given (trimmed), and its host (lower case, no
/// port), which the domain checks and the task IDs go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub path: String,
    pub host: String,
}

/// The lines of `ObjectPath`: split at `\n` (a `\r` before it goes with it), trimmed, empty
/// lines left out.
pub fn split_object_paths(raw: &str) -> Vec<String> {
    raw.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads one URL of `ObjectPath`; `None` when it is malformed.
pub fn parse_object_url(line: &str) -> Option<ObjectUrl> {
    if line.is_empty() || line.chars().any(char::is_whitespace) {
        return None;
    }
    let lower = line.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &line[7..]
    } else if lower.starts_with("https://") {
        &line[8..]
    } else if lower.contains("://") {
        return None;
    } else {
        line
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let valid_port = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let valid_host = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    (valid_host && valid_port).then(|| ObjectUrl {
        path: line.to_owned(),
        host: host.to_ascii_lowercase(),
    })
}

/// The URLs of a call's `ObjectPath`, checked against the request limit, their form
/// (`directory`: each must end with `/`) and the account's domains.
fn object_urls(
    state: &SimState,
    params: &BTreeMap<String, String>,
    directory: bool,
) -> Result<Vec<ObjectUrl>, ApiError> {
    let raw = given(params, "ObjectPath").ok_or_else(|| ApiError::missing("ObjectPath"))?;
    let lines = split_object_paths(raw);
    if lines.is_empty() {
        return Err(ApiError::missing("ObjectPath"));
    }
    if lines.len() > state.urls_per_request {
        return Err(ApiError::new(
            400,
            "SingleRequest.OverLimit",
            format!(
                "A request can hold at most {} URLs; this one holds {}.",
                state.urls_per_request,
                lines.len()
            ),
        ));
    }
    let urls = lines
        .iter()
        .map(|line| {
            parse_object_url(line)
                .filter(|url| !directory || url.path.ends_with('/'))
                .ok_or_else(|| {
                    let why = if directory {
                        " (a directory must end with /)"
                    } else {
                        ""
                    };
                    ApiError::new(
                        400,
                        "InvalidObjectPath.Malformed",
                        format!("Specified ObjectPath {line:?} is malformed{why}."),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for url in &urls {
        if state.offline_domains.contains(&url.host) {
            return Err(ApiError::new(
                404,
                "InvalidDomain.Offline",
                format!("The domain {} is offline.", url.host),
            ));
        }
        if !state.cdn_domains.is_empty() && !state.cdn_domains.contains(&url.host) {
            return Err(ApiError::new(
                404,
                "InvalidDomain.NotFound",
                format!("The domain {} does not exist.", url.host),
            ));
        }
    }
    Ok(urls)
}

/// Takes the quota for `urls` from the caller's account's `pool` and creates their tasks (the
/// URLs of one domain share an ID); the call's comma-separated task IDs. Nothing is taken or
/// created when too little is left.
fn submit(
    state: &SimState,
    access_key_id: &str,
    urls: Vec<ObjectUrl>,
    kind: TaskKind,
    pool: Pool,
) -> Result<String, ApiError> {
    let now_ms = state.clock.now_ms();
    let now_secs = now_ms.div_euclid(1000);
    let units = u64::try_from(urls.len()).unwrap_or(u64::MAX);
    let owner = state.account_of(access_key_id);
    {
        let mut book = lock(&state.quota);
        let quota = book.of(&owner);
        if !quota.take(pool, units, now_secs) {
            let left = quota.left(pool, now_secs);
            let (code, what) = match pool {
                Pool::Url => ("QuotaExceeded.Refresh", "URL refresh"),
                Pool::Dir => ("QuotaExceeded.Refresh", "directory refresh"),
                Pool::Preload => ("QuotaExceeded.Preload", "preload"),
            };
            return Err(ApiError::new(
                400,
                code,
                format!(
                    "The {what} quota of the day has been used up: {left} left, {units} asked."
                ),
            ));
        }
    }
    let entries: Vec<NewTask> = {
        let mut faults = lock(&state.faults);
        urls.into_iter()
            .map(|url| NewTask {
                failure: faults.task_failure(&url.path),
                path: url.path,
                host: url.host,
            })
            .collect()
    };
    let ids = lock(&state.tasks).create(&owner, kind, now_ms, entries, true);
    Ok(id_list(&ids))
}

/// `RefreshVodObjectCaches`: files (one unit of the URL quota each) or directories (one unit of
/// the directory quota each).
pub fn refresh_object_caches(
    state: &SimState,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    given(params, "ObjectPath").ok_or_else(|| ApiError::missing("ObjectPath"))?;
    let kind = match given(params, "ObjectType").map(str::trim) {
        None => TaskKind::File,
        Some(t) if t.eq_ignore_ascii_case("File") => TaskKind::File,
        Some(t) if t.eq_ignore_ascii_case("Directory") => TaskKind::Directory,
        Some(t) => {
            return Err(ApiError::new(
                400,
                "InvalidObjectType.Malformed",
                format!("Specified ObjectType {t:?} is malformed; expected File or Directory."),
            ));
        }
    };
    let directory = kind == TaskKind::Directory;
    let urls = object_urls(state, params, directory)?;
    let pool = if directory { Pool::Dir } else { Pool::Url };
    let ids = submit(state, access_key_id, urls, kind, pool)?;
    Ok(json!({ "RefreshTaskId": ids }))
}

/// `PreloadVodObjectCaches`: files only, one unit of the preload quota each.
pub fn preload_object_caches(
    state: &SimState,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let urls = object_urls(state, params, false)?;
    let ids = submit(state, access_key_id, urls, TaskKind::Preload, Pool::Preload)?;
    Ok(json!({ "PreloadTaskId": ids }))
}

fn page_param(
    params: &BTreeMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match given(params, name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "The specified parameter \"{name}\" must be an integer from 1 to {max}."
                ))
            }),
    }
}

fn time_param(
    params: &BTreeMap<String, String>,
    name: &str,
    code: &str,
) -> Result<Option<i64>, ApiError> {
    given(params, name)
        .map(|raw| {
            parse_timestamp(raw.trim()).ok_or_else(|| {
                ApiError::new(
                    400,
                    code,
                    format!("Specified {name} is malformed (expected yyyy-MM-ddTHH:mm:ssZ)."),
                )
            })
        })
        .transpose()
}

/// The filter and page a `DescribeVodRefreshTasks` call asks for, checked, as of `now_secs`.
pub fn task_query(
    params: &BTreeMap<String, String>,
    now_secs: i64,
) -> Result<(TaskFilter, (u64, u64)), ApiError> {
    let task_id = given(params, "TaskId")
        .map(|raw| {
            let raw = raw.trim();
            raw.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| raw.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "InvalidTaskId.Malformed",
                        format!("Specified TaskId {raw:?} is malformed: one task ID is expected."),
                    )
                })
        })
        .transpose()?;
    let kind = given(params, "ObjectType")
        .map(|raw| {
            TaskKind::parse(raw.trim()).ok_or_else(|| {
                ApiError::new(
                    400,
                    "InvalidObjectType.ValueNotSupported",
                    format!(
                        "Specified ObjectType {raw:?} is not supported: file, directory or preload."
                    ),
                )
            })
        })
        .transpose()?;
    let status = given(params, "Status")
        .map(|raw| {
            let raw = raw.trim();
            STATUSES
                .contains(&raw)
                .then(|| raw.to_owned())
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "InvalidStatus.ValueNotSupported",
                        format!("Specified Status {raw:?} is not supported."),
                    )
                })
        })
        .transpose()?;
    let domain = given(params, "DomainName").map(|d| d.trim().to_ascii_lowercase());
    if kind.is_none() && (status.is_some() || domain.is_some()) {
        return Err(ApiError::new(
            400,
            "MissingParameter.ObjectType",
            "ObjectType is mandatory when Status or DomainName is given.",
        ));
    }
    let page_number = page_param(params, "PageNumber", 1, MAX_PAGE_NUMBER)?;
    let page_size = page_param(params, "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let start = time_param(params, "StartTime", "InvalidStartTime.Malformed")?;
    let end = time_param(params, "EndTime", "InvalidEndTime.Malformed")?;
    let horizon = now_secs.saturating_sub(QUERY_HORIZON_SECS);
    let (from_secs, to_secs) = match (start, end) {
        (None, None) => (horizon, None),
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::new(
                400,
                "MissingTimeParameter",
                "StartTime and EndTime must be given together.",
            ));
        }
        (Some(start), Some(end)) => {
            if end < start {
                return Err(ApiError::new(
                    400,
                    "InvalidEndTime.Mismatch",
                    "Specified EndTime is earlier than StartTime.",
                ));
            }
            if start < horizon {
                return Err(ApiError::new(
                    400,
                    "InvalidTime",
                    "Only the tasks of the last 3 days can be queried.",
                ));
            }
            (start, Some(end))
        }
    };
    let filter = TaskFilter {
        task_id,
        object_path: given(params, "ObjectPath").map(|p| p.trim().to_owned()),
        kind,
        domain,
        status,
        from_secs,
        to_secs,
    };
    Ok((filter, (page_number, page_size)))
}

/// `DescribeVodRefreshTasks`: the caller's account's tasks, newest first, one page.
pub fn describe_refresh_tasks(
    state: &SimState,
    access_key_id: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let now_ms = state.clock.now_ms();
    let (filter, (page_number, page_size)) = task_query(params, now_ms.div_euclid(1000))?;
    let owner = state.account_of(access_key_id);
    let (total, tasks) = lock(&state.tasks).query(
        &owner,
        &filter,
        (page_number, page_size),
        now_ms,
        state.life,
    );
    let tasks: Vec<Value> = tasks.iter().map(|t| t.api_json()).collect();
    Ok(json!({
        "PageNumber": page_number,
        "PageSize": page_size,
        "TotalCount": total,
        "Tasks": { "Task": tasks },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_split_at_newlines() {
        assert_eq!(
            split_object_paths("a.com/1\r\n\r\n  http://b.com/2 \n\nhttps://c.com/3\n"),
            ["a.com/1", "http://b.com/2", "https://c.com/3"]
        );
        assert!(split_object_paths("\r\n\n ").is_empty());
    }

    #[test]
    fn urls_with_and_without_a_scheme() {
        for (line, host) in [
            ("abc.com/image/1.png", "abc.com"),
            ("http://ABC.com/image/1.png", "abc.com"),
            ("HTTPS://cdn.abc.com:8443/a/?x=1", "cdn.abc.com"),
            ("https://abc.com", "abc.com"),
            ("abc.com?x=1", "abc.com"),
            ("my_cdn.abc-1.com/d/", "my_cdn.abc-1.com"),
        ] {
            let url = parse_object_url(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!((url.path.as_str(), url.host.as_str()), (line, host));
        }
        for bad in [
            "",
            "ftp://abc.com/1",
            "http://",
            "http:///1.png",
            "/1.png",
            "abc..com/1",
            "abc.com/a b.png",
            "*.abc.com/1",
            "abc.com:0/1",
            "abc.com:99999/1",
            "abc.com:x/1",
        ] {
            assert_eq!(parse_object_url(bad), None, "{bad}");
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn task_query_rules() {
        let now = 1_736_929_800; // 2025-01-15T08:30:00Z
        let code = |pairs: &[(&str, &str)]| {
            task_query(&params(pairs), now)
                .err()
                .map(|e| (e.status, e.code))
        };
        let bad = |c: &str| Some((400, c.to_owned()));
        assert_eq!(code(&[]), None);
        assert_eq!(code(&[("TaskId", "1,2")]), bad("InvalidTaskId.Malformed"));
        assert_eq!(code(&[("TaskId", "x1")]), bad("InvalidTaskId.Malformed"));
        assert_eq!(
            code(&[("ObjectType", "File")]),
            bad("InvalidObjectType.ValueNotSupported")
        );
        assert_eq!(
            code(&[("ObjectType", "file"), ("Status", "Done")]),
            bad("InvalidStatus.ValueNotSupported")
        );
        assert_eq!(
            code(&[("Status", "Complete")]),
            bad("MissingParameter.ObjectType")
        );
        assert_eq!(
            code(&[("DomainName", "a.com")]),
            bad("MissingParameter.ObjectType")
        );
        assert_eq!(code(&[("PageSize", "51")]), bad("InvalidParameter"));
        assert_eq!(code(&[("PageSize", "0")]), bad("InvalidParameter"));
        assert_eq!(code(&[("PageNumber", "0")]), bad("InvalidParameter"));
        assert_eq!(
            code(&[("StartTime", "2025-01-15 08:00:00")]),
            bad("InvalidStartTime.Malformed")
        );
        assert_eq!(
            code(&[("StartTime", "2025-01-15T08:00:00Z"), ("EndTime", "x")]),
            bad("InvalidEndTime.Malformed")
        );
        assert_eq!(
            code(&[("StartTime", "2025-01-15T08:00:00Z")]),
            bad("MissingTimeParameter")
        );
        assert_eq!(
            code(&[("EndTime", "2025-01-15T08:00:00Z")]),
            bad("MissingTimeParameter")
        );
        assert_eq!(
            code(&[
                ("StartTime", "2025-01-15T08:00:00Z"),
                ("EndTime", "2025-01-15T07:59:59Z")
            ]),
            bad("InvalidEndTime.Mismatch")
        );
        assert_eq!(
            code(&[
                ("StartTime", "2025-01-12T08:29:59Z"),
                ("EndTime", "2025-01-15T08:00:00Z")
            ]),
            bad("InvalidTime")
        );
        let (filter, page) = task_query(
            &params(&[
                ("StartTime", "2025-01-12T08:30:00Z"),
                ("EndTime", "2025-01-15T08:00:00Z"),
                ("PageSize", "50"),
                ("PageNumber", "2"),
                ("ObjectType", "preload"),
                ("DomainName", "A.com"),
                ("Status", "Pending"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(page, (2, 50));
        assert_eq!(
            (filter.from_secs, filter.to_secs),
            (now - 3 * 86_400, Some(now - 1800))
        );
        assert_eq!(filter.kind, Some(TaskKind::Preload));
        assert_eq!(filter.domain.as_deref(), Some("a.com"));
    }
}
