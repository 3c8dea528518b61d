//! Every authentication scheme against deliveries signed by an independent implementation
//! (`tests/fixtures/webhooks/gen_signatures.py`, Python standard library) and the Standard
//! Webhooks specification's published example. Nothing here signs with the project's own code.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use vod_purge::domain::Ts;
use vod_purge::webhook::{Request, Source};

use super::webhook_support::{fixture, headers, source};

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    source: Value,
    signed_with: String,
    other_secret: String,
    method: String,
    path: String,
    headers: serde_json::Map<String, Value>,
    required_headers: Vec<String>,
    signature_header: String,
    signed_at_ms: i64,
    body: Option<String>,
    body_file: Option<String>,
}

impl Case {
    fn source(&self, secrets: &[&str]) -> Source {
        let mut cfg = self.source.clone();
        cfg["secrets"] = json!(secrets);
        source(cfg)
    }

    fn body(&self) -> Vec<u8> {
        match (&self.body, &self.body_file) {
            (Some(body), _) => body.clone().into_bytes(),
            (None, Some(file)) => fixture(file),
            (None, None) => panic!("{}: no body", self.name),
        }
    }

    fn pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// Verifies with the given secrets, body, headers and clock; returns the error code.
    fn check(
        &self,
        secrets: &[&str],
        body: &[u8],
        pairs: &[(String, String)],
        now: Ts,
    ) -> Result<(), &'static str> {
        let headers = headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = Request {
            method: &self.method,
            path: &self.path,
            headers: &headers,
            body,
        };
        self.source(secrets).verify(&req, now).map_err(|e| e.code())
    }
}

fn cases() -> Vec<Case> {
    let raw = fixture("signatures.json");
    let fixtures: Fixtures = serde_json::from_slice(&raw).expect("signatures.json parses");
    assert!(fixtures.cases.len() >= 10);
    fixtures.cases
}

const TOLERANCE: Duration = Duration::from_secs(5 * 60);

#[test]
fn signed_deliveries_are_accepted() {
    for case in cases() {
        let at = Ts(case.signed_at_ms);
        let (body, pairs) = (case.body(), case.pairs());
        for now in [
            at,
            at + Duration::from_secs(60),
            at - Duration::from_secs(60),
            at + TOLERANCE,
        ] {
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Ok(()),
                "{} at {now:?}",
                case.name
            );
        }
    }
}

#[test]
fn rotated_secrets_are_all_accepted() {
    for case in cases() {
        let (body, pairs, now) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        for secrets in [
            [&case.other_secret, &case.signed_with],
            [&case.signed_with, &case.other_secret],
        ] {
            let secrets = secrets.map(String::as_str);
            assert_eq!(
                case.check(&secrets, &body, &pairs, now),
                Ok(()),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn wrong_secret_is_refused() {
    for case in cases() {
        let (body, pairs, now) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        assert_eq!(
            case.check(&[&case.other_secret], &body, &pairs, now),
            Err("invalid_signature"),
            "{}",
            case.name
        );
    }
}

#[test]
fn tampered_body_is_refused() {
    for case in cases() {
        let (pairs, now) = (case.pairs(), Ts(case.signed_at_ms));
        let body = case.body();
        let mut flipped = body.clone();
        let last_digit = flipped
            .iter()
            .rposition(u8::is_ascii_digit)
            .expect("body has a digit");
        flipped[last_digit] = if flipped[last_digit] == b'9' {
            b'8'
        } else {
            flipped[last_digit] + 1
        };
        let mut longer = body.clone();
        longer.push(b' ');
        for tampered in [flipped, longer, Vec::new()] {
            assert_eq!(
                case.check(&[&case.signed_with], &tampered, &pairs, now),
                Err("invalid_signature"),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn missing_headers_are_refused() {
    for case in cases() {
        let (body, now) = (case.body(), Ts(case.signed_at_ms));
        for missing in &case.required_headers {
            let pairs: Vec<_> = case
                .pairs()
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(missing))
                .collect();
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Err("missing_signature"),
                "{} without {missing}",
                case.name
            );
        }
    }
}

#[test]
fn garbled_signature_header_is_malformed() {
    for case in cases() {
        let (body, now) = (case.body(), Ts(case.signed_at_ms));
        let pairs: Vec<_> = case
            .pairs()
            .into_iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case(&case.signature_header) {
                    (k, "garbage!".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(
            case.check(&[&case.signed_with], &body, &pairs, now),
            Err("malformed_signature"),
            "{}",
            case.name
        );
    }
}

#[test]
fn timestamps_outside_tolerance_are_refused() {
    let one_ms = Duration::from_millis(1);
    for case in cases().into_iter().filter(|c| c.source["auth"] != "hmac") {
        let (body, pairs, at) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        for now in [
            at + TOLERANCE + Duration::from_secs(1),
            at - TOLERANCE - one_ms,
            Ts(0),
            Ts(i64::MAX),
        ] {
            assert_eq!(
                case.check(&[&case.signed_with], &body, &pairs, now),
                Err("timestamp_out_of_tolerance"),
                "{} at {now:?}",
                case.name
            );
        }
    }
}

#[test]
fn tolerance_is_configurable() {
    for case in cases().into_iter().filter(|c| c.source["auth"] != "hmac") {
        let (body, pairs, at) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        let headers = headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = Request {
            method: &case.method,
            path: &case.path,
            headers: &headers,
            body: &body,
        };
        let mut cfg = case.source.clone();
        cfg["secrets"] = json!([case.signed_with]);
        cfg["tolerance"] = json!("10m");
        let wide = source(cfg.clone());
        assert_eq!(
            wide.verify(&req, at + Duration::from_secs(9 * 60))
                .map_err(|e| e.code()),
            Ok(()),
            "{}",
            case.name
        );
        cfg["tolerance"] = json!("30s");
        let narrow = source(cfg);
        assert_eq!(
            narrow
                .verify(&req, at + Duration::from_secs(31))
                .map_err(|e| e.code()),
            Err("timestamp_out_of_tolerance"),
            "{}",
            case.name
        );
    }
}

#[test]
fn standard_webhooks_accepts_a_secret_without_prefix() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "standard-webhooks spec example")
        .expect("spec case");
    let bare = case.signed_with.trim_start_matches("whsec_");
    assert_eq!(
        case.check(&[bare], &case.body(), &case.pairs(), Ts(case.signed_at_ms)),
        Ok(())
    );
}

#[test]
fn standard_webhooks_signature_of_another_message_is_refused() {
    // The spec example's signature replayed under another message id or timestamp.
    let case = cases()
        .into_iter()
        .find(|c| c.name == "standard-webhooks spec example")
        .expect("spec case");
    let now = Ts(case.signed_at_ms);
    for (header, value) in [
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", "1614265331"),
    ] {
        let pairs: Vec<_> = case
            .pairs()
            .into_iter()
            .map(|(k, v)| {
                if k == header {
                    (k, value.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(
            case.check(&[&case.signed_with], &case.body(), &pairs, now),
            Err("invalid_signature"),
            "{header}"
        );
    }
    // Only other versions: nothing to check against.
    let pairs: Vec<_> = case
        .pairs()
        .into_iter()
        .map(|(k, v)| {
            if k == "webhook-signature" {
                (k, v.replacen("v1,", "v2,", 1))
            } else {
                (k, v)
            }
        })
        .collect();
    assert_eq!(
        case.check(&[&case.signed_with], &case.body(), &pairs, now),
        Err("malformed_signature")
    );
}

#[test]
fn bearer_tokens() {
    let src = source(
        json!({"auth": "bearer", "format": "native", "secrets": ["old-Str4pi-token", "new-Str4pi-token"]}),
    );
    let body = br#"{"media_ids": ["a"]}"#;
    let check = |pairs: &[(&str, &str)]| {
        let headers = headers(pairs.iter().copied());
        let req = Request {
            method: "POST",
            path: "/webhooks/test",
            headers: &headers,
            body,
        };
        src.verify(&req, Ts(0)).map_err(|e| e.code())
    };
    assert_eq!(
        check(&[("Authorization", "Bearer new-Str4pi-token")]),
        Ok(())
    );
    assert_eq!(
        check(&[("authorization", "Bearer old-Str4pi-token")]),
        Ok(())
    );
    assert_eq!(
        check(&[("Authorization", "Bearer new-str4pi-token")]),
        Err("invalid_token")
    );
    assert_eq!(
        check(&[("Authorization", "Bearer retired-token")]),
        Err("invalid_token")
    );
    assert_eq!(check(&[]), Err("missing_token"));
    assert_eq!(
        check(&[("Authorization", "Basic bmV3")]),
        Err("missing_token")
    );
}

#[test]
fn none_accepts_anything_and_says_so() {
    let src = source(json!({"auth": "none", "format": "native"}));
    let headers = headers([]);
    let req = Request {
        method: "POST",
        path: "/",
        headers: &headers,
        body: b"",
    };
    assert!(src.verify(&req, Ts(0)).is_ok());
    assert!(src.is_unauthenticated());
}

#[test]
fn error_messages_do_not_leak_secrets() {
    for case in cases() {
        let (body, pairs, now) = (case.body(), case.pairs(), Ts(case.signed_at_ms));
        let headers = headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = Request {
            method: &case.method,
            path: &case.path,
            headers: &headers,
            body: &body,
        };
        let err = case
            .source(&[&case.other_secret])
            .verify(&req, now)
            .expect_err(&case.name);
        let text = err.to_string();
        assert!(
            !text.contains(&case.other_secret) && !text.contains(&case.signed_with),
            "{text}"
        );
        assert!(
            format!("{:?}", case.source(&[&case.signed_with]))
                .find(&case.signed_with)
                .is_none()
        );
    }
}

#[test]
fn sanity_published_vectors() {
    // The test vectors of Sanity's own toolkit (sanity-io/webhook-toolkit, test/signature.test.ts).
    let check = |secret: &str, body: &str, header: &str, now: i64| {
        let src = source(json!({"auth": "sanity", "format": "sanity", "secrets": [secret]}));
        let headers = headers([("sanity-webhook-signature", header)]);
        let req = Request {
            method: "POST",
            path: "/webhooks/sanity",
            headers: &headers,
            body: body.as_bytes(),
        };
        src.verify(&req, Ts(now)).map_err(|e| e.code())
    };
    let resume = r#"{"_id":"resume"}"#;
    let sig = "t=1633519811129,v1=tLa470fx7qkLLEcMOcEUFuBbRSkGujyskxrNXcoh0N0";
    assert_eq!(check("test", resume, sig, 1633519811129), Ok(()));
    assert_eq!(
        check("test", resume, &sig.replace(",", ", "), 1633519811129),
        Ok(())
    );
    assert_eq!(
        check(
            "test",
            resume,
            &sig.replace("811129", "811128"),
            1633519811129
        ),
        Err("invalid_signature")
    );
    assert_eq!(
        check("test", resume, &sig.replace("h0N0", "h0N1"), 1633519811129),
        Err("invalid_signature")
    );
    assert_eq!(
        check("test", r#"{"_id":"structure"}"#, sig, 1633519811129),
        Err("invalid_signature")
    );
    assert_eq!(
        check("test", resume, &sig.replace("v1=", "v5="), 1633519811129),
        Err("malformed_signature")
    );
    let neat = r#"{"title":"GROQ-Hooks are neat"}"#;
    let sig = "t=1633518820676,v1=e7C9h2sfbFfc4V7TEz7PSOp4IoNzl0UdVsBV-1wgdeA";
    assert_eq!(check("try-me", neat, sig, 1633518820676), Ok(()));
}
