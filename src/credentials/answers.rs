//! Reading what STS, the metadata service and a credentials URI answer into an [`Issued`]
//! credential, or into an error that says what was wrong with the answer.
//!
//! An answer is quoted in an error only when it cannot hold a credential (an error answer, or
//! one that is not JSON), and then without the secrets the request carried
//! ([`remote::Carried`]); an answer that may hold the new keys is described by its fields, never
//! quoted. The keys are read field by field rather than with serde, whose messages quote the
//! value they met.

use serde::Deserialize;

use super::{CredentialError, Credentials, Issued, ProviderName};
use crate::acs::remote;
use crate::domain::Ts;

/// How many characters of an unexpected answer a message quotes.
const EXCERPT: usize = 160;

/// The start of an answer, for a message, without what the request carried.
pub(super) fn excerpt(body: &[u8], carried: &remote::Carried) -> String {
    remote::cut(&carried.scrub(&String::from_utf8_lossy(body)), EXCERPT)
}

/// The `Credentials` object of an STS answer and of the metadata service.
struct Keys {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    expiration: Option<String>,
}

impl Keys {
    /// The keys of an answer's object. Read field by field rather than with serde, whose
    /// messages quote the value they met: here, possibly a new secret.
    fn from_json(object: &serde_json::Value) -> Result<Keys, String> {
        let field = |name: &str, required: bool| match object.get(name) {
            Some(serde_json::Value::String(value)) => Ok(Some(value.clone())),
            None | Some(serde_json::Value::Null) if !required => Ok(None),
            None => Err(format!("the answer has no {name}")),
            Some(_) => Err(format!("the answer's {name} is not a string")),
        };
        Ok(Keys {
            access_key_id: field("AccessKeyId", true)?.unwrap_or_default(),
            access_key_secret: field("AccessKeySecret", true)?.unwrap_or_default(),
            security_token: field("SecurityToken", false)?,
            expiration: field("Expiration", false)?,
        })
    }

    fn into_issued(self, provider: ProviderName, what: &str) -> Result<Issued, CredentialError> {
        let fail = |msg: String| CredentialError::new(provider, format!("{what}: {msg}"));
        if self.access_key_id.is_empty() || self.access_key_secret.is_empty() {
            return Err(fail(
                "the answer has an empty AccessKeyId or AccessKeySecret".to_owned(),
            ));
        }
        let expires_at = match self.expiration.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(parse_expiration(raw).ok_or_else(|| {
                fail(format!(
                    "Expiration {raw:?} is not a time such as 2026-11-30T12:00:00Z"
                ))
            })?),
        };
        let now = Ts::now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(fail(
                "the credential it handed out has already expired".to_owned(),
            ));
        }
        Ok(Issued {
            credentials: Credentials::new(
                self.access_key_id,
                self.access_key_secret,
                self.security_token,
            ),
            issued_at: now,
            expires_at,
        })
    }
}

/// `2026-11-30T12:00:00Z`; the libraries also meet it without the `Z` or with fractions.
pub fn parse_expiration(raw: &str) -> Option<Ts> {
    Ts::parse(raw)
        .filter(|_| raw.contains('T'))
        .or_else(|| Ts::parse(&format!("{raw}Z")).filter(|_| raw.contains('T')))
}

/// STS's answer: the keys in `Credentials`. An error answer is quoted without what the
/// request carried; a successful one, which holds the new keys, is never quoted.
pub(super) fn sts(
    provider: ProviderName,
    action: &str,
    host: &str,
    status: u16,
    body: &[u8],
    carried: &remote::Carried,
) -> Result<Issued, CredentialError> {
    let fail = |msg: String| CredentialError::new(provider, format!("STS {action}: {msg}"));
    // Any success is read as one (never quoted: it holds the keys).
    if !(200..300).contains(&status) {
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(rename = "Code")]
            code: String,
            #[serde(rename = "Message", default)]
            message: String,
        }
        return Err(match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => fail(format!(
                "{} (HTTP {status} from {host}): {}",
                e.code,
                carried.scrub(&e.message)
            )),
            Err(_) => fail(format!(
                "HTTP {status} from {host}: {}",
                excerpt(body, carried)
            )),
        });
    }
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        fail(format!(
            "the answer from {host} ({} bytes) is not JSON",
            body.len()
        ))
    })?;
    let keys = answer
        .get("Credentials")
        .ok_or_else(|| "the answer has no Credentials".to_owned())
        .and_then(Keys::from_json)
        .map_err(|e| fail(format!("{e} (from {host})")))?;
    keys.into_issued(provider, &format!("STS {action}"))
}

/// The metadata service's and a credentials URI's answer: the keys beside `"Code": "Success"`.
/// Only an answer that is not JSON is quoted (without what the request carried): one that is
/// may hold the new keys.
pub(super) fn coded(
    provider: ProviderName,
    what: &str,
    body: &[u8],
    carried: &remote::Carried,
) -> Result<Issued, CredentialError> {
    let fail = |msg: String| CredentialError::new(provider, format!("{what}: {msg}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        fail(format!(
            "the answer is not JSON: {}",
            excerpt(body, carried)
        ))
    })?;
    let code = value
        .get("Code")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    if code != "Success" {
        return Err(fail(format!(
            "the answer's Code is {code:?}, not \"Success\""
        )));
    }
    let keys = Keys::from_json(&value).map_err(fail)?;
    keys.into_issued(provider, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_forms() {
        let want = Ts::parse("2026-11-30T12:00:00Z");
        assert!(want.is_some());
        for raw in ["2026-11-30T12:00:00Z", "2026-11-30T12:00:00"] {
            assert_eq!(parse_expiration(raw), want, "{raw}");
        }
        for raw in ["tomorrow", "1764504000000", ""] {
            assert_eq!(parse_expiration(raw), None, "{raw}");
        }
    }

    #[test]
    fn sts_answers_quote_no_secret() {
        let base_token = "CAIS+base/token=0123";
        let carried = remote::Carried::new([base_token, "signature+/=0123"]);
        let new_secret = "new-secret-0123456789";
        let table: [(u16, String, &str); 4] = [
            // An error answer that echoes the request (STS's SignatureDoesNotMatch quotes its
            // string to sign; another server may quote the token itself).
            (
                400,
                r#"{"Code":"SignatureDoesNotMatch","Message":"no match. server string to sign is:POST&%2F&SecurityToken%3DCAIS%252Bbase"}"#
                    .to_owned(),
                "SignatureDoesNotMatch (HTTP 400 from sts.example): no match. server string to sign is: <not shown",
            ),
            (
                503,
                format!("<html>bad gateway for {base_token}</html>"),
                "HTTP 503 from sts.example: <html>bad gateway for <redacted></html>",
            ),
            // A successful answer of the wrong shape holds the new secret: it is described,
            // not quoted.
            (
                200,
                format!(
                    r#"{{"Credentials":{{"AccessKeyId":5,"AccessKeySecret":"{new_secret}"}}}}"#
                ),
                "the answer's AccessKeyId is not a string (from sts.example)",
            ),
            (
                200,
                format!("AccessKeySecret={new_secret}"),
                "the answer from sts.example (",
            ),
        ];
        for (status, body, want) in table {
            let err = sts(
                ProviderName::Oidc,
                "AssumeRole",
                "sts.example",
                status,
                body.as_bytes(),
                &carried,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{body}: {err}");
            for secret in [base_token, "CAIS%252Bbase", new_secret] {
                assert!(!err.contains(secret), "{body}: {err}");
            }
        }
    }

    #[test]
    fn coded_answers() {
        let ok = br#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2999-01-01T00:00:00Z","LastUpdated":"2026-01-01T00:00:00Z"}"#;
        let none = remote::Carried::default();
        let issued = coded(ProviderName::EcsRamRole, "role", ok, &none).unwrap();
        assert_eq!(issued.credentials.security_token(), Some("t"));
        assert!(issued.expires_at.is_some());
        let table: [(&[u8], &str); 5] = [
            (br#"{"Code":"Failed","Message":"no"}"#, "Code is \"Failed\""),
            (b"<html>", "not JSON"),
            (br#"{"Code":"Success","AccessKeyId":"a"}"#, "has no AccessKeySecret"),
            (br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"s","Expiration":"soon"}"#, "Expiration \"soon\""),
            (br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"s","Expiration":"2001-01-01T00:00:00Z"}"#, "already expired"),
        ];
        for (body, want) in table {
            let err = coded(ProviderName::EcsRamRole, "role \"r\"", body, &none).unwrap_err();
            assert!(
                err.to_string().starts_with("ecs-ram-role: role \"r\": "),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
    }
}
