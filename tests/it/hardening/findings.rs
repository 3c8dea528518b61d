//! The smaller findings of the hostile-input review, each as a regression test.

use super::*;
use crate::support::SendJson;

#[tokio::test]
async fn the_smaller_findings() {
    let app = spawn_app(Spawn {
        extra: "[[sources]]\nname = \"sw\"\nauth = \"standard-webhooks\"\n\
                secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nformat = \"native\"\n"
            .into(),
        sim: SimConfig {
            faults: Faults {
                fail_next: 1_000,
                error_code: "InvalidAccessKeyId.NotFound".into(),
                ..Faults::default()
            },
            ..Spawn::default().sim
        },
    })
    .await;
    // An Idempotency-Key longer than any sender's is refused, not stored.
    let long = "k".repeat(8000);
    let response = app
        .http
        .post(format!("{}/purge", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", &long)
        .json(&json!({"media_ids": ["long-key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_delivery_id");
    let media = app.get_json("/media/long-key").await;
    assert_eq!(media["media_id"], "long-key", "{media}");
    assert_eq!(media["pending"], json!([]), "{media}");
    assert_eq!(media["jobs"], json!([]), "{media}");

    // A cursor that is not one is a 400, not the first page.
    let bad_cursor = app
        .http
        .get(format!("{}/jobs?cursor=garbage", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_cursor.status(), 400);

    // A Standard Webhooks delivery with an empty webhook-id is refused even when its signature
    // matches (signed over the empty ID by the specification's algorithm).
    let body = br#"{"media_ids": ["no-id"]}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let key = base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!(".{ts}.").as_bytes());
    mac.update(body);
    let signature = format!("v1,{}", base64_encode(&mac.finalize().into_bytes()));
    let response = app
        .http
        .post(format!("{}/webhooks/sw", app.address))
        .header("Content-Type", "application/json")
        .header("webhook-id", "")
        .header("webhook-timestamp", &ts)
        .header("webhook-signature", &signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let refused: serde_json::Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "missing_signature");

    // /readyz shows VOD's credential error text to the admin only.
    assert_eq!(
        app.webhook(json!({"media_ids": ["refused"]}))
            .await
            .status(),
        202
    );
    let readyz = |token: Option<&'static str>| {
        let mut request = app.http.get(format!("{}/readyz", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send_json::<serde_json::Value>()
    };
    wait_until(Duration::from_secs(10), "the credential error", || async {
        readyz(None).await["vod_credentials_refused"] == true
    })
    .await;
    let open = readyz(None).await;
    assert_eq!(
        open["vod_credential_error"],
        serde_json::Value::Null,
        "{open}"
    );
    let admin = readyz(Some(ADMIN_TOKEN)).await;
    assert!(
        admin["vod_credential_error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidAccessKeyId.NotFound")),
        "{admin}"
    );
    app.stop().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_github_delivery_id_catches_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path(), "").await;
    let first: serde_json::Value =
        github_delivery(&base, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &["gh-1"])
            .await
            .json()
            .await
            .unwrap();
    let again: serde_json::Value =
        github_delivery(&base, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &["gh-1"])
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(first["redelivery"], false, "{first}");
    assert_eq!(again["redelivery"], true, "{again}");
    child.kill().unwrap();
    let _ = child.wait();
}

/// A malformed request is answered 400 and closed; actix's own "stream error" line about it is
/// not an `ERROR` in the default log (it is with `RUST_LOG=info`, which shows the test can fail).
#[tokio::test]
async fn malformed_requests_write_no_error_line() {
    async fn stderr_after_garbage(rust_log: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.toml");
        let db = dir.path().join("s.db").to_string_lossy().into_owned();
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{db}\"\n[vod]\ndry_run = true\n"),
        )
        .unwrap();
        let mut command = binary();
        command.args(["serve", "--config"]).arg(&config).env_clear();
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let http = http_client();
        wait_until(Duration::from_secs(10), "the service", || async {
            http.get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok()
        })
        .await;
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
    let default = stderr_after_garbage(None).await;
    assert!(!default.contains("ERROR"), "{default}");
    let verbose = stderr_after_garbage(Some("info")).await;
    assert!(
        verbose.contains("ERROR"),
        "the malformed request is logged at ERROR by actix: {verbose}"
    );
}
