//! Runs a [`Plan`]: the STS calls (`AssumeRoleWithOIDC` unsigned, `AssumeRole` signed with
//! Signature 1.0), the metadata service's three requests, and the credentials URI. Every answer
//! is checked; a bad one becomes a [`CredentialError`] that names the provider and what was
//! wrong with it.
//!
//! What those errors may say is limited (`acs::remote`): an `AssumeRole` URL carries the base
//! key's security token and a signature, a credentials URI's query may carry a token, and the
//! answers hold new keys. So an error names the endpoint by its host, never quotes a URL, and
//! quotes an answer only with the secrets the request carried taken out. No request follows a
//! redirect (one would carry the metadata token header or the signed query to another host),
//! and no answer is read past 64 KiB.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::answers::{self, excerpt};
use super::{AssumedRole, CredentialError, EcsRole, Issued, OidcRole, Plan, ProviderName};
use crate::acs::remote::{self, CREDENTIAL_ANSWER_CAP, ReadError};
use crate::acs::signing::{percent_encode, sign};

/// The STS API version of `AssumeRole` and `AssumeRoleWithOIDC`.
pub const STS_VERSION: &str = "2015-04-01";

/// The metadata service's paths.
pub const IMDS_TOKEN_PATH: &str = "/latest/api/token";
pub const IMDS_ROLE_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub const IMDS_TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
pub const IMDS_TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

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
        // Any success is read as one (never quoted: it holds the keys).
        if !(200..300).contains(&status) {
            return Err(fail(format!(
                "the metadata service answered HTTP {status} for role {role_name:?}: {}",
                excerpt(&body)
            )));
        }
        answers::coded(provider, &format!("role {role_name:?}"), &body, &carried)
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
        // Any success is read as one (never quoted: it holds the keys).
        if !(200..300).contains(&status) {
            return Err(CredentialError::new(
                provider,
                format!(
                    "{host} answered HTTP {status}: {}",
                    excerpt(&body, &carried)
                ),
            ));
        }
        answers::coded(provider, &host, &body, &carried)
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
            crate::acs::rpc_timestamp(time::OffsetDateTime::now_utc()),
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

/// Sends an STS call and reads its answer.
async fn sts_answer(
    provider: ProviderName,
    action: &str,
    request: reqwest::RequestBuilder,
    host: &str,
    carried: &remote::Carried,
) -> Result<Issued, CredentialError> {
    let (status, body) = send(request, host)
        .await
        .map_err(|e| CredentialError::new(provider, format!("STS {action}: {e}")))?;
    answers::sts(provider, action, host, status, &body, carried)
}
