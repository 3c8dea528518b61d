//! The one place where errors become HTTP answers.
//!
//! Every error body has the shape `{"error": {"code": "...", "message": "..."}}`. Client errors
//! carry a stable code and a message that is safe to show; internal errors are logged with their
//! cause and answered with an opaque 500.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store::StoreError;
use crate::webhook::{AuthError, PayloadError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("too many requests for source {source_name}")]
    RateLimited {
        source_name: String,
        retry_after_secs: u64,
    },
    /// The client address has used up its budget of failed requests.
    #[error("too many failed requests from this address; retry after {retry_after_secs} s")]
    PeerLimited { retry_after_secs: u64 },
    /// The body did not arrive within `server.body_timeout`; the connection is closed.
    #[error("the body did not arrive within {timeout_secs} s")]
    BodyTimeout { timeout_secs: u64 },
    /// Too many bodies of this source are being read before authentication.
    #[error(
        "too many unauthenticated deliveries to source {source_name} in progress; retry shortly"
    )]
    Busy { source_name: String },
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
}

/// A `Retry-After` value: whole seconds, rounded up so that a retry never comes too early.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PeerLimited { .. } => "too_many_failures",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Busy { .. } => "busy",
            ApiError::Store(StoreError::Corrupt { .. }) => "internal",
            ApiError::Store(_) => "store_unavailable",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> ApiError {
        let status = match e {
            PayloadError::MalformedJson(_) | PayloadError::InvalidPayload(_) => {
                StatusCode::BAD_REQUEST
            }
            PayloadError::UnknownTask(_)
            | PayloadError::UnknownPriority(_)
            | PayloadError::InvalidOptions(_)
            | PayloadError::TooManyIds { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_json`, `invalid_signature`, `unknown_source`...
    pub code: String,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::RateLimited { .. } | ApiError::PeerLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The database is unreachable or going away: nothing was stored, retrying later helps.
            ApiError::Store(StoreError::Corrupt { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Store(error) => {
                tracing::error!(error = %error, "store error while answering a request");
                "the store is unavailable; the request was not stored, retry later".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        let retry_after = match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::PeerLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Busy { .. } => Some(1),
            ApiError::Store(_) if self.status_code() == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        if let Some(value) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            response.insert_header((header::RETRY_AFTER, value));
        }
        if matches!(self, ApiError::BodyTimeout { .. }) {
            // The rest of the body may still come: the connection cannot be reused.
            response.force_close();
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        })
    }
}
