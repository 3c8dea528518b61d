//! A `vod-callback` source: VOD signs the callback URL and the timestamp, not the body, so a
//! header pair seen on the way passes with any body while its timestamp is accepted. An
//! `http://` callback URL (where everyone on the path sees the headers) is refused unless the
//! source says `allow_http`, and the default tolerance is what VOD's retries need.

use md5::{Digest, Md5};
use serde_json::json;
use vod_purge::config::Settings;
use vod_purge::webhook::VOD_CALLBACK_TOLERANCE;

use crate::support::{Spawn, spawn_app};

const KEY: &str = "vod-callback-key";

fn source(url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"vod\"\nauth = \"vod-callback\"\nsecrets = [\"{KEY}\"]\n\
         callback_url = \"{url}\"\nformat = \"vod-events\"\n{extra}"
    )
}

#[test]
fn an_http_callback_url_is_refused_at_start_unless_allowed() {
    let err = Settings::from_layers(&[&source("http://purge.example.com/webhooks/vod", "")])
        .expect_err("an http:// callback URL is refused")
        .to_string();
    for part in ["vod", "callback_url", "http://", "allow_http"] {
        assert!(err.contains(part), "{part}: {err}");
    }
    Settings::from_layers(&[&source("https://purge.example.com/webhooks/vod", "")]).unwrap();
    Settings::from_layers(&[&source(
        "http://127.0.0.1:8080/webhooks/vod",
        "allow_http = true",
    )])
    .unwrap();
}

#[tokio::test]
async fn the_default_tolerance_covers_vods_retries_and_no_more() {
    assert!(
        VOD_CALLBACK_TOLERANCE.as_secs() >= 12 && VOD_CALLBACK_TOLERANCE.as_secs() <= 60,
        "{VOD_CALLBACK_TOLERANCE:?}"
    );
    let url = "https://purge.example.com/webhooks/vod";
    let app = spawn_app(Spawn {
        extra: source(url, ""),
        ..Spawn::default()
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = json!({"EventType": "TranscodeComplete", "VideoId": "replayed-video",
        "Status": "success", "EventTime": "2026-11-30T02:00:00Z"});
    // Signed 12 s ago (VOD's third try, if it keeps the first try's timestamp): accepted.
    // Signed two minutes ago (a captured pair, sent again with another body): refused.
    for (age, want) in [(12, 200), (120, 401)] {
        let timestamp = (now - age).to_string();
        let signature = hex::encode(Md5::digest(format!("{url}|{timestamp}|{KEY}")));
        let response = app
            .http
            .post(format!("{}/webhooks/vod", app.address))
            .header("X-VOD-TIMESTAMP", &timestamp)
            .header("X-VOD-SIGNATURE", &signature)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), want, "signed {age} s ago");
    }
    app.stop().await;
}
