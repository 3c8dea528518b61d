//! Schemes of CMSes that sign in their own way: Sanity, Ghost and Contentful.
//!
//! Each one signs a timestamp along with the body, so each checks the timestamp against the
//! tolerance before it checks the signature; a captured delivery cannot be replayed later.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::Ts;

use super::super::Request;
use super::super::error::AuthError;
use super::{any_sha256, check_tolerance, parse_timestamp, required};

/// Splits `k1=v1,k2=v2` (spaces around items allowed) into pairs; items without `=` are skipped.
fn pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// The value of the first `key=` item of `header`, or a malformed-header error saying `missing`.
fn field<'h>(
    header: &'h str,
    key: &str,
    name: &'static str,
    missing: &'static str,
) -> Result<&'h str, AuthError> {
    pairs(header)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| AuthError::malformed(name, missing))
}

/// The schemes of this file: each signs a timestamp and the body with an HMAC-SHA256 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmsScheme {
    Sanity,
    Ghost,
    Contentful,
}

/// A CMS scheme with its keys (several while rotating) and the tolerance on its timestamps.
pub(crate) struct Cms {
    pub(crate) scheme: CmsScheme,
    pub(crate) secrets: Vec<Vec<u8>>,
    pub(crate) tolerance: Duration,
}

impl Cms {
    pub(crate) fn verify(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        match self.scheme {
            CmsScheme::Sanity => self.sanity(req, now),
            CmsScheme::Ghost => self.ghost(req, now),
            CmsScheme::Contentful => self.contentful(req, now),
        }
    }
}

const SANITY: &str = "sanity-webhook-signature";

impl Cms {
    /// Sanity GROQ webhooks (`sanity-io/webhook-toolkit`, published as `@sanity/webhook`, `src/signature.ts`):
    /// `sanity-webhook-signature: t=<ms>,v1=<base64url(HMAC-SHA256(secret, "<t>.<body>"))>`.
    fn sanity(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        let header = required(req.headers, SANITY)?;
        let raw_ts = field(header, "t", SANITY, "no t= timestamp")?;
        let signatures: Vec<&str> = pairs(header)
            .filter(|(k, _)| *k == "v1")
            .map(|(_, v)| v)
            .collect();
        if signatures.is_empty() {
            return Err(AuthError::malformed(SANITY, "no v1= signature"));
        }
        check_tolerance(parse_timestamp(SANITY, raw_ts, 1)?, now, self.tolerance)?;
        for sig in signatures {
            let Ok(tag) = URL_SAFE_NO_PAD_INDIFFERENT.decode(sig) else {
                continue;
            };
            if any_sha256(&self.secrets, &[raw_ts.as_bytes(), b".", req.body], &tag) {
                return Ok(());
            }
        }
        Err(AuthError::InvalidSignature)
    }
}

const GHOST: &str = "x-ghost-signature";

impl Cms {
    /// Ghost custom-integration webhooks (Ghost `ghost/core/core/server/services/webhooks/WebhookTrigger.js`):
    /// `X-Ghost-Signature: sha256=<hex(HMAC-SHA256(secret, body + t))>, t=<ms>`. Note that the
    /// timestamp is appended to the body with no separator.
    fn ghost(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        let header = required(req.headers, GHOST)?;
        let sig = pairs(header)
            .find(|(k, _)| k.eq_ignore_ascii_case("sha256"))
            .map(|(_, v)| v)
            .ok_or_else(|| AuthError::malformed(GHOST, "no sha256= signature"))?;
        let raw_ts = field(header, "t", GHOST, "no t= timestamp")?;
        let tag =
            hex::decode(sig).map_err(|_| AuthError::malformed(GHOST, "signature is not hex"))?;
        check_tolerance(parse_timestamp(GHOST, raw_ts, 1)?, now, self.tolerance)?;
        if any_sha256(&self.secrets, &[req.body, raw_ts.as_bytes()], &tag) {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

const CF_SIGNATURE: &str = "x-contentful-signature";
const CF_SIGNED_HEADERS: &str = "x-contentful-signed-headers";
const CF_TIMESTAMP: &str = "x-contentful-timestamp";

impl Cms {
    /// Contentful request verification.
    ///
    /// The canonical request follows Contentful's reference implementation,
    /// `contentful/node-apps-toolkit` `src/requests/sign-request.ts` (`hash`,
    /// `getSortedAndSignedHeaders`) with `verify-request.ts` and `utils.ts`
    /// (`getNormalizedEncodedURI`, `normalizeHeaders`, `pickHeaders`); the Python example in
    /// `contentful-labs/request-verification-examples` builds the same string, and
    /// `contentful/webhook-request-verification-demo` verifies webhooks with that toolkit:
    ///
    /// ```text
    /// METHOD \n normalized path \n name:value;name:value;... \n body
    /// ```
    ///
    /// hex HMAC-SHA256 with the signing secret as key. The headers are those listed in
    /// `x-contentful-signed-headers` that the request carries, names lower-cased, values trimmed,
    /// always including `x-contentful-signed-headers` and `x-contentful-timestamp` themselves, sorted
    /// by name; the value of `x-contentful-signed-headers` is the sorted, comma-joined list of those
    /// names and the timestamp is the integer as parsed. The toolkit refuses only timestamps older
    /// than its TTL; we refuse both directions, like the other schemes.
    fn contentful(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        let sig = required(req.headers, CF_SIGNATURE)?;
        let signed_list = required(req.headers, CF_SIGNED_HEADERS)?;
        let raw_ts = required(req.headers, CF_TIMESTAMP)?;
        let signed_at = parse_timestamp(CF_TIMESTAMP, raw_ts, 1)?;
        let tag =
            hex::decode(sig.trim()).map_err(|_| AuthError::malformed(CF_SIGNATURE, "not hex"))?;
        check_tolerance(signed_at, now, self.tolerance)?;
        let canonical = canonical_request(req, signed_list, signed_at);
        if any_sha256(&self.secrets, &[canonical.as_bytes(), req.body], &tag) {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

/// Everything of the canonical string up to and including the `\n` before the body.
fn canonical_request(req: &Request<'_>, signed_list: &str, signed_at: Ts) -> String {
    let mut names: Vec<String> = signed_list
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && req.headers.get(n).is_some())
        .collect();
    names.extend([CF_SIGNED_HEADERS.to_owned(), CF_TIMESTAMP.to_owned()]);
    names.sort();
    names.dedup();
    let joined_names = names.join(",");
    let headers: Vec<String> = names
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                CF_SIGNED_HEADERS => joined_names.clone(),
                CF_TIMESTAMP => signed_at.millis().to_string(),
                other => req.headers.get(other).unwrap_or_default().trim().to_owned(),
            };
            format!("{name}:{value}")
        })
        .collect();
    format!(
        "{}\n{}\n{}\n",
        req.method,
        normalized_path(req.path),
        headers.join(";")
    )
}

/// Node's `querystring.escape` (like `encodeURIComponent`) leaves these (besides ASCII letters
/// and digits) alone.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// JavaScript's `encodeURI` leaves alone what `encodeURIComponent` does, and the URI's reserved
/// characters and `#`.
const ENCODE_URI: &AsciiSet = &QUERY_ESCAPE
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');

/// The toolkit's `getNormalizedEncodedURI`: the query (text between the first and a possible
/// second `?`) is escaped, then the whole is passed through `encodeURI`. The double encoding of
/// the query is theirs; we reproduce it because the signer applies it.
fn normalized_path(uri: &str) -> String {
    let mut parts = uri.split('?');
    let path = parts.next().unwrap_or_default();
    let search = parts.next().unwrap_or_default();
    let escaped = utf8_percent_encode(search, QUERY_ESCAPE).to_string();
    let joined = if escaped.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{escaped}")
    };
    utf8_percent_encode(&joined, ENCODE_URI).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_paths() {
        assert_eq!(
            normalized_path("/webhooks/contentful"),
            "/webhooks/contentful"
        );
        assert_eq!(normalized_path("/a b"), "/a%20b");
        assert_eq!(normalized_path("/a%20b"), "/a%2520b");
        assert_eq!(normalized_path("/api?q=1&w=2"), "/api?q%253D1%2526w%253D2");
        assert_eq!(normalized_path("/api?"), "/api");
        assert_eq!(normalized_path("/vidé"), "/vid%C3%A9");
    }

    #[test]
    fn header_pairs() {
        let got: Vec<_> = pairs("sha256=ab, t=12,junk").collect();
        assert_eq!(got, vec![("sha256", "ab"), ("t", "12")]);
    }
}
