//! The VOD client against the simulator (and a few broken servers) over real HTTP.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vod_purge::domain::TaskType;
use vod_purge::sim::{self, Account, Faults, SimConfig, SimHandle};
use vod_purge::vod::{Client, ClientConfig, Credentials, ErrorClass, RefreshRequest, VodError};

fn client_for(endpoint: &str, credentials: Credentials, timeout: Duration) -> Client {
    Client::new(ClientConfig {
        endpoint: endpoint.to_owned(),
        timeout,
        credentials: credentials.into(),
    })
    .unwrap()
}

fn client(sim: &SimHandle) -> Client {
    client_with(sim, Credentials::new("testid", "testsecret", None))
}

/// A client of `sim` with `credentials` (5 s timeout).
fn client_with(sim: &SimHandle, credentials: Credentials) -> Client {
    client_for(&sim.base_url(), credentials, Duration::from_secs(5))
}

/// The error of a purge of `a1` by `vod`.
async fn refresh_error(vod: &Client) -> VodError {
    vod.refresh_media_play_urls(&refresh(&["a1"]))
        .await
        .unwrap_err()
}

fn refresh(ids: &[&str]) -> RefreshRequest {
    RefreshRequest::new(
        ids.iter().map(|s| (*s).to_owned()).collect(),
        TaskType::Refresh,
    )
}

fn fail_next(n: u32, code: &str) -> Faults {
    Faults {
        fail_next: n,
        error_code: code.to_owned(),
        ..Faults::default()
    }
}

#[tokio::test]
async fn refresh_then_poll_the_job() {
    let cfg = SimConfig {
        nonexistent: vec!["gone1".to_owned()],
        forbidden: vec!["other1".to_owned()],
        failing: vec!["b2".to_owned()],
        ..SimConfig::default()
    };
    let sim = sim::start(cfg).await.unwrap();
    let vod = client(&sim);
    let resp = vod
        .refresh_media_play_urls(&refresh(&["a1", "gone1", "other1", "b2"]))
        .await
        .unwrap();
    assert_eq!(resp.non_exist_media_ids, ["gone1"]);
    assert_eq!(resp.forbidden_media_ids, ["other1"]);
    assert!(!resp.media_refresh_job_id.is_empty() && !resp.request_id.is_empty());

    let jobs = vod
        .get_media_refresh_jobs(&resp.media_refresh_job_id, None)
        .await
        .unwrap();
    let media: Vec<(&str, &str, Option<&str>)> = jobs
        .media_refresh_jobs
        .iter()
        .map(|j| {
            (
                j.media_id.as_str(),
                j.status.as_str(),
                j.error_code.as_deref(),
            )
        })
        .collect();
    // A failing ID is accepted by the call; only the job's status tells that its submission
    // failed, with no URL submitted.
    let failed = &jobs.media_refresh_jobs[1];
    assert!(failed.task_ids.is_empty() && failed.success_play_urls.is_empty());
    assert!(
        failed
            .error_message
            .as_deref()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        media,
        [
            ("a1", "success", None),
            ("b2", "fail", Some("TooMany.Refresh"))
        ]
    );
    let one = vod
        .get_media_refresh_jobs(&resp.media_refresh_job_id, Some("a1"))
        .await
        .unwrap();
    assert_eq!(one.media_refresh_jobs.len(), 1);
    let job = &one.media_refresh_jobs[0];
    assert_eq!(
        (job.status.as_str(), job.task_type.as_str()),
        ("success", "Refresh")
    );
    assert_eq!(job.task_ids.len(), job.success_play_urls.len());
    assert!(!job.task_ids.is_empty());

    let quota = vod.describe_vod_refresh_quota().await.unwrap();
    assert_eq!(
        (quota.url_quota, quota.url_remain, quota.preload_remain),
        (2000, 1998, 500)
    );

    let calls = sim.calls();
    let methods: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            ("POST", "RefreshMediaPlayUrls"),
            ("GET", "GetMediaRefreshJobs"),
            ("GET", "GetMediaRefreshJobs"),
            ("POST", "DescribeVodRefreshQuota")
        ]
    );
    let first = &calls[0].params;
    assert_eq!(first["Format"], "JSON");
    assert_eq!(first["MediaIds"], "a1,gone1,other1,b2");
    assert!(!first.contains_key("SecurityToken"));
    let nonces: std::collections::HashSet<&str> = calls
        .iter()
        .map(|c| c.params["SignatureNonce"].as_str())
        .collect();
    assert_eq!(nonces.len(), calls.len(), "a fresh nonce for every call");
    sim.stop().await;
}

#[tokio::test]
async fn sts_credentials_send_the_security_token() {
    let token = "CAIS+tok/en=~*".to_owned();
    let cfg = SimConfig {
        accounts: vec![Account::sts("STS.key", "sec", vec![token.clone()])],
        ..SimConfig::default()
    };
    let sim = sim::start(cfg).await.unwrap();
    let vod = client_with(
        &sim,
        Credentials::new("STS.key", "sec", Some(token.clone())),
    );
    vod.refresh_media_play_urls(&refresh(&["a1"]))
        .await
        .unwrap();
    assert_eq!(sim.calls()[0].params["SecurityToken"], token);
    let without = client_with(&sim, Credentials::new("STS.key", "sec", None));
    let err = refresh_error(&without).await;
    assert_eq!(err.code(), Some("MissingSecurityToken"));
    assert!(err.is_credential_error());
    sim.stop().await;
}

#[tokio::test]
async fn injected_failures_are_classified() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let vod = client(&sim);
    let cases = [
        ("Throttling", 503, ErrorClass::Throttled),
        ("Throttling.User", 400, ErrorClass::Throttled),
        ("InternalError", 500, ErrorClass::Retryable),
        ("ServiceUnavailable", 503, ErrorClass::Retryable),
        ("BadGateway/502", 502, ErrorClass::Retryable),
        ("Forbidden.RAM", 403, ErrorClass::Permanent),
    ];
    for (code, status, class) in cases {
        sim.set_faults(fail_next(1, code));
        let err = refresh_error(&vod).await;
        assert_eq!(
            (err.status(), err.class()),
            (Some(status), class),
            "{code}: {err}"
        );
        assert!(err.request_id().is_some_and(|r| !r.is_empty()));
        assert!(!err.message().is_empty());
    }
    // fail_next is used up: the next call goes through.
    vod.refresh_media_play_urls(&refresh(&["a1"]))
        .await
        .unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn real_throttling_is_classified_throttled() {
    let sim = sim::start(SimConfig {
        qps: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let vod = client(&sim);
    vod.refresh_media_play_urls(&refresh(&["a1"]))
        .await
        .unwrap();
    let err = refresh_error(&vod).await;
    assert_eq!(
        (err.code(), err.class()),
        (Some("Throttling"), ErrorClass::Throttled)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_used_nonce_is_re_signed_exactly_once() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let vod = client(&sim);
    sim.set_faults(fail_next(1, "SignatureNonceUsed"));
    vod.refresh_media_play_urls(&refresh(&["a1"]))
        .await
        .unwrap();
    let calls = sim.calls();
    assert_eq!(calls.len(), 2);
    assert_ne!(
        calls[0].params["SignatureNonce"],
        calls[1].params["SignatureNonce"]
    );

    sim.clear_calls();
    sim.set_faults(fail_next(3, "SignatureNonceUsed"));
    let err = refresh_error(&vod).await;
    assert_eq!(
        (err.code(), err.class()),
        (Some("SignatureNonceUsed"), ErrorClass::Retryable)
    );
    assert_eq!(sim.calls().len(), 2, "one retry, no more");
    sim.stop().await;
}

#[tokio::test]
async fn permanent_failures() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let wrong = client_with(&sim, Credentials::new("testid", "wrong", None));
    let err = refresh_error(&wrong).await;
    assert_eq!(
        (err.code(), err.class()),
        (Some("SignatureDoesNotMatch"), ErrorClass::Permanent)
    );
    assert!(err.is_credential_error());
    // VOD's message quotes its string to sign, which holds every parameter (a security token
    // among them): it is not shown.
    assert!(
        err.message()
            .ends_with("server string to sign is: <not shown: it quotes the request's parameters>"),
        "{}",
        err.message()
    );

    let mut bad = refresh(&["a1"]);
    bad.formats = vec!["avi".to_owned()];
    let err = client(&sim)
        .refresh_media_play_urls(&bad)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some("InvalidParameter"), ErrorClass::Permanent)
    );
    assert!(!err.is_credential_error());

    let ids: Vec<String> = (0..21).map(|i| format!("id{i}")).collect();
    let err = client(&sim)
        .refresh_media_play_urls(&RefreshRequest::new(ids, TaskType::Refresh))
        .await
        .unwrap_err();
    assert!(matches!(err, VodError::InvalidRequest(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(sim.calls().len(), 2, "an invalid request is never sent");
    sim.stop().await;
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_timeout() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let vod = client_for(
        &sim.base_url(),
        Credentials::new("testid", "testsecret", None),
        Duration::from_millis(200),
    );
    let err = refresh_error(&vod).await;
    assert!(matches!(err, VodError::Timeout), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    // The simulator processed it anyway, as the real service may have.
    assert_eq!(sim.calls()[0].status, 200);
    sim.set_faults(Faults::default());
    sim.stop().await;
}

/// A server that answers every connection with `response` and closes.
async fn canned_server(response: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn broken_answers_become_errors() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!",
            200,
            ErrorClass::Retryable,
        ),
        (
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html>x</html",
            502,
            ErrorClass::Retryable,
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            404,
            ErrorClass::Permanent,
        ),
        (
            "HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            429,
            ErrorClass::Throttled,
        ),
    ];
    for (response, status, class) in cases {
        let url = canned_server(response).await;
        let vod = client_for(
            &url,
            Credentials::new("testid", "testsecret", None),
            Duration::from_secs(5),
        );
        let err = refresh_error(&vod).await;
        assert!(matches!(err, VodError::Malformed { .. }), "{err:?}");
        assert_eq!(
            (err.status(), err.class()),
            (Some(status), class),
            "{response:?}"
        );
    }
    // Not HTTP at all.
    let url = canned_server("garbage\r\n\r\n").await;
    let vod = client_for(
        &url,
        Credentials::new("testid", "testsecret", None),
        Duration::from_secs(5),
    );
    let err = refresh_error(&vod).await;
    assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
}

#[tokio::test]
async fn nobody_listening_is_a_retryable_connection_error() {
    let port = crate::support::free_port();
    let vod = client_for(
        &format!("http://127.0.0.1:{port}"),
        Credentials::new("a", "b", None),
        Duration::from_secs(5),
    );
    let err = vod.describe_vod_refresh_quota().await.unwrap_err();
    assert!(matches!(err, VodError::Connection(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
}
