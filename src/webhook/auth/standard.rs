//! Standard Webhooks (<https://www.standardwebhooks.com/>, spec in
//! `standard-webhooks/standard-webhooks` `spec/standard-webhooks.md`).
//!
//! The sender signs `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 and sends
//! `webhook-signature: v1,<base64>`; while it rotates keys the header holds several
//! space-separated signatures, and signatures of other versions (`v1a,` is asymmetric ed25519)
//! are skipped rather than refused. Secrets are `whsec_` followed by base64 of the key; a secret
//! pasted without the prefix is accepted too, since dashboards differ in what they show.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::Ts;

use super::super::Request;
use super::super::error::AuthError;
use super::{any_sha256, check_tolerance, parse_timestamp, required};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";

pub(crate) struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
}

/// The HMAC key inside a `whsec_...` secret.
pub(crate) fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.trim();
    let b64 = b64.strip_prefix(SECRET_PREFIX).unwrap_or(b64);
    let key = STANDARD
        .decode(b64)
        .map_err(|_| format!("the key after {SECRET_PREFIX} is not valid base64"))?;
    if key.is_empty() {
        return Err("empty key".to_owned());
    }
    Ok(key)
}

impl StandardWebhooks {
    pub(crate) fn new(secrets: &[String], tolerance: Duration) -> Result<StandardWebhooks, String> {
        let keys = secrets
            .iter()
            .map(|s| decode_secret(s))
            .collect::<Result<_, _>>()?;
        Ok(StandardWebhooks { keys, tolerance })
    }

    pub(crate) fn verify(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        // The ID is what makes a delivery recognisable again: without one a signed delivery
        // could be replayed within the tolerance.
        let id = required(req.headers, ID)?;
        if id.trim().is_empty() {
            return Err(AuthError::MissingSignature(ID.to_owned()));
        }
        let raw_ts = required(req.headers, TIMESTAMP)?;
        let header = required(req.headers, SIGNATURE)?;
        let signed_at = parse_timestamp(TIMESTAMP, raw_ts, 1000)?;
        check_tolerance(signed_at, now, self.tolerance)?;

        let mut saw_v1 = false;
        for entry in header.split(' ').filter(|e| !e.is_empty()) {
            let Some((version, sig)) = entry.split_once(',') else {
                continue;
            };
            if version != "v1" {
                continue;
            }
            saw_v1 = true;
            // An undecodable entry may sit beside a good one; it just cannot match.
            let Ok(tag) = STANDARD.decode(sig) else {
                continue;
            };
            // The timestamp is signed as sent, not as re-formatted.
            if any_sha256(
                &self.keys,
                &[id.as_bytes(), b".", raw_ts.as_bytes(), b".", req.body],
                &tag,
            ) {
                return Ok(());
            }
        }
        if !saw_v1 {
            return Err(AuthError::malformed(SIGNATURE, "no v1 signature"));
        }
        Err(AuthError::InvalidSignature)
    }
}
