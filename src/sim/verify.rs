//! The simulator's own Signature 1.0 verifier.
//!
//! Deliberately written apart from `crate::vod::signing`: if both shared one canonicalisation, a
//! bug in it would sign and verify consistently and every test would still pass. This one works
//! on bytes with a hand-written escape table and sorts names explicitly.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use time::PrimitiveDateTime;
use time::macros::format_description;

/// RFC 3986 escaping of one string: bytes outside `A-Z a-z 0-9 - _ . ~` become `%XY` (upper hex).
fn escape(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() * 3);
    for &byte in input.as_bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~');
        if unreserved {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// The string the server signs: every parameter except `Signature`, names in byte order.
pub fn server_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let mut pairs: Vec<(&[u8], &str, &str)> = params
        .iter()
        .filter(|(name, _)| name.as_str() != "Signature")
        .map(|(name, value)| (name.as_bytes(), name.as_str(), value.as_str()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut query = String::new();
    for (i, (_, name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(&escape(name));
        query.push('=');
        query.push_str(&escape(value));
    }
    format!("{}&%2F&{}", method.to_ascii_uppercase(), escape(&query))
}

/// The Base64 HMAC-SHA1 signature the server expects for `string_to_sign`.
pub fn expected_signature(secret: &str, string_to_sign: &str) -> String {
    let mut key = secret.as_bytes().to_vec();
    key.push(b'&');
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares signatures without leaking where they differ.
pub fn signatures_match(expected: &str, received: &str) -> bool {
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// Parses the `Timestamp` parameter (`yyyy-MM-ddTHH:mm:ssZ`) into epoch seconds.
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    PrimitiveDateTime::parse(raw, &format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        for (raw, want) in [
            ("a b", "a%20b"),
            ("*~+/", "%2A~%2B%2F"),
            ("é", "%C3%A9"),
            ("", ""),
        ] {
            assert_eq!(escape(raw), want);
        }
    }

    #[test]
    fn published_example_and_signature_excluded() {
        let mut params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        params.insert("Signature".to_owned(), "ignored".to_owned());
        let sts = server_string_to_sign("GET", &params);
        assert!(!sts.contains("Signature%3Dignored"));
        assert_eq!(
            expected_signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert!(signatures_match("abc=", "abc="));
        assert!(!signatures_match("abc=", "abd="));
        assert!(!signatures_match("abc=", "abc"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("2016-02-23T12:46:24Z"), Some(1_456_231_584));
        for bad in [
            "2016-02-23T12:46:24",
            "2016-02-23 12:46:24Z",
            "2016-02-23T12:46:24.5Z",
            "",
            "2016-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
