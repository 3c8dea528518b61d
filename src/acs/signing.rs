//! Signature Version 1.0 (HMAC-SHA1) of Alibaba Cloud RPC requests, as in `vod-api.md` §4.
//!
//! Pure functions: the caller supplies every parameter, including `Timestamp` and
//! `SignatureNonce`, so the published and captured vectors can be replayed exactly.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Everything except the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is escaped.
/// `percent-encoding` writes upper-case hex, which is what Alibaba expects.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Alibaba's `percentEncode`: UTF-8, then every byte outside the unreserved set as `%XY`.
/// A space becomes `%20` (never `+`), `*` becomes `%2A`, `~` stays.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// `METHOD&%2F&percentEncode(canonicalized query)`. `params` must not contain `Signature`;
/// the `BTreeMap` gives the byte-wise name order the algorithm requires.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let canonical = params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method,
        percent_encode("/"),
        percent_encode(&canonical)
    )
}

/// Base64 of HMAC-SHA1 over the string to sign, keyed with `secret&`.
pub fn sign(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let key = format!("{secret}&");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign(method, params).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_table() {
        let cases = [
            ("", ""),
            ("abcXYZ019", "abcXYZ019"),
            ("-_.~", "-_.~"),
            ("a b", "a%20b"),
            ("*", "%2A"),
            ("+", "%2B"),
            ("/", "%2F"),
            (",", "%2C"),
            (":", "%3A"),
            ("=", "%3D"),
            ("&", "%26"),
            ("%", "%25"),
            ("\"", "%22"),
            ("é", "%C3%A9"),
            ("视", "%E8%A7%86"),
            ("✓", "%E2%9C%93"),
        ];
        for (raw, want) in cases {
            assert_eq!(percent_encode(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn published_example() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert_ne!(
            sign("POST", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn empty_value_is_kept() {
        let params: BTreeMap<String, String> = [
            ("A".to_owned(), String::new()),
            ("B".to_owned(), "x".to_owned()),
        ]
        .into();
        assert_eq!(string_to_sign("GET", &params), "GET&%2F&A%3D%26B%3Dx");
    }
}
