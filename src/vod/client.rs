//! The HTTP client for the VOD RPC API.
//!
//! Every attempt is signed afresh (new `SignatureNonce` and `Timestamp`) with the credential
//! current at that moment, so a caller that retries simply calls again, and a renewed STS
//! credential is used from the next attempt on. The client itself sends a call again in two
//! cases only, once each: a `SignatureNonceUsed` answer (a collision, not a failure), and an
//! `InvalidSecurityToken.Expired` answer, after the credential source has renewed the refused
//! credential. When no valid credential is left the call waits for one, up to the timeout, and
//! then fails with [`VodError::NoCredentials`] without having been sent. Backoff for everything
//! else belongs to the caller (the flusher), which knows the rate budget.
//!
//! Requests follow no redirect, answers are read up to 1 MiB, and no error names more of the
//! endpoint than its host: the request URL carries the signature and the STS token
//! ([`super::remote`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::remote::{self, ReadError, VOD_ANSWER_CAP};
use super::signing::{percent_encode, sign};
use super::{
    CredentialSource, Credentials, GetMediaRefreshJobsResponse, ObjectRequest, ObjectResponse,
    RefreshQuota, RefreshRequest, RefreshResponse, RefreshTasksPage, VideoInfo, VodError,
};

/// The page size of `DescribeVodRefreshTasks` (its largest).
pub const REFRESH_TASKS_PAGE: u32 = 50;

/// The API version every VOD call names.
pub const API_VERSION: &str = "2017-03-21";

/// Where and as whom to call VOD.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://vod.cn-shanghai.aliyuncs.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// Limit for one whole attempt (connect, send, read the answer).
    pub timeout: Duration,
    /// Read for every attempt; fixed keys convert into it with `.into()`.
    pub credentials: CredentialSource,
}

/// The public endpoint of a VOD region.
pub fn endpoint_for_region(region: &str) -> String {
    format!("https://vod.{region}.aliyuncs.com")
}

pub use crate::acs::install_tls_provider;

/// A VOD client; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// The endpoint with the RPC path `/`.
    url: String,
    /// The endpoint's host, all that errors say of it.
    host: String,
    credentials: CredentialSource,
    /// How long a call may wait for a usable credential.
    timeout: Duration,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, VodError> {
        install_tls_provider();
        let base = cfg.endpoint.trim_end_matches('/');
        reqwest::Url::parse(base)
            .map_err(|e| VodError::Config(format!("endpoint {base:?}: {e}")))?;
        let http = remote::client(None, cfg.timeout).map_err(VodError::Config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                url: format!("{base}/"),
                host: remote::host_of(base),
                credentials: cfg.credentials,
                timeout: cfg.timeout,
            }),
        })
    }

    /// Purges or prefetches the playback URLs of up to 20 media IDs (POST, like the SDKs).
    pub async fn refresh_media_play_urls(
        &self,
        req: &RefreshRequest,
    ) -> Result<RefreshResponse, VodError> {
        let params = req.to_params()?;
        self.call(Method::POST, "RefreshMediaPlayUrls", &params)
            .await
    }

    /// Purges files or directories (`RefreshVodObjectCaches`) or prefetches files
    /// (`PreloadVodObjectCaches`) by URL (POST, like the SDKs).
    pub async fn refresh_object_caches(
        &self,
        req: &ObjectRequest,
    ) -> Result<ObjectResponse, VodError> {
        let params = req.to_params()?;
        self.call(Method::POST, req.task.action(), &params).await
    }

    /// One page (50 tasks) of the account's CDN tasks of `object_type` (`file`, `directory`,
    /// `preload`) in `status`, created between `start` and `end` (whole seconds, UTC), newest
    /// first. `TaskId` takes a single ID, so a follower reads the tasks of many purges this way
    /// rather than one call per task.
    pub async fn describe_vod_refresh_tasks(
        &self,
        object_type: &str,
        status: &str,
        (start, end): (OffsetDateTime, OffsetDateTime),
        page: u32,
    ) -> Result<RefreshTasksPage, VodError> {
        let params = BTreeMap::from([
            ("ObjectType".to_owned(), object_type.to_owned()),
            ("Status".to_owned(), status.to_owned()),
            ("StartTime".to_owned(), rpc_timestamp(start)),
            ("EndTime".to_owned(), rpc_timestamp(end)),
            ("PageNumber".to_owned(), page.to_string()),
            ("PageSize".to_owned(), REFRESH_TASKS_PAGE.to_string()),
        ]);
        self.call(Method::POST, "DescribeVodRefreshTasks", &params)
            .await
    }

    /// A video's cover and snapshot URLs (`GetVideoInfo`).
    pub async fn get_video_info(&self, video_id: &str) -> Result<VideoInfo, VodError> {
        let params = BTreeMap::from([("VideoId".to_owned(), video_id.to_owned())]);
        self.call(Method::POST, "GetVideoInfo", &params).await
    }

    /// The per-media submission status of a job (GET, the only method VOD declares for it).
    pub async fn get_media_refresh_jobs(
        &self,
        job_id: &str,
        media_id: Option<&str>,
    ) -> Result<GetMediaRefreshJobsResponse, VodError> {
        let mut params = BTreeMap::from([("MediaRefreshJobId".to_owned(), job_id.to_owned())]);
        if let Some(media_id) = media_id {
            params.insert("MediaId".to_owned(), media_id.to_owned());
        }
        self.call(Method::GET, "GetMediaRefreshJobs", &params).await
    }

    /// The account's remaining daily purge and prefetch quota.
    pub async fn describe_vod_refresh_quota(&self) -> Result<RefreshQuota, VodError> {
        self.call(Method::POST, "DescribeVodRefreshQuota", &BTreeMap::new())
            .await
    }

    /// The credential source the calls are signed from.
    pub fn credentials(&self) -> &CredentialSource {
        &self.inner.credentials
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        action: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<T, VodError> {
        let source = &self.inner.credentials;
        let (mut nonce_retried, mut renewed) = (false, false);
        loop {
            let issued = source
                .wait_usable(self.inner.timeout)
                .await
                .ok_or(VodError::NoCredentials)?;
            match self
                .attempt(method.clone(), action, params, &issued.credentials)
                .await
            {
                Err(err) if err.code() == Some("SignatureNonceUsed") && !nonce_retried => {
                    tracing::debug!(action, "nonce collision, re-signing once");
                    nonce_retried = true;
                }
                Err(err) if err.code() == Some("InvalidSecurityToken.Expired") && !renewed => {
                    tracing::info!(
                        action,
                        "VOD refused the STS token as expired; renewing and sending once more"
                    );
                    renewed = true;
                    source
                        .renew_rejected(&issued, self.inner.timeout)
                        .await
                        .ok_or(VodError::NoCredentials)?;
                }
                other => return other,
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: Method,
        action: &str,
        op_params: &BTreeMap<String, String>,
        credentials: &Credentials,
    ) -> Result<T, VodError> {
        let inner = &self.inner;
        let mut params = op_params.clone();
        let common = [
            ("Action", action.to_owned()),
            ("Version", API_VERSION.to_owned()),
            ("Format", "JSON".to_owned()),
            ("AccessKeyId", credentials.access_key_id().to_owned()),
            ("SignatureMethod", "HMAC-SHA1".to_owned()),
            ("SignatureVersion", "1.0".to_owned()),
            ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
            ("Timestamp", rpc_timestamp(OffsetDateTime::now_utc())),
        ];
        params.extend(common.map(|(k, v)| (k.to_owned(), v)));
        if let Some(token) = credentials.security_token() {
            params.insert("SecurityToken".to_owned(), token.to_owned());
        }
        let signature = sign(method.as_str(), &params, credentials.access_key_secret());
        // What VOD's answer must not be quoted with (its `SignatureDoesNotMatch` quotes the
        // string to sign, token and all).
        let carried = remote::Carried::new(
            [Some(signature.as_str()), credentials.security_token()]
                .into_iter()
                .flatten(),
        );
        params.insert("Signature".to_owned(), signature);
        // Encoded with the signing encoder (`%20`, never `+`), so any form decoder reads it back.
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let url = format!("{}?{}", inner.url, query.join("&"));

        tracing::debug!(action, method = %method, "calling VOD");
        let response = inner
            .http
            .request(method, url)
            .send()
            .await
            .map_err(|e| transport_error(e, &inner.host))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match remote::read_capped(response, VOD_ANSWER_CAP).await {
            Ok(body) => body,
            Err(ReadError::Transport(e)) => return Err(transport_error(e, &inner.host)),
            Err(ReadError::TooLarge { cap }) => {
                return Err(VodError::too_large(status, &inner.host, cap));
            }
        };
        if (300..400).contains(&status) {
            return Err(VodError::redirect(status, &inner.host));
        }
        if !(200..300).contains(&status) {
            let err = VodError::from_answer(status, retry_after.as_deref(), &body, &carried);
            tracing::debug!(
                action,
                status,
                code = err.code(),
                request_id = err.request_id(),
                "VOD refused"
            );
            return Err(err);
        }
        let parsed = serde_json::from_slice(&body).map_err(|_| {
            VodError::malformed(
                status,
                carried.scrub(&String::from_utf8_lossy(&body)).as_bytes(),
            )
        })?;
        tracing::debug!(action, status, "VOD accepted");
        Ok(parsed)
    }
}

pub use crate::acs::rpc_timestamp;

/// A request that failed before an answer was read whole. The error's URL (signed, with the
/// token) is dropped; the endpoint is named by its host.
fn transport_error(err: reqwest::Error, host: &str) -> VodError {
    if err.is_timeout() {
        VodError::Timeout
    } else {
        VodError::Connection(format!("{host}: {}", remote::describe(err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format() {
        let t = time::macros::datetime!(2025-01-15 08:30:00.123 UTC);
        assert_eq!(rpc_timestamp(t), "2025-01-15T08:30:00Z");
        let t = time::macros::datetime!(2025-01-15 16:30:05 +8);
        assert_eq!(rpc_timestamp(t), "2025-01-15T08:30:05Z");
    }

    #[test]
    fn region_endpoint() {
        assert_eq!(
            endpoint_for_region("cn-shanghai"),
            "https://vod.cn-shanghai.aliyuncs.com"
        );
    }

    #[test]
    fn bad_endpoint_is_a_config_error() {
        let cfg = ClientConfig {
            endpoint: "not a url".to_owned(),
            timeout: Duration::from_secs(1),
            credentials: Credentials::new("id", "secret", None).into(),
        };
        assert!(matches!(Client::new(cfg), Err(VodError::Config(_))));
    }
}
