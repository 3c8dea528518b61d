//! The default credential chain: which provider supplies the VOD client's credential.
//!
//! [`find`] decides, for one provider, whether it is configured and what it would do (reading
//! the profile files); [`resolve`] walks the providers in the official order and fetches the
//! first credential. With `vod.credentials = "auto"` a provider that is absent or fails is
//! passed over, as the official libraries do, and the next one is tried; a pinned provider that
//! cannot produce a credential is an error.

use std::fmt;
use std::path::{Path, PathBuf};

use super::fetch::Fetcher;
use super::profiles::{self, check_session_name, default_session_name};
use super::{
    Choice, CredentialError, Credentials, EcsRole, Environment, Issued, OidcRole, Plan,
    ProviderName,
};

/// What the chain reads besides the network.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The configuration's keys (`vod.access_key_id`, `_secret`, `vod.security_token`).
    pub config_keys: Option<Credentials>,
    pub env: &'a Environment,
    /// For the default role session name.
    pub now_secs: i64,
    /// Where the account's keys are written (`vod`, `accounts[intl]`), for messages.
    pub key_prefix: &'a str,
    /// An account other than `default` (see [`super::ChainSettings::isolated`]).
    pub isolated: bool,
}

/// One provider as the chain sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Configured: this is what it does.
    Plan(Plan),
    /// Not configured here, and why (no secret in it).
    Absent(String),
}

/// A provider the chain passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub provider: ProviderName,
    pub reason: String,
    /// It was configured but failed (a broken file, a refusal), rather than absent.
    pub failed: bool,
}

/// The chain's choice: the provider, its plan, the first credential, and what came before it.
#[derive(Debug)]
pub struct Resolved {
    pub provider: ProviderName,
    pub plan: Plan,
    pub first: Issued,
    pub passed: Vec<Passed>,
}

/// No provider produced a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    pub pinned: Option<ProviderName>,
    pub passed: Vec<Passed>,
    /// Where the account's keys are written (`vod`, `accounts[intl]`).
    pub key_prefix: String,
    /// The first provider that was configured but could not fetch a credential (STS or the
    /// metadata service down, say), with its plan: what a renewal would try again.
    pub failed_plan: Option<(ProviderName, Plan)>,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pinned {
            Some(p) => write!(
                f,
                "{}.credentials = \"{p}\" cannot produce a credential",
                self.key_prefix
            )?,
            None => write!(
                f,
                "no credential for VOD: no provider of the default chain produced one"
            )?,
        }
        for passed in &self.passed {
            write!(f, "; {}: {}", passed.provider, passed.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ChainError {}

/// Whether `provider` is configured by `inputs`, and what it would do.
pub fn find(provider: ProviderName, inputs: &Inputs<'_>) -> Result<Found, CredentialError> {
    let env = inputs.env;
    let fail = |msg: String| CredentialError::new(provider, msg);
    let absent = |why: &str| Ok(Found::Absent(why.to_owned()));
    match provider {
        ProviderName::Config => match &inputs.config_keys {
            Some(keys) => Ok(Found::Plan(Plan::Fixed(keys.clone()))),
            None => Ok(Found::Absent(format!(
                "{0}.access_key_id and {0}.access_key_secret are empty",
                inputs.key_prefix
            ))),
        },
        ProviderName::Env => {
            let id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID");
            let secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(Found::Plan(Plan::Fixed(Credentials::new(
                    id.trim(),
                    secret.trim(),
                    env.get("ALIBABA_CLOUD_SECURITY_TOKEN").map(|t| t.trim().to_owned()),
                )))),
                (None, None) => absent("ALIBABA_CLOUD_ACCESS_KEY_ID is not set"),
                (Some(_), None) => Err(fail("ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is empty".into())),
                (None, Some(_)) => Err(fail("ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is empty".into())),
            }
        }
        ProviderName::Oidc => {
            const NEEDED: [&str; 3] = [
                "ALIBABA_CLOUD_ROLE_ARN",
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            ];
            let missing: Vec<&str> = NEEDED
                .into_iter()
                .filter(|n| env.get(n).is_none())
                .collect();
            if missing.len() == NEEDED.len() {
                return absent(
                    "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE are not set",
                );
            }
            if !missing.is_empty() {
                return Err(fail(format!(
                    "{} not set (RRSA needs all three)",
                    missing.join(" and ")
                )));
            }
            let session_name = env
                .get("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| default_session_name(inputs.now_secs));
            check_session_name(provider, &session_name)?;
            let var = |name: &str| env.get(name).unwrap_or_default().trim().to_owned();
            Ok(Found::Plan(Plan::Oidc(OidcRole {
                role_arn: var("ALIBABA_CLOUD_ROLE_ARN"),
                provider_arn: var("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
                token_file: PathBuf::from(var("ALIBABA_CLOUD_OIDC_TOKEN_FILE")),
                session_name,
                duration_secs: profiles::DEFAULT_DURATION_SECS,
                policy: None,
                sts_endpoint: None,
            })))
        }
        ProviderName::CliProfile | ProviderName::CredentialsFile
            if inputs.isolated && env.get("ALIBABA_CLOUD_PROFILE").is_none() =>
        {
            Ok(Found::Absent(format!(
                "{}.profile is empty (the files' own profile belongs to the default account)",
                inputs.key_prefix
            )))
        }
        ProviderName::CliProfile => {
            if env.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
                return absent("ALIBABA_CLOUD_CLI_PROFILE_DISABLED is true");
            }
            let Some((path, explicit)) =
                profile_path(env, "ALIBABA_CLOUD_CONFIG_FILE", ".aliyun/config.json")
            else {
                return absent("no home directory and ALIBABA_CLOUD_CONFIG_FILE is not set");
            };
            match read_profile(provider, &path, explicit)? {
                None => Ok(Found::Absent(format!("{} does not exist", path.display()))),
                Some(text) => {
                    profiles::cli_profile(&text, &path, env, inputs.now_secs).map(Found::Plan)
                }
            }
        }
        ProviderName::CredentialsFile => {
            let Some((path, explicit)) = profile_path(
                env,
                "ALIBABA_CLOUD_CREDENTIALS_FILE",
                ".alibabacloud/credentials.ini",
            ) else {
                return absent("no home directory and ALIBABA_CLOUD_CREDENTIALS_FILE is not set");
            };
            match read_profile(provider, &path, explicit)? {
                None => Ok(Found::Absent(format!("{} does not exist", path.display()))),
                Some(text) => {
                    profiles::credentials_ini(&text, &path, env, inputs.now_secs).map(Found::Plan)
                }
            }
        }
        ProviderName::EcsRamRole => {
            if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
                return absent("ALIBABA_CLOUD_ECS_METADATA_DISABLED is true");
            }
            Ok(Found::Plan(Plan::EcsRamRole(EcsRole {
                role: env
                    .get("ALIBABA_CLOUD_ECS_METADATA")
                    .map(|r| r.trim().to_owned()),
                imdsv1_disabled: env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
            })))
        }
        ProviderName::CredentialsUri => match env.get("ALIBABA_CLOUD_CREDENTIALS_URI") {
            Some(uri) if uri.starts_with("http://") || uri.starts_with("https://") => {
                Ok(Found::Plan(Plan::Uri(uri.trim().to_owned())))
            }
            Some(_) => Err(fail(
                "ALIBABA_CLOUD_CREDENTIALS_URI is not an http:// or https:// URL".into(),
            )),
            None => absent("ALIBABA_CLOUD_CREDENTIALS_URI is not set"),
        },
    }
}

/// The file named by `variable`, else `default` under the home directory; `true` when named.
fn profile_path(env: &Environment, variable: &str, default: &str) -> Option<(PathBuf, bool)> {
    match env.get(variable) {
        Some(path) => Some((PathBuf::from(path.trim()), true)),
        None => env.home().map(|home| (home.join(default), false)),
    }
}

/// The file's text; `None` when a default path does not exist. A file named by a variable
/// must exist.
fn read_profile(
    provider: ProviderName,
    path: &Path,
    explicit: bool,
) -> Result<Option<String>, CredentialError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(None),
        Err(e) => Err(CredentialError::new(
            provider,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Walks the chain (or the pinned provider) and fetches the first credential.
pub async fn resolve(
    choice: Choice,
    inputs: &Inputs<'_>,
    fetcher: &Fetcher,
) -> Result<Resolved, ChainError> {
    let providers: Vec<ProviderName> = match choice.pinned() {
        Some(p) => vec![p],
        None => ProviderName::ALL.to_vec(),
    };
    let mut passed = Vec::new();
    let mut failed_plan = None;
    for provider in providers {
        // The instance's role is the machine's identity: another account takes it only when it
        // pins it, never by falling through the chain.
        let found = if inputs.isolated
            && provider == ProviderName::EcsRamRole
            && choice.pinned().is_none()
        {
            Ok(Found::Absent(format!(
                "the instance RAM role is the machine's: {}.credentials = \"ecs-ram-role\" pins it for this account",
                inputs.key_prefix
            )))
        } else {
            find(provider, inputs)
        };
        let outcome = match found {
            Ok(Found::Plan(plan)) => match fetcher.fetch(provider, &plan).await {
                Ok(first) => {
                    return Ok(Resolved {
                        provider,
                        plan,
                        first,
                        passed,
                    });
                }
                Err(e) => {
                    failed_plan.get_or_insert((provider, plan));
                    Err(e)
                }
            },
            Ok(Found::Absent(why)) => Ok(why),
            Err(e) => Err(e),
        };
        let entry = match outcome {
            Ok(why) => Passed {
                provider,
                reason: format!("not configured: {why}"),
                failed: false,
            },
            Err(e) => {
                if choice.pinned().is_none() {
                    tracing::warn!(error = %e, "credential provider failed; trying the next one");
                }
                Passed {
                    provider,
                    reason: e.message,
                    failed: true,
                }
            }
        };
        passed.push(entry);
    }
    Err(ChainError {
        pinned: choice.pinned(),
        passed,
        key_prefix: inputs.key_prefix.to_owned(),
        failed_plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(provider: ProviderName, env: &Environment) -> Result<Found, String> {
        let inputs = Inputs {
            config_keys: None,
            env,
            now_secs: 1_764_460_800,
            key_prefix: "vod",
            isolated: false,
        };
        find(provider, &inputs).map_err(|e| e.to_string())
    }

    #[test]
    fn env_and_oidc_variables() {
        let env = Environment::from_pairs([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok"),
        ]);
        assert_eq!(
            found(ProviderName::Env, &env),
            Ok(Found::Plan(Plan::Fixed(Credentials::new(
                "id",
                "secret",
                Some("tok".into())
            ))))
        );
        let half = Environment::from_pairs([("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")]);
        assert!(
            found(ProviderName::Env, &half)
                .unwrap_err()
                .contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET is empty")
        );
        assert!(matches!(
            found(ProviderName::Oidc, &env),
            Ok(Found::Absent(_))
        ));
        let partial = Environment::from_pairs([("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r")]);
        let err = found(ProviderName::Oidc, &partial).unwrap_err();
        assert!(
            err.contains(
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE not set"
            ),
            "{err}"
        );
        let bad_name = Environment::from_pairs([
            ("ALIBABA_CLOUD_ROLE_ARN", "r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/t"),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "x"),
        ]);
        assert!(
            found(ProviderName::Oidc, &bad_name)
                .unwrap_err()
                .contains("role session name")
        );
    }

    #[test]
    fn switches_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let home = Environment::default().with_home(dir.path());
        for provider in [ProviderName::CliProfile, ProviderName::CredentialsFile] {
            let Ok(Found::Absent(why)) = found(provider, &home) else {
                panic!("{provider}")
            };
            assert!(why.contains("does not exist"), "{why}");
        }
        let named =
            Environment::from_pairs([("ALIBABA_CLOUD_CONFIG_FILE", "/nonexistent/config.json")]);
        assert!(
            found(ProviderName::CliProfile, &named)
                .unwrap_err()
                .contains("cannot read /nonexistent/config.json")
        );
        let off = Environment::from_pairs([
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
            ("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "TRUE"),
        ])
        .with_home(dir.path());
        assert!(matches!(
            found(ProviderName::EcsRamRole, &off),
            Ok(Found::Absent(_))
        ));
        assert!(matches!(
            found(ProviderName::CliProfile, &off),
            Ok(Found::Absent(_))
        ));
        let ecs = Environment::from_pairs([
            ("ALIBABA_CLOUD_ECS_METADATA", "my-role"),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
        ]);
        assert_eq!(
            found(ProviderName::EcsRamRole, &ecs),
            Ok(Found::Plan(Plan::EcsRamRole(EcsRole {
                role: Some("my-role".into()),
                imdsv1_disabled: true
            })))
        );
        let uri = Environment::from_pairs([("ALIBABA_CLOUD_CREDENTIALS_URI", "file:///x")]);
        assert!(found(ProviderName::CredentialsUri, &uri).is_err());
    }
}
