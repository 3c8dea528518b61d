//! The optional parameters of `RefreshMediaPlayUrls`, normalised.
//!
//! Two option sets that mean the same thing must land in the same pending item, so they are
//! parsed into sets (order and case do not matter), defaults are made explicit ("every format"
//! is the empty set whether the sender listed all six or none), and a fingerprint is computed
//! from the canonical form.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// Options as a sender writes them (the `options` object of the native payload).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// Subset of `mp4`, `m3u8`, `mp3`, `flv`, `webm`, `ts`; empty or absent means all.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Definitions such as `HD`, `SD`; empty or absent means all.
    #[serde(default)]
    pub definitions: Vec<String>,
    /// Subset of `video`, `audio`; empty or absent means both.
    #[serde(default)]
    pub stream_type: Vec<String>,
    /// `Single` (default) or `Multiple`.
    #[serde(default)]
    pub result_type: Option<String>,
    /// Also process the TS segments of M3U8 streams.
    #[serde(default)]
    pub slice_flag: Option<bool>,
    /// 1 to 20; how many TS segments per M3U8 (default 5). Only meaningful with `slice_flag`.
    #[serde(default)]
    pub slice_count: Option<u32>,
    /// A JSON object passed to VOD as `UserData`, either as an object or as its JSON text.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_data: Option<serde_json::Value>,
}

pub const FORMATS: [&str; 6] = ["flv", "m3u8", "mp3", "mp4", "ts", "webm"];
pub const DEFINITIONS: [&str; 10] = ["2K", "4K", "AUTO", "FD", "HD", "HQ", "LD", "OD", "SD", "SQ"];
pub const STREAM_TYPES: [&str; 2] = ["audio", "video"];
pub const DEFAULT_SLICE_COUNT: u32 = 5;

/// A normalised, valid option set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PurgeOptions {
    /// Lower-case; empty means all formats.
    pub formats: BTreeSet<String>,
    /// Upper-case; empty means all definitions.
    pub definitions: BTreeSet<String>,
    /// Lower-case; empty means all stream types.
    pub stream_types: BTreeSet<String>,
    /// `Multiple` when true, `Single` otherwise.
    pub multiple: bool,
    pub slice_flag: bool,
    /// Always `DEFAULT_SLICE_COUNT` when `slice_flag` is false, where it has no effect.
    pub slice_count: u32,
    /// Compact JSON with sorted keys.
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("unknown format {0:?}: expected one of mp4, m3u8, mp3, flv, webm, ts")]
    Format(String),
    #[error("unknown definition {0:?}: expected one of FD, LD, SD, HD, 2K, 4K, OD, SQ, HQ, AUTO")]
    Definition(String),
    #[error("unknown stream type {0:?}: expected video or audio")]
    StreamType(String),
    #[error("unknown result type {0:?}: expected Single or Multiple")]
    ResultType(String),
    #[error("slice_count {0} is out of range 1 to 20")]
    SliceCount(u32),
    #[error("user_data must be a JSON object (or its text): {0}")]
    UserData(String),
}

impl Default for PurgeOptions {
    fn default() -> Self {
        PurgeOptions {
            formats: BTreeSet::new(),
            definitions: BTreeSet::new(),
            stream_types: BTreeSet::new(),
            multiple: false,
            slice_flag: false,
            slice_count: DEFAULT_SLICE_COUNT,
            user_data: None,
        }
    }
}

fn normalise_set(
    raw: &[String],
    allowed: &[&str],
    upper: bool,
    err: fn(String) -> OptionsError,
) -> Result<BTreeSet<String>, OptionsError> {
    let mut out = BTreeSet::new();
    for value in raw.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        let value = if upper {
            value.to_ascii_uppercase()
        } else {
            value.to_ascii_lowercase()
        };
        if !allowed.contains(&value.as_str()) {
            return Err(err(value));
        }
        out.insert(value);
    }
    // Naming every allowed value means the same as naming none.
    if out.len() == allowed.len() {
        out.clear();
    }
    Ok(out)
}

impl PurgeOptions {
    pub fn parse(raw: &RawOptions) -> Result<PurgeOptions, OptionsError> {
        let formats = normalise_set(&raw.formats, &FORMATS, false, OptionsError::Format)?;
        let definitions = normalise_set(
            &raw.definitions,
            &DEFINITIONS,
            true,
            OptionsError::Definition,
        )?;
        let stream_types = normalise_set(
            &raw.stream_type,
            &STREAM_TYPES,
            false,
            OptionsError::StreamType,
        )?;
        let multiple = match raw.result_type.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(r) if r.eq_ignore_ascii_case("single") => false,
            Some(r) if r.eq_ignore_ascii_case("multiple") => true,
            Some(r) => return Err(OptionsError::ResultType(r.to_owned())),
        };
        let slice_flag = raw.slice_flag.unwrap_or(false);
        let slice_count = raw.slice_count.unwrap_or(DEFAULT_SLICE_COUNT);
        if !(1..=20).contains(&slice_count) {
            return Err(OptionsError::SliceCount(slice_count));
        }
        let slice_count = if slice_flag {
            slice_count
        } else {
            DEFAULT_SLICE_COUNT
        };
        let user_data = match &raw.user_data {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) if text.trim().is_empty() => None,
            Some(serde_json::Value::String(text)) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| OptionsError::UserData(e.to_string()))?;
                Some(canonical_object(&value)?)
            }
            Some(value) => Some(canonical_object(value)?),
        };
        Ok(PurgeOptions {
            formats,
            definitions,
            stream_types,
            multiple,
            slice_flag,
            slice_count,
            user_data,
        })
    }

    /// The fingerprint of the default options (computed once), which every URL, directory and
    /// cover item carries: the options of `RefreshMediaPlayUrls` do not apply to them.
    pub fn default_fingerprint() -> String {
        static FINGERPRINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        FINGERPRINT
            .get_or_init(|| PurgeOptions::default().fingerprint())
            .clone()
    }

    /// A short stable hash of the canonical form; equal meanings give equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_string(self).expect("options serialise");
        let digest = Sha256::digest(canonical.as_bytes());
        hex::encode(&digest[..8])
    }

    pub fn result_type(&self) -> &'static str {
        if self.multiple { "Multiple" } else { "Single" }
    }
}

fn canonical_object(value: &serde_json::Value) -> Result<String, OptionsError> {
    if !value.is_object() {
        return Err(OptionsError::UserData("not an object".to_owned()));
    }
    // serde_json's map is ordered by key unless `preserve_order` is on, so this is canonical.
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<PurgeOptions, OptionsError> {
        PurgeOptions::parse(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn equal_meanings_equal_fingerprints() {
        let pairs = [
            (
                json!({}),
                json!({"formats": [], "result_type": "Single", "slice_flag": false}),
            ),
            (
                json!({"formats": ["MP4", "m3u8"]}),
                json!({"formats": ["m3u8,mp4"]}),
            ),
            (
                json!({"formats": ["mp4", "m3u8", "mp3", "flv", "webm", "ts"]}),
                json!({}),
            ),
            (
                json!({"definitions": ["hd", "SD"]}),
                json!({"definitions": ["SD", "HD", "HD"]}),
            ),
            (json!({"stream_type": ["video", "audio"]}), json!({})),
            (json!({"slice_count": 9}), json!({})),
            (
                json!({"result_type": "multiple"}),
                json!({"result_type": "Multiple"}),
            ),
            (
                json!({"user_data": {"b": 1, "a": 2}}),
                json!({"user_data": "{\"a\": 2, \"b\": 1}"}),
            ),
        ];
        for (a, b) in pairs {
            let (fa, fb) = (
                parse(a.clone()).unwrap().fingerprint(),
                parse(b.clone()).unwrap().fingerprint(),
            );
            assert_eq!(fa, fb, "{a} vs {b}");
        }
    }

    #[test]
    fn different_meanings_differ() {
        let a = parse(json!({"formats": ["mp4"]})).unwrap().fingerprint();
        let b = parse(json!({"formats": ["m3u8"]})).unwrap().fingerprint();
        let c = parse(json!({"slice_flag": true, "slice_count": 9}))
            .unwrap()
            .fingerprint();
        let d = parse(json!({"slice_flag": true})).unwrap().fingerprint();
        assert_ne!(a, b);
        assert_ne!(c, d);
    }

    #[test]
    fn invalid_values_table() {
        for raw in [
            json!({"formats": ["avi"]}),
            json!({"definitions": ["FHD"]}),
            json!({"stream_type": ["subtitle"]}),
            json!({"result_type": "All"}),
            json!({"slice_count": 0}),
            json!({"slice_count": 21}),
            json!({"user_data": "not json"}),
            json!({"user_data": [1, 2]}),
        ] {
            assert!(parse(raw.clone()).is_err(), "{raw}");
        }
    }
}
