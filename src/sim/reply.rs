//! Alibaba-shaped answers: the JSON error body and the helpers that build the common errors.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

/// The content type VOD answers with.
pub const JSON_UTF8: &str = "application/json;charset=utf-8";

/// An error answer before it gets its `RequestId` and `HostId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn missing(name: &str) -> ApiError {
        ApiError::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidParameter", message)
    }
}

/// A VOD-style `RequestId`: an upper-case UUID.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

pub fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(JSON_UTF8)
        .body(body.to_string())
}

/// `{"RequestId","HostId","Code","Message","Recommend"}`, as the OpenAPI gateway sends it.
pub fn error_body(err: &ApiError, request_id: &str, host_id: &str) -> serde_json::Value {
    serde_json::json!({
        "RequestId": request_id,
        "HostId": host_id,
        "Code": err.code,
        "Message": err.message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=vod&requestId={request_id}",
            err.code
        ),
    })
}
