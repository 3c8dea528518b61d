//! Authentication schemes, compiled from a source's configuration.
//!
//! Every scheme works on the raw body bytes exactly as received (re-serialising JSON would change
//! them), compares in constant time (`Mac::verify_slice`, or `subtle` on digests), and accepts
//! any of several secrets so that keys can be rotated without downtime. Time is an argument:
//! nothing here reads the clock, so the tolerance rules are tested with fixed instants.

pub(crate) mod cms;
pub(crate) mod simple;
pub(crate) mod standard;
pub(crate) mod vod;

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::Ts;

use super::config::{AuthKind, SourceConfig};
use super::error::AuthError;
use super::{Headers, Request};

/// A compiled scheme; secrets are decoded once, at start-up.
pub(crate) enum Verifier {
    StandardWebhooks(standard::StandardWebhooks),
    Hmac(simple::HmacBody),
    Bearer(simple::Bearer),
    Cms(cms::Cms),
    VodCallback(vod::VodCallback),
    None,
}

impl Verifier {
    pub(crate) fn new(cfg: &SourceConfig) -> Result<Verifier, String> {
        let secrets = || {
            cfg.secrets
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        Ok(match cfg.auth {
            AuthKind::StandardWebhooks => Verifier::StandardWebhooks(
                standard::StandardWebhooks::new(&cfg.secrets, cfg.tolerance())?,
            ),
            AuthKind::Hmac => Verifier::Hmac(simple::HmacBody::new(cfg, secrets())?),
            AuthKind::Bearer => {
                Verifier::Bearer(simple::Bearer::new(cfg.header.as_deref(), &cfg.secrets))
            }
            AuthKind::Sanity | AuthKind::Ghost | AuthKind::Contentful => Verifier::Cms(cms::Cms {
                scheme: match cfg.auth {
                    AuthKind::Sanity => cms::CmsScheme::Sanity,
                    AuthKind::Ghost => cms::CmsScheme::Ghost,
                    _ => cms::CmsScheme::Contentful,
                },
                secrets: secrets(),
                tolerance: cfg.tolerance(),
            }),
            AuthKind::VodCallback => Verifier::VodCallback(vod::VodCallback {
                callback_url: cfg.callback_url.clone().unwrap_or_default(),
                secrets: cfg.secrets.clone(),
                tolerance: cfg.tolerance(),
            }),
            AuthKind::None => Verifier::None,
        })
    }

    pub(crate) fn verify(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        match self {
            Verifier::StandardWebhooks(v) => v.verify(req, now),
            Verifier::Hmac(v) => v.verify(req),
            Verifier::Bearer(v) => v.verify(req.headers),
            Verifier::Cms(v) => v.verify(req, now),
            Verifier::VodCallback(v) => v.verify(req, now),
            Verifier::None => Ok(()),
        }
    }
}

/// The header's value, or `missing_signature` naming it.
fn required<'h>(headers: &'h Headers, name: &str) -> Result<&'h str, AuthError> {
    headers
        .get(name)
        .ok_or_else(|| AuthError::MissingSignature(name.to_owned()))
}

/// Refuses a signed instant further than `tolerance` from `now`, in either direction: a
/// timestamp far in the future is as suspicious as a stale one.
fn check_tolerance(signed: Ts, now: Ts, tolerance: Duration) -> Result<(), AuthError> {
    let skew = now.since(signed).max(signed.since(now));
    if skew > tolerance {
        return Err(AuthError::TimestampOutOfTolerance {
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// Parses a decimal timestamp header (seconds or milliseconds, as `unit_ms` says) into a `Ts`.
fn parse_timestamp(header: &str, raw: &str, unit_ms: i64) -> Result<Ts, AuthError> {
    let value: i64 = raw
        .trim()
        .parse()
        .map_err(|_| AuthError::malformed(header, "timestamp is not an integer"))?;
    value
        .checked_mul(unit_ms)
        .map(Ts)
        .ok_or_else(|| AuthError::malformed(header, "timestamp out of range"))
}

/// True when HMAC-SHA256 of the concatenated `parts` under any secret equals `tag`.
fn any_sha256(secrets: &[Vec<u8>], parts: &[&[u8]], tag: &[u8]) -> bool {
    secrets.iter().any(|secret| {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
            return false;
        };
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        let tol = Duration::from_secs(300);
        let t = Ts(1_000_000_000);
        assert!(check_tolerance(t, t + tol, tol).is_ok());
        assert!(check_tolerance(t, t - tol, tol).is_ok());
        assert!(check_tolerance(t, t + tol + Duration::from_millis(1), tol).is_err());
        assert!(check_tolerance(t, t - tol - Duration::from_millis(1), tol).is_err());
        assert!(check_tolerance(Ts(i64::MIN), Ts(i64::MAX), tol).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("h", " 12 ", 1000), Ok(Ts(12_000)));
        assert_eq!(
            parse_timestamp("h", "x", 1).unwrap_err().code(),
            "malformed_signature"
        );
        assert_eq!(
            parse_timestamp("h", &i64::MAX.to_string(), 1000)
                .unwrap_err()
                .code(),
            "malformed_signature"
        );
    }
}
