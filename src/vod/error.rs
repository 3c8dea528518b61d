//! What can go wrong when calling VOD, and how a caller should react to it.
//!
//! Alibaba's HTTP status codes for one error code differ between doc pages, so the class of an
//! error is decided by its `Code` first and by the HTTP status only when the code says nothing
//! (`vod-api.md` §6.2). Every response, however broken, becomes a `VodError`; nothing panics.

use std::time::Duration;

/// A failed VOD call.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    /// VOD answered with its JSON error body.
    #[error("VOD error {code} (HTTP {status}): {message}{}", request_id_suffix(.request_id))]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        /// From the `x-acs-retry-after` header (milliseconds on the wire), when present.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the client's timeout. The call may or may not have been applied.
    #[error("VOD request timed out")]
    Timeout,
    /// The request could not be sent or the answer could not be read: the endpoint's host and
    /// what went wrong (never the request URL, which carries the signature and the STS token).
    #[error("cannot reach VOD at {0}")]
    Connection(String),
    /// An answer that is not what VOD sends (not JSON, JSON of the wrong shape, or larger than
    /// any VOD answer).
    #[error("unexpected VOD response (HTTP {status}): {excerpt}")]
    Malformed { status: u16, excerpt: String },
    /// The request was refused before sending (e.g. no media IDs, or more than 20).
    #[error("invalid VOD request: {0}")]
    InvalidRequest(String),
    /// No valid credential within the call's timeout (STS or the metadata service cannot renew
    /// it): the call was not sent.
    #[error("no valid credential to sign the call with: the renewal has not succeeded yet")]
    NoCredentials,
    /// The client could not be built (bad endpoint URL, TLS setup).
    #[error("cannot set up the VOD client: {0}")]
    Config(String),
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" (RequestId {id})"),
        None => String::new(),
    }
}

/// How a caller should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Rate limited: slow down, then retry.
    Throttled,
    /// Transient: retry with backoff (re-signed).
    Retryable,
    /// Retrying the same request cannot help.
    Permanent,
    /// The daily quota of the task type is used up: hold the work until the quota comes back.
    QuotaExhausted,
}

/// How many characters of an unexpected body are kept for the error message.
const EXCERPT_CHARS: usize = 200;

const THROTTLED_CODES: [&str; 3] = ["Throttling", "Throttling.User", "Throttling.Api"];
const RETRYABLE_CODES: [&str; 5] = [
    "ServiceUnavailable",
    "InternalError",
    "UnknownError",
    "SignatureNonceUsed",
    "PreloadQueueFull",
];
/// The daily quota is used up (`vod-api.md` §7): Refresh and Preload have separate quotas.
const QUOTA_CODES: [&str; 2] = ["QuotaExceeded.Refresh", "QuotaExceeded.Preload"];
const RETRYABLE_PREFIXES: [&str; 2] = ["QuotaPerMinuteExceeded.", "TooMany."];
const CREDENTIAL_CODES: [&str; 4] = [
    "SignatureDoesNotMatch",
    "Forbidden.AccessKeyDisabled",
    "MissingSecurityToken",
    "IncompleteSignature",
];
const CREDENTIAL_PREFIXES: [&str; 2] = ["InvalidAccessKeyId.", "InvalidSecurityToken."];

/// The class of a code that names its own retry behaviour (throttling, queue full, server
/// errors); `None` for every other code, which is then classed by the HTTP status.
pub fn class_of_code(code: &str) -> Option<ErrorClass> {
    if THROTTLED_CODES.contains(&code) {
        Some(ErrorClass::Throttled)
    } else if QUOTA_CODES.contains(&code) {
        Some(ErrorClass::QuotaExhausted)
    } else if RETRYABLE_CODES.contains(&code)
        || RETRYABLE_PREFIXES.iter().any(|p| code.starts_with(p))
    {
        Some(ErrorClass::Retryable)
    } else {
        None
    }
}

fn class_of_status(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttled,
        200..=299 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

impl VodError {
    /// Builds the error for a non-2xx answer from its status, `x-acs-retry-after` header and body.
    pub(crate) fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> VodError {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            #[serde(rename = "Code", alias = "code")]
            code: Option<String>,
            #[serde(rename = "Message", alias = "message", default)]
            message: Option<String>,
            #[serde(rename = "RequestId", alias = "requestId", default)]
            request_id: Option<String>,
        }
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody {
                code: Some(code),
                message,
                request_id,
            }) if !code.is_empty() => VodError::Api {
                status,
                code,
                message: message.unwrap_or_default(),
                request_id,
                retry_after: retry_after
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis),
            },
            _ => VodError::malformed(status, body),
        }
    }

    /// [`VodError::from_response`], its text without what the request carried: servers echo
    /// the request (`SignatureDoesNotMatch` quotes the string to sign, security token and all).
    pub(crate) fn from_answer(
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
        carried: &super::remote::Carried,
    ) -> VodError {
        match VodError::from_response(status, retry_after, body) {
            VodError::Api {
                status,
                code,
                message,
                request_id,
                retry_after,
            } => VodError::Api {
                status,
                code,
                message: excerpt_of(&carried.scrub(&message)),
                request_id,
                retry_after,
            },
            // Taken out before the excerpt is cut, so that no part of a secret is left.
            VodError::Malformed { status, .. } => VodError::malformed(
                status,
                carried.scrub(&String::from_utf8_lossy(body)).as_bytes(),
            ),
            other => other,
        }
    }

    pub(crate) fn malformed(status: u16, body: &[u8]) -> VodError {
        VodError::Malformed {
            status,
            excerpt: excerpt_of(&String::from_utf8_lossy(body)),
        }
    }
}

/// At most [`EXCERPT_CHARS`] of `text` (an answer's message is kept with each attempt and shown
/// in `/jobs`).
fn excerpt_of(text: &str) -> String {
    super::remote::cut(text, EXCERPT_CHARS)
}

impl VodError {
    /// An answer longer than `cap` bytes from `host`, left unread.
    pub(crate) fn too_large(status: u16, host: &str, cap: usize) -> VodError {
        VodError::Malformed {
            status,
            excerpt: format!(
                "the answer from {host} is larger than {}; not read",
                super::remote::size_text(cap)
            ),
        }
    }

    /// A redirect from `host`: not followed, since it would carry the signed query elsewhere.
    pub(crate) fn redirect(status: u16, host: &str) -> VodError {
        VodError::Malformed {
            status,
            excerpt: format!(
                "a redirect from {host}, not followed: vod.endpoint must name VOD's endpoint itself"
            ),
        }
    }

    /// Whether to back off, retry or give up (`vod-api.md` §6.2).
    pub fn class(&self) -> ErrorClass {
        match self {
            VodError::Api { status, code, .. } => match class_of_code(code) {
                Some(class) => class,
                None if *status == 429 || *status >= 500 => class_of_status(*status),
                None => ErrorClass::Permanent,
            },
            VodError::Timeout | VodError::Connection(_) | VodError::NoCredentials => {
                ErrorClass::Retryable
            }
            VodError::Malformed { status, .. } => class_of_status(*status),
            VodError::InvalidRequest(_) | VodError::Config(_) => ErrorClass::Permanent,
        }
    }

    /// Alibaba's error `Code`, when VOD sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            VodError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// VOD's `Message` for API errors, the full description otherwise.
    pub fn message(&self) -> String {
        match self {
            VodError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            VodError::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, when an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            VodError::Api { status, .. } | VodError::Malformed { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's retry hint (`x-acs-retry-after`), when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VodError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The credentials are wrong, disabled or expired: an operator has to act.
    pub fn is_credential_error(&self) -> bool {
        self.code().is_some_and(|c| {
            CREDENTIAL_CODES.contains(&c) || CREDENTIAL_PREFIXES.iter().any(|p| c.starts_with(p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> VodError {
        let body = serde_json::json!({"Code": code, "Message": "m", "RequestId": "r"}).to_string();
        VodError::from_response(status, None, body.as_bytes())
    }

    #[test]
    fn a_long_message_is_kept_short() {
        let message = "x".repeat(100_000);
        let body = serde_json::json!({"Code": "InvalidParameter", "Message": message}).to_string();
        let carried = super::super::remote::Carried::new(["secret-token-value"]);
        match VodError::from_answer(400, None, body.as_bytes(), &carried) {
            VodError::Api { message, .. } => assert_eq!(message.chars().count(), EXCERPT_CHARS + 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classes_by_code_and_status() {
        use ErrorClass::*;
        let table = [
            (503, "Throttling", Throttled),
            (400, "Throttling", Throttled),
            (400, "Throttling.User", Throttled),
            (400, "Throttling.Api", Throttled),
            (429, "SomethingNew", Throttled),
            (503, "ServiceUnavailable", Retryable),
            (500, "InternalError", Retryable),
            (500, "UnknownError", Retryable),
            (502, "BadGateway", Retryable),
            (400, "SignatureNonceUsed", Retryable),
            (400, "QuotaPerMinuteExceeded.Refresh", Retryable),
            (400, "TooMany.Refresh", Retryable),
            (400, "PreloadQueueFull", Retryable),
            (403, "PreloadQueueFull", Retryable),
            (400, "InvalidParameter", Permanent),
            (403, "Forbidden.RAM", Permanent),
            (400, "SignatureDoesNotMatch", Permanent),
            (404, "InvalidAccessKeyId.NotFound", Permanent),
            (400, "QuotaExceeded.Refresh", QuotaExhausted),
            (400, "QuotaExceeded.Preload", QuotaExhausted),
            (403, "QuotaExceeded.Unknown", Permanent),
            (403, "OperationDenied.Suspended", Permanent),
            (400, "InvalidTimeStamp.Expired", Permanent),
        ];
        for (status, code, want) in table {
            let err = api(status, code);
            assert_eq!(err.class(), want, "{status} {code}");
            assert_eq!(err.code(), Some(code));
            assert_eq!(err.request_id(), Some("r"));
        }
    }

    #[test]
    fn transport_and_malformed_classes() {
        assert_eq!(VodError::Timeout.class(), ErrorClass::Retryable);
        assert_eq!(
            VodError::Connection("refused".into()).class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            VodError::InvalidRequest("x".into()).class(),
            ErrorClass::Permanent
        );
        for (status, want) in [
            (200, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (429, ErrorClass::Throttled),
            (404, ErrorClass::Permanent),
        ] {
            let err = VodError::from_response(status, None, b"<html>oops</html>");
            assert!(matches!(err, VodError::Malformed { .. }), "{err:?}");
            assert_eq!(err.class(), want, "{status}");
        }
        // JSON without a Code is not an Alibaba error body either.
        assert!(matches!(
            VodError::from_response(500, None, b"{\"x\":1}"),
            VodError::Malformed { .. }
        ));
    }

    #[test]
    fn excerpt_is_short_and_safe() {
        let body = "视".repeat(1000);
        let VodError::Malformed { excerpt, .. } =
            VodError::from_response(500, None, body.as_bytes())
        else {
            panic!("expected Malformed");
        };
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
        let err = VodError::from_response(500, None, &[0xff, 0xfe, b'{']);
        assert!(matches!(err, VodError::Malformed { .. }));
    }

    #[test]
    fn retry_after_header() {
        let body = br#"{"Code":"Throttling","Message":"slow down"}"#;
        assert_eq!(
            VodError::from_response(503, Some("1500"), body).retry_after(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            VodError::from_response(503, Some("soon"), body).retry_after(),
            None
        );
        assert_eq!(VodError::from_response(503, None, body).request_id(), None);
    }

    #[test]
    fn credential_errors() {
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId.NotFound",
            "InvalidAccessKeyId.Inactive",
            "Forbidden.AccessKeyDisabled",
            "InvalidSecurityToken.Expired",
            "MissingSecurityToken",
            "IncompleteSignature",
        ] {
            assert!(api(400, code).is_credential_error(), "{code}");
        }
        for code in ["Throttling", "InvalidParameter", "Forbidden.RAM"] {
            assert!(!api(400, code).is_credential_error(), "{code}");
        }
        assert!(!VodError::Timeout.is_credential_error());
    }

    #[test]
    fn display_mentions_code_and_request_id() {
        let text = api(400, "InvalidParameter").to_string();
        assert!(
            text.contains("InvalidParameter") && text.contains("RequestId r"),
            "{text}"
        );
    }
}
