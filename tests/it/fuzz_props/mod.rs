//! Fuzz targets (proptest): configuration parsing, and the simulator's gateway fed arbitrary and
//! correctly signed requests over HTTP. None may panic. `bench/drills/fuzz.sh` runs them with
//! many more cases (`PROPTEST_CASES`); `cargo test` runs a few.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use vod_purge::config::Settings;
use vod_purge::sim::{self, SimConfig, SimHandle};
use vod_purge::vod::signing;

/// Cases per target: `PROPTEST_CASES`, or `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VALID_CONFIGS: [&str; 3] = [
    include_str!("../../../config/default.toml"),
    include_str!("../../../docker/config.toml"),
    r#"
[server]
listen = "127.0.0.1:8080"
admin_token = "t"
[store]
url = "sqlite://data/x.db"
[vod]
endpoint = "http://127.0.0.1:9000"
timeout = "2s"
retry_base = "50ms"
retry_max = "200ms"
[queue]
quiet = "200ms"
max_wait = "5s"
lease = "10s"
[[sources]]
name = "cms"
auth = "hmac"
secrets = ["s"]
header = "X-Signature"
prefix = "sha256="
format = "json-pointer"
pointers = ["/data/id", "/items/*/video"]
rate_limit = 10
[[sources]]
name = "strapi"
auth = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
format = "strapi"
id_field = "video_id"
"#,
];

/// Values a mutation may put in place of a key's value.
const VALUES: [&str; 30] = [
    "0",
    "-1",
    "1",
    "50",
    "51",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "nan",
    "true",
    "\"\"",
    "\"0s\"",
    "\"1ms\"",
    "\"18446744073709551615s\"",
    "\"584942417355y\"",
    "\"99999999999999999999h\"",
    "\"-1s\"",
    "\"2s\"",
    "\"x\"",
    "\"(\"",
    "\"[\"",
    "\"sqlite://\"",
    "\"postgres://\"",
    "\"http://\"",
    "\"ftp://x\"",
    "\"\\u0000\"",
    "[]",
    "[\"a\", \"a\"]",
    "{}",
    "{ a = 1 }",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceValue(usize, usize),
    InsertLine(usize, String),
    Uncomment(usize),
    Truncate(usize),
}

mod config;
mod sim_gateway;
mod vod_client;
