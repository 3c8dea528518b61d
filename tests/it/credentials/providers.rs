//! Each provider of the chain obtains its credential, and the service purges with it.

use super::*;

#[tokio::test]
async fn static_keys_from_the_configuration_and_the_environment() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db").to_string_lossy().into_owned();
    // The configuration's keys come first, even with the variables set.
    let mut configured = settings(&db, &sim.base_url(), "");
    configured.environment = Environment::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "other"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "other-secret"),
    ]);
    let app = spawn_with_settings(configured, sim).await;
    assert_eq!(
        purge_one(&app, "static-config").await.access_key_id,
        "testid"
    );
    let (sim, _) = app.stop().await;

    let env = Environment::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
    ]);
    let app = spawn_chain(sim, env, "auto").await;
    assert_eq!(purge_one(&app, "static-env").await.access_key_id, "testid");
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("vod_purge_credential_expiry_seconds{account=\"default\","),
        "keys that do not expire have no expiry: {metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rrsa_renews_before_expiry_and_reads_the_token_file_again() {
    let (app, token_file) = rrsa_app(
        Duration::from_secs(3),
        "auto",
        "eyJ.first-token.sig
",
        |_| {},
    )
    .await;
    let first = purge_one(&app, "rrsa-1").await;
    assert!(first.access_key_id.starts_with("STS."), "{first:?}");
    assert!(first.params.contains_key("SecurityToken"));

    // A 3-second credential is renewed after about 1.5 s.
    wait_until(Duration::from_secs(10), "a renewal", || async {
        calls_of(&app.sim, "AssumeRoleWithOIDC").len() >= 2
    })
    .await;
    std::fs::write(&token_file, "eyJ.second-token.sig\n").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the new token to be sent",
        || async {
            calls_of(&app.sim, "AssumeRoleWithOIDC")
                .iter()
                .any(|c| c.params["OIDCToken"] == "eyJ.second-token.sig")
        },
    )
    .await;
    let sts_calls = calls_of(&app.sim, "AssumeRoleWithOIDC");
    let first_call = &sts_calls[0];
    assert_eq!(first_call.params["RoleArn"], ROLE);
    assert_eq!(first_call.params["OIDCProviderArn"], OIDC_PROVIDER);
    assert_eq!(first_call.params["RoleSessionName"], "vod-purge-test");
    assert_eq!(first_call.params["OIDCToken"], "eyJ.first-token.sig");
    assert!(!first_call.params.contains_key("AccessKeyId"), "unsigned");

    let later = purge_one(&app, "rrsa-2").await;
    assert_ne!(later.access_key_id, first.access_key_id, "a renewed key");
    assert_no_expired_token_was_sent(&app);
    assert!(
        assert_renewed_before_expiry(&app.sim) >= 3,
        "the first key and two renewals"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"vod_purge_credential_renewals_total{account="default",provider="oidc",result="success"}"#),
        "{metrics}"
    );
    let left = crate::support::metric_value(
        &metrics,
        r#"vod_purge_credential_expiry_seconds{account="default",provider="oidc"}"#,
    );
    assert!(left > 0.0 && left <= 3.0, "seconds left: {left}");
    app.stop().await;
}

#[tokio::test]
async fn the_instance_ram_role_with_imdsv2_required_and_with_imdsv1_only() {
    for (mode, auth) in [(ImdsMode::V2Required, "v2"), (ImdsMode::V1Only, "v1")] {
        let sim = sim::start(SimConfig {
            imds: mode,
            ..sim_config(Duration::from_secs(3600))
        })
        .await
        .unwrap();
        // `auto` with nothing else configured ends at the metadata service; the role is
        // discovered.
        let app = spawn_chain(sim, Environment::default(), "auto").await;
        let call = purge_one(&app, "ecs").await;
        assert!(call.access_key_id.starts_with("STS."), "{mode:?}");
        let reads = calls_of(&app.sim, "ImdsCredentials");
        assert_eq!(reads[0].params["role"], "vod-purge-role", "{mode:?}");
        assert_eq!(reads[0].params["auth"], auth, "{mode:?}");
        assert_eq!(calls_of(&app.sim, "ImdsRole")[0].params["auth"], auth);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_profile_modes_and_the_credentials_file_types() {
    // The simulator also accepts the fixed STS key of the `sts` profile.
    let mut sim = sim::start(SimConfig {
        accounts: vec![
            sim::Account::new("testid", "testsecret"),
            sim::Account::sts("STS.fixed", "fixedsecret", vec!["fixed-token".into()]),
        ],
        ..sim_config(Duration::from_secs(3600))
    })
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("oidc-token");
    std::fs::write(&token_file, "eyJ.ini-token.sig").unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    std::fs::write(
        home.path().join(".aliyun/config.json"),
        json!({
            "current": "ak",
            "profiles": [
                {"name": "ak", "mode": "AK", "access_key_id": "testid", "access_key_secret": "testsecret"},
                {"name": "sts", "mode": "StsToken", "access_key_id": "STS.fixed", "access_key_secret": "fixedsecret", "sts_token": "fixed-token"},
                {"name": "role", "mode": "RamRoleArn", "access_key_id": "testid", "access_key_secret": "testsecret",
                 "ram_role_arn": ROLE, "ram_session_name": "cli-role", "expired_seconds": 900}
            ]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(home.path().join(".alibabacloud")).unwrap();
    std::fs::write(
        home.path().join(".alibabacloud/credentials.ini"),
        format!(
            "[default]\ntype = access_key\naccess_key_id = testid\naccess_key_secret = testsecret\n\n\
             [role]\ntype = ram_role_arn\naccess_key_id = testid\naccess_key_secret = testsecret\nrole_arn = {ROLE}\nrole_session_name = ini-role\n\n\
             [oidc]\ntype = oidc_role_arn\noidc_provider_arn = {OIDC_PROVIDER}\noidc_token_file_path = {}\nrole_arn = {ROLE}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let env = |profile: &str| {
        Environment::default()
            .with_home(home.path())
            .with_var("ALIBABA_CLOUD_PROFILE", profile)
    };
    // (choice, profile, what the purge call is signed with, the STS call it took)
    let cases = [
        ("cli-profile", "ak", "testid", None),
        ("cli-profile", "sts", "STS.fixed", None),
        ("cli-profile", "role", "STS.", Some("AssumeRole")),
        ("credentials-file", "default", "testid", None),
        ("credentials-file", "role", "STS.", Some("AssumeRole")),
        (
            "credentials-file",
            "oidc",
            "STS.",
            Some("AssumeRoleWithOIDC"),
        ),
    ];
    for (choice, profile, signed_with, sts_action) in cases {
        sim.clear_calls();
        let app = spawn_chain(sim, env(profile), choice).await;
        let call = purge_one(&app, "profile").await;
        assert!(
            call.access_key_id.starts_with(signed_with),
            "{choice} {profile}: {call:?}"
        );
        if let Some(action) = sts_action {
            let sts = calls_of(&app.sim, action);
            assert_eq!(sts.len(), 1, "{choice} {profile}");
            assert_eq!(sts[0].status, 200, "{choice} {profile}: {sts:?}");
            assert_eq!(sts[0].params["RoleArn"], ROLE);
            if action == "AssumeRole" {
                // Signed with the profile's key, and the simulator checked the signature.
                assert_eq!(sts[0].access_key_id, "testid");
            }
        }
        (sim, _) = app.stop().await;
    }
}

#[tokio::test]
async fn a_credentials_uri() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let uri = format!("{}/_sim/credentials", sim.base_url());
    let env = Environment::from_pairs([("ALIBABA_CLOUD_CREDENTIALS_URI", uri.as_str())]);
    let app = spawn_chain(sim, env, "credentials-uri").await;
    let call = purge_one(&app, "uri").await;
    assert!(call.access_key_id.starts_with("STS."));
    assert_eq!(calls_of(&app.sim, "CredentialsUri").len(), 1);
    app.stop().await;
}
