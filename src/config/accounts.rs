//! The VOD accounts one deployment serves: `[vod]` is the account named `default`, and each
//! `[[accounts]]` table adds one. An account holds what belongs to an account (its endpoint, its
//! credential chain, its limits and quotas, its CDN domains); what it leaves out comes from
//! `[vod]`'s documented defaults (`config/default.toml`), not from the default account's own
//! values, so that a key set for one account never leaks into another.
//!
//! Each account's credential chain is handed to `credentials/` as a
//! [`ChainSettings`](crate::credentials::ChainSettings), built here.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use super::{ConfigError, DEFAULTS, Secret, VOD_MAX_QPS, VodSettings, describe};
use crate::credentials::{ChainSettings, Choice, Credentials, Environment, ProviderName};
use crate::domain::quota_terms::{QuotaReset, Reserve};
use crate::domain::{AccountName, CdnDomains};
use crate::flusher::hold::HoldPolicy;

/// One account: the `[vod]` section's account keys, or one `[[accounts]]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub name: AccountName,
    pub region: String,
    pub endpoint: String,
    pub credentials: Choice,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub sts_endpoint: String,
    pub metadata_endpoint: String,
    /// RRSA for this account: the role to assume with the OIDC token (in place of
    /// `ALIBABA_CLOUD_ROLE_ARN`).
    pub role_arn: String,
    /// In place of `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`.
    pub oidc_provider_arn: String,
    /// In place of `ALIBABA_CLOUD_OIDC_TOKEN_FILE`.
    pub oidc_token_file: String,
    /// The profile of `~/.aliyun/config.json` or `credentials.ini` (in place of
    /// `ALIBABA_CLOUD_PROFILE`).
    pub profile: String,
    pub max_requests_per_second: u32,
    pub quota_reset: QuotaReset,
    #[serde(with = "humantime_serde")]
    pub quota_probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_hold: Duration,
    pub urgent_quota_reserve: Reserve,
    pub cdn_domains: CdnDomains,
    pub dry_run: bool,
}

/// The variables through which the process names one identity: an account other than
/// `default` does not inherit them (it names its own keys, role or profile).
const IDENTITY_VARIABLES: [&str; 7] = [
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_PROFILE",
    "ALIBABA_CLOUD_CREDENTIALS_URI",
];

impl AccountSettings {
    /// The account keys of a `[vod]` section, under `name`.
    pub fn from_vod(name: AccountName, vod: &VodSettings) -> AccountSettings {
        AccountSettings {
            name,
            region: vod.region.clone(),
            endpoint: vod.endpoint.clone(),
            credentials: vod.credentials,
            access_key_id: vod.access_key_id.clone(),
            access_key_secret: vod.access_key_secret.clone(),
            security_token: vod.security_token.clone(),
            sts_endpoint: vod.sts_endpoint.clone(),
            metadata_endpoint: vod.metadata_endpoint.clone(),
            role_arn: vod.role_arn.clone(),
            oidc_provider_arn: vod.oidc_provider_arn.clone(),
            oidc_token_file: vod.oidc_token_file.clone(),
            profile: vod.profile.clone(),
            max_requests_per_second: vod.max_requests_per_second,
            quota_reset: vod.quota_reset,
            quota_probe_interval: vod.quota_probe_interval,
            max_hold: vod.max_hold,
            urgent_quota_reserve: vod.urgent_quota_reserve,
            cdn_domains: vod.cdn_domains.clone(),
            dry_run: vod.dry_run,
        }
    }

    /// The account's quota holds (`quota_probe_interval`, `quota_reset`, `max_hold`,
    /// `urgent_quota_reserve`).
    pub fn hold_policy(&self) -> HoldPolicy {
        HoldPolicy {
            probe_interval: self.quota_probe_interval,
            reset: self.quota_reset,
            max_hold: self.max_hold,
            reserve: self.urgent_quota_reserve,
        }
    }

    /// The VOD base URL: the explicit endpoint, or the region's.
    pub fn vod_base_url(&self) -> String {
        if self.endpoint.is_empty() {
            format!("https://vod.{}.aliyuncs.com", self.region)
        } else {
            self.endpoint.trim_end_matches('/').to_owned()
        }
    }

    /// The keys of `access_key_id` / `_secret` / `security_token`, when set.
    pub fn config_keys(&self) -> Option<Credentials> {
        (!self.access_key_id.is_empty() && !self.access_key_secret.is_empty()).then(|| {
            Credentials::new(
                self.access_key_id.clone(),
                self.access_key_secret.expose(),
                Some(self.security_token.expose().to_owned()),
            )
        })
    }

    /// What this account's credential chain reads. The `default` account sees the process's
    /// `ALIBABA_CLOUD_*` variables as they are; another account sees the variables that say
    /// where and how (the STS region, the metadata switches, the files' paths, the OIDC token
    /// file), not those that name an identity, and its own `role_arn`, `oidc_provider_arn`,
    /// `oidc_token_file` and `profile` in their place. Another account takes the machine's
    /// instance role only when it pins `ecs-ram-role` (see `credentials::chain::resolve`).
    pub fn chain(&self, process: &Environment) -> ChainSettings {
        let isolated = !self.name.is_default();
        let mut env = if isolated {
            process.without(&IDENTITY_VARIABLES)
        } else {
            process.clone()
        };
        for (variable, value) in [
            ("ALIBABA_CLOUD_ROLE_ARN", &self.role_arn),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", &self.oidc_provider_arn),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &self.oidc_token_file),
            ("ALIBABA_CLOUD_PROFILE", &self.profile),
        ] {
            if !value.trim().is_empty() {
                env = env.with_var(variable, value.trim());
            }
        }
        let prefix = self.key_prefix();
        ChainSettings {
            account: self.name.to_string(),
            key_prefix: prefix.clone(),
            choice: self.credentials,
            config_keys: self.config_keys(),
            sts_endpoint: crate::credentials::settings::sts_endpoint(&self.sts_endpoint, &env),
            metadata_endpoint: self.metadata_endpoint.clone(),
            isolated,
            environment: env,
        }
    }

    /// Where this account's keys are written: `vod` or `accounts[<name>]`.
    pub fn key_prefix(&self) -> String {
        if self.name.is_default() {
            "vod".to_owned()
        } else {
            format!("accounts[{}]", self.name)
        }
    }

    /// Range and cross-field checks, each failure naming the key under `prefix`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.key_prefix();
        let fail = |key: &str, why: String| Err(ConfigError::invalid(format!("{p}.{key}"), why));
        let rps = self.max_requests_per_second;
        if rps == 0 || rps > VOD_MAX_QPS {
            return fail(
                "max_requests_per_second",
                format!(
                    "{rps} is outside 1 to {VOD_MAX_QPS}; VOD allows {VOD_MAX_QPS} RefreshMediaPlayUrls calls per second per account"
                ),
            );
        }
        if self.quota_probe_interval.is_zero() {
            return fail("quota_probe_interval", "must be more than zero".into());
        }
        if self.max_hold.is_zero() {
            return fail(
                "max_hold",
                "must be more than zero (a job held on the quota fails after it)".into(),
            );
        }
        let is_http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !self.endpoint.is_empty() && !is_http(&self.endpoint) {
            return fail(
                "endpoint",
                format!("{:?} is not an http:// or https:// URL", self.endpoint),
            );
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if self.endpoint.is_empty() && !region_ok {
            return fail(
                "region",
                format!("{:?} is not a region ID such as cn-shanghai", self.region),
            );
        }
        if self.access_key_id.is_empty() != self.access_key_secret.is_empty() {
            return fail(
                "access_key_id",
                format!(
                    "{p}.access_key_id and {p}.access_key_secret go together: set both or neither"
                ),
            );
        }
        if !self.security_token.is_empty() && self.access_key_id.is_empty() {
            return fail(
                "security_token",
                format!("an STS token needs {p}.access_key_id and {p}.access_key_secret"),
            );
        }
        if self.credentials.pinned() == Some(ProviderName::Config) && self.config_keys().is_none() {
            return fail(
                "credentials",
                format!("\"config\" pins the configuration's keys, but {p}.access_key_id is empty"),
            );
        }
        if !is_http(&self.metadata_endpoint) {
            return fail(
                "metadata_endpoint",
                format!(
                    "{:?} is not an http:// or https:// URL",
                    self.metadata_endpoint
                ),
            );
        }
        if self.sts_endpoint.contains(char::is_whitespace) {
            return fail(
                "sts_endpoint",
                format!("{:?} is not a URL or host name", self.sts_endpoint),
            );
        }
        let role = [&self.role_arn, &self.oidc_provider_arn];
        if role.iter().any(|v| v.is_empty()) && role.iter().any(|v| !v.is_empty()) {
            return fail(
                "role_arn",
                format!("{p}.role_arn and {p}.oidc_provider_arn go together (RRSA needs both)"),
            );
        }
        Ok(())
    }
}

/// The `[vod]` section of the documented defaults: what an `[[accounts]]` table leaves out.
fn documented_vod() -> Result<VodSettings, ConfigError> {
    Figment::from(Toml::string(DEFAULTS))
        .focus("vod")
        .extract()
        .map_err(describe)
}

/// The name an account's environment variables use: upper case, `-` written `_`
/// (`VOD_PURGE_ACCOUNTS__CN_PROD__ACCESS_KEY_SECRET` for `cn-prod`).
pub fn env_name(name: &AccountName) -> String {
    name.as_str().to_ascii_uppercase().replace('-', "_")
}

/// The `[[accounts]]` tables as accounts: each on top of `[vod]`'s documented defaults, then
/// (when `env` is given) its `VOD_PURGE_ACCOUNTS__<NAME>__<KEY>` variables. Names must be unique,
/// valid, and not `default`.
pub(super) fn parse(
    tables: &[toml::Table],
    env: Option<&dyn Fn() -> Vec<(String, String)>>,
) -> Result<Vec<AccountSettings>, ConfigError> {
    let defaults = documented_vod()?;
    let mut accounts: Vec<AccountSettings> = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let at = |why: String| ConfigError::Unreadable(format!("accounts[{i}]: {why}"));
        let name = match table.get("name").and_then(toml::Value::as_str) {
            Some(name) => AccountName::parse(name)
                .map_err(|e| ConfigError::invalid(format!("accounts[{i}].name"), e.to_string()))?,
            None => {
                return Err(ConfigError::invalid(
                    format!("accounts[{i}].name"),
                    "every [[accounts]] table needs a name".to_owned(),
                ));
            }
        };
        if name.is_default() {
            return Err(ConfigError::invalid(
                format!("accounts[{i}].name"),
                "\"default\" is the [vod] section's account; name this one otherwise".to_owned(),
            ));
        }
        let clash = accounts
            .iter()
            .find(|a| a.name == name || env_name(&a.name) == env_name(&name));
        if let Some(earlier) = clash {
            return Err(ConfigError::invalid(
                format!("accounts[{i}].name"),
                format!(
                    "{name:?} names an account twice (after {:?}; '-' and '_' are one in environment variables)",
                    earlier.name.as_str()
                ),
            ));
        }
        let mut figment = Figment::from(Serialized::defaults(AccountSettings::from_vod(
            name.clone(),
            &defaults,
        )))
        .merge(Serialized::defaults(table));
        if env.is_some() {
            figment = figment.merge(Env::prefixed(&format!(
                "VOD_PURGE_ACCOUNTS__{}__",
                env_name(&name)
            )));
        }
        let account: AccountSettings =
            figment.extract().map_err(|e| at(describe(e).to_string()))?;
        // An account is named by its table: a variable cannot rename it (into another's name).
        if account.name != name {
            return Err(ConfigError::invalid(
                format!("accounts[{name}].name"),
                "an account's name is set in its [[accounts]] table, not by the environment"
                    .to_owned(),
            ));
        }
        account.validate()?;
        accounts.push(account);
    }
    if let Some(env) = env {
        // A variable for an account that does not exist is a typo, not a no-op.
        for (key, _) in env() {
            // figment matches the prefix in any case; so does this check.
            let key = key.to_ascii_uppercase();
            let Some(rest) = key.strip_prefix("VOD_PURGE_ACCOUNTS__") else {
                continue;
            };
            let named = rest.split("__").next().unwrap_or_default();
            if !accounts.iter().any(|a| env_name(&a.name) == named) {
                return Err(ConfigError::invalid(
                    format!("accounts[{}]", named.to_ascii_lowercase()),
                    format!("the environment variable {key} names no [[accounts]] table"),
                ));
            }
        }
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn load(text: &str) -> Result<Settings, String> {
        Settings::from_toml(text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_account_takes_the_documented_defaults_not_the_default_accounts_values() {
        let s = load(
            "[vod]\ndry_run = true\nmax_requests_per_second = 5\nregion = \"cn-beijing\"\n\
             [[accounts]]\nname = \"intl\"\nregion = \"ap-southeast-1\"\ndry_run = true\n",
        )
        .unwrap();
        let all = s.accounts();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name.as_str(), "default");
        assert_eq!(all[0].max_requests_per_second, 5);
        assert_eq!(all[1].name.as_str(), "intl");
        assert_eq!(all[1].max_requests_per_second, 50);
        assert_eq!(
            all[1].vod_base_url(),
            "https://vod.ap-southeast-1.aliyuncs.com"
        );
    }

    #[test]
    fn account_errors_name_the_account_and_key() {
        let table = [
            ("[[accounts]]\nregion = \"x\"", "accounts[0].name"),
            ("[[accounts]]\nname = \"default\"", "accounts[0].name"),
            ("[[accounts]]\nname = \"Intl\"", "accounts[0].name"),
            (
                "[[accounts]]\nname = \"a\"\n[[accounts]]\nname = \"a\"",
                "accounts[1].name",
            ),
            (
                "[[accounts]]\nname = \"a-b\"\n[[accounts]]\nname = \"a_b\"",
                "accounts[1].name",
            ),
            (
                "[[accounts]]\nname = \"intl\"\nmax_requests_per_second = 51",
                "accounts[intl].max_requests_per_second",
            ),
            ("[[accounts]]\nname = \"intl\"\ntimeout = \"1s\"", "timeout"),
            (
                "[[accounts]]\nname = \"intl\"\naccess_key_id = \"x\"",
                "accounts[intl].access_key_id",
            ),
            (
                "[[accounts]]\nname = \"intl\"\nrole_arn = \"acs:ram::1:role/r\"",
                "accounts[intl].role_arn",
            ),
            (
                "[[accounts]]\nname = \"intl\"\nmax_hold = \"soon\"",
                "max_hold",
            ),
            (
                "[[sources]]\nname = \"cms\"\nauth = \"none\"\nformat = \"native\"\naccount = \"intl\"",
                "sources[0].account",
            ),
            (
                "[[accounts]]\nname = \"intl\"\n[[sources]]\nname = \"cms\"\nauth = \"none\"\nformat = \"native\"\naccount = \"Intl\"",
                "sources.0.account",
            ),
        ];
        for (text, key) in table {
            let err = load(&format!("[vod]\ndry_run = true\n{text}")).expect_err(text);
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn a_secret_that_is_not_a_string_is_refused_and_never_quoted() {
        for value in ["123456789", "1.50", "true", "[1, 2]"] {
            let err = load(&format!(
                "[vod]\ndry_run = true\n[[accounts]]\nname = \"intl\"\naccess_key_id = \"id\"\naccess_key_secret = {value}\n"
            ))
            .unwrap_err();
            assert!(err.contains("quoted string"), "{value}: {err}");
            assert!(!err.contains("123456789") && !err.contains("1.5"), "{err}");
        }
        let s = load(
            "[vod]\ndry_run = true\n[[accounts]]\nname = \"intl\"\naccess_key_id = \"id\"\naccess_key_secret = \"0123\"\n",
        )
        .unwrap();
        assert_eq!(
            s.accounts()[1].config_keys().unwrap().access_key_secret(),
            "0123"
        );
        assert!(!s.to_redacted_toml().contains("0123"));
    }

    #[test]
    fn another_account_does_not_inherit_the_process_identity() {
        let s = load(
            "[vod]\ndry_run = true\n[[accounts]]\nname = \"intl\"\nrole_arn = \"acs:ram::2:role/intl\"\noidc_provider_arn = \"acs:ram::2:oidc-provider/ack\"\n",
        )
        .unwrap();
        let process = Environment::from_pairs([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/cn"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/token"),
            ("ALIBABA_CLOUD_STS_REGION", "ap-southeast-1"),
        ]);
        let all = s.accounts();
        let default = all[0].chain(&process);
        assert_eq!(
            default.environment.get("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            Some("id")
        );
        assert!(!default.isolated);
        let intl = all[1].chain(&process);
        assert_eq!(intl.environment.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), None);
        assert_eq!(
            intl.environment.get("ALIBABA_CLOUD_ROLE_ARN"),
            Some("acs:ram::2:role/intl")
        );
        assert_eq!(
            intl.environment.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
            Some("/var/run/token")
        );
        assert_eq!(intl.sts_endpoint, "https://sts.ap-southeast-1.aliyuncs.com");
        assert!(intl.isolated);
        assert_eq!(intl.key_prefix, "accounts[intl]");
    }
}
