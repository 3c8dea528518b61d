//! What the service takes from the services it calls: no redirect followed (it would carry a
//! signed query or the metadata token to another host), no answer read past its cap.

use std::path::PathBuf;
use std::time::Duration;

use vod_purge::credentials::fetch::Fetcher;
use vod_purge::credentials::{AssumedRole, Credentials, EcsRole, OidcRole, Plan, ProviderName};
use vod_purge::vod::{Client, ClientConfig, VodError};

use super::{Answer, Canned};

const ROLE: &str = "acs:ram::1234567890123456:role/vod-purge";
const METADATA_TOKEN: &str = "imds-token-0123456789";

fn vod_client(endpoint: &str) -> Client {
    Client::new(ClientConfig {
        endpoint: endpoint.to_owned(),
        timeout: Duration::from_secs(10),
        credentials: Credentials::new("STS.id", "secret", Some("CAIS-token-0123456789".into()))
            .into(),
    })
    .unwrap()
}

/// The credential plans that call out, each with the provider it belongs to; `endpoint` is the
/// server they call (STS, the metadata service or the credentials URI).
fn credential_plans(endpoint: &str, token_file: PathBuf) -> Vec<(ProviderName, Plan)> {
    vec![
        (
            ProviderName::Oidc,
            Plan::Oidc(OidcRole {
                role_arn: ROLE.into(),
                provider_arn: "acs:ram::1:oidc-provider/p".into(),
                token_file,
                session_name: "bounds-test".into(),
                duration_secs: 3600,
                policy: None,
                sts_endpoint: Some(format!("{endpoint}/sts")),
            }),
        ),
        (
            ProviderName::CliProfile,
            Plan::AssumeRole(AssumedRole {
                base: Box::new(Plan::Fixed(Credentials::new(
                    "STS.base",
                    "base-secret",
                    Some("CAIS-base-token-0123456789".into()),
                ))),
                role_arn: ROLE.into(),
                session_name: "bounds-test".into(),
                duration_secs: 3600,
                policy: None,
                external_id: None,
                sts_endpoint: Some(format!("{endpoint}/sts")),
            }),
        ),
        (
            ProviderName::EcsRamRole,
            Plan::EcsRamRole(EcsRole {
                role: Some("vod-purge-role".into()),
                imdsv1_disabled: false,
            }),
        ),
        (
            ProviderName::CredentialsUri,
            Plan::Uri(format!("{endpoint}/credentials?token=uri-token-0123456789")),
        ),
    ]
}

fn token_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "eyJ.oidc-token.sig").unwrap();
    (dir, path)
}

#[tokio::test]
async fn no_redirect_is_followed() {
    // Another host: what a redirect would reach.
    let elsewhere = Canned::start(|_| Answer::Text("{}")).await;
    let location = format!("http://localhost:{}/stolen", elsewhere.port());
    let target = location.clone();
    let redirector = Canned::start(move |line| {
        if line.starts_with("PUT /latest/api/token") {
            Answer::Text(METADATA_TOKEN)
        } else {
            Answer::Redirect(target.clone())
        }
    })
    .await;
    let base = redirector.base_url();

    let err = vod_client(&base)
        .describe_vod_refresh_quota()
        .await
        .unwrap_err();
    assert!(
        matches!(err, VodError::Malformed { status: 302, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("redirect"), "{err}");

    let (_dir, token_file) = token_file();
    let fetcher = Fetcher::new(&format!("{base}/sts"), &base).unwrap();
    for (provider, plan) in credential_plans(&base, token_file) {
        let err = fetcher.fetch(provider, &plan).await.unwrap_err();
        assert!(err.to_string().contains("302"), "{provider}: {err}");
    }
    // The metadata service was asked with its token, which went nowhere else.
    assert!(
        redirector
            .heads()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains(METADATA_TOKEN)),
        "{:?}",
        redirector.heads()
    );
    assert_eq!(
        elsewhere.heads(),
        Vec::<String>::new(),
        "a redirect was followed"
    );
}

#[tokio::test]
async fn an_answer_past_its_cap_is_not_read() {
    for declared in [None, Some(512 * 1024 * 1024)] {
        let endless = Canned::start(move |line| {
            if line.starts_with("PUT /latest/api/token") {
                Answer::Text(METADATA_TOKEN)
            } else {
                Answer::Endless { declared }
            }
        })
        .await;
        let base = endless.base_url();
        let host = base.trim_start_matches("http://");

        let err = vod_client(&base)
            .describe_vod_refresh_quota()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("the answer from {host} is larger than 1 MiB")),
            "{declared:?}: {text}"
        );

        let (_dir, token_file) = token_file();
        let fetcher = Fetcher::new(&format!("{base}/sts"), &base).unwrap();
        for (provider, plan) in credential_plans(&base, token_file) {
            let err = fetcher
                .fetch(provider, &plan)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "the answer from {host} (HTTP 200) is larger than 64 KiB"
                )),
                "{provider} {declared:?}: {err}"
            );
        }
        // Five readers gave up early: far less went out than one endless answer would send.
        let written = endless.written();
        assert!(
            written < 64 * 1024 * 1024,
            "{declared:?}: {written} bytes were written"
        );
    }
}
