//! Webhook sources: who may post to `POST /webhooks/{name}`, how a delivery is authenticated and
//! how media IDs are read from its body.
//!
//! Everything here is pure: no I/O, no clock (the current time is an argument), no actix types.
//! The HTTP handler turns a request into a [`Request`] (method, raw path and query, headers, raw
//! body bytes), calls [`Source::verify`] and then [`Source::extract`], and validates the raw IDs
//! it gets back with [`crate::domain::MediaIdRules`]. Keeping the handler out means every
//! scheme and format is tested with plain values, and the signing rules cannot be bent by a
//! framework that re-reads or re-encodes the body.
//!
//! - `config` and `validate`: the `[[sources]]` table and its checks.
//! - `auth`: the signature schemes (`standard-webhooks`, `hmac`, `bearer`, `sanity`, `ghost`,
//!   `contentful`, `vod-callback`, `none`).
//! - `payload`: the formats (`native`, `json-pointer`, the CMS presets, one pointer mechanism
//!   underneath, and `vod-events`, VOD's own event notifications).
//! - `error`: [`AuthError`] and [`PayloadError`], each with a stable code.

mod auth;
mod config;
mod error;
mod payload;
mod validate;

use std::time::Duration;

use crate::domain::{Priority, RawOptions, RequestedTask, Ts};

pub use config::{
    AuthKind, DEFAULT_TOLERANCE, Events, FormatKind, HmacAlgorithm, SignatureEncoding,
    SourceConfig, VOD_CALLBACK_TOLERANCE,
};
pub use error::{AuthError, PayloadError};
pub use payload::native::parse_native;
pub use payload::pointer::Pointer;

/// The most targets (media IDs, URLs and directories) one delivery may carry, all requests of
/// the delivery together.
pub const MAX_IDS_PER_DELIVERY: usize = 1000;

/// The headers a delivery's ID is taken from, first present wins.
const DELIVERY_ID_HEADERS: [&str; 3] = [
    "webhook-id",
    "idempotency-key",
    "x-contentful-idempotency-key",
];

/// Request headers with case-insensitive lookup, borrowed from the request; when a header is
/// repeated, the first occurrence is the one returned.
#[derive(Debug, Clone, Default)]
pub struct Headers<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Headers<'a> {
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Headers<'a> {
        Headers {
            pairs: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }
}

/// One delivery as the handler received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper-case HTTP method, e.g. `POST` (signed by Contentful).
    pub method: &'a str,
    /// The request target as received, path plus `?query` if any, still percent-encoded
    /// (signed by Contentful).
    pub path: &'a str,
    pub headers: &'a Headers<'a>,
    /// The raw body bytes, exactly as received.
    pub body: &'a [u8],
}

/// What a body asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extracted {
    /// Purge requests; empty when the event does not purge or carried no media ID.
    pub requests: Vec<PurgeRequest>,
    /// Set when the event is one that does not purge (e.g. Strapi `entry.create` by default).
    pub ignored_event: Option<String>,
    /// Why it does not purge, where the format says (a failed transcode, an unmapped event).
    pub ignored_reason: Option<String>,
}

/// Media IDs, file URLs and directory URLs with what to do with them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PurgeRequest {
    /// Raw, not yet validated: the caller checks them with `MediaIdRules` and reports the
    /// invalid ones.
    pub media_ids: Vec<String>,
    /// File URLs, raw: the caller normalises them with `CdnDomains`.
    pub urls: Vec<String>,
    /// Directory URLs (ending in `/`), raw.
    pub directories: Vec<String>,
    /// `"include": ["cover"]`: also purge the cover and snapshot URLs of each media ID.
    pub include_cover: bool,
    pub task: RequestedTask,
    /// Already checked with `PurgeOptions::parse`.
    pub options: RawOptions,
    /// Set by the body (the native `priority` field); otherwise the source's.
    pub priority: Option<Priority>,
    /// The native `account` field, raw: the caller checks that the sender may name one and that
    /// it exists; otherwise the source's.
    pub account: Option<String>,
}

/// A source compiled from its configuration: secrets decoded, pointers parsed.
pub struct Source {
    name: String,
    verifier: auth::Verifier,
    format: payload::Format,
    quiet: Option<Duration>,
    priority: Priority,
    max_wait: Option<Duration>,
    rate_limit: Option<u32>,
    burst: Option<u32>,
    delivery_id_header: Option<String>,
    account: crate::domain::AccountName,
    allow_account_override: bool,
}

impl std::fmt::Debug for Source {
    // Hand-written so that secrets can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Validates and compiles; the error names the source and the key.
    pub fn new(cfg: &SourceConfig) -> Result<Source, String> {
        cfg.validate()?;
        let at = |e: String| format!("sources.{}: {e}", cfg.name);
        Ok(Source {
            name: cfg.name.clone(),
            verifier: auth::Verifier::new(cfg).map_err(at)?,
            format: payload::Format::new(cfg).map_err(at)?,
            quiet: cfg.quiet,
            priority: cfg.priority,
            max_wait: cfg.max_wait,
            rate_limit: cfg.rate_limit,
            burst: cfg.burst,
            delivery_id_header: cfg.delivery_id_header.clone(),
            account: cfg.account.clone(),
            allow_account_override: cfg.allow_account_override,
        })
    }

    /// The account this source's purges go to, unless a body may name another.
    pub fn account(&self) -> &crate::domain::AccountName {
        &self.account
    }

    /// Whether a native body may name another account (`allow_account_override`).
    pub fn allows_account_override(&self) -> bool {
        self.allow_account_override
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the delivery's authentication against every configured secret.
    pub fn verify(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        self.verifier.verify(req, now)
    }

    /// Reads the purge requests from the body. Call only after [`Source::verify`] succeeded.
    pub fn extract(&self, req: &Request<'_>) -> Result<Extracted, PayloadError> {
        self.format.extract(req)
    }

    /// The sender's delivery ID for redelivery detection: the source's `delivery_id_header`,
    /// `webhook-id`, `Idempotency-Key` or `X-Contentful-Idempotency-Key`, the first one present
    /// and not blank.
    pub fn delivery_id(&self, headers: &Headers) -> Option<String> {
        self.delivery_id_header
            .iter()
            .map(String::as_str)
            .chain(DELIVERY_ID_HEADERS)
            .filter_map(|h| headers.get(h))
            .map(str::trim)
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// The priority of this source's items, unless a body says otherwise.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Per-source override of the queue's quiet period.
    pub fn quiet(&self) -> Option<Duration> {
        self.quiet
    }

    /// Per-source override of the queue's maximum wait.
    pub fn max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// Ingest limit in requests per second, if any.
    pub fn rate_limit(&self) -> Option<u32> {
        self.rate_limit
    }

    /// Burst for the ingest limit: the configured one, else equal to the rate.
    pub fn burst(&self) -> Option<u32> {
        self.burst.or(self.rate_limit)
    }

    /// Whether the scheme's credential is all in the headers (bearer, vod-callback, none), so
    /// that a delivery is authenticated before its body is read and before the failure budget
    /// of its address is looked at.
    pub fn authenticates_by_headers(&self) -> bool {
        matches!(
            self.verifier,
            auth::Verifier::Bearer(_) | auth::Verifier::VodCallback(_) | auth::Verifier::None
        )
    }

    /// Whether a delivery without media IDs is a mistake (native format) or an event that
    /// simply concerns no video (CMS formats), which is acknowledged without storing anything.
    pub fn requires_media_ids(&self) -> bool {
        self.format.is_native()
    }

    /// Whether a stored delivery is answered `200` rather than `202`: VOD's event notifications
    /// count only a `200` as delivered.
    pub fn answers_stored_with_200(&self) -> bool {
        matches!(self.verifier, auth::Verifier::VodCallback(_)) || self.format.is_vod_events()
    }

    /// True when the source accepts unauthenticated deliveries (`auth = "none"`): every
    /// delivery authenticates, so none is ever refused or counted by the failure budget.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self.verifier, auth::Verifier::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        Headers::new(pairs.iter().copied())
    }

    #[test]
    fn headers_are_case_insensitive_first_wins() {
        let headers = h(&[("Content-Type", "a"), ("content-type", "b"), ("X-Ok", "1")]);
        assert_eq!(headers.get("CONTENT-TYPE"), Some("a"));
        assert_eq!(headers.get("x-ok"), Some("1"));
        assert_eq!(headers.get("missing"), None);
    }

    #[test]
    fn delivery_id_order() {
        let cfg: SourceConfig =
            toml::from_str("name = \"s\"\nauth = \"none\"\nformat = \"native\"")
                .expect("config parses");
        let source = Source::new(&cfg).unwrap();
        assert_eq!(source.delivery_id(&h(&[])), None);
        assert_eq!(
            source.delivery_id(&h(&[("Idempotency-Key", "k"), ("webhook-id", "w")])),
            Some("w".into())
        );
        assert_eq!(
            source.delivery_id(&h(&[
                ("X-Contentful-Idempotency-Key", "c"),
                ("Idempotency-Key", "k")
            ])),
            Some("k".into())
        );
        assert_eq!(
            source.delivery_id(&h(&[
                ("webhook-id", " "),
                ("X-Contentful-Idempotency-Key", "c")
            ])),
            Some("c".into())
        );
        assert!(source.is_unauthenticated());
        let github: SourceConfig = toml::from_str(
            "name = \"gh\"\nauth = \"none\"\nformat = \"native\"\ndelivery_id_header = \"X-GitHub-Delivery\"",
        )
        .expect("config parses");
        let github = Source::new(&github).unwrap();
        assert_eq!(
            github.delivery_id(&h(&[
                ("Idempotency-Key", "k"),
                ("x-github-delivery", "72d3162e")
            ])),
            Some("72d3162e".into())
        );
        assert_eq!(
            github.delivery_id(&h(&[("Idempotency-Key", "k")])),
            Some("k".into())
        );
    }
}
