//! vod-purge turns "content updated" webhooks from a CMS into batched, rate-limited
//! ApsaraVideo VOD `RefreshMediaPlayUrls` calls, and shows what happened to every media ID.
//!
//! # Layout
//!
//! - [`domain`]: value types (media IDs, tasks, normalised options, timestamps); no I/O.
//! - [`queue`]: the debounce and dedup rules, pure, time as an argument.
//! - [`config`]: the typed settings tree, defaults embedded, environment overrides, validation.
//! - [`store`]: the durable store contract and its backends (SQLite, PostgreSQL).
//! - [`flusher`]: claims due items, batches them, calls VOD under the rate limit, records jobs.
//! - [`credentials`]: the Alibaba Cloud credential chain and the renewal of STS credentials.
//! - [`vod`]: the VOD client: Signature 1.0, typed requests, responses and errors.
//! - [`sim`]: the VOD simulator served by `vod-purge sim`, used by the tests and the demo.
//! - [`webhook`]: webhook sources: authentication schemes and payload formats.
//! - [`api`]: the HTTP surface: ingest, jobs, media, queue, health.
//! - [`startup`]: builds and runs the application; shared by `main` and the tests.
//! - [`telemetry`]: logging setup.
//! - [`metrics`]: Prometheus metrics in a registry per application.
//! - [`quota`]: polls VOD's daily refresh quota into metrics.

pub mod acs;
pub mod api;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod flusher;
mod lanes;
pub mod metrics;
pub mod queue;
pub mod sim;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vod;
pub mod webhook;
mod workers;
