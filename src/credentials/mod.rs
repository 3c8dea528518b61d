//! Where the VOD client's AccessKey comes from: the default credential chain of Alibaba Cloud's
//! official libraries, and the renewal of short-lived STS credentials before they expire.
//!
//! At start, [`chain::resolve`] walks the providers in the official order (the configuration's
//! keys, the `ALIBABA_CLOUD_*` variables, OIDC / RRSA, the CLI profile file, the credentials
//! file, the ECS / ECI instance RAM role, the credentials URI), or only the one that
//! `vod.credentials` pins. The first provider that produces a credential wins; the others say
//! why they were passed over, which `check-config` prints. What the winner does is a [`Plan`]:
//! fixed keys, or a recipe (an STS call, a metadata read) that [`fetch::Fetcher`] runs again at
//! every renewal.
//!
//! [`CredentialSource`] holds the credential in use; the VOD client reads it for every attempt,
//! so each call is signed with the credential current at that moment. [`renew::Renewer`] renews
//! it in the background (at the latest when a third of its lifetime is left, and 15 minutes
//! before it expires where the lifetime allows), retries a failed renewal with backoff and
//! keeps the old credential while it is valid. When none is valid, [`CredentialSource`] makes
//! callers wait instead of sending calls that cannot succeed.

mod answers;
pub mod chain;
mod env;
pub mod fetch;
mod keys;
mod profiles;
pub mod renew;
pub mod settings;
mod source;

use std::fmt;
use std::path::PathBuf;

pub use chain::Resolved;
pub use env::Environment;
pub use keys::Credentials;
pub use renew::Renewer;
pub use settings::{ChainSettings, Choice};
pub use source::{CredentialSource, Issued};

/// Walks one account's chain as its settings say and returns its choice with the fetcher that
/// renews it; no credential is an error that names the account and what each provider said.
pub async fn resolve_for(chain: &ChainSettings) -> anyhow::Result<(Resolved, fetch::Fetcher)> {
    match start_for(chain).await? {
        (Start::Ready(resolved), fetcher) => Ok((resolved, fetcher)),
        (Start::Waiting { why, .. }, _) => Err(anyhow::anyhow!(why)),
    }
}

/// How an account's credential starts.
pub enum Start {
    /// The chain produced one.
    Ready(Resolved),
    /// A configured provider could not fetch one (STS or the metadata service unreachable or
    /// refusing): the lane starts without a credential and its renewer tries the plan again.
    Waiting {
        provider: ProviderName,
        plan: Plan,
        /// Why, naming the account and what each provider said.
        why: String,
    },
}

/// As [`resolve_for`], but a provider that is configured and fails only to fetch is not a start
/// error: its plan is handed back to be tried again ([`Start::Waiting`]). A chain with nothing
/// configured still is one.
pub async fn start_for(chain: &ChainSettings) -> anyhow::Result<(Start, fetch::Fetcher)> {
    let fetcher = fetch::Fetcher::new(&chain.sts_endpoint, &chain.metadata_endpoint)
        .map_err(anyhow::Error::msg)?;
    let now_secs = crate::domain::Ts::now().millis() / 1000;
    let inputs = chain::Inputs {
        config_keys: chain.config_keys.clone(),
        env: &chain.environment,
        now_secs,
        key_prefix: &chain.key_prefix,
        isolated: chain.isolated,
    };
    match chain::resolve(chain.choice, &inputs, &fetcher).await {
        Ok(resolved) => Ok((Start::Ready(resolved), fetcher)),
        // Waiting is for a provider the account really set up (pinned, or named by its
        // settings or variables): the instance role the chain only tried on the way is not one,
        // and an account with nothing set up stays a start error.
        Err(e) => match e
            .failed_plan
            .clone()
            .filter(|(p, _)| chain.choice.pinned().is_some() || *p != ProviderName::EcsRamRole)
        {
            Some((provider, plan)) => Ok((
                Start::Waiting {
                    provider,
                    plan,
                    why: format!("account {:?}: {e}", chain.account),
                },
                fetcher,
            )),
            None => Err(anyhow::anyhow!("account {:?}: {e}", chain.account)),
        },
    }
}

/// The providers of the chain, in the chain's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderName {
    /// `vod.access_key_id` / `vod.access_key_secret` (and `vod.security_token`).
    Config,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `_SECURITY_TOKEN`.
    Env,
    /// RRSA: `AssumeRoleWithOIDC` with the token file named by `ALIBABA_CLOUD_OIDC_TOKEN_FILE`.
    Oidc,
    /// The CLI's `~/.aliyun/config.json`.
    CliProfile,
    /// `~/.alibabacloud/credentials.ini`.
    CredentialsFile,
    /// The ECS / ECI instance RAM role, through the metadata service.
    EcsRamRole,
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    CredentialsUri,
}

impl ProviderName {
    pub const ALL: [ProviderName; 7] = [
        ProviderName::Config,
        ProviderName::Env,
        ProviderName::Oidc,
        ProviderName::CliProfile,
        ProviderName::CredentialsFile,
        ProviderName::EcsRamRole,
        ProviderName::CredentialsUri,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Config => "config",
            ProviderName::Env => "env",
            ProviderName::Oidc => "oidc",
            ProviderName::CliProfile => "cli-profile",
            ProviderName::CredentialsFile => "credentials-file",
            ProviderName::EcsRamRole => "ecs-ram-role",
            ProviderName::CredentialsUri => "credentials-uri",
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider that could not produce a credential. The message names the file, variable or
/// answer at fault, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct CredentialError {
    pub provider: ProviderName,
    pub message: String,
}

impl CredentialError {
    pub fn new(provider: ProviderName, message: impl Into<String>) -> CredentialError {
        CredentialError {
            provider,
            message: message.into(),
        }
    }
}

/// How to obtain a credential, decided once by the chain and run again at every renewal.
#[derive(Clone, PartialEq, Eq)]
pub enum Plan {
    /// Keys that do not change (an AccessKey, or an STS token handed in as it is).
    Fixed(Credentials),
    /// `AssumeRoleWithOIDC`, unsigned; the token file is read again every time.
    Oidc(OidcRole),
    /// `AssumeRole`, signed with the credential `base` produces.
    AssumeRole(AssumedRole),
    /// The instance RAM role through the metadata service.
    EcsRamRole(EcsRole),
    /// `GET` of a credentials URI.
    Uri(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcRole {
    pub role_arn: String,
    pub provider_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration_secs: u32,
    pub policy: Option<String>,
    /// An STS endpoint named by the profile (`sts_region`); the setting's otherwise.
    pub sts_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedRole {
    pub base: Box<Plan>,
    pub role_arn: String,
    pub session_name: String,
    pub duration_secs: u32,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    pub sts_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsRole {
    /// The role to read; discovered from the metadata service when `None`.
    pub role: Option<String>,
    /// `ALIBABA_CLOUD_IMDSV1_DISABLED`: a failed token request is an error, not a fallback.
    pub imdsv1_disabled: bool,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Fixed(c) => f.debug_tuple("Fixed").field(c).finish(),
            Plan::Oidc(o) => o.fmt(f),
            Plan::AssumeRole(a) => a.fmt(f),
            Plan::EcsRamRole(e) => e.fmt(f),
            // A credentials URI may carry a token (in its query, its path or its user
            // information): show its host only.
            Plan::Uri(uri) => f
                .debug_tuple("Uri")
                .field(&crate::acs::remote::host_of(uri))
                .finish(),
        }
    }
}

impl Plan {
    /// What the plan does, for `check-config` and the logs; never a secret.
    pub fn describe(&self) -> String {
        match self {
            Plan::Fixed(c) if c.security_token().is_some() => {
                format!("STS key {} (fixed, not renewed)", c.access_key_id())
            }
            Plan::Fixed(c) => format!("AccessKey {}", c.access_key_id()),
            Plan::Oidc(o) => format!(
                "AssumeRoleWithOIDC of {} with the token in {}",
                o.role_arn,
                o.token_file.display()
            ),
            Plan::AssumeRole(a) => {
                format!("AssumeRole of {} with {}", a.role_arn, a.base.describe())
            }
            Plan::EcsRamRole(e) => match &e.role {
                Some(role) => format!("instance RAM role {role} from the metadata service"),
                None => "the instance RAM role discovered from the metadata service".to_owned(),
            },
            Plan::Uri(uri) => format!(
                "GET of the credentials URI at {}",
                crate::acs::remote::host_of(uri)
            ),
        }
    }
}
