//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.

use actix_web::{HttpResponse, get};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::api::{error, health, ingest, jobs, queue, ui};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vod-purge",
        description = "Batched, rate-limited ApsaraVideo VOD purges from CMS webhooks. Read and admin endpoints take the admin token as a bearer token when one is configured."
    ),
    paths(
        ingest::purge,
        ingest::receive_webhook,
        jobs::list_jobs,
        jobs::get_job,
        jobs::retry_job,
        jobs::resubmit_job,
        queue::media,
        queue::target,
        queue::queue,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
        ui::page_redirect,
        ui::page,
        ui::script,
        ui::style,
        ui::status_json,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
    security(("admin_token" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(security(()), responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
