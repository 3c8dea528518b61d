//! What an ingest request carries besides its payload: its headers, its content type, its
//! delivery ID, and its body, read within a deadline and a size cap.

use std::borrow::Cow;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web;
use futures_util::StreamExt;

use crate::api::error::ApiError;

pub(super) fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Every line of header `name`, in the order received; bytes that are not text are replaced,
/// not dropped, so that a line stays where it was.
pub(super) fn header_lines<'r>(req: &'r HttpRequest, name: &str) -> Vec<Cow<'r, str>> {
    req.headers()
        .get_all(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect()
}

/// Bodies are JSON: `application/json` or any `application/*+json`.
pub(super) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: application/json, got {content_type:?}"),
        ))
    }
}

/// The longest delivery ID (`webhook-id`, `Idempotency-Key`, ...) that is stored.
pub const MAX_DELIVERY_ID_LEN: usize = 200;

/// A delivery ID is stored for `store.idempotency_retention`: a long one is refused, not kept.
pub(super) fn checked_delivery_id(id: Option<String>) -> Result<Option<String>, ApiError> {
    match id {
        Some(id) if id.len() > MAX_DELIVERY_ID_LEN => Err(ApiError::bad_request(
            "invalid_delivery_id",
            format!(
                "the delivery ID (webhook-id, Idempotency-Key or the source's delivery_id_header) is {} bytes long, at most {MAX_DELIVERY_ID_LEN} are accepted",
                id.len()
            ),
        )),
        other => Ok(other),
    }
}

/// The first capacity of a body buffer: it grows with the bytes received, never with the
/// length a client declares.
const FIRST_BUFFER: usize = 8 * 1024;

/// The capacity a body buffer starts with when the client declares `declared` bytes: what it
/// declares, up to [`FIRST_BUFFER`]. A declared length is a promise, not bytes received: a
/// stranger who declares 1 MiB and sends one byte holds 8 KiB, not 1 MiB.
fn first_capacity(declared: Option<usize>) -> usize {
    declared.unwrap_or(0).min(FIRST_BUFFER)
}

/// Reads the whole body within `server.body_timeout`, refusing it as soon as it passes
/// `server.max_body_bytes`.
pub(super) async fn read_body(
    payload: web::Payload,
    req: &HttpRequest,
    server: &crate::config::ServerSettings,
) -> Result<web::Bytes, ApiError> {
    let timeout = server.body_timeout;
    tokio::time::timeout(timeout, read_limited(payload, req, server.max_body_bytes))
        .await
        .unwrap_or(Err(ApiError::BodyTimeout {
            timeout_secs: timeout.as_secs().max(1),
        }))
}

async fn read_limited(
    mut payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(first_capacity(declared));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("unreadable_body", format!("cannot read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_starts_at_what_is_declared_up_to_eight_kib() {
        for (declared, capacity) in [
            (None, 0),
            (Some(0), 0),
            (Some(300), 300),
            (Some(8 * 1024), 8 * 1024),
            (Some(8 * 1024 + 1), 8 * 1024),
            (Some(1024 * 1024), 8 * 1024),
            (Some(usize::MAX), 8 * 1024),
        ] {
            assert_eq!(first_capacity(declared), capacity, "{declared:?}");
        }
    }
}
