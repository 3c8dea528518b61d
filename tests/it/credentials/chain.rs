//! The chain's choices: bad sources named, `check-config`, the RRSA manifest.

use super::*;

/// The chain resolved as the application would at start.
async fn resolve(sim: &SimHandle, env: Environment, choice: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let settings = chain_settings(dir.path(), sim, env, choice);
    credentials::resolve_for(&settings.default_account().chain(&settings.environment))
        .await
        .map(|(r, _)| r.provider.to_string())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn bad_credential_sources_are_named_and_auto_goes_on() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("broken.json"), "{\"profiles\": [").unwrap();
    std::fs::write(path("broken.ini"), "[default\ntype = access_key\n").unwrap();
    std::fs::write(
        path("odd.json"),
        r#"{"current": "x", "profiles": [{"name": "x", "mode": "Telepathy"}]}"#,
    )
    .unwrap();
    std::fs::write(path("empty-token"), "  \n").unwrap();
    std::fs::write(path("token"), "eyJ.token.sig").unwrap();
    let no_ecs = Environment::from_pairs([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);

    let cli = |file: &str| {
        no_ecs
            .clone()
            .with_var("ALIBABA_CLOUD_CONFIG_FILE", &path(file))
    };
    let err = resolve(&sim, cli("broken.json"), "cli-profile")
        .await
        .unwrap_err();
    assert!(
        err.contains("cli-profile: ") && err.contains("broken.json is not a CLI configuration"),
        "{err}"
    );
    let err = resolve(&sim, cli("odd.json"), "cli-profile")
        .await
        .unwrap_err();
    assert!(
        err.contains("odd.json profile \"x\": unknown mode \"Telepathy\""),
        "{err}"
    );
    let ini = no_ecs
        .clone()
        .with_var("ALIBABA_CLOUD_CREDENTIALS_FILE", &path("broken.ini"));
    let err = resolve(&sim, ini, "credentials-file").await.unwrap_err();
    assert!(
        err.contains("credentials-file: ") && err.contains("broken.ini is not an INI file"),
        "{err}"
    );

    let oidc = |token: &str| oidc_env(Path::new(&path(token)));
    let err = resolve(&sim, oidc("empty-token"), "oidc")
        .await
        .unwrap_err();
    assert!(
        err.contains("oidc: ") && err.contains("empty-token is empty"),
        "{err}"
    );
    sim.set_faults(Faults {
        sts_error_code: Some("AuthenticationFail.OIDCToken.Expired".into()),
        ..Faults::default()
    });
    let err = resolve(&sim, oidc("token"), "oidc").await.unwrap_err();
    assert!(
        err.contains(
            "STS AssumeRoleWithOIDC: AuthenticationFail.OIDCToken.Expired (HTTP 400 from 127.0.0.1:"
        ),
        "{err}"
    );
    sim.set_faults(Faults {
        metadata_code: Some("Failed".into()),
        ..Faults::default()
    });
    let err = resolve(&sim, Environment::default(), "ecs-ram-role")
        .await
        .unwrap_err();
    assert!(
        err.contains("ecs-ram-role: role \"vod-purge-role\": the answer's Code is \"Failed\""),
        "{err}"
    );
    sim.set_faults(Faults::default());
    let missing_role = Environment::from_pairs([("ALIBABA_CLOUD_ECS_METADATA", "no-such-role")]);
    let err = resolve(&sim, missing_role, "ecs-ram-role")
        .await
        .unwrap_err();
    assert!(
        err.contains("no RAM role \"no-such-role\" (metadata service: HTTP 404)"),
        "{err}"
    );

    // `auto` passes over the broken CLI file and the broken OIDC setup, and takes the INI file.
    std::fs::write(
        path("good.ini"),
        "[default]\ntype = access_key\naccess_key_id = testid\naccess_key_secret = testsecret\n",
    )
    .unwrap();
    let env = oidc("empty-token")
        .with_var("ALIBABA_CLOUD_CONFIG_FILE", &path("broken.json"))
        .with_var("ALIBABA_CLOUD_CREDENTIALS_FILE", &path("good.ini"));
    assert_eq!(
        resolve(&sim, env, "auto").await,
        Ok("credentials-file".to_owned())
    );
    // And with nothing that works, the error lists every provider.
    let err = resolve(&sim, cli("broken.json"), "auto").await.unwrap_err();
    for provider in [
        "config: not configured",
        "env: not configured",
        "oidc: not configured",
        "cli-profile: ",
        "credentials-file: not configured",
        "ecs-ram-role: not configured",
        "credentials-uri: not configured",
    ] {
        assert!(err.contains(provider), "{err} lacks {provider}");
    }
    sim.stop().await;
}

#[test]
fn check_config_says_which_provider_was_chosen_and_why_not_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[server]\nadmin_token = \"t\"\n").unwrap();
    let out = crate::support::check_config(
        &path,
        [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tExample".to_owned()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "never-printed-secret".to_owned(),
            ),
        ],
    );
    let stdout = &out.stdout;
    assert!(out.success, "{}", out.stderr);
    assert!(
        stdout.contains("# credentials [default]: config skipped: not configured: vod.access_key_id and vod.access_key_secret are empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# credentials [default]: using env (AccessKey LTAI5tExample)"),
        "{stdout}"
    );
    assert!(!stdout.contains("never-printed-secret"), "{stdout}");
}

/// The `env` entries of a manifest's container with literal values (`- name:` then `value:`).
fn manifest_env(path: &str) -> Vec<(String, String)> {
    let yaml = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let name = pair[0]
                .strip_prefix("- name: ")?
                .split_whitespace()
                .next()?;
            let value = pair[1].strip_prefix("value: ")?.trim_matches('"');
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The ACK manifest's variables, with its ConfigMap, make the service assume the role through
/// RRSA (STS and the token file redirected to the simulator and a temporary file).
#[tokio::test]
async fn the_rrsa_manifest_configures_the_oidc_provider() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.projected.sig").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::ops::configmap_config("ack-rrsa")).unwrap();
    let env = manifest_env("k8s/ack-rrsa/deployment.yaml");
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for needed in [
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "VOD_PURGE_VOD__CREDENTIALS",
    ] {
        assert!(
            names.contains(&needed),
            "{needed} is not in the manifest: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("ACCESS_KEY")),
        "no AccessKey: {names:?}"
    );
    let sts = format!("{}/sts", sim.base_url());
    let token = token.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        // The test's values come last and win over the manifest's.
        let mut vars: Vec<(&str, String)> =
            env.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        vars.extend([
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token),
            ("VOD_PURGE_VOD__STS_ENDPOINT", sts),
            (
                "CMS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            ),
            ("VOD_PURGE_STORE__URL", "postgres://vod@db/vod".to_owned()),
        ]);
        crate::support::check_config(&config, vars)
    })
    .await
    .unwrap();
    let stdout = &out.stdout;
    assert!(out.success, "{}", out.stderr);
    assert!(
        stdout.contains("# credentials [default]: using oidc (AssumeRoleWithOIDC of acs:ram::"),
        "{stdout}"
    );
    let sts = calls_of(&sim, "AssumeRoleWithOIDC");
    assert_eq!(sts.len(), 1);
    assert_eq!(sts[0].params["OIDCToken"], "eyJ.projected.sig");
    sim.stop().await;
}

/// The aliyun CLI writes `"expired_seconds": 0` when no duration was given; STS refuses
/// `DurationSeconds=0`, and the official libraries read 0 as the default hour.
#[tokio::test]
async fn a_cli_profile_with_expired_seconds_0_asks_sts_for_an_hour() {
    let sim = sim::start(sim_config(Duration::from_secs(3600)))
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    let profile = |mode: &str, extra: serde_json::Value| {
        let mut profile = json!({"name": "role", "mode": mode, "ram_role_arn": ROLE,
            "ram_session_name": "cli-zero", "expired_seconds": 0});
        for (k, v) in extra.as_object().unwrap() {
            profile[k] = v.clone();
        }
        profile
    };
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "eyJ.cli-token.sig").unwrap();
    let cases = [
        (
            "AssumeRole",
            profile(
                "RamRoleArn",
                json!({"access_key_id": "testid", "access_key_secret": "testsecret"}),
            ),
        ),
        (
            "AssumeRoleWithOIDC",
            profile(
                "OIDC",
                json!({"oidc_provider_arn": OIDC_PROVIDER, "oidc_token_file": token_file}),
            ),
        ),
    ];
    for (action, profile) in cases {
        sim.clear_calls();
        std::fs::write(
            home.path().join(".aliyun/config.json"),
            json!({"current": "role", "profiles": [profile]}).to_string(),
        )
        .unwrap();
        let env = Environment::default().with_home(home.path());
        assert_eq!(
            resolve(&sim, env, "cli-profile").await,
            Ok("cli-profile".to_owned()),
            "{action}"
        );
        let calls = calls_of(&sim, action);
        assert_eq!(calls.len(), 1, "{action}: {calls:?}");
        assert_eq!(calls[0].status, 200, "{action}: {calls:?}");
        assert_eq!(calls[0].params["DurationSeconds"], "3600", "{action}");
    }
    sim.stop().await;
}
