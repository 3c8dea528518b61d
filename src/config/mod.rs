//! The settings tree: defaults embedded from `config/default.toml`, then an optional file, then
//! `VOD_PURGE_*` environment variables. The variables of the Alibaba Cloud credential chain are
//! captured beside it ([`Settings::environment`]) for the chain to read at start. Everything is
//! validated once, at load, with messages that name the key.

mod accounts;
mod sections;
mod validate;
mod values;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use crate::store::StoreLocation;
pub use crate::telemetry::LogFormat;
pub use accounts::{AccountSettings, env_name as account_env_name};
pub use sections::*;
pub use values::{TrustedProxies, parse_proxy};

use crate::credentials::Environment;
use crate::webhook::SourceConfig;

/// The documented defaults; also the configuration reference.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

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
    /// The `[[accounts]]` tables as written; read into [`Settings::extra_accounts`] at load.
    #[serde(default, rename = "accounts", skip_serializing)]
    account_tables: Vec<toml::Table>,
    /// The accounts besides `default` (`[[accounts]]`), each complete (see [`accounts`]).
    #[serde(skip)]
    pub extra_accounts: Vec<AccountSettings>,
    /// The credential chain's variables (`ALIBABA_CLOUD_*`, `HOME`), captured at load; empty
    /// for settings parsed from text alone.
    #[serde(skip)]
    pub environment: Environment,
}

/// Environment variables with the `VOD_PURGE_` prefix that are command-line flags, not settings
/// (without the prefix, as figment compares them).
const NOT_SETTINGS_ENV: [&str; 2] = ["config", "admin_token"];

/// A configuration that cannot be used; each names the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {} does not exist", .0.display())]
    NoFile(PathBuf),
    /// A key missing, of the wrong type, unknown, or whose text does not parse; one line each,
    /// with the key and where the value came from.
    #[error("{0}")]
    Unreadable(String),
    /// A value out of its range, or at odds with another key.
    #[error("{key}: {why}")]
    Invalid { key: String, why: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            why: why.into(),
        }
    }

    /// The key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
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
                return Err(ConfigError::NoFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if read_process_env {
            // VOD_PURGE_CONFIG (the `--config` flag) and VOD_PURGE_ADMIN_TOKEN (the `purge`
            // subcommand) share the prefix but are not settings.
            figment = figment.merge(
                Env::prefixed("VOD_PURGE_")
                    .ignore(&NOT_SETTINGS_ENV)
                    // An account's variables are read with its table (see `accounts::parse`).
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("accounts__"))
                    .split("__"),
            );
        }
        let mut settings: Settings = figment.extract().map_err(describe)?;
        let process_vars = || std::env::vars().collect::<Vec<_>>();
        settings.extra_accounts = accounts::parse(
            &settings.account_tables,
            read_process_env.then_some(&process_vars as &dyn Fn() -> Vec<(String, String)>),
        )?;
        settings.environment = Environment::capture(&env);
        settings.resolve_source_secrets(&env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses a complete TOML document on top of the defaults, without the environment.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_layers(&[text])
    }

    /// Parses TOML documents on top of the defaults and of each other, without the
    /// environment: a later document's keys win, and its `[[sources]]` are added to the
    /// earlier ones.
    pub fn from_layers(layers: &[&str]) -> Result<Settings, ConfigError> {
        let figment = layers
            .iter()
            .fold(Figment::from(Toml::string(DEFAULTS)), |figment, layer| {
                figment.admerge(Toml::string(layer))
            });
        let mut settings: Settings = figment.extract().map_err(describe)?;
        settings.extra_accounts = accounts::parse(&settings.account_tables, None)?;
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
                        return Err(ConfigError::invalid(
                            format!("sources[{i}].secrets_env"),
                            format!("the environment variable {name} is not set or empty"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every account, `default` (the `[vod]` section) first.
    pub fn accounts(&self) -> Vec<AccountSettings> {
        let mut all = vec![AccountSettings::from_vod(
            crate::domain::AccountName::default_account(),
            &self.vod,
        )];
        all.extend(self.extra_accounts.iter().cloned());
        all
    }

    /// The `default` account (the `[vod]` section).
    pub fn default_account(&self) -> AccountSettings {
        AccountSettings::from_vod(crate::domain::AccountName::default_account(), &self.vod)
    }

    /// The account named `name`, if the configuration has it.
    pub fn account(&self, name: &str) -> Option<AccountSettings> {
        self.accounts()
            .into_iter()
            .find(|a| a.name.as_str() == name)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let render = || -> Result<String, toml::ser::Error> {
            let mut tree = toml::Table::try_from(self)?;
            if !self.extra_accounts.is_empty() {
                tree.insert(
                    "accounts".to_owned(),
                    toml::Value::try_from(&self.extra_accounts)?,
                );
            }
            toml::to_string_pretty(&tree)
        };
        render().unwrap_or_else(|e| format!("# cannot render configuration: {e}"))
    }
}

/// A TOML parse error without the lines of the file it quotes (`6 | access_key_secret = ...`):
/// the line may hold a secret, and its number and column say where to look.
fn without_source_lines(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            // The quoted lines and the caret line sit behind a `|` gutter.
            let gutter = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !gutter.starts_with('|')
        })
        .collect();
    kept.join(": ")
}

/// Figment's errors name the key and the source; make them one readable line each.
pub(crate) fn describe(error: figment::Error) -> ConfigError {
    let lines = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut line = match &e.kind {
                _ if key.is_empty() => without_source_lines(&e.kind.to_string()),
                // An entry of a list names itself: `server.trusted_proxies[1]: ...`.
                figment::error::Kind::Message(message) if message.starts_with('[') => {
                    format!("{key}{message}")
                }
                kind => format!("{key}: {kind}"),
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
        .collect::<Vec<_>>();
    ConfigError::Unreadable(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::credentials::Choice;

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
            s.store.url,
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
            (
                "[server]\nforwarded_header = \"x-real-ip\"",
                "server.forwarded_header",
            ),
        ];
        for (text, key) in table {
            let err = load(text).expect_err(text);
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn a_parse_error_does_not_quote_the_file() {
        let err = Settings::from_toml("[vod]\naccess_key_secret = 0123456789\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("0123456789"), "{err}");
    }

    #[test]
    fn later_layers_win_and_add_sources() {
        let base = "[vod]\ndry_run = true\n[queue]\nquiet = \"1s\"\nlinger = \"50ms\"\n[[sources]]\nname = \"a\"\nauth = \"none\"\nformat = \"native\"";
        let extra = "[queue]\nquiet = \"3s\"\n[[sources]]\nname = \"b\"\nauth = \"none\"\nformat = \"native\"";
        let s = Settings::from_layers(&[base, extra]).unwrap();
        assert_eq!(s.queue.quiet, Duration::from_secs(3));
        assert_eq!(s.queue.linger, Duration::from_millis(50));
        let names: Vec<&str> = s.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // A source named twice is refused, as in one file.
        let err = Settings::from_layers(&[base, base]).unwrap_err();
        assert_eq!(err.key(), Some("sources[1].name"));
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
        assert_eq!(s.default_account().config_keys(), None);
        assert_eq!(s.vod.credentials, Choice::default());
        assert_eq!(
            s.default_account().chain(&s.environment).sts_endpoint,
            "https://sts.aliyuncs.com"
        );
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
        assert_eq!(
            s.default_account().config_keys().unwrap().access_key_id(),
            "id"
        );
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
        assert_eq!(s.default_account().config_keys(), None);
        assert_eq!(s.environment.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), Some("id"));
        assert_eq!(
            s.default_account().chain(&s.environment).sts_endpoint,
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
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
