//! What an operator relies on: the OpenAPI document, metrics, configuration checks, and a
//! graceful shutdown of the real binary.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use vod_purge::config::StoreLocation;
use vod_purge::sim::{Faults, SimConfig};
use vod_purge::store::{JobFilter, Store};

use crate::support::{
    ADMIN_TOKEN, Spawn, binary, free_port, http_client, spawn_app, start_serving, stdout_of,
    wait_until,
};

/// The `config.toml` embedded in each variant's ConfigMap, as the pod would load it.
pub fn configmap_config(variant: &str) -> String {
    let path = format!(
        "{}/k8s/{variant}/configmap.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "config.toml: |")
        .skip(1);
    let first = lines.next().expect("config.toml has content");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent),
        )
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

mod api;
mod config;
mod deploy;
mod layers;
mod quota;
mod shutdown;
