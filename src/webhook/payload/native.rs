//! The native body: what our own senders, scripts and the admin `POST /purge` write.
//!
//! `{"media_ids": [...], "urls": [...], "directories": [...], "task": "Refresh", "options": {...},
//! "priority": "urgent"}` (at least one of the three lists), or a JSON array of such objects.
//! It is read by hand from a `serde_json::Value` rather than through a derived struct so that
//! each mistake gets its own error code (an unknown task is `unknown_task`, bad options are
//! `invalid_options`, anything else `invalid_payload`) and a message that points at the field.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{Priority, PurgeOptions, RawOptions, RequestedTask};

use super::super::error::PayloadError;
use super::super::{MAX_IDS_PER_DELIVERY, PurgeRequest};

const FIELDS: [&str; 8] = [
    "account",
    "media_ids",
    "urls",
    "directories",
    "task",
    "options",
    "priority",
    "include",
];
/// The lists of targets; a request names at least one.
const TARGETS: [&str; 3] = ["media_ids", "urls", "directories"];

/// Parses a native body with the built-in defaults (`Refresh`, no options).
pub fn parse_native(body: &[u8]) -> Result<Vec<PurgeRequest>, PayloadError> {
    parse_with_defaults(
        body,
        RequestedTask::default(),
        &RawOptions::default(),
        false,
    )
}

/// Parses a native body; objects without `task` or `options` take the given defaults.
pub(crate) fn parse_with_defaults(
    body: &[u8],
    task: RequestedTask,
    options: &RawOptions,
    include_cover: bool,
) -> Result<Vec<PurgeRequest>, PayloadError> {
    let value = PayloadError::parse_json(body)?;
    let requests = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_one(item, &format!("[{i}]"), task, options, include_cover))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![parse_one(other, "", task, options, include_cover)?],
    };
    let count: usize = requests
        .iter()
        .map(|r| r.media_ids.len() + r.urls.len() + r.directories.len())
        .sum();
    if count > MAX_IDS_PER_DELIVERY {
        return Err(PayloadError::TooManyIds {
            count,
            max: MAX_IDS_PER_DELIVERY,
        });
    }
    Ok(requests)
}

fn parse_one(
    value: &Value,
    at: &str,
    default_task: RequestedTask,
    default_options: &RawOptions,
    default_include_cover: bool,
) -> Result<PurgeRequest, PayloadError> {
    let Value::Object(map) = value else {
        return Err(PayloadError::invalid(format!(
            "expected an object with media_ids (or an array of them){}, found {}",
            located(at),
            kind(value)
        )));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(PayloadError::invalid(format!(
            "unknown field {unknown:?}{}: expected media_ids, urls, directories, task, options, priority, include, account",
            located(at)
        )));
    }
    if !TARGETS.iter().any(|field| map.contains_key(*field)) {
        return Err(PayloadError::invalid(format!(
            "missing field media_ids{} (or urls, directories)",
            located(at)
        )));
    }
    let media_ids = strings(map.get("media_ids"), at, "media_ids")?;
    let urls = strings(map.get("urls"), at, "urls")?;
    let directories = strings(map.get("directories"), at, "directories")?;
    let task = match map.get("task") {
        None | Some(Value::Null) => default_task,
        Some(Value::String(s)) => s
            .parse::<RequestedTask>()
            .map_err(|e| PayloadError::UnknownTask(format!("{at}task: {e}")))?,
        Some(other) => {
            return Err(PayloadError::UnknownTask(format!(
                "{at}task must be Refresh, Preload or RefreshThenPreload, found {}",
                kind(other)
            )));
        }
    };
    let options = match map.get("options") {
        None | Some(Value::Null) => default_options.clone(),
        Some(raw) => RawOptions::deserialize(raw)
            .map_err(|e| PayloadError::InvalidOptions(format!("{at}options: {e}")))?,
    };
    PurgeOptions::parse(&options)
        .map_err(|e| PayloadError::InvalidOptions(format!("{at}options: {e}")))?;
    let priority = match map.get("priority") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse::<Priority>()
                .map_err(|e| PayloadError::UnknownPriority(format!("{at}priority: {e}")))?,
        ),
        Some(other) => {
            return Err(PayloadError::UnknownPriority(format!(
                "{at}priority must be \"normal\" or \"urgent\", found {}",
                kind(other)
            )));
        }
    };
    if !directories.is_empty() && task != RequestedTask::Refresh {
        return Err(PayloadError::UnknownTask(format!(
            "{at}task: directories can only be refreshed (task Refresh), VOD has no directory prefetch"
        )));
    }
    let include_cover = match map.get("include") {
        None | Some(Value::Null) => default_include_cover,
        value => {
            let include = strings(value, at, "include")?;
            if let Some(bad) = include.iter().find(|i| i.as_str() != "cover") {
                return Err(PayloadError::invalid(format!(
                    "{at}include: unknown {bad:?}, expected \"cover\""
                )));
            }
            !include.is_empty()
        }
    };
    let account = match map.get("account") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(PayloadError::invalid(format!(
                "{at}account must be a string naming a configured account, found {}",
                kind(other)
            )));
        }
    };
    Ok(PurgeRequest {
        media_ids,
        urls,
        directories,
        include_cover,
        task,
        options,
        priority,
        account,
    })
}

/// A list of strings (absent means empty).
fn strings(value: Option<&Value>, at: &str, field: &str) -> Result<Vec<String>, PayloadError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(PayloadError::invalid(format!(
                    "{at}{field}[{i}] must be a string, found {}",
                    kind(other)
                ))),
            })
            .collect(),
        Some(other) => Err(PayloadError::invalid(format!(
            "{at}{field} must be an array of strings, found {}",
            kind(other)
        ))),
    }
}

fn located(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" at {at}")
    }
}

/// The JSON type of a value, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskType;

    fn err(body: &str) -> PayloadError {
        parse_native(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn single_object_with_defaults() {
        let got = parse_native(br#"{"media_ids": ["a", "b"]}"#).unwrap();
        assert_eq!(
            got,
            vec![PurgeRequest {
                media_ids: vec!["a".into(), "b".into()],
                task: RequestedTask::Refresh,
                options: RawOptions::default(),
                priority: None,
                ..PurgeRequest::default()
            }]
        );
    }

    #[test]
    fn urls_and_directories_beside_media_ids() {
        let got = parse_native(
            br#"{"urls": ["https://cdn.example.com/a.jpg"], "directories": ["https://cdn.example.com/s/"]}"#,
        )
        .unwrap();
        assert!(got[0].media_ids.is_empty());
        assert_eq!(
            got[0].urls,
            vec!["https://cdn.example.com/a.jpg".to_owned()]
        );
        assert_eq!(
            got[0].directories,
            vec!["https://cdn.example.com/s/".to_owned()]
        );
        for (body, code) in [
            (
                r#"{"urls": "https://cdn.example.com/a.jpg"}"#,
                "invalid_payload",
            ),
            (r#"{"directories": [7]}"#, "invalid_payload"),
            (
                r#"{"directories": ["https://cdn.example.com/s/"], "task": "Preload"}"#,
                "unknown_task",
            ),
            (
                r#"{"directories": ["https://cdn.example.com/s/"], "task": "RefreshThenPreload"}"#,
                "unknown_task",
            ),
        ] {
            assert_eq!(err(body).code(), code, "{body}");
        }
        let many: Vec<String> = (0..=MAX_IDS_PER_DELIVERY / 2)
            .map(|i| format!("https://cdn.example.com/{i}.jpg"))
            .collect();
        let body = serde_json::json!({"urls": many, "directories": many}).to_string();
        assert_eq!(err(&body).code(), "too_many_ids");
    }

    #[test]
    fn array_of_objects_with_task_and_options() {
        let got = parse_native(
            br#"[{"media_ids": ["a"], "task": "Preload", "options": {"formats": ["mp4"]}},
                 {"media_ids": ["b"], "task": "RefreshThenPreload"}]"#,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].task.tasks(), &[TaskType::Preload]);
        assert_eq!(got[0].options.formats, vec!["mp4".to_owned()]);
        assert_eq!(got[1].task, RequestedTask::RefreshThenPreload);
    }

    #[test]
    fn ids_are_not_validated_here() {
        let got = parse_native(br#"{"media_ids": ["", "a,b"]}"#).unwrap();
        assert_eq!(got[0].media_ids, vec!["".to_owned(), "a,b".to_owned()]);
    }

    #[test]
    fn error_codes() {
        for (body, code) in [
            ("", "malformed_json"),
            ("{", "malformed_json"),
            ("{\"media_ids\": [\"a\"]} x", "malformed_json"),
            ("\"a\"", "invalid_payload"),
            ("{}", "invalid_payload"),
            ("{\"media_ids\": \"a\"}", "invalid_payload"),
            ("{\"media_ids\": [1]}", "invalid_payload"),
            (
                "{\"media_ids\": [\"a\"], \"mediaIds\": []}",
                "invalid_payload",
            ),
            ("[{\"media_ids\": [\"a\"]}, 3]", "invalid_payload"),
            ("{\"media_ids\": [], \"task\": \"refresh\"}", "unknown_task"),
            ("{\"media_ids\": [], \"task\": 1}", "unknown_task"),
            (
                "{\"media_ids\": [], \"options\": {\"formats\": [\"avi\"]}}",
                "invalid_options",
            ),
            (
                "{\"media_ids\": [], \"options\": {\"colour\": 1}}",
                "invalid_options",
            ),
            ("{\"media_ids\": [], \"options\": 3}", "invalid_options"),
        ] {
            assert_eq!(err(body).code(), code, "{body}");
        }
    }

    #[test]
    fn messages_point_at_the_field() {
        assert!(
            err(r#"{"media_ids": ["a"], "colour": 1}"#)
                .to_string()
                .contains("\"colour\"")
        );
        assert!(
            err(r#"[{"media_ids": ["a"]}, {"media_ids": [2]}]"#)
                .to_string()
                .contains("[1]media_ids[0]")
        );
        assert!(
            err(r#"{"media_ids": [], "options": {"formats": ["avi"]}}"#)
                .to_string()
                .contains("avi")
        );
    }

    #[test]
    fn too_many_ids_counts_across_objects() {
        let ids = |n: usize| serde_json::to_string(&vec!["x"; n]).unwrap();
        let ok = format!(
            r#"[{{"media_ids": {}}}, {{"media_ids": {}}}]"#,
            ids(500),
            ids(500)
        );
        assert!(parse_native(ok.as_bytes()).is_ok());
        let over = format!(
            r#"[{{"media_ids": {}}}, {{"media_ids": {}}}]"#,
            ids(500),
            ids(501)
        );
        assert_eq!(
            parse_native(over.as_bytes()).unwrap_err().code(),
            "too_many_ids"
        );
    }

    #[test]
    fn source_defaults_apply_when_absent() {
        let opts = RawOptions {
            formats: vec!["m3u8".into()],
            ..RawOptions::default()
        };
        let got = parse_with_defaults(
            br#"{"media_ids": ["a"]}"#,
            RequestedTask::Preload,
            &opts,
            false,
        )
        .unwrap();
        assert_eq!(got[0].task, RequestedTask::Preload);
        assert_eq!(got[0].options, opts);
    }
}
