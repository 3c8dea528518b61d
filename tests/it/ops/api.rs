//! The API as an operator reads it: the OpenAPI document, request IDs, metrics.

use super::*;

#[tokio::test]
async fn every_route_answers_and_is_in_the_openapi_document() {
    let app = spawn_app(Spawn::default()).await;
    let doc = app.get_json("/openapi.json").await;
    for (method, path) in vod_purge::api::ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in /openapi.json");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
        let concrete = path.replace("{source}", "cms").replace("{id}", "x");
        let url = format!("{}{concrete}", app.address);
        let request = match *method {
            "get" => app.http.get(url),
            _ => app
                .http
                .post(url)
                .header("content-type", "application/json")
                .body("{}"),
        };
        let response = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        // Unrouted requests get 405 (known path) or a 404 with code not_found.
        assert!(
            status != 405 && !body.contains("\"not_found\""),
            "{method} {path} is not routed: {status} {body}"
        );
    }
    let documented = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum::<usize>();
    assert_eq!(
        documented,
        vod_purge::api::ROUTES.len(),
        "the document lists a route that is not registered"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn a_callers_request_id_is_returned() {
    let app = spawn_app(Spawn::default()).await;
    let id_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let url = format!("{}/healthz", app.address);
    // The caller's own is returned, on errors too.
    let given = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .header("x-request-id", "ingress-7f3a:1.2_x")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status().as_u16(), 401);
    assert_eq!(id_of(&given).as_deref(), Some("ingress-7f3a:1.2_x"));
    // None given, or one that is not a short token: none is made up.
    let long = "x".repeat(129);
    for sent in [None, Some("two words"), Some(long.as_str())] {
        let mut request = app.http.get(&url);
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(id_of(&response), None, "{sent:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_deliveries_calls_and_queue() {
    let app = spawn_app(Spawn::default()).await;
    assert_eq!(
        app.purge(json!({"media_ids": ["m1", "m2", "bad,id"]}))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.webhook(json!({"media_ids": ["m1"]})).await.status(),
        202
    );
    let refused = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    wait_until(Duration::from_secs(10), "the call", || async {
        app.successful_calls().len() == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "metrics", || async {
        let text = app.metrics().await;
        crate::support::has_sample(
            &text,
            r#"vod_purge_vod_calls_total{account="default",code="",outcome="success"} 1"#,
        )
    })
    .await;
    // No token needed for metrics.
    let text = app.metrics().await;
    for line in [
        r#"vod_purge_deliveries_total{outcome="accepted",source="admin"} 1"#,
        r#"vod_purge_deliveries_total{outcome="accepted",source="cms"} 1"#,
        r#"vod_purge_deliveries_total{outcome="missing_token",source="cms"} 1"#,
        r#"vod_purge_media_ids_total{result="accepted"} 2"#,
        r#"vod_purge_media_ids_total{result="merged"} 1"#,
        r#"vod_purge_media_ids_total{result="rejected"} 1"#,
        r#"vod_purge_batch_size_count 1"#,
        r#"vod_purge_jobs_finished_total{account="default",status="succeeded"} 1"#,
        r#"vod_purge_queue_pending_items{account="default"} 0"#,
        "vod_purge_vod_call_duration_seconds_bucket",
        "vod_purge_rate_limiter_wait_seconds_total",
    ] {
        assert!(
            crate::support::has_sample(&text, line),
            "missing {line:?} in\n{text}"
        );
    }
    app.stop().await;
}
