//! Each payload format reads the right media IDs from a body shaped like its CMS's documented
//! payload (`tests/fixtures/webhooks/`), and events that should not purge do not.

use serde_json::{Value, json};
use vod_purge::domain::RequestedTask;
use vod_purge::webhook::{Extracted, Headers, Request, Source};

use super::webhook_support::{fixture, headers, source};

fn extract(src: &Source, pairs: &[(&str, &str)], body: &[u8]) -> Extracted {
    try_extract(src, pairs, body).unwrap_or_else(|e| panic!("{e}"))
}

fn try_extract(
    src: &Source,
    pairs: &[(&str, &str)],
    body: &[u8],
) -> Result<Extracted, &'static str> {
    let headers: Headers = headers(pairs.iter().copied());
    let req = Request {
        method: "POST",
        path: "/webhooks/test",
        headers: &headers,
        body,
    };
    src.extract(&req).map_err(|e| e.code())
}

/// All IDs of all requests, in order.
fn ids(extracted: &Extracted) -> Vec<&str> {
    extracted
        .requests
        .iter()
        .flat_map(|r| r.media_ids.iter().map(String::as_str))
        .collect()
}

fn preset(format: &str, extra: Value) -> Source {
    let mut cfg = json!({"auth": "none", "format": format});
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    source(cfg)
}

#[test]
fn strapi_entry_update() {
    let got = extract(
        &preset("strapi", json!({})),
        &[],
        &fixture("strapi-entry-update.json"),
    );
    assert_eq!(ids(&got), ["d0b7d0ff0d3f71f0bfd2e7f4b6a40101"]);
    assert_eq!(got.ignored_event, None);
    assert_eq!(got.requests[0].task, RequestedTask::Refresh);

    let trailers = preset("strapi", json!({"id_field": "/trailers/*/video_id"}));
    let got = extract(&trailers, &[], &fixture("strapi-entry-update.json"));
    assert_eq!(
        ids(&got),
        [
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        ]
    );
}

#[test]
fn strapi_entry_create_does_not_purge_by_default() {
    let got = extract(
        &preset("strapi", json!({})),
        &[],
        &fixture("strapi-entry-create.json"),
    );
    assert!(got.requests.is_empty());
    assert_eq!(got.ignored_event.as_deref(), Some("entry.create"));

    let all_entries = preset("strapi", json!({"events": ["entry.*"]}));
    let got = extract(&all_entries, &[], &fixture("strapi-entry-create.json"));
    assert_eq!(ids(&got), ["7e57a1dd8c2b4f0e9a6b5c4d3e2f1a0b"]);

    let publish_only = preset("strapi", json!({"events": ["entry.publish"]}));
    let got = extract(&publish_only, &[], &fixture("strapi-entry-update.json"));
    assert_eq!(got.ignored_event.as_deref(), Some("entry.update"));
}

#[test]
fn strapi_media_update() {
    let got = extract(
        &preset("strapi", json!({})),
        &[],
        &fixture("strapi-media-update.json"),
    );
    assert_eq!(ids(&got), ["c4ca4238a0b923820dcc509a6f75849b"]);
    let by_hash = preset("strapi", json!({"media_id_field": "hash"}));
    assert_eq!(
        ids(&extract(
            &by_hash,
            &[],
            &fixture("strapi-media-update.json")
        )),
        ["keynote_3f1c2a9b7e"]
    );
}

#[test]
fn strapi_event_from_header_and_null_entry() {
    let src = preset("strapi", json!({}));
    let body = br#"{"model": "video", "entry": {"id": 1, "video_id": "abc"}}"#;
    assert_eq!(
        ids(&extract(&src, &[("X-Strapi-Event", "entry.publish")], body)),
        ["abc"]
    );
    assert_eq!(try_extract(&src, &[], body).unwrap_err(), "invalid_payload");
    // A publish payload whose entry is null (strapi/strapi#25387) purges nothing, without error.
    let got = extract(&src, &[], br#"{"event": "entry.publish", "entry": null}"#);
    assert!(got.requests.is_empty() && got.ignored_event.is_none());
}

#[test]
fn contentful_entry_publish_every_locale() {
    let src = preset("contentful", json!({}));
    let topic = [("X-Contentful-Topic", "ContentManagement.Entry.publish")];
    let got = extract(&src, &topic, &fixture("contentful-entry-publish.json"));
    let mut found = ids(&got);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "6512bd43d9caa6e02c990b0a82652dca",
            "d0b7d0ff0d3f71f0bfd2e7f4b6a40101"
        ]
    );

    let en_only = preset("contentful", json!({"id_field": "/fields/videoId/en-US"}));
    assert_eq!(
        ids(&extract(
            &en_only,
            &topic,
            &fixture("contentful-entry-publish.json")
        )),
        ["d0b7d0ff0d3f71f0bfd2e7f4b6a40101"]
    );
}

#[test]
fn contentful_events() {
    let src = preset("contentful", json!({}));
    let body = fixture("contentful-entry-publish.json");
    for topic in [
        "ContentManagement.Entry.auto_save",
        "ContentManagement.Entry.save",
        "ContentManagement.Asset.publish",
    ] {
        let got = extract(&src, &[("X-Contentful-Topic", topic)], &body);
        assert_eq!(got.ignored_event.as_deref(), Some(topic));
        assert!(got.requests.is_empty());
    }
    // Unpublish bodies carry only `sys`: the event purges but there is nothing to purge.
    let got = extract(
        &src,
        &[("X-Contentful-Topic", "ContentManagement.Entry.unpublish")],
        &fixture("contentful-entry-unpublish.json"),
    );
    assert!(got.requests.is_empty() && got.ignored_event.is_none());
    assert_eq!(
        try_extract(&src, &[], &body).unwrap_err(),
        "invalid_payload"
    );

    let drafts_too = preset(
        "contentful",
        json!({"events": ["ContentManagement.Entry.auto_save", "Entry.publish"]}),
    );
    let got = extract(
        &drafts_too,
        &[("X-Contentful-Topic", "ContentManagement.Entry.auto_save")],
        &body,
    );
    assert_eq!(ids(&got).len(), 2);
}

#[test]
fn sanity_strips_drafts_prefix() {
    let got = extract(
        &preset("sanity", json!({})),
        &[],
        &fixture("sanity-document.json"),
    );
    assert_eq!(ids(&got), ["c20ad4d76fe97759aa27a0c99bff6710"]);
    let field = preset("sanity", json!({"id_field": "vodIds"}));
    let got = extract(&field, &[], &fixture("sanity-document.json"));
    assert_eq!(
        ids(&got),
        [
            "d0b7d0ff0d3f71f0bfd2e7f4b6a40101",
            "6512bd43d9caa6e02c990b0a82652dca"
        ]
    );
}

#[test]
fn sanity_events_from_operation_header() {
    let creates = preset("sanity", json!({"events": ["create"]}));
    let body = fixture("sanity-document.json");
    let got = extract(&creates, &[("sanity-operation", "update")], &body);
    assert_eq!(got.ignored_event.as_deref(), Some("update"));
    assert_eq!(
        ids(&extract(&creates, &[("sanity-operation", "create")], &body)).len(),
        1
    );
    // Without the header the operation is unknown, so the delivery purges.
    assert_eq!(ids(&extract(&creates, &[], &body)).len(), 1);
}

#[test]
fn directus_keys_and_key() {
    let src = preset("directus", json!({}));
    let got = extract(&src, &[], &fixture("directus-flow-update.json"));
    assert_eq!(
        ids(&got),
        [
            "d0b7d0ff0d3f71f0bfd2e7f4b6a40101",
            "6512bd43d9caa6e02c990b0a82652dca"
        ]
    );
    assert_eq!(
        ids(&extract(&src, &[], &fixture("directus-flow-create.json"))),
        ["42"]
    );

    let creates = preset("directus", json!({"events": ["items.create"]}));
    assert_eq!(
        extract(&creates, &[], &fixture("directus-flow-update.json"))
            .ignored_event
            .as_deref(),
        Some("videos.items.update")
    );
    assert_eq!(
        ids(&extract(
            &creates,
            &[],
            &fixture("directus-flow-create.json")
        )),
        ["42"]
    );
}

#[test]
fn ghost_current_then_previous() {
    let src = preset("ghost", json!({}));
    assert_eq!(
        ids(&extract(&src, &[], &fixture("ghost-post-published.json"))),
        ["6742f0c2a1b2c3d4e5f60718"]
    );
    assert_eq!(
        ids(&extract(&src, &[], &fixture("ghost-post-deleted.json"))),
        ["6742f0c2a1b2c3d4e5f60718"]
    );
    let slug = preset("ghost", json!({"id_field": "slug"}));
    assert_eq!(
        ids(&extract(&slug, &[], &fixture("ghost-post-published.json"))),
        ["launch-keynote"]
    );
    let published_only = preset("ghost", json!({"events": ["post.published", "page.*"]}));
    let got = extract(&published_only, &[], &fixture("ghost-post-deleted.json"));
    assert_eq!(got.ignored_event.as_deref(), Some("post.deleted"));
    assert_eq!(
        ids(&extract(
            &published_only,
            &[],
            &fixture("ghost-post-published.json")
        ))
        .len(),
        1
    );
    let page = br#"{"page": {"current": {"id": "p1"}, "previous": {}}}"#;
    assert_eq!(ids(&extract(&src, &[], page)), ["p1"]);
}

#[test]
fn json_pointer_with_fixed_task_and_options() {
    let src = source(json!({
        "auth": "none", "format": "json-pointer",
        "pointers": ["/meta_data/*/value", "/extra"],
        "task": "RefreshThenPreload", "options": {"formats": ["m3u8"]}
    }));
    let body = br#"{"id": 812, "meta_data": [{"key": "vod_id", "value": "abc"}, {"key": "n", "value": 17}], "extra": ["abc", "def"]}"#;
    let got = extract(&src, &[], body);
    assert_eq!(ids(&got), ["abc", "17", "def"]);
    assert_eq!(got.requests[0].task, RequestedTask::RefreshThenPreload);
    assert_eq!(got.requests[0].options.formats, ["m3u8"]);
    assert_eq!(
        try_extract(&src, &[], br#"{"extra": {"a": 1}}"#).unwrap_err(),
        "invalid_payload"
    );
    assert!(extract(&src, &[], b"{}").requests.is_empty());
}

#[test]
fn native_source_uses_its_defaults() {
    let src = source(json!({"auth": "none", "format": "native", "task": "Preload"}));
    let got = extract(
        &src,
        &[],
        br#"[{"media_ids": ["a"]}, {"media_ids": ["b"], "task": "Refresh"}]"#,
    );
    assert_eq!(got.requests[0].task, RequestedTask::Preload);
    assert_eq!(got.requests[1].task, RequestedTask::Refresh);
    assert_eq!(
        try_extract(&src, &[], br#"{"media_ids": ["a"], "task": "Purge"}"#).unwrap_err(),
        "unknown_task"
    );
}

#[test]
fn every_format_refuses_non_json() {
    for format in [
        "native",
        "strapi",
        "contentful",
        "sanity",
        "directus",
        "ghost",
    ] {
        let src = preset(format, json!({}));
        assert_eq!(
            try_extract(
                &src,
                &[("X-Contentful-Topic", "Entry.publish")],
                b"{\"event\":"
            )
            .unwrap_err(),
            "malformed_json",
            "{format}"
        );
    }
}

#[test]
fn too_many_ids_from_a_preset() {
    let keys: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let body =
        serde_json::to_vec(&json!({"event": "items.update", "keys": keys})).unwrap_or_default();
    assert_eq!(
        try_extract(&preset("directus", json!({})), &[], &body).unwrap_err(),
        "too_many_ids"
    );
}
