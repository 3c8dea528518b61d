//! Webhook ingress over real HTTP: signed schemes, CMS presets, per-source limits.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::support::{Spawn, spawn_app, wait_until};

const SOURCES: &str = r#"
[[sources]]
name = "woo"
auth = "hmac"
secrets = ["old-secret", "new-secret"]
header = "X-WC-Webhook-Signature"
encoding = "base64"
format = "json-pointer"
pointers = ["/meta_data/*/value"]

[[sources]]
name = "limited"
auth = "none"
format = "native"
rate_limit = 2
burst = 2

[[sources]]
name = "strapi"
auth = "bearer"
secrets = ["strapi-token"]
format = "strapi"
"#;

/// HMAC-SHA256 written out with the hmac crate, not the project's verifier.
fn woo_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn hmac_source_accepts_rotated_secrets_and_refuses_tampering() {
    let app = spawn_app(Spawn {
        extra: SOURCES.into(),
        ..Spawn::default()
    })
    .await;
    let body = json!({"id": 7, "meta_data": [{"key": "vod", "value": "woo-video-1"}]}).to_string();
    let post = |signature: String, body: String| {
        app.http
            .post(format!("{}/webhooks/woo", app.address))
            .header("content-type", "application/json")
            .header("X-WC-Webhook-Signature", signature)
            .body(body)
            .send()
    };
    for secret in ["old-secret", "new-secret"] {
        let response = post(woo_signature(secret, body.as_bytes()), body.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "signed with {secret}");
    }
    let tampered = body.replace("woo-video-1", "woo-video-2");
    let response = post(woo_signature("new-secret", body.as_bytes()), tampered)
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");
    let media = app.get_json("/media/woo-video-2").await;
    assert_eq!(
        media["pending"],
        json!([]),
        "a refused delivery stores nothing"
    );
    let media = app.get_json("/media/woo-video-1").await;
    assert_eq!(media["pending"][0]["events"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_source_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app(Spawn {
        extra: SOURCES.into(),
        ..Spawn::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..5 {
        let response = app
            .http
            .post(format!("{}/webhooks/limited", app.address))
            .json(&json!({"media_ids": [format!("lim{i}")]}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(&statuses[..2], &[202, 202], "the burst passes");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&seconds));
    app.stop().await;
}

#[tokio::test]
async fn strapi_events_purge_only_when_they_should() {
    let app = spawn_app(Spawn {
        extra: SOURCES.into(),
        ..Spawn::default()
    })
    .await;
    let send = |event: &str| {
        app.http
            .post(format!("{}/webhooks/strapi", app.address))
            .bearer_auth("strapi-token")
            .json(&json!({"event": event, "model": "video", "entry": {"id": 1, "video_id": "strapi-vid"}}))
            .send()
    };
    let created = send("entry.create").await.unwrap();
    assert_eq!(created.status(), 200);
    assert_eq!(
        created.json::<serde_json::Value>().await.unwrap()["ignored_event"],
        "entry.create"
    );
    assert_eq!(send("entry.update").await.unwrap().status(), 202);
    // A purging event about an entry without a video is acknowledged, not refused.
    let no_video = app
        .http
        .post(format!("{}/webhooks/strapi", app.address))
        .bearer_auth("strapi-token")
        .json(
            &json!({"event": "entry.update", "model": "article", "entry": {"id": 2, "title": "x"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(no_video.status(), 200);
    wait_until(Duration::from_secs(10), "the purge", || async {
        app.successful_calls().len() == 1
    })
    .await;
    assert_eq!(app.successful_calls()[0].media_ids, vec!["strapi-vid"]);
    app.stop().await;
}
