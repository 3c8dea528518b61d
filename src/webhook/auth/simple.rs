//! The two generic schemes: an HMAC of the body in a header of the operator's choosing, and a
//! static bearer token.
//!
//! Generic HMAC covers GitHub-style `X-Hub-Signature-256: sha256=<hex>`, WooCommerce
//! `X-WC-Webhook-Signature: <base64>` and the many WordPress plugins that copied one of them.
//! Bearer is what Strapi and Directus Flows can do: they cannot sign, only add static headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::super::config::{HmacAlgorithm, SignatureEncoding, SourceConfig};
use super::super::error::AuthError;
use super::super::{Headers, Request};
use super::required;

pub(crate) struct HmacBody {
    header: String,
    prefix: Option<String>,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    secrets: Vec<Vec<u8>>,
}

impl HmacBody {
    pub(crate) fn new(cfg: &SourceConfig, secrets: Vec<Vec<u8>>) -> Result<HmacBody, String> {
        let header = cfg
            .header
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or("auth = \"hmac\" needs header")?;
        Ok(HmacBody {
            header: header.to_owned(),
            prefix: cfg.prefix.clone().filter(|p| !p.is_empty()),
            algorithm: cfg.algorithm,
            encoding: cfg.encoding,
            secrets,
        })
    }

    pub(crate) fn verify(&self, req: &Request<'_>) -> Result<(), AuthError> {
        let value = required(req.headers, &self.header)?.trim();
        let encoded = match &self.prefix {
            Some(prefix) => strip_prefix_ignore_case(value, prefix).ok_or_else(|| {
                AuthError::malformed(&self.header, format!("expected the prefix {prefix:?}"))
            })?,
            None => value,
        };
        let tag = match self.encoding {
            SignatureEncoding::Hex => hex::decode(encoded.trim())
                .map_err(|_| AuthError::malformed(&self.header, "not hex")),
            SignatureEncoding::Base64 => STANDARD
                .decode(encoded.trim())
                .map_err(|_| AuthError::malformed(&self.header, "not base64")),
        }?;
        let ok = self.secrets.iter().any(|secret| match self.algorithm {
            HmacAlgorithm::Sha256 => verify::<Hmac<Sha256>>(secret, req.body, &tag),
            HmacAlgorithm::Sha1 => verify::<Hmac<Sha1>>(secret, req.body, &tag),
        });
        if ok {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

fn verify<M: Mac + KeyInit>(secret: &[u8], body: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(tag).is_ok()
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

const AUTHORIZATION: &str = "authorization";

pub(crate) struct Bearer {
    header: String,
    /// SHA-256 of each token: comparing digests of equal length keeps the comparison constant
    /// time even when the sent token's length differs from the configured one.
    digests: Vec<[u8; 32]>,
}

impl Bearer {
    pub(crate) fn new(header: Option<&str>, tokens: &[String]) -> Bearer {
        let header = header
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(AUTHORIZATION);
        Bearer {
            header: header.to_owned(),
            digests: tokens.iter().map(|t| digest(t.trim())).collect(),
        }
    }

    pub(crate) fn verify(&self, headers: &Headers) -> Result<(), AuthError> {
        let value = headers.get(&self.header).map(str::trim).unwrap_or("");
        // `Bearer` is required in `Authorization` (RFC 6750) and optional in a custom header.
        let token = match strip_prefix_ignore_case(value, "bearer ") {
            Some(token) => token.trim(),
            None if self.header.eq_ignore_ascii_case(AUTHORIZATION) => "",
            None => value,
        };
        if token.is_empty() {
            return Err(AuthError::MissingToken(self.header.clone()));
        }
        let sent = digest(token);
        let mut ok = subtle::Choice::from(0);
        for expected in &self.digests {
            ok |= expected.ct_eq(&sent);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::InvalidToken)
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        Headers::new(pairs.iter().copied())
    }

    #[test]
    fn bearer_table() {
        let b = Bearer::new(None, &["old-token".into(), "new-token".into()]);
        for (pairs, want) in [
            (vec![("Authorization", "Bearer new-token")], Ok(())),
            (vec![("authorization", "bearer old-token")], Ok(())),
            (vec![("AUTHORIZATION", "  Bearer   new-token  ")], Ok(())),
            (
                vec![("Authorization", "Bearer new-tokem")],
                Err("invalid_token"),
            ),
            (
                vec![("Authorization", "Bearer new-token-longer")],
                Err("invalid_token"),
            ),
            (vec![("Authorization", "new-token")], Err("missing_token")),
            (vec![("Authorization", "Bearer ")], Err("missing_token")),
            (
                vec![("Authorization", "Basic bmV3LXRva2Vu")],
                Err("missing_token"),
            ),
            (vec![], Err("missing_token")),
        ] {
            assert_eq!(
                b.verify(&headers(&pairs)).map_err(|e| e.code()),
                want,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn bearer_in_custom_header() {
        let b = Bearer::new(Some("X-Webhook-Token"), &["t0k".into()]);
        assert!(b.verify(&headers(&[("x-webhook-token", "t0k")])).is_ok());
        assert!(
            b.verify(&headers(&[("x-webhook-token", "Bearer t0k")]))
                .is_ok()
        );
        assert_eq!(
            b.verify(&headers(&[("Authorization", "Bearer t0k")]))
                .unwrap_err()
                .code(),
            "missing_token"
        );
    }
}
