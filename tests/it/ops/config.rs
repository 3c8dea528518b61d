//! `check-config` on the real binary.

use super::*;

#[test]
fn check_config_names_the_wrong_key_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[vod]\nmax_requests_per_second = 80\ndry_run = true\n",
            "vod.max_requests_per_second",
        ),
        (
            "[vod]\ndry_run = true\n[queue]\nquiet = \"two seconds\"\n",
            "queue.quiet",
        ),
        (
            "[vod]\ndry_run = true\n[server]\nlisten_on = \"x\"\n",
            "listen_on",
        ),
        (
            "[vod]\nregion = \"cn-shanghai\"\n",
            "no credential for VOD: no provider of the default chain produced one; config: not configured: vod.access_key_id",
        ),
        (
            "[vod]\ndry_run = true\n[[sources]]\nname = \"cms\"\nauth = \"hmac\"\nsecrets = [\"s\"]\nformat = \"native\"\n",
            "header",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = binary()
            .args(["check-config", "--config"])
            .arg(&path)
            .env_clear()
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(key), "{text:?}: {stderr}");
    }
    // An account's keys from the environment; a variable naming no account stops the start.
    let accounts = dir.path().join("accounts.toml");
    std::fs::write(
        &accounts,
        "[vod]\ndry_run = true\n[[accounts]]\nname = \"cn-prod\"\ndry_run = true\n",
    )
    .unwrap();
    let stdout = stdout_of(
        binary()
            .args(["check-config", "--config"])
            .arg(&accounts)
            .env_clear()
            .env("VOD_PURGE_ACCOUNTS__CN_PROD__MAX_REQUESTS_PER_SECOND", "7")
            .env("VOD_PURGE_ACCOUNTS__CN_PROD__ACCESS_KEY_ID", "envid")
            .env(
                "VOD_PURGE_ACCOUNTS__CN_PROD__ACCESS_KEY_SECRET",
                "envsecret",
            ),
    );
    assert!(stdout.contains("max_requests_per_second = 7"), "{stdout}");
    assert!(
        stdout.contains("envid") && !stdout.contains("envsecret"),
        "{stdout}"
    );
    for (variable, wanted) in [
        (
            "VOD_PURGE_ACCOUNTS__INTL__REGION",
            "names no [[accounts]] table",
        ),
        (
            "VOD_PURGE_ACCOUNTS__CN_PROD__NAME",
            "not by the environment",
        ),
        ("VOD_PURGE_ACCOUNTS__CN_PROD__MAX_HOLD", "max_hold"),
    ] {
        let out = binary()
            .args(["check-config", "--config"])
            .arg(&accounts)
            .env_clear()
            .env(variable, "default")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{variable} was accepted");
        assert!(stderr.contains(wanted), "{variable}: {stderr}");
    }
    // A single `_` where `__` belongs is named, with the fix.
    let path = dir.path().join("plain.toml");
    std::fs::write(&path, "[vod]\ndry_run = true\n").unwrap();
    let out = binary()
        .args(["check-config", "--config"])
        .arg(&path)
        .env_clear()
        .env("VOD_PURGE_QUEUE_QUIET", "5s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("queue_quiet") && stderr.contains("VOD_PURGE_QUEUE__QUIET"),
        "{stderr}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[vod]\naccess_key_id = \"id\"\naccess_key_secret = \"hunter2\"\n[[sources]]\nname = \"cms\"\nauth = \"bearer\"\nsecrets = [\"tok3n\"]\nformat = \"native\"\n",
    )
    .unwrap();
    let stdout = stdout_of(
        binary()
            .args(["check-config", "--config"])
            .arg(&good)
            .env_clear(),
    );
    assert!(stdout.contains("max_requests_per_second = 50"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("tok3n"),
        "secrets leaked:\n{stdout}"
    );
    assert!(stdout.contains("<redacted>"));
}
