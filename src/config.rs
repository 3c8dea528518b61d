//! The settings tree: defaults embedded from `config/default.toml`, then an optional file, then
//! `VOD_PURGE_*` environment variables. The variables of the Alibaba Cloud credential chain are
//! captured beside it ([`Settings::environment`]) for the chain to read at start. Everything is
//! validated once, at load, with messages that name the key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::credentials::{Choice, Credentials, Environment, ProviderName};
use crate::flusher::hold::{QuotaReset, Reserve};
use crate::webhook::SourceConfig;

/// The documented defaults; also the configuration reference.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// The highest `vod.max_requests_per_second` VOD documents for `RefreshMediaPlayUrls`.
pub const VOD_MAX_QPS: u32 = 50;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub vod: VodSettings,
    pub queue: QueueSettings,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// The credential chain's variables (`ALIBABA_CLOUD_*`, `HOME`), captured at load; empty
    /// for settings parsed from text alone.
    #[serde(skip)]
    pub environment: Environment,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub admin_token: Secret,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    pub unauthenticated_reads: usize,
    pub peer_failures_per_second: u32,
    pub peer_failure_burst: u32,
    pub trusted_proxies: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VodSettings {
    pub region: String,
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub credentials: Choice,
    pub sts_endpoint: String,
    pub metadata_endpoint: String,
    pub max_requests_per_second: u32,
    pub burst: u32,
    pub max_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    pub dry_run: bool,
    #[serde(with = "humantime_serde")]
    pub quota_poll_interval: Duration,
    /// When the daily quota comes back (see [`crate::flusher::hold`]).
    pub quota_reset: QuotaReset,
    #[serde(with = "humantime_serde")]
    pub quota_probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_hold: Duration,
    pub urgent_quota_reserve: Reserve,
    #[serde(with = "humantime_serde")]
    pub check_after: Duration,
    pub checks_per_second: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    #[serde(with = "humantime_serde")]
    pub quiet: Duration,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub media_id_pattern: String,
    pub max_ids_per_request: usize,
}

/// A string that never shows in `Debug` output or in `check-config`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

/// Environment variables with the `VOD_PURGE_` prefix that are command-line flags, not settings
/// (without the prefix, as figment compares them).
const NOT_SETTINGS_ENV: [&str; 2] = ["config", "admin_token"];

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Where the store lives, decided by the scheme of `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(String),
    Postgres(String),
}

impl Settings {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, |name| std::env::var(name).ok(), true)
    }

    /// Like [`Settings::load`], with the environment lookups injected (tests use this).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        read_process_env: bool,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if read_process_env {
            // VOD_PURGE_CONFIG (the `--config` flag) and VOD_PURGE_ADMIN_TOKEN (the `purge`
            // subcommand) share the prefix but are not settings.
            figment = figment.merge(
                Env::prefixed("VOD_PURGE_")
                    .ignore(&NOT_SETTINGS_ENV)
                    .split("__"),
            );
        }
        let mut settings: Settings = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        settings.environment = Environment::capture(&env);
        settings.resolve_source_secrets(&env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses a complete TOML document on top of the defaults, without the environment.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let figment = Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(text));
        let settings: Settings = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Adds the values of each source's `secrets_env` variables to its secrets.
    fn resolve_source_secrets(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (i, source) in self.sources.iter_mut().enumerate() {
            for name in &source.secrets_env {
                match env(name).filter(|v| !v.is_empty()) {
                    Some(secret) => source.secrets.push(secret),
                    None => {
                        return Err(ConfigError(format!(
                            "sources[{i}].secrets_env: the environment variable {name} is not set or empty"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Cross-field and range checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        let vod = &self.vod;
        // VOD limits each operation to VOD_MAX_QPS calls per second per account.
        for (key, value, action) in [
            (
                "vod.max_requests_per_second",
                vod.max_requests_per_second,
                "RefreshMediaPlayUrls",
            ),
            (
                "vod.checks_per_second",
                vod.checks_per_second,
                "GetMediaRefreshJobs",
            ),
        ] {
            if value == 0 || value > VOD_MAX_QPS {
                return fail(
                    key,
                    format!(
                        "{value} is outside 1 to {VOD_MAX_QPS}; VOD allows {VOD_MAX_QPS} {action} calls per second per account"
                    ),
                );
            }
        }
        if vod.burst == 0 || vod.burst > vod.max_requests_per_second {
            return fail(
                "vod.burst",
                format!(
                    "{} must be between 1 and max_requests_per_second",
                    vod.burst
                ),
            );
        }
        if vod.quota_probe_interval.is_zero() {
            return fail("vod.quota_probe_interval", "must be more than zero".into());
        }
        if vod.max_hold.is_zero() {
            return fail(
                "vod.max_hold",
                "must be more than zero (a job held on the quota fails after it)".into(),
            );
        }
        if vod.max_in_flight == 0 {
            return fail("vod.max_in_flight", "must be at least 1".into());
        }
        if vod.max_attempts == 0 {
            return fail("vod.max_attempts", "must be at least 1".into());
        }
        if vod.timeout.is_zero() {
            return fail("vod.timeout", "must be more than zero".into());
        }
        if vod.retry_base.is_zero() || vod.retry_base > vod.retry_max {
            return fail(
                "vod.retry_base",
                "must be more than zero and at most vod.retry_max".into(),
            );
        }
        let is_url = vod.endpoint.starts_with("http://") || vod.endpoint.starts_with("https://");
        if !vod.endpoint.is_empty() && !is_url {
            return fail(
                "vod.endpoint",
                format!("{:?} is not an http:// or https:// URL", vod.endpoint),
            );
        }
        if vod.endpoint.is_empty()
            && !vod
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return fail(
                "vod.region",
                format!("{:?} is not a region ID such as cn-shanghai", vod.region),
            );
        }
        if vod.access_key_id.is_empty() != vod.access_key_secret.is_empty() {
            return fail(
                "vod.access_key_id",
                "vod.access_key_id and vod.access_key_secret go together: set both or neither"
                    .into(),
            );
        }
        if !vod.security_token.is_empty() && vod.access_key_id.is_empty() {
            return fail(
                "vod.security_token",
                "an STS token needs vod.access_key_id and vod.access_key_secret".into(),
            );
        }
        if vod.credentials.pinned() == Some(ProviderName::Config) && self.config_keys().is_none() {
            return fail(
                "vod.credentials",
                "\"config\" pins the configuration's keys, but vod.access_key_id is empty".into(),
            );
        }
        let is_http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !is_http(&vod.metadata_endpoint) {
            return fail(
                "vod.metadata_endpoint",
                format!(
                    "{:?} is not an http:// or https:// URL",
                    vod.metadata_endpoint
                ),
            );
        }
        if vod.sts_endpoint.contains(char::is_whitespace) {
            return fail(
                "vod.sts_endpoint",
                format!("{:?} is not a URL or host name", vod.sts_endpoint),
            );
        }
        let queue = &self.queue;
        if queue.max_wait.is_zero() {
            return fail("queue.max_wait", "must be more than zero".into());
        }
        if queue.quiet > queue.max_wait {
            return fail(
                "queue.quiet",
                format!(
                    "{:?} is longer than queue.max_wait {:?}",
                    queue.quiet, queue.max_wait
                ),
            );
        }
        if queue.lease < vod.timeout.saturating_mul(2) {
            return fail(
                "queue.lease",
                "must be at least twice vod.timeout, or a slow call would be sent twice".into(),
            );
        }
        if queue.poll_interval.is_zero() {
            return fail("queue.poll_interval", "must be more than zero".into());
        }
        if let Err(e) = regex::Regex::new(&queue.media_id_pattern) {
            return fail(
                "queue.media_id_pattern",
                format!("not a regular expression: {e}"),
            );
        }
        if queue.max_ids_per_request == 0 {
            return fail("queue.max_ids_per_request", "must be at least 1".into());
        }
        let server = &self.server;
        if server.max_body_bytes < 64 {
            return fail("server.max_body_bytes", "must be at least 64".into());
        }
        if server.body_timeout.is_zero() {
            return fail("server.body_timeout", "must be more than zero".into());
        }
        for (key, value) in [
            (
                "server.unauthenticated_reads",
                server.unauthenticated_reads as u64,
            ),
            (
                "server.peer_failures_per_second",
                u64::from(server.peer_failures_per_second),
            ),
            (
                "server.peer_failure_burst",
                u64::from(server.peer_failure_burst),
            ),
        ] {
            if value == 0 {
                return fail(key, "must be at least 1".into());
            }
        }
        self.trusted_proxies()?;
        self.store_location()?;
        let mut names = std::collections::HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            if !names.insert(source.name.as_str()) {
                return fail(
                    &format!("sources[{i}].name"),
                    format!("{:?} is used by two sources", source.name),
                );
            }
            source
                .validate()
                .map_err(|why| ConfigError(format!("sources[{i}] ({}): {why}", source.name)))?;
        }
        Ok(())
    }

    pub fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        let url = self.store.url.as_str();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError("store.url: sqlite:// needs a file path".into()));
            }
            Ok(StoreLocation::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(url.to_owned()))
        } else {
            Err(ConfigError(format!(
                "store.url: {url:?} must start with sqlite:// or postgres://"
            )))
        }
    }

    /// `server.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.server
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                crate::api::guard::parse_proxy(entry)
                    .map_err(|why| ConfigError(format!("server.trusted_proxies[{i}]: {why}")))
            })
            .collect()
    }

    /// The keys of `vod.access_key_id` / `_secret` / `vod.security_token`, when set.
    pub fn config_keys(&self) -> Option<Credentials> {
        let vod = &self.vod;
        (!vod.access_key_id.is_empty() && !vod.access_key_secret.is_empty()).then(|| {
            Credentials::new(
                vod.access_key_id.clone(),
                vod.access_key_secret.expose(),
                Some(vod.security_token.expose().to_owned()),
            )
        })
    }

    /// Where the STS calls of the chain go (see [`crate::credentials::chain::sts_endpoint`]).
    pub fn sts_endpoint(&self) -> String {
        crate::credentials::chain::sts_endpoint(&self.vod.sts_endpoint, &self.environment)
    }

    /// The VOD base URL: the explicit endpoint, or the region's.
    pub fn vod_base_url(&self) -> String {
        if self.vod.endpoint.is_empty() {
            format!("https://vod.{}.aliyuncs.com", self.vod.region)
        } else {
            self.vod.endpoint.trim_end_matches('/').to_owned()
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }
}

/// Figment's errors name the key and the source; make them one readable line each.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut line = if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{key}: {}", e.kind)
            };
            if !origin.is_empty() {
                line.push_str(&format!(" (from {origin})"));
            }
            let unknown = matches!(e.kind, figment::error::Kind::UnknownField(..));
            if unknown && origin.contains("environment") && e.path.len() <= 1 {
                line.push_str(
                    "; environment variables put `__` between levels, e.g. VOD_PURGE_QUEUE__QUIET=5s",
                );
            }
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, String> {
        let text = if text.contains("[vod]") {
            text.replace("[vod]", "[vod]\ndry_run = true")
        } else {
            format!("[vod]\ndry_run = true\n{text}")
        };
        Settings::from_toml(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_load() {
        let s = load("").unwrap();
        assert_eq!(s.vod.max_requests_per_second, 50);
        assert_eq!(s.queue.quiet, Duration::from_secs(2));
        assert_eq!(s.queue.linger, Duration::from_millis(250));
        assert_eq!(
            s.store_location().unwrap(),
            StoreLocation::Sqlite("data/vod-purge.db".into())
        );
    }

    #[test]
    fn errors_name_the_key() {
        let table = [
            (
                "[vod]\nmax_requests_per_second = 51",
                "vod.max_requests_per_second",
            ),
            ("[vod]\nchecks_per_second = 51", "vod.checks_per_second"),
            ("[vod]\nchecks_per_second = 0", "vod.checks_per_second"),
            ("[vod]\ncheck_after = \"later\"", "vod.check_after"),
            ("[queue]\nquiet = \"soon\"", "queue.quiet"),
            ("[queue]\nunknown = 1", "unknown"),
            ("[queue]\nquiet = \"40s\"", "queue.quiet"),
            ("[store]\nurl = \"mysql://x\"", "store.url"),
            (
                "[queue]\nmedia_id_pattern = \"(\"",
                "queue.media_id_pattern",
            ),
            ("[vod]\nendpoint = \"ftp://x\"", "vod.endpoint"),
            ("[server]\nbody_timeout = \"0s\"", "server.body_timeout"),
            (
                "[server]\nunauthenticated_reads = 0",
                "server.unauthenticated_reads",
            ),
            (
                "[server]\npeer_failure_burst = 0",
                "server.peer_failure_burst",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"lb.local\"]",
                "server.trusted_proxies[1]",
            ),
        ];
        for (text, key) in table {
            let err = load(text).expect_err(text);
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn source_secrets_can_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = "[vod]\ndry_run = true\n[[sources]]\nname = \"cms\"\nauth = \"bearer\"\nsecrets_env = [\"CMS_TOKEN\"]\nformat = \"native\"\n";
        std::fs::write(&path, text).unwrap();
        let env = |name: &str| (name == "CMS_TOKEN").then(|| "from-env".to_owned());
        let s = Settings::load_with_env(Some(&path), env, false).unwrap();
        assert_eq!(s.sources[0].secrets, vec!["from-env"]);
        let err = Settings::load_with_env(Some(&path), |_| None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources[0].secrets_env") && err.contains("CMS_TOKEN"),
            "{err}"
        );
    }

    #[test]
    fn credential_settings() {
        // No keys is valid: the credential chain decides at start.
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.config_keys(), None);
        assert_eq!(s.vod.credentials, Choice::default());
        assert_eq!(s.sts_endpoint(), "https://sts.aliyuncs.com");
        let table = [
            ("[vod]\naccess_key_id = \"id\"", "vod.access_key_id"),
            ("[vod]\nsecurity_token = \"t\"", "vod.security_token"),
            ("[vod]\ncredentials = \"config\"", "vod.credentials"),
            ("[vod]\ncredentials = \"magic\"", "vod.credentials"),
            (
                "[vod]\nmetadata_endpoint = \"100.100.100.200\"",
                "vod.metadata_endpoint",
            ),
        ];
        for (text, key) in table {
            let err = Settings::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
        let s = Settings::from_toml(
            "[vod]\naccess_key_id = \"id\"\naccess_key_secret = \"secret\"\ncredentials = \"config\"",
        )
        .unwrap();
        assert_eq!(s.config_keys().unwrap().access_key_id(), "id");
        assert!(
            !format!("{s:?}").contains("secret\""),
            "secret must not show in Debug"
        );
        assert!(s.to_redacted_toml().contains("<redacted>"));
        // The chain's variables are captured beside the settings, not merged into them.
        let env = |name: &str| match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("id".to_owned()),
            "ALIBABA_CLOUD_STS_REGION" => Some("cn-hangzhou".to_owned()),
            _ => None,
        };
        let s = Settings::load_with_env(None, env, false).unwrap();
        assert_eq!(s.config_keys(), None);
        assert_eq!(s.environment.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), Some("id"));
        assert_eq!(s.sts_endpoint(), "https://sts.cn-hangzhou.aliyuncs.com");
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    /// `config/default.toml` is the configuration reference: every key of the settings tree must
    /// be in it, under its table, with a comment above it.
    #[test]
    fn every_key_is_documented_in_the_default_file() {
        let settings = Settings::from_toml("[vod]\ndry_run = true").unwrap();
        let tree = toml::Value::try_from(&settings).unwrap();
        let lines: Vec<&str> = DEFAULTS.lines().collect();
        for (table, value) in tree.as_table().unwrap() {
            let Some(keys) = value.as_table() else {
                continue;
            };
            let header = lines.iter().position(|l| l.trim() == format!("[{table}]"));
            let header =
                header.unwrap_or_else(|| panic!("[{table}] is not in config/default.toml"));
            for key in keys.keys() {
                let at = lines[header..]
                    .iter()
                    .position(|l| l.starts_with(&format!("{key} =")))
                    .unwrap_or_else(|| panic!("{table}.{key} is not in config/default.toml"));
                let previous = lines[header + at - 1].trim_start();
                assert!(
                    previous.starts_with('#') || lines[header + at - 1].contains(" = "),
                    "{table}.{key} has no comment above it"
                );
            }
        }
    }
}
