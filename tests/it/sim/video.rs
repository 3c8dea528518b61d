//! `GetVideoInfo`: a video's cover and snapshots, on the account's first CDN domain.

use super::urls::purge;
use super::*;

fn video_params(id: Option<&str>) -> BTreeMap<String, String> {
    let mut params = common("GetVideoInfo", T0);
    if let Some(id) = id {
        params.insert("VideoId".to_owned(), id.to_owned());
    }
    params
}

#[tokio::test]
async fn a_known_video_has_a_cover_and_snapshots_on_the_first_cdn_domain() {
    let sim = fixed_sim(SimConfig {
        cdn_domains: vec![
            "media.example.com".to_owned(),
            "other.example.com".to_owned(),
        ],
        ..SimConfig::default()
    })
    .await;
    for method in ["GET", "POST"] {
        let answer = send(&sim, method, &video_params(Some("v1"))).await;
        assert_eq!(answer.status, 200, "{method}: {}", answer.body);
        assert!(
            answer.body["RequestId"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        let video = &answer.body["Video"];
        assert_eq!(video["VideoId"], "v1");
        assert_eq!(video["Status"], "Normal");
        assert!(video["Title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(video["Duration"].as_f64().is_some_and(|d| d > 0.0));
        assert_eq!(video["CreationTime"], "2025-01-01T00:00:00Z");
        assert_eq!(video["CoverURL"], "https://media.example.com/v1/cover.jpg");
        assert_eq!(
            video["Snapshots"]["Snapshot"],
            serde_json::json!([
                "https://media.example.com/v1/snapshots/1.jpg",
                "https://media.example.com/v1/snapshots/2.jpg"
            ])
        );
    }
    // What it names can be purged: its host is one of the account's domains.
    let answer = send(&sim, "GET", &video_params(Some("v2"))).await;
    let cover = answer.body["Video"]["CoverURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = answer.body["Video"]["Snapshots"]["Snapshot"][1]
        .as_str()
        .unwrap()
        .to_owned();
    let purged = purge(&sim, &[&cover, &snapshot], None).await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    sim.stop().await;
}

#[tokio::test]
async fn without_cdn_domains_the_host_is_cdn_example_com() {
    let sim = fixed_sim(SimConfig::default()).await;
    let answer = send(&sim, "POST", &video_params(Some("abc_DEF-123"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["Video"]["CoverURL"],
        "https://cdn.example.com/abc_DEF-123/cover.jpg"
    );
    assert_eq!(
        answer.body["Video"]["Snapshots"]["Snapshot"][0],
        "https://cdn.example.com/abc_DEF-123/snapshots/1.jpg"
    );
    sim.stop().await;
}

#[tokio::test]
async fn unknown_videos_and_missing_ids_are_refused() {
    let sim = fixed_sim(SimConfig {
        nonexistent: vec!["gone".to_owned()],
        ..SimConfig::default()
    })
    .await;
    let cases = [
        (video_params(Some("gone")), 404, "InvalidVideo.NotFound"),
        (
            video_params(Some("not/an/id")),
            404,
            "InvalidVideo.NotFound",
        ),
        (video_params(None), 400, "MissingParameter"),
        (video_params(Some(" ")), 400, "MissingParameter"),
    ];
    for (params, status, code) in cases {
        for method in ["GET", "POST"] {
            let mut params = params.clone();
            params.insert(
                "SignatureNonce".to_owned(),
                uuid::Uuid::new_v4().to_string(),
            );
            let answer = send(&sim, method, &params).await;
            assert_eq!(
                (answer.status, answer.code()),
                (status, code),
                "{method} {params:?}"
            );
        }
    }
    let calls = sim.calls();
    assert_eq!(calls.len(), 8);
    assert!(calls.iter().all(|c| c.action == "GetVideoInfo"));
    assert_eq!(calls[0].params["VideoId"], "gone");
    sim.stop().await;
}
