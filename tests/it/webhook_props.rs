//! No verifier or parser panics, whatever the bytes and headers.

use proptest::prelude::*;
use serde_json::{Value, json};
use vod_purge::domain::Ts;
use vod_purge::webhook::{Headers, Pointer, Request, Source, parse_native};

use super::webhook_support::source;

const HEADER_NAMES: [&str; 14] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "x-signature",
    "sanity-webhook-signature",
    "sanity-operation",
    "x-ghost-signature",
    "x-contentful-signature",
    "x-contentful-signed-headers",
    "x-contentful-timestamp",
    "x-contentful-topic",
    "x-strapi-event",
    "idempotency-key",
];

fn sources() -> Vec<Source> {
    let auths = [
        json!({"auth": "standard-webhooks", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
        json!({"auth": "hmac", "secrets": ["s"], "header": "X-Signature", "prefix": "sha256="}),
        json!({"auth": "hmac", "secrets": ["s"], "header": "X-Signature", "encoding": "base64", "algorithm": "sha1"}),
        json!({"auth": "bearer", "secrets": ["s"]}),
        json!({"auth": "sanity", "secrets": ["s"]}),
        json!({"auth": "ghost", "secrets": ["s"]}),
        json!({"auth": "contentful", "secrets": ["s"]}),
    ];
    let formats = [
        json!({"format": "native"}),
        json!({"format": "json-pointer", "pointers": ["", "/a/*/b", "/*/*"]}),
        json!({"format": "strapi"}),
        json!({"format": "contentful"}),
        json!({"format": "sanity"}),
        json!({"format": "directus"}),
        json!({"format": "ghost", "id_field": "/*"}),
    ];
    auths
        .iter()
        .zip(formats.iter().cycle())
        .map(|(a, f)| {
            let mut cfg = a.clone();
            if let (Some(cfg), Some(f)) = (cfg.as_object_mut(), f.as_object()) {
                cfg.extend(f.clone());
            }
            source(cfg)
        })
        .chain(formats.iter().map(|f| {
            let mut cfg = f.clone();
            cfg["auth"] = json!("none");
            source(cfg)
        }))
        .collect()
}

fn header_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        proptest::sample::select(HEADER_NAMES.to_vec()).prop_map(str::to_owned),
        "[A-Za-z-]{1,12}",
    ];
    let value = prop_oneof![
        any::<String>(),
        "(v1,|v1a,|t=|sha256=|Bearer )[A-Za-z0-9+/=_,. -]{0,60}",
        "-?[0-9]{1,20}",
    ];
    proptest::collection::vec((name, value), 0..8)
}

fn json_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z0-9._*~/-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            proptest::sample::select(vec![
                "event",
                "entry",
                "media",
                "media_ids",
                "task",
                "options",
                "fields",
                "videoId",
                "en-US",
                "_id",
                "keys",
                "key",
                "post",
                "page",
                "current",
                "previous",
                "id",
                "video_id",
                "a",
                "b",
            ])
            .prop_map(str::to_owned),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn exercise(
    sources: &[Source],
    method: &str,
    path: &str,
    pairs: &[(String, String)],
    body: &[u8],
    now: i64,
) {
    let headers = Headers::new(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let req = Request {
        method,
        path,
        headers: &headers,
        body,
    };
    for src in sources {
        if let Err(e) = src.verify(&req, Ts(now)) {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
        }
        if let Err(e) = src.extract(&req) {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
        }
        let _ = src.delivery_id(&headers);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(super::fuzz_props::cases(256)))]

    #[test]
    fn arbitrary_bytes_and_headers(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        pairs in header_strategy(),
        method in "[A-Z]{0,7}",
        path in any::<String>(),
        now in any::<i64>(),
    ) {
        let sources = sources();
        exercise(&sources, &method, &path, &pairs, &body, now);
        let _ = parse_native(&body);
    }

    #[test]
    fn arbitrary_json(value in json_strategy(), pairs in header_strategy(), now in any::<i64>()) {
        let sources = sources();
        let body = serde_json::to_vec(&value).unwrap_or_default();
        exercise(&sources, "POST", "/webhooks/test", &pairs, &body, now);
        let _ = parse_native(&body);
    }

    #[test]
    fn arbitrary_pointers(text in any::<String>(), value in json_strategy()) {
        if let Ok(pointer) = Pointer::parse(&text) {
            let _ = pointer.select(&value);
        }
    }
}
