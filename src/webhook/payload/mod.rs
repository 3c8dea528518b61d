//! Payload formats: how a body becomes purge requests.
//!
//! `native` is our own shape. Every other format is the same mechanism, JSON Pointers with a
//! wildcard (`pointer.rs`), pointed at different places: `json-pointer` takes the pointers from
//! the configuration, and each CMS preset (`presets.rs`) knows where its CMS puts the entry and
//! which events mean "the content changed".

pub(crate) mod native;
pub mod pointer;
pub(crate) mod presets;
pub(crate) mod vod;

use serde_json::Value;

use crate::domain::{RawOptions, RequestedTask};

use super::config::{Events, FormatKind, SourceConfig};
use super::error::PayloadError;
use super::{Extracted, MAX_IDS_PER_DELIVERY, PurgeRequest, Request};
use pointer::Pointer;

/// A compiled format.
pub(crate) struct Format {
    kind: Kind,
    task: RequestedTask,
    options: RawOptions,
    /// The source's `include = ["cover"]`.
    include_cover: bool,
}

impl Format {
    /// True for the native format, whose bodies exist to name media IDs; the other formats carry
    /// CMS events, some of which legitimately name none (a Contentful unpublish has only `sys`).
    pub(crate) fn is_native(&self) -> bool {
        matches!(self.kind, Kind::Native)
    }

    pub(crate) fn is_vod_events(&self) -> bool {
        matches!(self.kind, Kind::Vod(_))
    }
}

enum Kind {
    Native,
    /// Pointers to media IDs, and to file URLs (`url_pointers`).
    Pointers(Vec<Pointer>, Vec<Pointer>),
    Preset(presets::Preset),
    Vod(vod::VodEvents),
}

impl Format {
    pub(crate) fn new(cfg: &SourceConfig) -> Result<Format, String> {
        let kind = match cfg.format {
            FormatKind::Native => Kind::Native,
            FormatKind::JsonPointer => Kind::Pointers(
                cfg.pointers
                    .iter()
                    .map(|p| Pointer::parse(p))
                    .collect::<Result<_, _>>()?,
                cfg.url_pointers
                    .iter()
                    .map(|p| Pointer::parse(p))
                    .collect::<Result<_, _>>()?,
            ),
            FormatKind::VodEvents => Kind::Vod(vod::VodEvents::new(match &cfg.events {
                Some(Events::Table(table)) => Some(table),
                _ => None,
            })?),
            _ => Kind::Preset(presets::Preset::new(cfg)?),
        };
        Ok(Format {
            kind,
            task: cfg.task,
            options: cfg.options.clone(),
            include_cover: cfg.include.iter().any(|i| i == "cover"),
        })
    }

    pub(crate) fn extract(&self, req: &Request<'_>) -> Result<Extracted, PayloadError> {
        let mut urls = Vec::new();
        let (ids, ignored_event) = match &self.kind {
            Kind::Native => {
                let requests = native::parse_with_defaults(
                    req.body,
                    self.task,
                    &self.options,
                    self.include_cover,
                )?;
                return Ok(Extracted {
                    requests,
                    ..Extracted::default()
                });
            }
            Kind::Vod(events) => {
                let value = PayloadError::parse_json(req.body)?;
                return Ok(match events.extract(&value)? {
                    vod::Outcome::Purge(id, task) => Extracted {
                        requests: vec![PurgeRequest {
                            media_ids: vec![id],
                            task,
                            options: self.options.clone(),
                            include_cover: self.include_cover,
                            ..PurgeRequest::default()
                        }],
                        ..Extracted::default()
                    },
                    vod::Outcome::Ignored(event, reason) => Extracted {
                        requests: Vec::new(),
                        ignored_event: Some(event),
                        ignored_reason: Some(reason),
                    },
                });
            }
            Kind::Pointers(pointers, url_pointers) => {
                let value = PayloadError::parse_json(req.body)?;
                urls = collect_ids(&value, url_pointers)?;
                let ids = collect_ids(&value, pointers)?;
                if ids.len() + urls.len() > MAX_IDS_PER_DELIVERY {
                    return Err(PayloadError::TooManyIds {
                        count: ids.len() + urls.len(),
                        max: MAX_IDS_PER_DELIVERY,
                    });
                }
                (ids, None)
            }
            Kind::Preset(preset) => {
                let value = PayloadError::parse_json(req.body)?;
                match preset.extract(req.headers, &value)? {
                    presets::Outcome::Purge(ids) => (ids, None),
                    presets::Outcome::Ignored(event) => (Vec::new(), Some(event)),
                }
            }
        };
        let requests = if ids.is_empty() && urls.is_empty() {
            Vec::new()
        } else {
            vec![PurgeRequest {
                media_ids: ids,
                urls,
                task: self.task,
                options: self.options.clone(),
                include_cover: self.include_cover,
                ..PurgeRequest::default()
            }]
        };
        Ok(Extracted {
            requests,
            ignored_event,
            ignored_reason: None,
        })
    }
}

/// The IDs every pointer reaches, in order, without duplicates or empty strings.
///
/// A value may be a string, a number (written in decimal: Directus and Strapi keys are often
/// integers) or an array of those; `null` counts as absent. Anything else means the pointer
/// was aimed at the wrong field, which the sender should hear about.
pub(crate) fn collect_ids(
    value: &Value,
    pointers: &[Pointer],
) -> Result<Vec<String>, PayloadError> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |id: String| -> Result<(), PayloadError> {
        let id = id.trim().to_owned();
        if !id.is_empty() && !out.contains(&id) {
            if out.len() == MAX_IDS_PER_DELIVERY {
                return Err(PayloadError::TooManyIds {
                    count: out.len() + 1,
                    max: MAX_IDS_PER_DELIVERY,
                });
            }
            out.push(id);
        }
        Ok(())
    };
    for pointer in pointers {
        for found in pointer.select(value) {
            match found {
                Value::Array(items) => {
                    for item in items {
                        match scalar(item) {
                            Ok(Some(id)) => push(id)?,
                            Ok(None) => {}
                            Err(kind) => return Err(wrong_type(pointer, kind, " inside an array")),
                        }
                    }
                }
                other => match scalar(other) {
                    Ok(Some(id)) => push(id)?,
                    Ok(None) => {}
                    Err(kind) => return Err(wrong_type(pointer, kind, "")),
                },
            }
        }
    }
    Ok(out)
}

fn scalar(value: &Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Null => Ok(None),
        other => Err(native::kind(other)),
    }
}

fn wrong_type(pointer: &Pointer, kind: &str, inside: &str) -> PayloadError {
    PayloadError::invalid(format!(
        "{kind}{inside} at {:?}: expected a media id string or an array of them",
        pointer.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(doc: Value, pointers: &[&str]) -> Result<Vec<String>, PayloadError> {
        let pointers: Vec<Pointer> = pointers
            .iter()
            .map(|p| Pointer::parse(p).unwrap())
            .collect();
        collect_ids(&doc, &pointers)
    }

    #[test]
    fn strings_numbers_arrays_and_duplicates() {
        let doc = json!({"a": "x", "b": ["y", 7, null, "x", ""], "c": null, "d": [{"id": "z"}, {"id": " w "}]});
        assert_eq!(
            ids(doc, &["/a", "/b", "/c", "/missing", "/d/*/id"]).unwrap(),
            ["x", "y", "7", "z", "w"]
        );
    }

    #[test]
    fn wrong_types_are_invalid_payload() {
        assert_eq!(
            ids(json!({"a": {"b": 1}}), &["/a"]).unwrap_err().code(),
            "invalid_payload"
        );
        assert_eq!(
            ids(json!({"a": [true]}), &["/a"]).unwrap_err().code(),
            "invalid_payload"
        );
        assert_eq!(
            ids(json!({"a": [["x"]]}), &["/a"]).unwrap_err().code(),
            "invalid_payload"
        );
    }

    #[test]
    fn limit() {
        let many: Vec<String> = (0..=MAX_IDS_PER_DELIVERY)
            .map(|i| format!("id{i}"))
            .collect();
        assert_eq!(
            ids(json!({ "a": many }), &["/a"]).unwrap_err().code(),
            "too_many_ids"
        );
        let same = vec!["x"; MAX_IDS_PER_DELIVERY * 2];
        assert_eq!(ids(json!({ "a": same }), &["/a"]).unwrap(), ["x"]);
    }
}
