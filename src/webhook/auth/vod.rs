//! ApsaraVideo VOD event notifications (`docs/vod-callbacks.md`): `X-VOD-SIGNATURE` is the
//! lower-case hex MD5 of `"<callback URL>|<X-VOD-TIMESTAMP>|<key>"`. The URL is the one
//! configured in VOD, not the one the request arrives at (an ingress rewrites it), and the body
//! is not signed: what the signature proves is that the sender knows the key, within the
//! timestamp's tolerance.

use std::time::Duration;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::domain::Ts;

use super::super::Request;
use super::super::error::AuthError;
use super::{check_tolerance, parse_timestamp, required};

const TIMESTAMP: &str = "x-vod-timestamp";
const SIGNATURE: &str = "x-vod-signature";

pub(crate) struct VodCallback {
    pub(crate) callback_url: String,
    pub(crate) secrets: Vec<String>,
    pub(crate) tolerance: Duration,
}

/// `md5("<url>|<timestamp>|<key>")`, the 16 bytes.
fn signature(url: &str, timestamp: &str, key: &str) -> [u8; 16] {
    Md5::digest(format!("{url}|{timestamp}|{key}").as_bytes()).into()
}

impl VodCallback {
    pub(crate) fn verify(&self, req: &Request<'_>, now: Ts) -> Result<(), AuthError> {
        let timestamp = required(req.headers, TIMESTAMP)?.trim();
        let signature_hex = required(req.headers, SIGNATURE)?.trim();
        let tag = hex::decode(signature_hex)
            .ok()
            .filter(|t| t.len() == 16)
            .ok_or_else(|| AuthError::malformed(SIGNATURE, "not 32 hexadecimal digits"))?;
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::malformed(TIMESTAMP, "not Unix seconds"));
        }
        check_tolerance(
            parse_timestamp(TIMESTAMP, timestamp, 1000)?,
            now,
            self.tolerance,
        )?;
        let matches = self.secrets.iter().fold(false, |found, key| {
            let expected = signature(&self.callback_url, timestamp, key);
            found | bool::from(expected.ct_eq(tag.as_slice()))
        });
        if matches {
            Ok(())
        } else {
            Err(AuthError::InvalidSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documentation_example() {
        // md5("https://www.example.com/your/callback|1519375990|test123")
        let got = signature(
            "https://www.example.com/your/callback",
            "1519375990",
            "test123",
        );
        assert_eq!(hex::encode(got), "c72b60894140fa98920f1279219b7ed4");
    }
}
