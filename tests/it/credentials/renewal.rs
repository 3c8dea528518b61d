//! Renewal: credentials that expire while traffic flows, an expired-token answer, STS down.

use super::*;

/// Posts one webhook per 100 ms for `seconds`, each with a new ID; returns the accepted IDs.
async fn stream_webhooks(app: &TestApp, prefix: &str, seconds: u64) -> Vec<String> {
    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let id = format!("{prefix}-{n}");
        n += 1;
        if app.webhook(json!({"media_ids": [id]})).await.status() == 202 {
            accepted.push(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    accepted
}

async fn wait_all_purged(app: &TestApp, ids: &[String]) {
    wait_until(
        Duration::from_secs(30),
        "every accepted ID to be purged",
        || async {
            let sent: std::collections::HashSet<String> = app
                .successful_calls()
                .into_iter()
                .flat_map(|c| c.media_ids)
                .collect();
            ids.iter().all(|id| sent.contains(id))
        },
    )
    .await;
}

#[tokio::test]
async fn credentials_that_live_three_seconds_while_webhooks_stream_for_twenty() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    let accepted = stream_webhooks(&app, "stream", 20).await;
    assert!(accepted.len() >= 150, "only {} accepted", accepted.len());
    wait_all_purged(&app, &accepted).await;
    let renewals = calls_of(&app.sim, "AssumeRoleWithOIDC").len();
    assert!(
        renewals >= 8,
        "{renewals} credentials in 20 s of 3-second ones"
    );
    let keys: std::collections::HashSet<String> = app
        .successful_calls()
        .into_iter()
        .map(|c| c.access_key_id)
        .collect();
    assert!(
        keys.len() >= 5,
        "calls were signed with {} keys",
        keys.len()
    );
    assert_no_expired_token_was_sent(&app);
    app.stop().await;
}

async fn job_attempts(app: &TestApp, id: &str) -> serde_json::Value {
    let page = app.get_json(&format!("/jobs?media_id={id}")).await;
    page["jobs"][0]["attempts"].clone()
}

#[tokio::test]
async fn an_expired_token_answer_renews_and_resends_once_without_spending_an_attempt() {
    // No quota poll: the injected answer is for the purge call.
    let no_quota_poll =
        |s: &mut vod_purge::config::Settings| s.vod.quota_poll_interval = Duration::ZERO;
    let (app, _) = rrsa_app(
        Duration::from_secs(3600),
        "oidc",
        "eyJ.token.sig",
        no_quota_poll,
    )
    .await;
    // VOD's clock says the token has expired, though its Expiration is an hour away.
    app.sim.set_faults(Faults {
        fail_next: 1,
        error_code: "InvalidSecurityToken.Expired".into(),
        ..Faults::default()
    });
    let sent = purge_one(&app, "refused-once").await;
    let refresh = app.refresh_calls();
    assert_eq!(
        refresh.len(),
        2,
        "one refused call and one resend: {refresh:?}"
    );
    assert_eq!(
        refresh[0].code.as_deref(),
        Some("InvalidSecurityToken.Expired")
    );
    assert_ne!(
        refresh[0].access_key_id, sent.access_key_id,
        "re-signed with a new key"
    );
    assert_eq!(
        calls_of(&app.sim, "AssumeRoleWithOIDC").len(),
        2,
        "one forced renewal"
    );
    assert_eq!(job_attempts(&app, "refused-once").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn sts_down_for_ten_seconds_while_the_credential_runs_out() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    purge_one(&app, "before").await;
    app.sim.set_faults(Faults {
        sts_error_code: Some("ServiceUnavailable/503".into()),
        ..Faults::default()
    });
    let accepted = stream_webhooks(&app, "outage", 10).await;
    let during: Vec<_> = calls_of(&app.sim, "AssumeRoleWithOIDC")
        .into_iter()
        .filter(|c| c.status == 503)
        .collect();
    assert!(during.len() >= 3, "renewals were retried: {}", during.len());
    app.sim.set_faults(Faults::default());
    wait_all_purged(&app, &accepted).await;
    let failed = app.get_json("/jobs?status=failed").await;
    assert_eq!(failed["jobs"], json!([]), "no job failed");
    assert_no_expired_token_was_sent(&app);
    for id in [&accepted[0], accepted.last().unwrap()] {
        assert_eq!(job_attempts(&app, id).await, 1, "{id}");
    }
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"vod_purge_credential_renewals_total{provider="oidc",result="failure"}"#),
        "{metrics}"
    );
    app.stop().await;
}
