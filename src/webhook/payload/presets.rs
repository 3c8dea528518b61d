//! CMS presets: where each CMS puts the entry, where the media ID sits in it, and which events
//! mean "the published content changed". All of them resolve to JSON Pointers (`pointer.rs`).
//!
//! | format       | event from                          | purging by default                                   | IDs read from (default field) |
//! |--------------|-------------------------------------|------------------------------------------------------|-------------------------------|
//! | `strapi`     | body `event`, else `X-Strapi-Event` | `entry.publish/update/unpublish/delete`, `media.update/delete` | `entry.<id_field>` (`video_id`); `media.<media_id_field>` (`/provider_metadata/videoId`) |
//! | `contentful` | `X-Contentful-Topic` (`ContentManagement.` dropped) | `Entry.publish`, `Entry.unpublish`, `Entry.delete` | `fields.<id_field>.<every locale>` (`videoId`) |
//! | `sanity`     | `sanity-operation` header, if sent  | every event                                          | `<id_field>` (`_id`), `drafts.` removed |
//! | `directus`   | body `event`, if present            | every event                                          | `keys` and `key`, or `<id_field>` |
//! | `ghost`      | body `event` (Ghost 5+), if present | every event                                          | `post.current.<id_field>`, `page.current.<id_field>` (`id`); `*.previous.*` when `current` is empty (deletions) |
//!
//! `id_field` (and Strapi's `media_id_field`) is a plain key or, when it starts with `/`, a
//! pointer relative to the entry (Strapi: `entry` or `media`; Ghost: `post.current` or
//! `page.current`; the others: the body root), so `"/video/*/assetId"` reaches into relations.
//! `events` replaces the default list; an entry ending in `*` matches by prefix (`entry.*`).
//!
//! Why these defaults: Strapi media objects have no field of their own for a VOD ID, and upload
//! providers keep theirs in `provider_metadata` (Aliyun names the ID `VideoId`). Contentful's
//! `unpublish` and `delete` bodies carry only `sys`, so they purge only when a custom payload
//! transformation puts the field back; they are listed so that a takedown is not dropped when it
//! does. Sanity, Directus and Ghost filter events on the CMS side (GROQ filter, Flow trigger,
//! one webhook per event), so everything that reaches us purges unless `events` says otherwise;
//! a delivery whose event cannot be told purges, because a purge too many costs less than a
//! stale video.

use serde_json::Value;

use super::super::Headers;
use super::super::config::{FormatKind, SourceConfig};
use super::super::error::PayloadError;
use super::collect_ids;
use super::pointer::Pointer;

pub(crate) enum Outcome {
    /// The event purges; these IDs (possibly none) were found.
    Purge(Vec<String>),
    /// The event does not purge.
    Ignored(String),
}

pub(crate) enum Preset {
    Strapi {
        entry: Pointer,
        media: Pointer,
        events: Vec<String>,
    },
    Contentful {
        ids: Pointer,
        events: Vec<String>,
    },
    Sanity {
        ids: Pointer,
        events: Option<Vec<String>>,
    },
    Directus {
        ids: Vec<Pointer>,
        events: Option<Vec<String>>,
    },
    Ghost {
        current: Vec<Pointer>,
        previous: Vec<Pointer>,
        events: Option<Vec<String>>,
    },
}

pub const STRAPI_EVENTS: [&str; 6] = [
    "entry.publish",
    "entry.update",
    "entry.unpublish",
    "entry.delete",
    "media.update",
    "media.delete",
];
pub const CONTENTFUL_EVENTS: [&str; 3] = ["Entry.publish", "Entry.unpublish", "Entry.delete"];
pub const STRAPI_ID_FIELD: &str = "video_id";
pub const STRAPI_MEDIA_ID_FIELD: &str = "/provider_metadata/videoId";
pub const CONTENTFUL_ID_FIELD: &str = "videoId";
pub const SANITY_ID_FIELD: &str = "_id";
pub const GHOST_ID_FIELD: &str = "id";
const CONTENTFUL_TOPIC_PREFIX: &str = "ContentManagement.";

/// `id_field` as a pointer: a plain key, or a pointer when it starts with `/`.
pub(crate) fn field_pointer(field: &str) -> Result<Pointer, String> {
    if field.starts_with('/') {
        Pointer::parse(field)
    } else if field.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(Pointer::from_keys([field]))
    }
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Preset {
    pub(crate) fn new(cfg: &SourceConfig) -> Result<Preset, String> {
        let field = |default: &str| field_pointer(cfg.id_field.as_deref().unwrap_or(default));
        Ok(match cfg.format {
            FormatKind::Strapi => Preset::Strapi {
                entry: Pointer::from_keys(["entry"]).join(&field(STRAPI_ID_FIELD)?),
                media: Pointer::from_keys(["media"]).join(&field_pointer(
                    cfg.media_id_field
                        .as_deref()
                        .unwrap_or(STRAPI_MEDIA_ID_FIELD),
                )?),
                events: cfg.event_list().unwrap_or_else(|| owned(&STRAPI_EVENTS)),
            },
            FormatKind::Contentful => Preset::Contentful {
                ids: match cfg.id_field.as_deref() {
                    Some(f) if f.starts_with('/') => Pointer::parse(f)?,
                    f => Pointer::parse(&format!(
                        "{}/*",
                        Pointer::from_keys(["fields", f.unwrap_or(CONTENTFUL_ID_FIELD)]).as_str()
                    ))?,
                },
                events: cfg
                    .event_list()
                    .map(|list| {
                        list.iter()
                            .map(|e| contentful_event(e).to_owned())
                            .collect()
                    })
                    .unwrap_or_else(|| owned(&CONTENTFUL_EVENTS)),
            },
            FormatKind::Sanity => Preset::Sanity {
                ids: field(SANITY_ID_FIELD)?,
                events: cfg.event_list(),
            },
            FormatKind::Directus => Preset::Directus {
                ids: match &cfg.id_field {
                    Some(f) => vec![field_pointer(f)?],
                    None => vec![Pointer::from_keys(["keys"]), Pointer::from_keys(["key"])],
                },
                events: cfg.event_list(),
            },
            FormatKind::Ghost => {
                let f = field(GHOST_ID_FIELD)?;
                let under = |state: &str| {
                    ["post", "page"]
                        .iter()
                        .map(|kind| Pointer::from_keys([*kind, state]).join(&f))
                        .collect()
                };
                Preset::Ghost {
                    current: under("current"),
                    previous: under("previous"),
                    events: cfg.event_list(),
                }
            }
            FormatKind::Native | FormatKind::JsonPointer | FormatKind::VodEvents => {
                return Err("not a preset format".to_owned());
            }
        })
    }

    pub(crate) fn extract(&self, headers: &Headers, body: &Value) -> Result<Outcome, PayloadError> {
        match self {
            Preset::Strapi {
                entry,
                media,
                events,
            } => {
                let event = body
                    .get("event")
                    .and_then(Value::as_str)
                    .or_else(|| headers.get("x-strapi-event"))
                    .ok_or_else(|| {
                        PayloadError::invalid(
                            "no event: expected \"event\" in the body or an X-Strapi-Event header",
                        )
                    })?;
                if !events.iter().any(|e| matches(e, event)) {
                    return Ok(Outcome::Ignored(event.to_owned()));
                }
                let pointer = if event.starts_with("media.") {
                    media
                } else {
                    entry
                };
                Ok(Outcome::Purge(collect_ids(
                    body,
                    std::slice::from_ref(pointer),
                )?))
            }
            Preset::Contentful { ids, events } => {
                let topic = headers
                    .get("x-contentful-topic")
                    .ok_or_else(|| PayloadError::invalid("missing X-Contentful-Topic header"))?;
                let event = contentful_event(topic);
                if !events.iter().any(|e| matches(e, event)) {
                    return Ok(Outcome::Ignored(topic.to_owned()));
                }
                Ok(Outcome::Purge(collect_ids(
                    body,
                    std::slice::from_ref(ids),
                )?))
            }
            Preset::Sanity { ids, events } => {
                if let (Some(events), Some(op)) = (events, headers.get("sanity-operation"))
                    && !events.iter().any(|e| matches(e, op))
                {
                    return Ok(Outcome::Ignored(op.to_owned()));
                }
                let found = collect_ids(body, std::slice::from_ref(ids))?;
                let mut out: Vec<String> = Vec::with_capacity(found.len());
                for id in found {
                    let id = id.strip_prefix("drafts.").map(str::to_owned).unwrap_or(id);
                    if !id.is_empty() && !out.contains(&id) {
                        out.push(id);
                    }
                }
                Ok(Outcome::Purge(out))
            }
            Preset::Directus { ids, events } => {
                if let (Some(events), Some(event)) =
                    (events, body.get("event").and_then(Value::as_str))
                    && !events
                        .iter()
                        .any(|e| matches(e, event) || event.ends_with(&format!(".{e}")))
                {
                    return Ok(Outcome::Ignored(event.to_owned()));
                }
                Ok(Outcome::Purge(collect_ids(body, ids)?))
            }
            Preset::Ghost {
                current,
                previous,
                events,
            } => {
                // Ghost 5 adds the event to the body (`WebhookTrigger.js`: `{event, ...payload}`).
                if let (Some(events), Some(event)) =
                    (events, body.get("event").and_then(Value::as_str))
                    && !events.iter().any(|e| matches(e, event))
                {
                    return Ok(Outcome::Ignored(event.to_owned()));
                }
                let ids = collect_ids(body, current)?;
                if !ids.is_empty() {
                    return Ok(Outcome::Purge(ids));
                }
                Ok(Outcome::Purge(collect_ids(body, previous)?))
            }
        }
    }
}

fn contentful_event(topic: &str) -> &str {
    topic.strip_prefix(CONTENTFUL_TOPIC_PREFIX).unwrap_or(topic)
}

/// Exact match, or prefix match when the configured event ends in `*`.
fn matches(configured: &str, event: &str) -> bool {
    match configured.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => configured == event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_matching() {
        assert!(matches("entry.update", "entry.update"));
        assert!(!matches("entry.update", "entry.updated"));
        assert!(matches("entry.*", "entry.create"));
        assert!(!matches("entry.*", "media.create"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn field_pointers() {
        assert_eq!(field_pointer("video_id").unwrap().as_str(), "/video_id");
        assert_eq!(field_pointer("a/b").unwrap().as_str(), "/a~1b");
        assert_eq!(
            field_pointer("/video/*/id").unwrap().as_str(),
            "/video/*/id"
        );
        assert!(field_pointer("").is_err());
        assert!(field_pointer("/a~x").is_err());
    }
}
