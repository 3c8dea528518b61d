//! One `[[sources]]` table of the configuration: who may post to `/webhooks/{name}`, how the
//! delivery is authenticated and how media IDs are read from its body.
//!
//! Every key has a default so that a source is a few lines of TOML; `validate` refuses the
//! combinations that would silently do the wrong thing (a signing scheme without secrets, a
//! pointer that is not a pointer, a key that the chosen scheme or format ignores) and names the
//! offending key in its message, because an operator reads it at start-up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{RawOptions, RequestedTask};

/// How a delivery proves where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// HMAC of the raw body in a configurable header.
    Hmac,
    /// A static token, by default in `Authorization: Bearer <token>`.
    Bearer,
    /// `sanity-webhook-signature: t=<ms>,v1=<base64url>`.
    Sanity,
    /// `X-Ghost-Signature: sha256=<hex>, t=<ms>`.
    Ghost,
    /// Contentful request verification (`x-contentful-signature` and friends).
    Contentful,
    /// ApsaraVideo VOD event notifications: `X-VOD-SIGNATURE` is
    /// `md5("<callback_url>|<X-VOD-TIMESTAMP>|<key>")`.
    VodCallback,
    /// No authentication; only when written explicitly.
    None,
}

/// How media IDs are read from a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FormatKind {
    /// `{"media_ids": [...], "task": ..., "options": {...}}` or an array of those.
    Native,
    /// Any JSON; media IDs located by `pointers`.
    JsonPointer,
    Strapi,
    Contentful,
    Sanity,
    Directus,
    Ghost,
    /// ApsaraVideo VOD's event notifications (`TranscodeComplete`, ...), mapped by `events`.
    VodEvents,
}

/// `events`: for the CMS presets, the events that purge; for `vod-events`, what each event type
/// does (`Refresh`, `Preload`, `RefreshThenPreload` or `ignore`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Events {
    List(Vec<String>),
    Table(std::collections::BTreeMap<String, String>),
}

/// Which HMAC the `hmac` scheme computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha1,
}

/// How the `hmac` scheme's signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The default `tolerance` of a `vod-callback` source. VOD signs the URL and the timestamp, not
/// the body, so a captured header pair passes with any body for as long as the timestamp is
/// accepted: the window is kept to what VOD's own retries need. VOD tries three times, 1 s
/// apart, waiting at most 5 s for each answer (`docs/vod-callbacks.md`): if every try carries
/// the first one's timestamp, the last arrives at most 12 s after it. The rest allows for the
/// two clocks' skew.
pub const VOD_CALLBACK_TOLERANCE: Duration = Duration::from_secs(30);

/// One `[[sources]]` table.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The `{name}` of `POST /webhooks/{name}`: 1 to 64 of `A-Z a-z 0-9 _ -`.
    pub name: String,
    pub auth: AuthKind,
    /// Every secret (or bearer token) that is currently valid; several while rotating keys.
    #[serde(default, serialize_with = "redact_secrets")]
    pub secrets: Vec<String>,
    /// Names of environment variables whose values are added to `secrets` at start-up, so that
    /// secrets can live in a Kubernetes Secret rather than in the configuration file.
    #[serde(default)]
    pub secrets_env: Vec<String>,
    pub format: FormatKind,

    /// `hmac`: the header holding the signature (required). `bearer`: the header holding the
    /// token (default `Authorization`, with or without the `Bearer ` scheme).
    #[serde(default)]
    pub header: Option<String>,
    /// `hmac`: `sha256` (default) or `sha1`.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// `hmac`: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// `hmac`: text before the signature in the header, such as `sha256=` (matched ignoring case).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `vod-callback`: the callback URL exactly as configured in VOD (VOD signs it; an ingress in
    /// front of the service usually rewrites the URL the request arrives at).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// A header with the sender's own delivery ID (GitHub's `X-GitHub-Delivery`), used as the
    /// redelivery key before `webhook-id` / `Idempotency-Key`. For schemes that sign no
    /// timestamp (hmac), it is what lets a repeated delivery be recognised.
    #[serde(default)]
    pub delivery_id_header: Option<String>,
    /// `standard-webhooks`, `sanity`, `ghost`, `contentful`, `vod-callback`: how far the signed
    /// timestamp may be from the server's clock, in either direction. Default 5 minutes, 30
    /// seconds for `vod-callback` ([`VOD_CALLBACK_TOLERANCE`]); read it with
    /// [`SourceConfig::tolerance`].
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
    /// `vod-callback`: accept a `callback_url` that is `http://`. VOD's signature does not cover
    /// the body, so whoever sees one delivery on the way can send any body with its headers
    /// until the timestamp is too old; over plain HTTP everyone on the path sees them. Only for
    /// a test or a private network.
    #[serde(default)]
    pub allow_http: bool,

    /// `json-pointer`: RFC 6901 pointers to the media IDs; `*` stands for every element.
    #[serde(default)]
    pub pointers: Vec<String>,
    /// `json-pointer`: pointers to file URLs on the account's CDN (`vod.cdn_domains`), purged
    /// by URL (a cover or subtitle file that changed).
    #[serde(default)]
    pub url_pointers: Vec<String>,
    /// Presets: the field that holds the media ID, a plain name or a pointer (starting with `/`)
    /// relative to the entry. Defaults per format, see `payload::presets`.
    #[serde(default)]
    pub id_field: Option<String>,
    /// `strapi`: where the media ID is inside the `media` object of `media.*` events.
    #[serde(default)]
    pub media_id_field: Option<String>,
    /// Presets: the events that purge, replacing the format's default list (a list).
    /// `vod-events`: what each event type does, added to the defaults (a table).
    #[serde(default)]
    pub events: Option<Events>,
    /// The task for IDs found by `json-pointer` and presets; the default for `native` bodies
    /// that name none.
    #[serde(default)]
    pub task: RequestedTask,
    /// The options for IDs found by `json-pointer` and presets; the default for `native` bodies
    /// that carry none.
    #[serde(default)]
    pub options: RawOptions,
    /// `["cover"]`: also purge the cover and snapshot URLs of each media ID (resolved with
    /// `GetVideoInfo`, on `vod.cdn_domains`); the default for `native` bodies without `include`.
    #[serde(default)]
    pub include: Vec<String>,

    /// Per-source override of `queue.quiet`.
    #[serde(default, with = "humantime_serde")]
    pub quiet: Option<Duration>,
    /// Per-source override of `queue.max_wait`.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    /// `urgent`: this source's items skip the quiet period, are claimed before normal ones and
    /// may use the quota kept for urgent work (`vod.urgent_quota_reserve`). A native body's
    /// `priority` field overrides it per request.
    #[serde(default)]
    pub priority: crate::domain::Priority,
    /// Ingest limit for this source, requests per second; none means unlimited.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Burst on top of `rate_limit` (default: equal to `rate_limit`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The VOD account this source's purges go to: `default` (the `[vod]` section) or the name
    /// of an `[[accounts]]` table.
    #[serde(default)]
    pub account: crate::domain::AccountName,
    /// A `native` body may name another account (`"account": "intl"`).
    #[serde(default)]
    pub allow_account_override: bool,
}

/// Secrets are shown as `<redacted>` wherever the configuration is printed.
fn redact_secrets<S: serde::Serializer>(secrets: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(secrets.iter().map(|_| "<redacted>"))
}

impl AuthKind {
    /// Schemes that sign or compare against a secret, and so need at least one.
    pub fn needs_secrets(self) -> bool {
        !matches!(self, AuthKind::None)
    }

    pub(crate) fn has_timestamp(self) -> bool {
        matches!(
            self,
            AuthKind::StandardWebhooks
                | AuthKind::Sanity
                | AuthKind::Ghost
                | AuthKind::Contentful
                | AuthKind::VodCallback
        )
    }
}

impl FormatKind {
    /// The CMS presets (Strapi, Contentful, Sanity, Directus, Ghost).
    pub(crate) fn is_preset(self) -> bool {
        !matches!(
            self,
            FormatKind::Native | FormatKind::JsonPointer | FormatKind::VodEvents
        )
    }
}

impl SourceConfig {
    /// The configured `tolerance`, else the scheme's default.
    pub fn tolerance(&self) -> Duration {
        self.tolerance.unwrap_or(match self.auth {
            AuthKind::VodCallback => VOD_CALLBACK_TOLERANCE,
            _ => DEFAULT_TOLERANCE,
        })
    }

    /// The presets' `events` list, when one is given.
    pub(crate) fn event_list(&self) -> Option<Vec<String>> {
        match &self.events {
            Some(Events::List(list)) => Some(list.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    // Hand-written so that logging a configuration never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}
