//! The credential chain's own settings: which provider `vod.credentials` pins (or `"auto"`), and
//! where its STS calls go (`vod.sts_endpoint` and the `ALIBABA_CLOUD_STS_*` variables).

use serde::{Deserialize, Serialize};

use super::{Credentials, Environment, ProviderName};

/// What one account's credential chain reads, handed over by the configuration: `credentials/`
/// never sees the settings tree.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// The account's name, for messages.
    pub account: String,
    /// Where the account's keys are written (`vod`, `accounts[intl]`), for messages.
    pub key_prefix: String,
    /// `credentials`: the chain, or one pinned provider.
    pub choice: Choice,
    /// `access_key_id` / `access_key_secret` / `security_token`, when set.
    pub config_keys: Option<Credentials>,
    /// Where `AssumeRole` and `AssumeRoleWithOIDC` go (see [`sts_endpoint`]).
    pub sts_endpoint: String,
    pub metadata_endpoint: String,
    /// The chain's variables as this account sees them.
    pub environment: Environment,
    /// An account other than `default`: it uses only what it names itself. The profile files
    /// are read only for a profile it names (the files' current or default profile is another
    /// account's), and the machine's instance RAM role only when it pins `ecs-ram-role`.
    pub isolated: bool,
}

/// `vod.credentials`: `"auto"` (the chain), or the name of one provider, which pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Choice(Option<ProviderName>);

impl Choice {
    pub fn pin(provider: ProviderName) -> Choice {
        Choice(Some(provider))
    }

    /// The pinned provider; `None` for the chain.
    pub fn pinned(self) -> Option<ProviderName> {
        self.0
    }
}

impl TryFrom<String> for Choice {
    type Error = String;

    fn try_from(name: String) -> Result<Choice, String> {
        if name == "auto" {
            return Ok(Choice(None));
        }
        ProviderName::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .map(Choice::pin)
            .ok_or_else(|| {
                let names: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "{name:?} is neither \"auto\" nor a provider ({})",
                    names.join(", ")
                )
            })
    }
}

impl From<Choice> for String {
    fn from(choice: Choice) -> String {
        choice.0.map_or("auto", ProviderName::as_str).to_owned()
    }
}

/// Where `AssumeRole` and `AssumeRoleWithOIDC` go: `vod.sts_endpoint` when set, else
/// `ALIBABA_CLOUD_STS_ENDPOINT`, else the region's (`ALIBABA_CLOUD_STS_REGION`, VPC with
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED`), else `https://sts.aliyuncs.com`.
pub fn sts_endpoint(setting: &str, env: &Environment) -> String {
    let with_scheme = |host: &str| {
        if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", host.trim_end_matches('/'))
        }
    };
    if !setting.trim().is_empty() {
        return with_scheme(setting.trim());
    }
    if let Some(endpoint) = env.get("ALIBABA_CLOUD_STS_ENDPOINT") {
        return with_scheme(endpoint.trim());
    }
    match env.get("ALIBABA_CLOUD_STS_REGION") {
        Some(region) if env.flag("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED") => {
            format!("https://sts-vpc.{}.aliyuncs.com", region.trim())
        }
        Some(region) => format!("https://sts.{}.aliyuncs.com", region.trim()),
        None => "https://sts.aliyuncs.com".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_endpoints() {
        let env =
            |pairs: &[(&'static str, &'static str)]| Environment::from_pairs(pairs.iter().copied());
        let table = [
            ("", env(&[]), "https://sts.aliyuncs.com"),
            (
                "",
                env(&[("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou")]),
                "https://sts.cn-hangzhou.aliyuncs.com",
            ),
            (
                "",
                env(&[
                    ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
                    ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
                ]),
                "https://sts-vpc.cn-hangzhou.aliyuncs.com",
            ),
            (
                "",
                env(&[
                    ("ALIBABA_CLOUD_STS_ENDPOINT", "sts.cn-beijing.aliyuncs.com"),
                    ("ALIBABA_CLOUD_STS_REGION", "x"),
                ]),
                "https://sts.cn-beijing.aliyuncs.com",
            ),
            (
                "http://127.0.0.1:9000/sts/",
                env(&[("ALIBABA_CLOUD_STS_ENDPOINT", "y")]),
                "http://127.0.0.1:9000/sts",
            ),
        ];
        for (setting, env, want) in table {
            assert_eq!(sts_endpoint(setting, &env), want, "{setting:?} {env:?}");
        }
    }
}
