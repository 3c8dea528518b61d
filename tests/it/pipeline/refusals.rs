//! What is refused: redeliveries, bad input, reads without the admin token.

#[allow(unused_imports)]
use super::*;

#[tokio::test]
async fn redelivery_gets_the_first_answer_and_stores_nothing_new() {
    let app = spawn_app(Spawn {
        extra: "[queue]\nquiet = \"30s\"\nmax_wait = \"60s\"\n".into(),
        ..Spawn::default()
    })
    .await;
    let send = |ids: serde_json::Value| {
        app.http
            .post(format!("{}/purge", app.address))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "delivery-1")
            .json(&json!({"media_ids": ids}))
            .send()
    };
    let first: serde_json::Value = send(json!(["one"])).await.unwrap().json().await.unwrap();
    let second: serde_json::Value = send(json!(["one", "two"]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["event_id"], second["event_id"]);
    assert_eq!(second["redelivery"], true);
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_its_status_and_nothing_is_stored() {
    let app = spawn_app(Spawn::default()).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let big = "x".repeat(70_000);
    let many: Vec<String> = (0..1001).map(|i| format!("v{i}")).collect();
    // (path, token, content type, body, status, code)
    // (path, bearer token, content type, body, status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            "{not json".into(),
            400,
            "malformed_json",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "text/plain",
            r#"{"media_ids":["a"]}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            format!(r#"{{"media_ids":["{big}"]}}"#),
            413,
            "body_too_large",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":[]}"#.into(),
            422,
            "no_usable_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":["a,b","c d"]}"#.into(),
            422,
            "no_usable_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            json!({"media_ids": many}).to_string(),
            422,
            "too_many_ids",
        ),
        (
            "/purge",
            Some(ADMIN_TOKEN),
            "application/json",
            r#"{"media_ids":["a"],"task":"Nuke"}"#.into(),
            422,
            "unknown_task",
        ),
        (
            "/purge",
            None,
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "missing_token",
        ),
        (
            "/purge",
            Some("wrong"),
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "invalid_token",
        ),
        (
            "/webhooks/cms",
            None,
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "missing_token",
        ),
        (
            "/webhooks/cms",
            Some("wrong"),
            "application/json",
            r#"{"media_ids":["a"]}"#.into(),
            401,
            "invalid_token",
        ),
        (
            "/webhooks/cms",
            Some(crate::support::SOURCE_TOKEN),
            "application/json",
            "[1,".into(),
            400,
            "malformed_json",
        ),
        (
            "/webhooks/nope",
            Some(crate::support::SOURCE_TOKEN),
            "application/json",
            "{}".into(),
            404,
            "unknown_source",
        ),
    ];
    for (path, token, content_type, body, status, code) in cases {
        let mut request = app
            .http
            .post(url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {code}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{path}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 0, "nothing was stored");

    // Valid and invalid IDs together: the valid ones are stored, the others reported.
    let receipt: serde_json::Value = app
        .purge(json!({"media_ids": ["good", "bad,id"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["accepted"], json!(["good"]));
    assert_eq!(receipt["rejected"][0]["media_id"], "bad,id");
    app.stop().await;
}

#[tokio::test]
async fn reads_need_the_admin_token_when_one_is_set() {
    let app = spawn_app(Spawn::default()).await;
    for path in ["/jobs", "/queue", "/media/x", "/jobs/x"] {
        let status = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        let status = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let page = app.get_json("/jobs?status=failed&limit=5").await;
    assert_eq!(page["jobs"], json!([]));
    let bad = app
        .http
        .get(format!("{}/jobs?status=weird", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

/// What `/webhooks/{source}` cannot use, as `/purge` refuses it: the wrong content type (415), a
/// body over `server.max_body_bytes` whether it declares its length or streams without one
/// (413), and no usable ID (422). Nothing is stored.
#[tokio::test]
async fn webhooks_refuse_what_they_cannot_use_and_store_nothing() {
    let app = spawn_app(Spawn::default()).await;
    let ids = |ids: Vec<String>| json!({ "media_ids": ids }).to_string();
    let big = ids(vec!["x".repeat(70_000)]);
    let many = ids((0..1001).map(|i| format!("v{i}")).collect());
    let cases: [(&str, String, u16, &str); 5] = [
        (
            "text/plain",
            ids(vec!["a".into()]),
            415,
            "unsupported_media_type",
        ),
        ("application/json", big.clone(), 413, "body_too_large"),
        ("application/json", ids(vec![]), 422, "no_usable_ids"),
        (
            "application/json",
            ids(vec!["a,b".into(), "c d".into()]),
            422,
            "no_usable_ids",
        ),
        ("application/json", many, 422, "too_many_ids"),
    ];
    for (content_type, body, status, code) in cases {
        let response = app
            .http
            .post(format!("{}/webhooks/cms", app.address))
            .bearer_auth(crate::support::SOURCE_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{code}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    // The same large body, streamed in chunks with no Content-Length: cut off as it passes the
    // limit.
    let port = app
        .address
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let answer = tokio::task::spawn_blocking(move || chunked_post(port, "/webhooks/cms", &big))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["pending"], 0, "nothing was stored");
    app.stop().await;
}

/// Posts `body` in 4 KiB chunks (`Transfer-Encoding: chunked`, no `Content-Length`) with the
/// source's token, and returns the whole answer as text.
fn chunked_post(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        crate::support::SOURCE_TOKEN
    );
    stream.write_all(head.as_bytes()).unwrap();
    for chunk in body.as_bytes().chunks(4096) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        // The service may answer and close as soon as the body passes the limit.
        if stream.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}
