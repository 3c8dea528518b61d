//! The two profile files of the chain, read into a [`Plan`]: the CLI's `config.json` and the
//! SDKs' `credentials.ini`. Pure: the caller reads the file and passes its text, its path (for
//! messages) and the environment.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    AssumedRole, CredentialError, Credentials, EcsRole, Environment, OidcRole, Plan, ProviderName,
};

/// `DurationSeconds` when a profile names none (STS's default, the longest a role allows by
/// default).
pub const DEFAULT_DURATION_SECS: u32 = 3600;

/// A CLI profile's `expired_seconds` as `DurationSeconds`. The CLI writes `0` when none was
/// given, and STS refuses `DurationSeconds=0`: absent and `0` both mean the default, as in the
/// official libraries.
fn duration_secs(expired_seconds: Option<u32>) -> u32 {
    expired_seconds
        .filter(|secs| *secs > 0)
        .unwrap_or(DEFAULT_DURATION_SECS)
}

/// The `RoleSessionName` when none is configured: a prefix and the time, as the libraries do.
pub fn default_session_name(now_secs: i64) -> String {
    format!("vod-purge-{now_secs}")
}

/// The role session name as STS accepts it: `^[a-zA-Z0-9.@_-]+$`, 2 to 32 characters.
pub fn check_session_name(provider: ProviderName, name: &str) -> Result<(), CredentialError> {
    let valid = (2..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(CredentialError::new(
            provider,
            format!("role session name {name:?} must be 2 to 32 of A-Z a-z 0-9 . @ _ -"),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

/// One profile of `~/.aliyun/config.json`; the CLI writes many more fields, which are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CliProfile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_arn: String,
    ram_session_name: String,
    expired_seconds: Option<u32>,
    sts_region: String,
    ram_role_name: String,
    oidc_token_file: String,
    oidc_provider_arn: String,
    source_profile: String,
    external_id: String,
}

/// The plan of the selected profile of a CLI `config.json`: `ALIBABA_CLOUD_PROFILE`, else the
/// file's `current`.
pub fn cli_profile(
    text: &str,
    path: &Path,
    env: &Environment,
    now_secs: i64,
) -> Result<Plan, CredentialError> {
    let fail = |msg: String| CredentialError::new(ProviderName::CliProfile, msg);
    let config: CliConfig = serde_json::from_str(text).map_err(|e| {
        fail(format!(
            "{} is not a CLI configuration: {e}",
            path.display()
        ))
    })?;
    let name = env
        .get("ALIBABA_CLOUD_PROFILE")
        .map(str::to_owned)
        .unwrap_or(config.current.clone());
    if name.is_empty() {
        return Err(fail(format!(
            "{} names no current profile and ALIBABA_CLOUD_PROFILE is not set",
            path.display()
        )));
    }
    let mut visited = HashSet::new();
    cli_plan(&config, &name, path, env, now_secs, &mut visited)
}

fn cli_plan(
    config: &CliConfig,
    name: &str,
    path: &Path,
    env: &Environment,
    now_secs: i64,
    visited: &mut HashSet<String>,
) -> Result<Plan, CredentialError> {
    let at = format!("{} profile {name:?}", path.display());
    let fail = |msg: String| CredentialError::new(ProviderName::CliProfile, format!("{at}: {msg}"));
    if !visited.insert(name.to_owned()) {
        return Err(fail("source_profile goes round in a circle".to_owned()));
    }
    let profile = config
        .profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| fail("no such profile".to_owned()))?;
    let need = |field: &str, value: &str| {
        if value.trim().is_empty() {
            Err(fail(format!("mode {} needs {field}", profile.mode)))
        } else {
            Ok(value.trim().to_owned())
        }
    };
    let keys = |token: Option<String>| -> Result<Credentials, CredentialError> {
        Ok(Credentials::new(
            need("access_key_id", &profile.access_key_id)?,
            need("access_key_secret", &profile.access_key_secret)?,
            token,
        ))
    };
    let session_name = || -> Result<String, CredentialError> {
        let name = match profile.ram_session_name.trim() {
            "" => default_session_name(now_secs),
            given => given.to_owned(),
        };
        check_session_name(ProviderName::CliProfile, &name)?;
        Ok(name)
    };
    let sts_endpoint = Some(profile.sts_region.trim())
        .filter(|r| !r.is_empty())
        .map(|r| format!("https://sts.{r}.aliyuncs.com"));
    let assume = |base: Plan| -> Result<Plan, CredentialError> {
        Ok(Plan::AssumeRole(AssumedRole {
            base: Box::new(base),
            role_arn: need("ram_role_arn", &profile.ram_role_arn)?,
            session_name: session_name()?,
            duration_secs: duration_secs(profile.expired_seconds),
            policy: None,
            external_id: Some(profile.external_id.trim().to_owned()).filter(|e| !e.is_empty()),
            sts_endpoint: sts_endpoint.clone(),
        }))
    };
    match profile.mode.as_str() {
        "AK" | "" => Ok(Plan::Fixed(keys(None)?)),
        "StsToken" => Ok(Plan::Fixed(keys(Some(need(
            "sts_token",
            &profile.sts_token,
        )?))?)),
        "RamRoleArn" => assume(Plan::Fixed(keys(None)?)),
        "EcsRamRole" => Ok(Plan::EcsRamRole(EcsRole {
            role: Some(profile.ram_role_name.trim().to_owned()).filter(|r| !r.is_empty()),
            imdsv1_disabled: env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        })),
        "OIDC" => Ok(Plan::Oidc(OidcRole {
            role_arn: need("ram_role_arn", &profile.ram_role_arn)?,
            provider_arn: need("oidc_provider_arn", &profile.oidc_provider_arn)?,
            token_file: PathBuf::from(need("oidc_token_file", &profile.oidc_token_file)?),
            session_name: session_name()?,
            duration_secs: duration_secs(profile.expired_seconds),
            policy: None,
            sts_endpoint: sts_endpoint.clone(),
        })),
        "ChainableRamRoleArn" => {
            let source = need("source_profile", &profile.source_profile)?;
            let base = cli_plan(config, &source, path, env, now_secs, visited)?;
            assume(base)
        }
        mode @ ("CloudSSO" | "OAuth" | "External" | "CredentialsURI") => Err(fail(format!(
            "mode {mode} needs a browser or another program and is not supported by a service; \
             use AK, StsToken, RamRoleArn, EcsRamRole, OIDC or ChainableRamRoleArn"
        ))),
        mode => Err(fail(format!(
            "unknown mode {mode:?}; expected AK, StsToken, RamRoleArn, EcsRamRole, OIDC or \
             ChainableRamRoleArn"
        ))),
    }
}

/// The plan of a section of a `credentials.ini`: `ALIBABA_CLOUD_PROFILE`, else `default`.
pub fn credentials_ini(
    text: &str,
    path: &Path,
    env: &Environment,
    now_secs: i64,
) -> Result<Plan, CredentialError> {
    let fail = |msg: String| CredentialError::new(ProviderName::CredentialsFile, msg);
    let ini = ini::Ini::load_from_str(text)
        .map_err(|e| fail(format!("{} is not an INI file: {e}", path.display())))?;
    let name = env.get("ALIBABA_CLOUD_PROFILE").unwrap_or("default");
    let at = format!("{} [{name}]", path.display());
    let section = ini
        .section(Some(name))
        .ok_or_else(|| fail(format!("{}: no such section", path.display())))?;
    let get = |key: &str| {
        section
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let kind = get("type").unwrap_or_default();
    let need = |key: &str| get(key).ok_or_else(|| fail(format!("{at}: type {kind} needs {key}")));
    let session_name = || -> Result<String, CredentialError> {
        let name = get("role_session_name").unwrap_or_else(|| default_session_name(now_secs));
        check_session_name(ProviderName::CredentialsFile, &name)?;
        Ok(name)
    };
    match kind.as_str() {
        "access_key" => Ok(Plan::Fixed(Credentials::new(
            need("access_key_id")?,
            need("access_key_secret")?,
            None,
        ))),
        "ecs_ram_role" => Ok(Plan::EcsRamRole(EcsRole {
            role: get("role_name"),
            imdsv1_disabled: env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        })),
        "ram_role_arn" => Ok(Plan::AssumeRole(AssumedRole {
            base: Box::new(Plan::Fixed(Credentials::new(
                need("access_key_id")?,
                need("access_key_secret")?,
                None,
            ))),
            role_arn: need("role_arn")?,
            session_name: session_name()?,
            duration_secs: DEFAULT_DURATION_SECS,
            policy: get("policy"),
            external_id: None,
            sts_endpoint: None,
        })),
        "oidc_role_arn" => Ok(Plan::Oidc(OidcRole {
            role_arn: need("role_arn")?,
            provider_arn: need("oidc_provider_arn")?,
            token_file: PathBuf::from(need("oidc_token_file_path")?),
            session_name: session_name()?,
            duration_secs: DEFAULT_DURATION_SECS,
            policy: get("policy"),
            sts_endpoint: None,
        })),
        "" => Err(fail(format!("{at}: no type"))),
        other => Err(fail(format!(
            "{at}: unknown type {other:?}; expected access_key, ecs_ram_role, ram_role_arn or oidc_role_arn"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_460_800;

    fn cli(text: &str, env: &Environment) -> Result<Plan, String> {
        cli_profile(text, Path::new("/h/.aliyun/config.json"), env, NOW).map_err(|e| e.to_string())
    }

    fn fixed(id: &str, secret: &str, token: Option<&str>) -> Plan {
        Plan::Fixed(Credentials::new(id, secret, token.map(str::to_owned)))
    }

    const CLI: &str = r#"{
        "current": "ak",
        "profiles": [
            {"name": "ak", "mode": "AK", "access_key_id": "id1", "access_key_secret": "s1", "region_id": "cn-shanghai"},
            {"name": "sts", "mode": "StsToken", "access_key_id": "STS.id", "access_key_secret": "s2", "sts_token": "t2"},
            {"name": "role", "mode": "RamRoleArn", "access_key_id": "id3", "access_key_secret": "s3",
             "ram_role_arn": "acs:ram::1:role/r3", "ram_session_name": "sess3", "expired_seconds": 900},
            {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "r4"},
            {"name": "oidc", "mode": "OIDC", "ram_role_arn": "acs:ram::1:role/r5",
             "oidc_provider_arn": "acs:ram::1:oidc-provider/p", "oidc_token_file": "/var/run/token"},
            {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "role", "ram_role_arn": "acs:ram::1:role/r6"},
            {"name": "loop", "mode": "ChainableRamRoleArn", "source_profile": "loop", "ram_role_arn": "acs:ram::1:role/r7"},
            {"name": "sso", "mode": "CloudSSO"},
            {"name": "odd", "mode": "Bluetooth"},
            {"name": "half", "mode": "AK", "access_key_id": "id8"}
        ]
    }"#;

    #[test]
    fn cli_profile_modes() {
        let pick = |name: &str| {
            cli(
                CLI,
                &Environment::from_pairs([("ALIBABA_CLOUD_PROFILE", name)]),
            )
        };
        assert_eq!(
            cli(CLI, &Environment::default()),
            Ok(fixed("id1", "s1", None)),
            "current"
        );
        assert_eq!(pick("sts"), Ok(fixed("STS.id", "s2", Some("t2"))));
        let Ok(Plan::AssumeRole(role)) = pick("role") else {
            panic!("RamRoleArn")
        };
        assert_eq!(*role.base, fixed("id3", "s3", None));
        assert_eq!(
            (
                role.role_arn.as_str(),
                role.session_name.as_str(),
                role.duration_secs
            ),
            ("acs:ram::1:role/r3", "sess3", 900)
        );
        assert_eq!(
            pick("ecs"),
            Ok(Plan::EcsRamRole(EcsRole {
                role: Some("r4".into()),
                imdsv1_disabled: false
            }))
        );
        let Ok(Plan::Oidc(oidc)) = pick("oidc") else {
            panic!("OIDC")
        };
        assert_eq!(oidc.token_file, PathBuf::from("/var/run/token"));
        assert_eq!(oidc.session_name, format!("vod-purge-{NOW}"));
        let Ok(Plan::AssumeRole(chained)) = pick("chain") else {
            panic!("Chainable")
        };
        assert!(
            matches!(*chained.base, Plan::AssumeRole(ref inner) if inner.role_arn == "acs:ram::1:role/r3")
        );
    }

    #[test]
    fn zero_or_no_expired_seconds_is_the_default_duration() {
        let text = r#"{"current": "r", "profiles": [
            {"name": "r", "mode": "RamRoleArn", "access_key_id": "i", "access_key_secret": "s",
             "ram_role_arn": "acs:ram::1:role/r", "expired_seconds": 0},
            {"name": "o", "mode": "OIDC", "ram_role_arn": "acs:ram::1:role/r",
             "oidc_provider_arn": "p", "oidc_token_file": "/t", "expired_seconds": 0},
            {"name": "n", "mode": "RamRoleArn", "access_key_id": "i", "access_key_secret": "s",
             "ram_role_arn": "acs:ram::1:role/r"},
            {"name": "set", "mode": "RamRoleArn", "access_key_id": "i", "access_key_secret": "s",
             "ram_role_arn": "acs:ram::1:role/r", "expired_seconds": 1800}
        ]}"#;
        for (profile, want) in [("r", 3600), ("o", 3600), ("n", 3600), ("set", 1800)] {
            let env = Environment::from_pairs([("ALIBABA_CLOUD_PROFILE", profile)]);
            let duration = match cli(text, &env) {
                Ok(Plan::AssumeRole(role)) => role.duration_secs,
                Ok(Plan::Oidc(role)) => role.duration_secs,
                other => panic!("{profile}: {other:?}"),
            };
            assert_eq!(duration, want, "{profile}");
        }
    }

    #[test]
    fn cli_profile_errors_name_the_file_and_profile() {
        let env = |name: &str| Environment::from_pairs([("ALIBABA_CLOUD_PROFILE", name)]);
        let table = [
            (CLI, env("loop"), "circle"),
            (CLI, env("sso"), "mode CloudSSO needs a browser"),
            (CLI, env("odd"), "unknown mode \"Bluetooth\""),
            (CLI, env("half"), "mode AK needs access_key_secret"),
            (CLI, env("nobody"), "profile \"nobody\": no such profile"),
            (
                "{\"profiles\": [",
                Environment::default(),
                "is not a CLI configuration",
            ),
            (
                "{\"profiles\": []}",
                Environment::default(),
                "names no current profile",
            ),
        ];
        for (text, env, want) in table {
            let err = cli(text, &env).unwrap_err();
            assert!(
                err.starts_with("cli-profile: /h/.aliyun/config.json"),
                "{err}"
            );
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    fn ini(text: &str, profile: Option<&str>) -> Result<Plan, String> {
        let env = match profile {
            Some(p) => Environment::from_pairs([("ALIBABA_CLOUD_PROFILE", p)]),
            None => Environment::default(),
        };
        credentials_ini(text, Path::new("/h/credentials.ini"), &env, NOW).map_err(|e| e.to_string())
    }

    const INI: &str = "\
[default]
type = access_key
access_key_id = id1
access_key_secret = s1

[ecs]
type = ecs_ram_role
role_name = r2

[role]
type = ram_role_arn
access_key_id = id3
access_key_secret = s3
role_arn = acs:ram::1:role/r3
role_session_name = sess3

[oidc]
type = oidc_role_arn
oidc_provider_arn = acs:ram::1:oidc-provider/p
oidc_token_file_path = /var/token
role_arn = acs:ram::1:role/r4

[bad]
type = bearer

[badname]
type = ram_role_arn
access_key_id = id3
access_key_secret = s3
role_arn = acs:ram::1:role/r3
role_session_name = has space
";

    #[test]
    fn ini_types() {
        assert_eq!(ini(INI, None), Ok(fixed("id1", "s1", None)));
        assert_eq!(
            ini(INI, Some("ecs")),
            Ok(Plan::EcsRamRole(EcsRole {
                role: Some("r2".into()),
                imdsv1_disabled: false
            }))
        );
        let Ok(Plan::AssumeRole(role)) = ini(INI, Some("role")) else {
            panic!("ram_role_arn")
        };
        assert_eq!((*role.base).clone(), fixed("id3", "s3", None));
        assert_eq!(role.session_name, "sess3");
        let Ok(Plan::Oidc(oidc)) = ini(INI, Some("oidc")) else {
            panic!("oidc_role_arn")
        };
        assert_eq!(oidc.provider_arn, "acs:ram::1:oidc-provider/p");
    }

    #[test]
    fn ini_errors_name_the_file() {
        for (text, profile, want) in [
            (INI, Some("bad"), "unknown type \"bearer\""),
            (INI, Some("badname"), "role session name \"has space\""),
            (INI, Some("missing"), "no such section"),
            ("[default\ntype = access_key", None, "is not an INI file"),
            (
                "[default]\ntype = access_key\naccess_key_id = x\n",
                None,
                "needs access_key_secret",
            ),
        ] {
            let err = ini(text, profile).unwrap_err();
            assert!(err.starts_with("credentials-file: "), "{err}");
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
