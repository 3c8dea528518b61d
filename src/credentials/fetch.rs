//! Runs a [`Plan`]: the STS calls (`AssumeRoleWithOIDC` unsigned, `AssumeRole` signed with
//! Signature 1.0), the metadata service's three requests, and the credentials URI. Every answer
//! is checked; a bad one becomes a [`CredentialError`] that names the provider and what was
//! wrong with it.
//!
//! What those errors may say is limited (`vod::remote`): an `AssumeRole` URL carries the base
//! key's security token and a signature, a credentials URI's query may carry a token, and the
//! answers hold new keys. So an error names the endpoint by its host, never quotes a URL, and
//! quotes an answer only with the secrets the request carried taken out. No request follows a
//! redirect (one would carry the metadata token header or the signed query to another host),
//! and no answer is read past 64 KiB.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;

use super::{
    AssumedRole, CredentialError, Credentials, EcsRole, Issued, OidcRole, Plan, ProviderName,
};
use crate::domain::Ts;
use crate::vod::remote::{self, CREDENTIAL_ANSWER_CAP, ReadError};
use crate::vod::signing::{percent_encode, sign};

/// The STS API version of `AssumeRole` and `AssumeRoleWithOIDC`.
pub const STS_VERSION: &str = "2015-04-01";

/// The metadata service's paths.
pub const IMDS_TOKEN_PATH: &str = "/latest/api/token";
pub const IMDS_ROLE_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub const IMDS_TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
pub const IMDS_TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

/// How many characters of an unexpected answer a message quotes.
const EXCERPT: usize = 160;

/// Where the STS and metadata requests go, with the libraries' timeouts (STS: 5 s to connect,
/// 10 s to answer; metadata: 1 s and 1 s).
#[derive(Debug, Clone)]
pub struct Fetcher {
    sts: reqwest::Client,
    metadata: reqwest::Client,
    sts_endpoint: String,
    metadata_endpoint: String,
}

type Fetched<'a> = Pin<Box<dyn Future<Output = Result<Issued, CredentialError>> + Send + 'a>>;

impl Fetcher {
    pub fn new(sts_endpoint: &str, metadata_endpoint: &str) -> Result<Fetcher, String> {
        let build = |connect: u64, total: u64| {
            remote::client(
                Some(Duration::from_secs(connect)),
                Duration::from_secs(total),
            )
            .map_err(|e| format!("the credential client: {e}"))
        };
        Ok(Fetcher {
            sts: build(5, 15)?,
            metadata: build(1, 2)?,
            sts_endpoint: sts_endpoint.trim_end_matches('/').to_owned(),
            metadata_endpoint: metadata_endpoint.trim_end_matches('/').to_owned(),
        })
    }

    /// Obtains a credential as `plan` says; `provider` names the chain's provider in errors.
    pub fn fetch<'a>(&'a self, provider: ProviderName, plan: &'a Plan) -> Fetched<'a> {
        Box::pin(async move {
            match plan {
                Plan::Fixed(keys) => Ok(Issued::fixed(keys.clone())),
                Plan::Oidc(role) => self.assume_role_with_oidc(provider, role).await,
                Plan::AssumeRole(role) => self.assume_role(provider, role).await,
                Plan::EcsRamRole(role) => self.ecs_ram_role(provider, role).await,
                Plan::Uri(uri) => self.credentials_uri(provider, uri).await,
            }
        })
    }

    fn sts_url(&self, override_endpoint: Option<&String>) -> String {
        format!(
            "{}/",
            override_endpoint
                .map(|e| e.trim_end_matches('/'))
                .unwrap_or(&self.sts_endpoint)
        )
    }

    async fn assume_role_with_oidc(
        &self,
        provider: ProviderName,
        role: &OidcRole,
    ) -> Result<Issued, CredentialError> {
        let fail = |msg: String| CredentialError::new(provider, msg);
        let path = role.token_file.display();
        // Read again at every renewal: the kubelet rotates the projected token.
        let token = tokio::fs::read_to_string(&role.token_file)
            .await
            .map_err(|e| fail(format!("cannot read the OIDC token file {path}: {e}")))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(fail(format!("the OIDC token file {path} is empty")));
        }
        let query = common_query("AssumeRoleWithOIDC");
        let mut form = vec![
            ("RoleArn", role.role_arn.clone()),
            ("OIDCProviderArn", role.provider_arn.clone()),
            ("OIDCToken", token.to_owned()),
            ("RoleSessionName", role.session_name.clone()),
            ("DurationSeconds", role.duration_secs.to_string()),
        ];
        if let Some(policy) = &role.policy {
            form.push(("Policy", policy.clone()));
        }
        let url = format!(
            "{}?{}",
            self.sts_url(role.sts_endpoint.as_ref()),
            encode(&query)
        );
        let carried = remote::Carried::new([token]);
        let host = remote::host_of(&url);
        let request = self.sts.post(url).form(&form);
        sts_answer(provider, "AssumeRoleWithOIDC", request, &host, &carried).await
    }

    async fn assume_role(
        &self,
        provider: ProviderName,
        role: &AssumedRole,
    ) -> Result<Issued, CredentialError> {
        let base = self.fetch(provider, &role.base).await?;
        let keys = &base.credentials;
        let mut query = common_query("AssumeRole");
        query.extend([
            ("SignatureMethod".to_owned(), "HMAC-SHA1".to_owned()),
            ("SignatureVersion".to_owned(), "1.0".to_owned()),
            (
                "SignatureNonce".to_owned(),
                uuid::Uuid::new_v4().to_string(),
            ),
            ("AccessKeyId".to_owned(), keys.access_key_id().to_owned()),
        ]);
        if let Some(token) = keys.security_token() {
            query.insert("SecurityToken".to_owned(), token.to_owned());
        }
        let mut form = BTreeMap::from([
            ("RoleArn".to_owned(), role.role_arn.clone()),
            ("RoleSessionName".to_owned(), role.session_name.clone()),
            ("DurationSeconds".to_owned(), role.duration_secs.to_string()),
        ]);
        if let Some(policy) = &role.policy {
            form.insert("Policy".to_owned(), policy.clone());
        }
        if let Some(external_id) = &role.external_id {
            form.insert("ExternalId".to_owned(), external_id.clone());
        }
        // Signature 1.0 covers the query and the form body together.
        let mut signed = query.clone();
        signed.extend(form.clone());
        let signature = sign("POST", &signed, keys.access_key_secret());
        let carried = remote::Carried::new(
            [Some(signature.as_str()), keys.security_token()]
                .into_iter()
                .flatten(),
        );
        query.insert("Signature".to_owned(), signature.clone());
        let url = format!(
            "{}?{}",
            self.sts_url(role.sts_endpoint.as_ref()),
            encode(&query)
        );
        let host = remote::host_of(&url);
        let request = self.sts.post(url).form(&form);
        sts_answer(provider, "AssumeRole", request, &host, &carried).await
    }

    async fn ecs_ram_role(
        &self,
        provider: ProviderName,
        role: &EcsRole,
    ) -> Result<Issued, CredentialError> {
        let fail = |msg: String| CredentialError::new(provider, msg);
        let base = &self.metadata_endpoint;
        let host = remote::host_of(base);
        let token = match self.metadata_token(&host).await {
            Ok(token) => Some(token),
            Err(why) if role.imdsv1_disabled => {
                return Err(fail(format!(
                    "cannot get a metadata token ({why}) and ALIBABA_CLOUD_IMDSV1_DISABLED forbids going on without one"
                )));
            }
            Err(why) => {
                tracing::debug!(%why, "no metadata token; going on without one (IMDSv1)");
                None
            }
        };
        let carried = remote::Carried::new(token.iter());
        let excerpt = |body: &[u8]| excerpt(body, &carried);
        let get = |path: String| {
            let mut request = self.metadata.get(format!("{base}{path}"));
            if let Some(token) = &token {
                request = request.header(IMDS_TOKEN_HEADER, token);
            }
            request
        };
        let role_name = match &role.role {
            Some(name) => name.clone(),
            None => {
                let (status, body) = send(get(IMDS_ROLE_PATH.to_owned()), &host)
                    .await
                    .map_err(|e| fail(format!("the metadata service: {e}")))?;
                if status != 200 {
                    return Err(fail(format!(
                        "the metadata service answered HTTP {status} to the role lookup: {}",
                        excerpt(&body)
                    )));
                }
                let name = String::from_utf8_lossy(&body).trim().to_owned();
                if name.is_empty() || name.contains(['/', '\n']) {
                    return Err(fail(format!(
                        "the instance has no single RAM role (the metadata service listed {:?})",
                        excerpt(&body)
                    )));
                }
                name
            }
        };
        let (status, body) = send(get(format!("{IMDS_ROLE_PATH}{role_name}")), &host)
            .await
            .map_err(|e| fail(format!("the metadata service: {e}")))?;
        if status == 404 {
            return Err(fail(format!(
                "the instance has no RAM role {role_name:?} (metadata service: HTTP 404)"
            )));
        }
        if status != 200 {
            return Err(fail(format!(
                "the metadata service answered HTTP {status} for role {role_name:?}: {}",
                excerpt(&body)
            )));
        }
        coded_credentials(provider, &format!("role {role_name:?}"), &body, &carried)
    }

    /// The IMDSv2 session token (`PUT /latest/api/token`).
    async fn metadata_token(&self, host: &str) -> Result<String, String> {
        let request = self
            .metadata
            .put(format!("{}{IMDS_TOKEN_PATH}", self.metadata_endpoint))
            .header(IMDS_TOKEN_TTL_HEADER, "21600");
        let (status, body) = send(request, host).await?;
        let token = String::from_utf8_lossy(&body).trim().to_owned();
        if status != 200 || token.is_empty() {
            return Err(format!("HTTP {status}"));
        }
        Ok(token)
    }

    async fn credentials_uri(
        &self,
        provider: ProviderName,
        uri: &str,
    ) -> Result<Issued, CredentialError> {
        // The query may carry a token: errors name the host, and quote no part of the query.
        let host = remote::host_of(uri);
        let query = reqwest::Url::parse(uri)
            .ok()
            .and_then(|u| u.query().map(str::to_owned));
        let values: Vec<String> = query
            .iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()).map(|(_, v)| v.into_owned()))
            .chain(query.clone())
            .collect();
        let carried = remote::Carried::new(&values);
        let (status, body) = send(self.sts.get(uri), &host)
            .await
            .map_err(|e| CredentialError::new(provider, e))?;
        if status != 200 {
            return Err(CredentialError::new(
                provider,
                format!(
                    "{host} answered HTTP {status}: {}",
                    excerpt(&body, &carried)
                ),
            ));
        }
        coded_credentials(provider, &host, &body, &carried)
    }
}

/// The parameters every STS call carries in its query.
fn common_query(action: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("Action".to_owned(), action.to_owned()),
        ("Version".to_owned(), STS_VERSION.to_owned()),
        ("Format".to_owned(), "JSON".to_owned()),
        (
            "Timestamp".to_owned(),
            crate::vod::rpc_timestamp(time::OffsetDateTime::now_utc()),
        ),
    ])
}

fn encode(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request and its answer (at most 64 KiB); a redirect is an answer like any other. The
/// error names `host`, never the URL.
async fn send(request: reqwest::RequestBuilder, host: &str) -> Result<(u16, Vec<u8>), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {host}: {}", remote::describe(e)))?;
    let status = response.status().as_u16();
    match remote::read_capped(response, CREDENTIAL_ANSWER_CAP).await {
        Ok(body) => Ok((status, body)),
        Err(ReadError::TooLarge { cap }) => Err(format!(
            "the answer from {host} (HTTP {status}) is larger than {}; not read",
            remote::size_text(cap)
        )),
        Err(ReadError::Transport(e)) => Err(format!(
            "cannot read the answer from {host}: {}",
            remote::describe(e)
        )),
    }
}

/// The start of an answer, for a message, without what the request carried.
fn excerpt(body: &[u8], carried: &remote::Carried) -> String {
    let text = carried.scrub(&String::from_utf8_lossy(body));
    let mut out: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        out.push('…');
    }
    out
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
async fn sts_answer(
    provider: ProviderName,
    action: &str,
    request: reqwest::RequestBuilder,
    host: &str,
    carried: &remote::Carried,
) -> Result<Issued, CredentialError> {
    let fail = |msg: String| CredentialError::new(provider, format!("STS {action}: {msg}"));
    let (status, body) = send(request, host).await.map_err(fail)?;
    if status != 200 {
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(rename = "Code")]
            code: String,
            #[serde(rename = "Message", default)]
            message: String,
        }
        return Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => fail(format!(
                "{} (HTTP {status} from {host}): {}",
                e.code,
                carried.scrub(&e.message)
            )),
            Err(_) => fail(format!(
                "HTTP {status} from {host}: {}",
                excerpt(&body, carried)
            )),
        });
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
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
fn coded_credentials(
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
    fn coded_answers() {
        let ok = br#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2999-01-01T00:00:00Z","LastUpdated":"2026-01-01T00:00:00Z"}"#;
        let none = remote::Carried::default();
        let issued = coded_credentials(ProviderName::EcsRamRole, "role", ok, &none).unwrap();
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
            let err =
                coded_credentials(ProviderName::EcsRamRole, "role \"r\"", body, &none).unwrap_err();
            assert!(
                err.to_string().starts_with("ecs-ram-role: role \"r\": "),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
    }
}
