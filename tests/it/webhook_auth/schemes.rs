//! Scheme by scheme: Standard Webhooks, bearer, none, Sanity; and what errors may say.

use super::*;

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
        let now = Ts(case.signed_at_ms);
        let source = case.source(&[&case.other_secret]);
        let err = case
            .as_signed(|req| source.verify(req, now))
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
