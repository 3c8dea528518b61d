//! Renewal: credentials that expire while traffic flows, an expired-token answer, STS down.

use super::*;

/// Posts webhooks, each with a new ID and about 100 ms apart, until `done` says the events the
/// test waits for have happened (at most 60 s); returns the IDs. Every one must be accepted.
async fn stream_webhooks(
    app: &TestApp,
    prefix: &str,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Vec<String> {
    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let id = format!("{prefix}-{}", accepted.len());
        let status = app.webhook(json!({"media_ids": [id]})).await.status();
        assert_eq!(status, 202, "{id}");
        accepted.push(id);
        if done() {
            return accepted;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "60 s of webhooks without {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// The keys the successful purge calls were signed with.
fn signing_keys(app: &TestApp) -> std::collections::HashSet<String> {
    app.successful_calls()
        .into_iter()
        .map(|c| c.access_key_id)
        .collect()
}

#[tokio::test]
async fn credentials_that_live_three_seconds_while_webhooks_stream() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    // Webhooks flow until five credentials have been used for purges: four renewals under
    // traffic, however long the machine takes.
    let accepted = stream_webhooks(&app, "stream", "purges signed with 5 keys", || {
        signing_keys(&app).len() >= 5
    })
    .await;
    wait_all_purged(&app, &accepted).await;
    let issued = assert_renewed_before_expiry(&app.sim);
    assert!(issued >= 5, "{issued} keys issued");
    assert_eq!(
        calls_of(&app.sim, "AssumeRoleWithOIDC")
            .iter()
            .filter(|c| c.status == 200)
            .count(),
        issued,
        "each key from one STS call"
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
async fn sts_down_while_the_credential_runs_out() {
    let (app, _) = rrsa_app(Duration::from_secs(3), "oidc", "eyJ.token.sig", |_| {}).await;
    purge_one(&app, "before").await;
    app.sim.set_faults(Faults {
        sts_error_code: Some("ServiceUnavailable/503".into()),
        ..Faults::default()
    });
    // Webhooks flow until the credential held has expired and three renewals have failed.
    let expires_ms = app
        .sim
        .issued_keys()
        .last()
        .map(|(_, key)| key.expires_ms)
        .expect("the first credential");
    let refused = |app: &TestApp| {
        calls_of(&app.sim, "AssumeRoleWithOIDC")
            .into_iter()
            .filter(|c| c.status == 503)
            .count()
    };
    let accepted = stream_webhooks(
        &app,
        "outage",
        "an expired credential and three failed renewals",
        || vod_purge::domain::Ts::now().0 > expires_ms && refused(&app) >= 3,
    )
    .await;
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
            .contains(r#"vod_purge_credential_renewals_total{account="default",provider="oidc",result="failure"}"#),
        "{metrics}"
    );
    app.stop().await;
}
