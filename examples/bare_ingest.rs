//! The baseline of the ingest benchmark (`bench/ingest.sh`): a bare actix-web server whose
//! `POST /webhooks/{source}` does the per-request work of the real handler except storing.
//!
//! It checks a bearer token (SHA-256 digest compared in constant time, as the `bearer` scheme
//! does), requires a JSON content type, reads the body with a size limit, parses it with
//! `vod_purge::webhook::parse_native`, and answers `202` with a small JSON receipt. Nothing is
//! stored, nothing is logged, so the ratio real/bare shows what durability and the rest of the
//! service cost per request.
//!
//! ```sh
//! cargo run --release --example bare_ingest -- --listen 127.0.0.1:18081 --token bench-secret
//! ```

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Parser)]
#[command(about = "Bare webhook handler: auth and parse, no storage (ingest benchmark baseline)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: String,
    /// The accepted bearer token.
    #[arg(long, default_value = "bench-secret")]
    token: String,
    /// Largest accepted body, in bytes (the service's default `server.max_body_bytes`).
    #[arg(long, default_value_t = 1_048_576)]
    max_body_bytes: usize,
    /// actix-web workers; 0 keeps actix's default (as `vod-purge serve` does).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

struct State {
    token_digest: [u8; 32],
    max_body_bytes: usize,
}

fn refuse(status: actix_web::http::StatusCode, code: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": {"code": code, "message": code}}))
}

async fn receive(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
        .unwrap_or("");
    let sent: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if token.is_empty() || !bool::from(sent.ct_eq(&state.token_digest)) {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    let mut body = web::BytesMut::with_capacity(1024);
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refuse(StatusCode::BAD_REQUEST, "unreadable_body");
        };
        if body.len() + chunk.len() > state.max_body_bytes {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        }
        body.extend_from_slice(&chunk);
    }
    let requests = match vod_purge::webhook::parse_native(&body) {
        Ok(requests) => requests,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "invalid_payload"),
    };
    let accepted: Vec<&str> = requests
        .iter()
        .flat_map(|r| r.media_ids.iter().map(String::as_str))
        .collect();
    if accepted.is_empty() {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "no_usable_ids");
    }
    let source = path.into_inner();
    HttpResponse::Accepted().json(serde_json::json!({
        "source": source,
        "event_id": uuid::Uuid::now_v7().to_string(),
        "accepted": accepted,
        "merged": [],
        "rejected": [],
        "redelivery": false,
    }))
}

/// The same allocator as `vod-purge` itself, so that the comparison is of the work done.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let state = web::Data::new(State {
        token_digest: Sha256::digest(args.token.trim().as_bytes()).into(),
        max_body_bytes: args.max_body_bytes,
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/webhooks/{source}", web::post().to(receive))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    });
    if args.workers > 0 {
        server = server.workers(args.workers);
    }
    println!("bare ingest listening on {}", args.listen);
    server.bind(&args.listen)?.run().await
}
