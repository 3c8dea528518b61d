//! The tables of the settings tree, each key in the type it is used as: durations, URLs and
//! patterns are parsed when the settings load, so nothing downstream parses a setting again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::TrustedProxies;
use crate::credentials::Choice;
use crate::domain::MediaIdRules;
use crate::domain::quota_terms::{QuotaReset, Reserve};
use crate::store::StoreLocation;
use crate::telemetry::LogFormat;

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
    pub trusted_proxies: TrustedProxies,
    pub forwarded_header: ForwardedHeader,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

/// `server.forwarded_header`: the header the trusted proxies name the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded`, RFC 7239 (its `for=` parameter).
    Forwarded,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Where the store lives, from the scheme of the URL.
    pub url: StoreLocation,
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
    /// RRSA: the role to assume (in place of `ALIBABA_CLOUD_ROLE_ARN`); empty: the variable.
    pub role_arn: String,
    /// In place of `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`.
    pub oidc_provider_arn: String,
    /// In place of `ALIBABA_CLOUD_OIDC_TOKEN_FILE`.
    pub oidc_token_file: String,
    /// The profile of `~/.aliyun/config.json` or `credentials.ini` (in place of
    /// `ALIBABA_CLOUD_PROFILE`).
    pub profile: String,
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
    /// The account's VOD CDN domains: URL and directory targets must be on one of them.
    pub cdn_domains: crate::domain::CdnDomains,
    /// Most URLs or directories in one `RefreshVodObjectCaches` / `PreloadVodObjectCaches` call.
    pub urls_per_call: usize,
    /// Calls per second to the URL actions, which VOD limits apart from `RefreshMediaPlayUrls`.
    pub url_requests_per_second: u32,
    /// How long a purge's CDN tasks are followed (`DescribeVodRefreshTasks`); zero: not at all.
    #[serde(with = "humantime_serde")]
    pub follow_for: Duration,
    /// How often the followed tasks are read.
    #[serde(with = "humantime_serde")]
    pub follow_interval: Duration,
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
    /// Media IDs must match it (compiled at load).
    pub media_id_pattern: MediaIdRules,
    pub max_ids_per_request: usize,
}

/// A string that never shows in `Debug` output, in `check-config` or in an error: a value that
/// is not a string (a secret of digits written without quotes, or an environment variable figment
/// reads as a number, whose leading zeros it would drop) is refused without being quoted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        const NOT_TEXT: &str = "a secret must be a quoted string (in an environment variable too: KEY='\"0123\"'); its value is not shown";
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret (a string)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(serde::de::Error::custom(NOT_TEXT))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(serde::de::Error::custom(NOT_TEXT))
            }
        }
        d.deserialize_any(Text)
    }
}

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
