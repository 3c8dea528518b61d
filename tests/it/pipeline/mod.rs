//! The purge pipeline end to end: HTTP in, the real store and flusher, the simulator out; by
//! feature in the files below.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use vod_purge::config::StoreLocation;
use vod_purge::domain::{PurgeOptions, Ts};
use vod_purge::sim::{Faults, SimConfig};
use vod_purge::store::{ClaimBatch, Store};

use crate::support::{ADMIN_TOKEN, Spawn, spawn_app, spawn_on, wait_until};

fn sent_ids(calls: &[vod_purge::sim::RecordedCall]) -> Vec<String> {
    let mut ids: Vec<String> = calls.iter().flat_map(|c| c.media_ids.clone()).collect();
    ids.sort();
    ids
}

async fn job_of(app: &crate::support::TestApp, media_id: &str) -> serde_json::Value {
    let media = app.get_json(&format!("/media/{media_id}")).await;
    media["jobs"][0].clone()
}

mod checks;
mod debounce;
mod refusals;
mod retries;
