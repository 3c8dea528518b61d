//! The simulator's credential services, written from `docs/alibaba-credentials.md` apart from the
//! client's providers: STS (`AssumeRoleWithOIDC`, `AssumeRole`) at `/sts/`, the ECS metadata
//! service at its own paths, and a credentials URI at `/_sim/credentials`. Each hands out a new
//! STS key valid for the simulator's `sts_lifetime`, which the VOD gateway then accepts until it
//! expires. Every request is recorded like a VOD call, with the action named after it.
//!
//! Each key belongs to an account, whose jobs, tasks, quotas and rates it shares:
//! - `AssumeRole`: the account of the key that signed the call, unless the `RoleArn`
//!   (`acs:ram::<uid>:role/<name>`) names the `uid` of another configured account, whose key it
//!   then is (a role of that account assumed from this one);
//! - `AssumeRoleWithOIDC`: the configured account whose `uid` the `RoleArn` names, else
//!   [`ROLE_ACCOUNT`];
//! - the metadata service and the credentials URI: [`ROLE_ACCOUNT`] (the instance's role names
//!   no account).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::config::ImdsMode;
use super::faults::parse_error_code;
use super::gateway::{self, Incoming};
use super::reply::{ApiError, json_response};
use super::server::answer_rpc;
use super::state::{ROLE_ACCOUNT, RecordedCall, SimState, lock};

/// The STS API version.
const STS_VERSION: &str = "2015-04-01";
const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";

/// Issues a key of `account` valid for the configured lifetime, truncated to the second as
/// `Expiration` is.
fn issue(state: &SimState, account: String) -> (String, String, String, String) {
    let now = state.clock.now_ms();
    let lifetime = i64::try_from(state.sts_lifetime.as_millis()).unwrap_or(i64::MAX);
    let expires_ms = (now.saturating_add(lifetime) / 1000) * 1000;
    let (id, key) = lock(&state.issued).issue(now, expires_ms, account);
    (id, key.secret, key.token, rfc3339(expires_ms))
}

/// The account ID a role's ARN names: `1234` in `acs:ram::1234:role/name`; `None` for an ARN
/// of another form.
fn role_arn_uid(role_arn: &str) -> Option<&str> {
    let mut parts = role_arn.splitn(5, ':');
    let (Some(scheme), Some(service), Some(region), Some(uid), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let is_role = resource
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("role/"));
    (scheme.eq_ignore_ascii_case("acs")
        && service.eq_ignore_ascii_case("ram")
        && region.is_empty()
        && is_role
        && !uid.is_empty()
        && uid.bytes().all(|b| b.is_ascii_digit()))
    .then_some(uid)
}

/// The account the keys of a role belong to: the configured account whose `uid` the role's ARN
/// names, else `otherwise` (the caller's account for `AssumeRole`, the role's account for
/// `AssumeRoleWithOIDC`).
fn role_account(state: &SimState, role_arn: &str, otherwise: String) -> String {
    role_arn_uid(role_arn)
        .and_then(|uid| state.account_with_uid(uid))
        .map_or(otherwise, str::to_owned)
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn record(
    state: &SimState,
    method: &str,
    action: &str,
    params: BTreeMap<String, String>,
    status: u16,
    code: Option<String>,
) {
    lock(&state.calls).push(RecordedCall {
        at_ms: state.clock.now_ms(),
        method: method.to_owned(),
        action: action.to_owned(),
        access_key_id: params.get("AccessKeyId").cloned().unwrap_or_default(),
        params,
        status,
        code,
        media_ids: Vec::new(),
        task_type: None,
        object_paths: Vec::new(),
        object_type: None,
    });
}

/// `POST /sts/`: `AssumeRoleWithOIDC` (no signature) or `AssumeRole` (Signature 1.0).
pub async fn sts(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let (status, body) = answer_rpc(&req, &body, &state, sts_action);
    json_response(status, &body)
}

fn sts_action(state: &SimState, method: &str, incoming: &Incoming) -> Result<Value, ApiError> {
    let params = &incoming.params;
    let need = |name: &str| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::missing(name))
    };
    let action = need("Action")?;
    // Who asks: `None` for the anonymous `AssumeRoleWithOIDC`, the caller's account for
    // `AssumeRole`.
    let (assumed_by, caller) = match action.as_str() {
        "AssumeRoleWithOIDC" => {
            if params.get("Version").map(String::as_str) != Some(STS_VERSION) {
                return Err(ApiError::new(
                    400,
                    "InvalidVersion",
                    "Specified parameter Version is not valid.",
                ));
            }
            if params.contains_key("Signature") || params.contains_key("AccessKeyId") {
                return Err(ApiError::invalid(
                    "AssumeRoleWithOIDC is an anonymous call: it carries no AccessKeyId and no Signature.",
                ));
            }
            need("OIDCProviderArn")?;
            need("OIDCToken")?;
            ("oidc", None)
        }
        "AssumeRole" => {
            let access_key_id = gateway::authenticate(state, method, incoming, STS_VERSION)?;
            ("key", Some(state.account_of(access_key_id)))
        }
        other => {
            return Err(ApiError::new(
                404,
                "InvalidAction.NotFound",
                format!("Specified api {other} is not found."),
            ));
        }
    };
    let role_arn = need("RoleArn")?;
    let session = need("RoleSessionName")?;
    let valid_session = (2..=32).contains(&session.len())
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c));
    if !valid_session {
        return Err(ApiError::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    if let Some(duration) = params.get("DurationSeconds") {
        match duration.parse::<u32>() {
            Ok(d) if (900..=43_200).contains(&d) => {}
            _ => {
                return Err(ApiError::new(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "The Min/Max value of DurationSeconds is 15min/12hr.",
                ));
            }
        }
    }
    if let Some(spec) = lock(&state.faults).sts_error_code.clone() {
        let (code, status) = parse_error_code(&spec).unwrap_or(("InternalError".to_owned(), 500));
        return Err(ApiError::new(
            status,
            &code,
            format!("Injected fault {code}."),
        ));
    }
    let account = role_account(
        state,
        &role_arn,
        caller.unwrap_or_else(|| ROLE_ACCOUNT.to_owned()),
    );
    let (id, secret, token, expiration) = issue(state, account);
    let mut answer = json!({
        "AssumedRoleUser": {
            "Arn": format!("{role_arn}/{session}"),
            "AssumedRoleId": format!("3{}:{session}", &id[4..20]),
        },
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": expiration,
        },
    });
    if assumed_by == "oidc" {
        answer["OIDCTokenInfo"] = json!({"Subject": "system:serviceaccount:vod-purge:vod-purge", "Issuer": "https://oidc-ack.example", "ClientIds": "sts.aliyuncs.com"});
    }
    Ok(answer)
}

fn text(status: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type("text/plain")
    .body(body.into())
}

/// `PUT /latest/api/token`: an IMDSv2 session token for the requested TTL (1 to 21600 s).
pub async fn imds_token(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let ttl = req
        .headers()
        .get(TOKEN_TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let params = BTreeMap::from([(
        "ttl".to_owned(),
        ttl.map(|t| t.to_string()).unwrap_or_default(),
    )]);
    let (status, body) = match (state.imds, ttl) {
        (ImdsMode::V1Only, _) => (404, "Not Found".to_owned()),
        (_, Some(ttl)) if (1..=21_600).contains(&ttl) => {
            let token = format!("imds-{}", uuid::Uuid::new_v4().simple());
            let expires = state.clock.now_ms().saturating_add(ttl * 1000);
            lock(&state.imds_tokens).insert(token.clone(), expires);
            (200, token)
        }
        _ => (
            400,
            "X-aliyun-ecs-metadata-token-ttl-seconds must be 1 to 21600".to_owned(),
        ),
    };
    record(&state, "PUT", "ImdsToken", params, status, None);
    text(status, body)
}

/// Whether a metadata read may be answered: a valid token, or none where IMDSv1 is allowed.
fn imds_allowed(req: &HttpRequest, state: &SimState) -> (bool, &'static str) {
    let token = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    match token {
        Some(token) => {
            let valid = lock(&state.imds_tokens)
                .get(token)
                .is_some_and(|expires| *expires > state.clock.now_ms());
            (valid, if valid { "v2" } else { "bad-token" })
        }
        None => (state.imds != ImdsMode::V2Required, "v1"),
    }
}

/// `GET /latest/meta-data/ram/security-credentials/`: the instance's role name.
pub async fn imds_role(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let (allowed, how) = imds_allowed(&req, &state);
    let status = if allowed { 200 } else { 401 };
    record(
        &state,
        "GET",
        "ImdsRole",
        BTreeMap::from([("auth".to_owned(), how.to_owned())]),
        status,
        None,
    );
    if allowed {
        text(200, state.ecs_role.clone())
    } else {
        text(401, "Unauthorized")
    }
}

/// `GET /latest/meta-data/ram/security-credentials/{role}`: the role's STS key.
pub async fn imds_credentials(
    req: HttpRequest,
    role: web::Path<String>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (allowed, how) = imds_allowed(&req, &state);
    let params = BTreeMap::from([
        ("auth".to_owned(), how.to_owned()),
        ("role".to_owned(), role.clone()),
    ]);
    if !allowed {
        record(&state, "GET", "ImdsCredentials", params, 401, None);
        return text(401, "Unauthorized");
    }
    if *role != state.ecs_role {
        record(&state, "GET", "ImdsCredentials", params, 404, None);
        return text(404, "Not Found");
    }
    let body = coded_credentials(&state);
    record(&state, "GET", "ImdsCredentials", params, 200, None);
    json_response(200, &body)
}

/// `GET /_sim/credentials`: a credentials URI, answered in the metadata service's shape.
pub async fn credentials_uri(state: web::Data<SimState>) -> HttpResponse {
    let body = coded_credentials(&state);
    record(&state, "GET", "CredentialsUri", BTreeMap::new(), 200, None);
    json_response(200, &body)
}

fn coded_credentials(state: &SimState) -> Value {
    if let Some(code) = lock(&state.faults).metadata_code.clone() {
        return json!({"Code": code, "Message": "Injected fault"});
    }
    let (id, secret, token, expiration) = issue(state, ROLE_ACCOUNT.to_owned());
    json!({
        "Code": "Success",
        "AccessKeyId": id,
        "AccessKeySecret": secret,
        "SecurityToken": token,
        "Expiration": expiration,
        "LastUpdated": rfc3339(state.clock.now_ms()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_name_an_account_id() {
        for (arn, uid) in [
            ("acs:ram::1234:role/vod-purge", Some("1234")),
            ("ACS:RAM::5678:Role/x", Some("5678")),
            ("acs:ram::1234:role/a:b", Some("1234")),
            ("acs:ram::12a4:role/x", None),
            ("acs:ram:::role/x", None),
            ("acs:ram:cn-hangzhou:1234:role/x", None),
            ("acs:ram::1234:user/x", None),
            ("acs:oss::1234:role/x", None),
            ("acs:ram::1234", None),
            ("", None),
        ] {
            assert_eq!(role_arn_uid(arn), uid, "{arn}");
        }
    }
}
