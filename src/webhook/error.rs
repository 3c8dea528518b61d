//! Why a delivery was refused, in two families: authentication (401) and payload (400/413/422).
//!
//! Each error has a stable machine-readable `code()` for the JSON error body, and a `Display`
//! text that is safe to send back to the caller: it names headers and fields, never secrets or
//! the expected signature.

/// A delivery that failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A header the scheme needs is absent (signature, id or timestamp).
    #[error("missing {0} header")]
    MissingSignature(String),
    /// A header is present but cannot be read (bad encoding, bad timestamp, missing prefix).
    #[error("malformed {header} header: {reason}")]
    MalformedSignature { header: String, reason: String },
    /// No configured secret produces the signature that was sent.
    #[error("signature does not match")]
    InvalidSignature,
    /// The signed timestamp is further from the server's clock than the configured tolerance.
    #[error("timestamp is outside the tolerance of {tolerance_secs}s")]
    TimestampOutOfTolerance { tolerance_secs: u64 },
    /// Bearer scheme: no token in the header.
    #[error("missing bearer token in {0} header")]
    MissingToken(String),
    /// Bearer scheme: the token matches no configured secret.
    #[error("invalid token")]
    InvalidToken,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingSignature(_) => "missing_signature",
            AuthError::MalformedSignature { .. } => "malformed_signature",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            AuthError::MissingToken(_) => "missing_token",
            AuthError::InvalidToken => "invalid_token",
        }
    }

    pub(crate) fn malformed(header: &str, reason: impl Into<String>) -> AuthError {
        AuthError::MalformedSignature {
            header: header.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A body that cannot be turned into purge requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON at all (syntax error, truncated body, not UTF-8).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// JSON, but not the shape the source's format expects.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// `task` is not `Refresh`, `Preload` or `RefreshThenPreload`.
    #[error("{0}")]
    UnknownTask(String),
    /// `priority` is not `normal` or `urgent`.
    #[error("{0}")]
    UnknownPriority(String),
    /// `options` do not parse as VOD options.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// More media IDs in one delivery than [`super::MAX_IDS_PER_DELIVERY`].
    #[error("{count} media ids in one request, at most {max} are accepted")]
    TooManyIds { count: usize, max: usize },
}

impl PayloadError {
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::MalformedJson(_) => "malformed_json",
            PayloadError::InvalidPayload(_) => "invalid_payload",
            PayloadError::UnknownTask(_) => "unknown_task",
            PayloadError::UnknownPriority(_) => "unknown_priority",
            PayloadError::InvalidOptions(_) => "invalid_options",
            PayloadError::TooManyIds { .. } => "too_many_ids",
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> PayloadError {
        PayloadError::InvalidPayload(msg.into())
    }

    /// Parses a body as JSON, telling syntax errors (malformed) from nothing else.
    pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, PayloadError> {
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))
    }
}
