//! The VOD client fed arbitrary answers.

use super::*;

/// What the stand-in answers: HTTP status, `x-acs-retry-after` header, body.
type Answer = (u16, Option<String>, Vec<u8>);

/// A stand-in for VOD that answers every request with the status, header and body set for the
/// current case, so that the client's response parsing sees arbitrary answers.
struct FakeVod {
    rt: tokio::runtime::Runtime,
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    client: vod_purge::vod::Client,
}

fn fake_vod() -> &'static FakeVod {
    static FAKE: OnceLock<FakeVod> = OnceLock::new();
    FAKE.get_or_init(|| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let answer = std::sync::Arc::new(std::sync::Mutex::new((200, None, Vec::new())));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = answer.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    // Read the request head (the client sends a GET with a query and no body).
                    let mut buf = vec![0u8; 65536];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let (status, retry_after, body) = shared.lock().unwrap().clone();
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    if let Some(v) = retry_after {
                        head.push_str(&format!("x-acs-retry-after: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        let client = vod_purge::vod::Client::new(vod_purge::vod::ClientConfig {
            endpoint: format!("http://{addr}"),
            timeout: std::time::Duration::from_secs(5),
            credentials: vod_purge::vod::Credentials::new("testid", "testsecret", None).into(),
        })
        .unwrap();
        FakeVod { rt, answer, client }
    })
}

fn vod_body() -> impl Strategy<Value = Vec<u8>> {
    let field = proptest::sample::select(vec![
        "RequestId",
        "MediaRefreshJobId",
        "NonExistMediaIds",
        "ForbiddenMediaIds",
        "Code",
        "Message",
        "HostId",
        "Recommend",
        "code",
        "message",
    ]);
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        "[a-z0-9,]{0,40}".prop_map(serde_json::Value::from),
        proptest::collection::vec("[a-z0-9]{0,8}", 0..4).prop_map(|v| serde_json::json!(v)),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::btree_map(field, value, 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// The client's parsing of VOD answers: any status, `x-acs-retry-after` and body gives a
    /// result or a typed error, never a panic.
    #[test]
    fn vod_client_parses_arbitrary_answers(
        status in prop_oneof![Just(200u16), Just(400u16), Just(403u16), Just(429u16), Just(500u16), Just(503u16), 200u16..600],
        retry_after in proptest::option::of(prop_oneof!["[0-9]{1,25}", "[ -~]{0,10}"]),
        body in vod_body(),
    ) {
        let fake = fake_vod();
        *fake.answer.lock().unwrap() = (status, retry_after, body);
        let request = vod_purge::vod::RefreshRequest::new(
            vec!["m1".to_owned(), "m2".to_owned()],
            vod_purge::domain::TaskType::Refresh,
        );
        match fake.rt.block_on(fake.client.refresh_media_play_urls(&request)) {
            Ok(_) => prop_assert!((200..300).contains(&status)),
            Err(e) => {
                let _ = (e.class(), e.code(), e.message(), e.request_id(), e.retry_after());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
