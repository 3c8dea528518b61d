//! ApsaraVideo VOD's event notifications as a webhook source (`vod-callback` with `vod-events`),
//! against deliveries signed by the independent implementation in
//! `tests/fixtures/webhooks/gen_signatures.py` (`vod_callbacks`), including the documentation's
//! example.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use vod_purge::domain::Ts;
use vod_purge::webhook::{Request, Source};

use super::support::{Spawn, TestApp, spawn_app, wait_until};
use super::webhook_support::{fixture, headers, source};

#[derive(Deserialize)]
struct Fixtures {
    vod_callbacks: Vec<Callback>,
    vod_keys: Vec<String>,
    vod_callback_url: String,
}

#[derive(Deserialize, Clone)]
struct Callback {
    name: String,
    callback_url: String,
    key: String,
    body_file: String,
    headers: serde_json::Map<String, Value>,
    signed_at_ms: i64,
    expect: String,
}

impl Callback {
    fn pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    fn video_id(&self) -> String {
        let body: Value = serde_json::from_slice(&fixture(&self.body_file)).unwrap();
        body["VideoId"].as_str().unwrap_or_default().to_owned()
    }
}

fn fixtures() -> Fixtures {
    let fixtures: Fixtures = serde_json::from_slice(&fixture("signatures.json")).unwrap();
    assert!(fixtures.vod_callbacks.len() >= 6);
    fixtures
}

fn vod_source(url: &str, keys: &[String]) -> Source {
    source(json!({
        "auth": "vod-callback",
        "format": "vod-events",
        "callback_url": url,
        "secrets": keys,
    }))
}

fn verify(
    source: &Source,
    pairs: &[(String, String)],
    body: &[u8],
    now: Ts,
) -> Result<(), &'static str> {
    let headers = headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let req = Request {
        method: "POST",
        path: "/webhooks/vod",
        headers: &headers,
        body,
    };
    source.verify(&req, now).map_err(|e| e.code())
}

#[test]
fn signatures_of_the_independent_signer() {
    let all = fixtures();
    for case in &all.vod_callbacks {
        let body = fixture(&case.body_file);
        let at = Ts(case.signed_at_ms);
        // The source as VOD is configured for it, holding the key that signed (and another one).
        let source = vod_source(
            &case.callback_url,
            &[all.vod_keys[0].clone(), case.key.clone()],
        );
        // The default tolerance of a vod-callback source: what VOD's three tries need.
        let tolerance = vod_purge::webhook::VOD_CALLBACK_TOLERANCE;
        for now in [at, at + tolerance, at - tolerance] {
            assert_eq!(
                verify(&source, &case.pairs(), &body, now),
                Ok(()),
                "{} at {now:?}",
                case.name
            );
        }
        let stale = at + tolerance + Duration::from_secs(1);
        assert_eq!(
            verify(&source, &case.pairs(), &body, stale),
            Err("timestamp_out_of_tolerance"),
            "{}",
            case.name
        );
        // The body is not signed: only the key, the URL and the timestamp are.
        assert_eq!(
            verify(&source, &case.pairs(), b"{}", at),
            Ok(()),
            "{}",
            case.name
        );
        let other_key = vod_source(&case.callback_url, &["a-key-nobody-used".to_owned()]);
        assert_eq!(
            verify(&other_key, &case.pairs(), &body, at),
            Err("invalid_signature")
        );
        let other_url = vod_source(
            "https://purge.example.com/other",
            std::slice::from_ref(&case.key),
        );
        assert_eq!(
            verify(&other_url, &case.pairs(), &body, at),
            Err("invalid_signature")
        );
        for missing in ["X-VOD-TIMESTAMP", "X-VOD-SIGNATURE"] {
            let pairs: Vec<_> = case
                .pairs()
                .into_iter()
                .filter(|(k, _)| k != missing)
                .collect();
            assert_eq!(
                verify(&source, &pairs, &body, at),
                Err("missing_signature"),
                "{missing}"
            );
        }
        for (header, garbage) in [
            ("X-VOD-SIGNATURE", "not-hex"),
            ("X-VOD-SIGNATURE", "abcd"),
            ("X-VOD-TIMESTAMP", "12.5"),
        ] {
            let pairs: Vec<_> = case
                .pairs()
                .into_iter()
                .map(|(k, v)| {
                    if k == header {
                        (k, garbage.to_owned())
                    } else {
                        (k, v)
                    }
                })
                .collect();
            assert_eq!(
                verify(&source, &pairs, &body, at),
                Err("malformed_signature"),
                "{header}: {garbage}"
            );
        }
    }
    let documented = &all.vod_callbacks[0];
    assert_eq!(
        documented.callback_url,
        "https://www.example.com/your/callback"
    );
    assert_eq!(documented.headers["X-VOD-TIMESTAMP"], "1519375990");
    assert_eq!(documented.key, "test123");
    // The digest VOD's documentation prints for its example: the independent signer must give
    // it, so that it and the verifier cannot share one misreading of the scheme.
    assert_eq!(
        documented.headers["X-VOD-SIGNATURE"], DOCUMENTED_DIGEST,
        "the fixture's signer"
    );
}

/// `md5("https://www.example.com/your/callback|1519375990|test123")`, as VOD's documentation
/// gives it (event notifications, "signature verification").
const DOCUMENTED_DIGEST: &str = "c72b60894140fa98920f1279219b7ed4";

#[test]
fn the_verifier_accepts_the_documentations_example_digest() {
    let source = vod_source(
        "https://www.example.com/your/callback",
        &["test123".to_owned()],
    );
    let pairs = |signature: &str| {
        vec![
            ("X-VOD-TIMESTAMP".to_owned(), "1519375990".to_owned()),
            ("X-VOD-SIGNATURE".to_owned(), signature.to_owned()),
        ]
    };
    let at = Ts(1_519_375_990_000);
    assert_eq!(
        verify(&source, &pairs(DOCUMENTED_DIGEST), b"{}", at),
        Ok(())
    );
    // One hex digit off is another digest.
    let off = DOCUMENTED_DIGEST.replace("c72b", "c72c");
    assert_eq!(
        verify(&source, &pairs(&off), b"{}", at),
        Err("invalid_signature")
    );
}

/// The service with a source `vod` as VOD is configured for it: both keys (a rotation), the
/// callback URL VOD signs (not the path the request arrives at), and a tolerance wide enough
/// for the fixtures' fixed timestamps; and `vod-strict`, the same with the default tolerance.
/// The quiet period is long enough that a test's deliveries, made one after another, all
/// arrive within it on a loaded machine: the tests check from the answers that they merged.
async fn spawn_vod(all: &Fixtures) -> TestApp {
    let keys = serde_json::to_string(&all.vod_keys).unwrap();
    let url = &all.vod_callback_url;
    let table = |name: &str, tolerance: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\nauth = \"vod-callback\"\nsecrets = {keys}\n\
             callback_url = \"{url}\"\nformat = \"vod-events\"\n{tolerance}"
        )
    };
    spawn_app(Spawn {
        extra: format!(
            "[queue]\nquiet = \"3s\"\nmax_wait = \"20s\"\nlinger = \"50ms\"\n{}\n{}",
            table("vod", "tolerance = \"3650d\"\n"),
            table("vod-strict", "")
        ),
        ..Spawn::default()
    })
    .await
}

async fn deliver(app: &TestApp, source: &str, case: &Callback, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/webhooks/{source}", app.address))
        .header("Content-Type", "application/json")
        .body(body);
    for (k, v) in case.pairs() {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn purges_of(app: &TestApp, id: &str) -> Vec<vod_purge::sim::RecordedCall> {
    app.successful_calls()
        .into_iter()
        .filter(|c| c.media_ids.iter().any(|m| m == id))
        .collect()
}

/// Waits for the purge of `id`, then until nothing is pending or in flight and every job has
/// an answer, so that the purges counted afterwards are all there will be.
async fn purged_and_settled(app: &TestApp, id: &str) {
    wait_until(Duration::from_secs(20), "the purge", || async {
        !purges_of(app, id).is_empty()
    })
    .await;
    wait_until(Duration::from_secs(10), "an empty queue", || async {
        let queue = app.get_json("/queue").await;
        let jobs = app.get_json("/jobs?limit=100").await;
        queue["pending"] == 0
            && queue["in_flight_batches"] == 0
            && queue["retrying_batches"] == 0
            && jobs["jobs"]
                .as_array()
                .is_some_and(|jobs| jobs.iter().all(|j| j["status"] == "succeeded"))
    })
    .await;
}

/// The answer to a delivery for `id` that created its item (`first`) or merged into it.
fn assert_stored(body: &Value, id: &str, first: bool, what: &str) {
    let (accepted, merged) = if first {
        (json!([id]), json!([]))
    } else {
        (json!([]), json!([id]))
    };
    assert_eq!(
        (&body["accepted"], &body["merged"]),
        (&accepted, &merged),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn vod_events_are_answered_200_and_a_transcode_is_purged_after_the_debounce() {
    let all = fixtures();
    let app = spawn_vod(&all).await;
    let vod_cases: Vec<&Callback> = all
        .vod_callbacks
        .iter()
        .filter(|c| c.callback_url == all.vod_callback_url || c.expect == "refused")
        .collect();
    let mut stored = std::collections::HashSet::new();
    for case in &vod_cases {
        let (status, body) = deliver(&app, "vod", case, fixture(&case.body_file)).await;
        match case.expect.as_str() {
            "stored" => {
                assert_eq!(status, 200, "{}: {body}", case.name);
                let id = case.video_id();
                let first = stored.insert(id.clone());
                assert_stored(&body, &id, first, &case.name);
            }
            "ignored" => {
                assert_eq!(status, 200, "{}: {body}", case.name);
                assert!(body["ignored_event"].is_string(), "{}: {body}", case.name);
                assert!(body["reason"].is_string(), "{}: {body}", case.name);
            }
            _ => {
                assert_eq!(status, 401, "{}: {body}", case.name);
                assert_eq!(body["error"]["code"], "invalid_signature", "{}", case.name);
            }
        }
    }
    let failed = all
        .vod_callbacks
        .iter()
        .find(|c| c.name == "transcode failed")
        .unwrap();
    let (_, body) = deliver(&app, "vod", failed, fixture(&failed.body_file)).await;
    assert_eq!(body["reason"], "Status is \"fail\", not \"success\"");

    let transcoded = all
        .vod_callbacks
        .iter()
        .find(|c| c.name == "transcode complete, current key")
        .unwrap();
    let id = transcoded.video_id();
    purged_and_settled(&app, &id).await;
    let purges = purges_of(&app, &id);
    assert_eq!(
        purges.len(),
        1,
        "both keys' deliveries merged into one purge"
    );
    assert_eq!(purges[0].task_type.as_deref(), Some("Refresh"));
    assert_eq!(purges[0].media_ids, std::slice::from_ref(&id));
    // Nothing else was enqueued: no failed, unmapped or refused event reached VOD.
    for case in all.vod_callbacks.iter().filter(|c| c.expect != "stored") {
        let other = case.video_id();
        if !other.is_empty() && other != id {
            assert!(purges_of(&app, &other).is_empty(), "{}", case.name);
        }
    }
    let deleted: Value =
        serde_json::from_slice(&fixture("vod-delete-media-complete.json")).unwrap();
    assert!(purges_of(&app, deleted["MediaId"].as_str().unwrap()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn vods_three_tries_enqueue_one_purge_and_bad_deliveries_are_refused() {
    let all = fixtures();
    let app = spawn_vod(&all).await;
    let case = all
        .vod_callbacks
        .iter()
        .find(|c| c.name == "transcode complete, current key")
        .unwrap();
    // VOD tries three times, a second apart, when it does not see a 200 in time: the tries
    // after the first merge into the pending item.
    let id = case.video_id();
    for n in 0..3 {
        let (status, body) = deliver(&app, "vod", case, fixture(&case.body_file)).await;
        assert_eq!(status, 200, "{body}");
        assert_stored(&body, &id, n == 0, &format!("try {n}"));
    }
    purged_and_settled(&app, &id).await;
    assert_eq!(purges_of(&app, &id).len(), 1);

    // A body that is not JSON (the signature covers no body) is 400; a stale timestamp 401.
    let (status, body) = deliver(&app, "vod", case, b"EventType=TranscodeComplete".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = deliver(&app, "vod-strict", case, fixture(&case.body_file)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("timestamp_out_of_tolerance")),
        "{body}"
    );
    let page = app.get_json("/jobs?limit=100").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "{page}");
    app.stop().await;
}
