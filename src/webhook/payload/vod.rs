//! `vod-events`: ApsaraVideo VOD's event notifications (`docs/vod-callbacks.md`) turned into
//! purges. By default a successful `TranscodeComplete` or `StreamTranscodeComplete` refreshes
//! the event's `VideoId`: after a re-transcode the CDN's copies of the old streams are stale.
//! The source's `events` table maps other event types (or these) to `Refresh`, `Preload`,
//! `RefreshThenPreload` or `ignore`; every other event is acknowledged and ignored.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::Value;

use crate::domain::RequestedTask;

use super::super::error::PayloadError;

/// What an event type does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventAction {
    Purge(RequestedTask),
    Ignore,
}

impl EventAction {
    pub(crate) fn parse(raw: &str) -> Result<EventAction, String> {
        if raw == "ignore" {
            return Ok(EventAction::Ignore);
        }
        RequestedTask::from_str(raw)
            .map(EventAction::Purge)
            .map_err(|_| format!("{raw:?} is not Refresh, Preload, RefreshThenPreload or ignore"))
    }
}

/// The event types that purge without any configuration.
const DEFAULT_EVENTS: [(&str, RequestedTask); 2] = [
    ("TranscodeComplete", RequestedTask::Refresh),
    ("StreamTranscodeComplete", RequestedTask::Refresh),
];

/// What one event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Purge this media ID with this task.
    Purge(String, RequestedTask),
    /// Acknowledge and do nothing: the event type, and why.
    Ignored(String, String),
}

pub(crate) struct VodEvents {
    actions: BTreeMap<String, EventAction>,
}

impl VodEvents {
    /// The defaults with the source's table on top (already validated).
    pub(crate) fn new(table: Option<&BTreeMap<String, String>>) -> Result<VodEvents, String> {
        let mut actions: BTreeMap<String, EventAction> = DEFAULT_EVENTS
            .iter()
            .map(|(event, task)| ((*event).to_owned(), EventAction::Purge(*task)))
            .collect();
        for (event, action) in table.into_iter().flatten() {
            let action =
                EventAction::parse(action).map_err(|why| format!("events.{event}: {why}"))?;
            actions.insert(event.clone(), action);
        }
        Ok(VodEvents { actions })
    }

    pub(crate) fn extract(&self, body: &Value) -> Result<Outcome, PayloadError> {
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::trim);
        let event = field("EventType")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| PayloadError::invalid("no EventType: not a VOD event notification"))?
            .to_owned();
        let ignored = |why: String| Ok(Outcome::Ignored(event.clone(), why));
        let task = match self.actions.get(&event) {
            Some(EventAction::Purge(task)) => *task,
            Some(EventAction::Ignore) => return ignored("events maps it to ignore".to_owned()),
            None => return ignored("not an event this source purges for".to_owned()),
        };
        if let Some(status) = field("Status")
            && !status.eq_ignore_ascii_case("success")
        {
            return ignored(format!("Status is {status:?}, not \"success\""));
        }
        // DeleteMediaComplete names the media in MediaId, every other event in VideoId.
        match field("VideoId")
            .or(field("MediaId"))
            .filter(|id| !id.is_empty())
        {
            Some(id) => Ok(Outcome::Purge(id.to_owned(), task)),
            None => ignored("the event names no VideoId or MediaId".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "3a3b7b0e9c8f4e1d8a2b6c5d4e3f2a1b";

    fn events(table: &[(&str, &str)]) -> VodEvents {
        let table: BTreeMap<String, String> = table
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        VodEvents::new(Some(&table)).unwrap()
    }

    #[test]
    fn events_to_outcomes() {
        let defaults = events(&[]);
        let mapped = events(&[
            ("TranscodeComplete", "RefreshThenPreload"),
            ("DeleteMediaComplete", "Refresh"),
            ("StreamTranscodeComplete", "ignore"),
        ]);
        let purge = |task| Ok(Outcome::Purge(ID.to_owned(), task));
        let ignored =
            |event: &str, why: &str| Ok(Outcome::Ignored(event.to_owned(), why.to_owned()));
        let transcoded =
            json!({"EventType": "TranscodeComplete", "VideoId": ID, "Status": "success"});
        let stream = json!({"EventType": "StreamTranscodeComplete", "VideoId": ID, "Status": "success", "Definition": "FHD"});
        let failed = json!({"EventType": "TranscodeComplete", "VideoId": ID, "Status": "fail"});
        let deleted = json!({"EventType": "DeleteMediaComplete", "MediaId": ID, "Status": "success", "MediaType": "video"});
        let uploaded =
            json!({"EventType": "FileUploadComplete", "VideoId": ID, "Status": "success"});
        let anonymous = json!({"EventType": "TranscodeComplete", "Status": "success"});
        let table = [
            (&defaults, &transcoded, purge(RequestedTask::Refresh)),
            (&defaults, &stream, purge(RequestedTask::Refresh)),
            (
                &defaults,
                &failed,
                ignored("TranscodeComplete", "Status is \"fail\", not \"success\""),
            ),
            (
                &defaults,
                &deleted,
                ignored("DeleteMediaComplete", "not an event this source purges for"),
            ),
            (
                &defaults,
                &uploaded,
                ignored("FileUploadComplete", "not an event this source purges for"),
            ),
            (
                &defaults,
                &anonymous,
                ignored("TranscodeComplete", "the event names no VideoId or MediaId"),
            ),
            (
                &mapped,
                &transcoded,
                purge(RequestedTask::RefreshThenPreload),
            ),
            (&mapped, &deleted, purge(RequestedTask::Refresh)),
            (
                &mapped,
                &stream,
                ignored("StreamTranscodeComplete", "events maps it to ignore"),
            ),
        ];
        for (source, body, want) in table {
            assert_eq!(source.extract(body), want, "{body}");
        }
        for body in [json!({"VideoId": ID}), json!([1]), json!({"EventType": 3})] {
            assert_eq!(
                defaults.extract(&body).unwrap_err().code(),
                "invalid_payload",
                "{body}"
            );
        }
    }

    #[test]
    fn actions_parse() {
        assert_eq!(EventAction::parse("ignore"), Ok(EventAction::Ignore));
        assert_eq!(
            EventAction::parse("Preload"),
            Ok(EventAction::Purge(RequestedTask::Preload))
        );
        assert!(
            EventAction::parse("refresh")
                .unwrap_err()
                .contains("not Refresh, Preload")
        );
    }
}
