//! Helpers shared by the webhook tests: fixtures and sources built from JSON.

use std::path::PathBuf;

use serde_json::{Value, json};
use vod_purge::webhook::{Headers, Source, SourceConfig};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A source from a JSON object with the keys of a `[[sources]]` table; `name` is filled in.
pub fn source(mut cfg: Value) -> Source {
    if cfg.get("name").is_none() {
        cfg["name"] = json!("test");
    }
    let cfg: SourceConfig = serde_json::from_value(cfg).expect("source config deserialises");
    Source::new(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Headers<'a> {
    Headers::new(pairs)
}
