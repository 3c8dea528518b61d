//! The variables the credential chain reads, captured once so that the chain is a function of
//! its inputs: tests pass their own, and two applications in one process never share them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Every variable the official libraries read for the default chain (`docs/alibaba-credentials.md`).
pub const VARIABLES: [&str; 18] = [
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    "ALIBABA_CLOUD_ROLE_SESSION_NAME",
    "ALIBABA_CLOUD_CONFIG_FILE",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
    "ALIBABA_CLOUD_PROFILE",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "ALIBABA_CLOUD_ECS_METADATA",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
    "ALIBABA_CLOUD_IMDSV1_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_URI",
    "ALIBABA_CLOUD_STS_ENDPOINT",
    "ALIBABA_CLOUD_STS_REGION",
    "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
];

/// The chain's variables and the home directory (where the profile files live).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
}

impl Environment {
    /// Reads [`VARIABLES`] and `HOME` through `lookup` (the process environment in `main`).
    pub fn capture(lookup: impl Fn(&str) -> Option<String>) -> Environment {
        let vars = VARIABLES
            .iter()
            .filter_map(|name| lookup(name).map(|v| ((*name).to_owned(), v)))
            .collect();
        Environment {
            vars,
            home: lookup("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
        }
    }

    /// An environment with exactly these variables and no home directory.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            home: None,
        }
    }

    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Environment {
        self.home = Some(home.into());
        self
    }

    pub fn with_var(mut self, name: &str, value: &str) -> Environment {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The same environment without these variables.
    pub fn without(&self, names: &[&str]) -> Environment {
        let mut env = self.clone();
        env.vars.retain(|name, _| !names.contains(&name.as_str()));
        env
    }

    /// The variable's value, `None` when it is unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Whether the variable is `true` (any case), as the official libraries read their switches.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    pub fn home(&self) -> Option<&PathBuf> {
        self.home.as_ref()
    }
}

/// Names only: the values include secrets.
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("set", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_reads_the_chain_variables_only() {
        let env = Environment::capture(|name| match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("id".to_owned()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("very-secret".to_owned()),
            "ALIBABA_CLOUD_PROFILE" => Some("  ".to_owned()),
            "HOME" => Some("/home/x".to_owned()),
            "PATH" => Some("/bin".to_owned()),
            _ => None,
        });
        assert_eq!(env.get("ALIBABA_CLOUD_ACCESS_KEY_ID"), Some("id"));
        assert_eq!(env.get("ALIBABA_CLOUD_PROFILE"), None, "blank is unset");
        assert_eq!(env.get("PATH"), None);
        assert_eq!(env.home(), Some(&PathBuf::from("/home/x")));
        assert!(!format!("{env:?}").contains("very-secret"));
    }

    #[test]
    fn flags_are_true_in_any_case_only() {
        for (value, want) in [
            ("true", true),
            ("TRUE", true),
            (" True ", true),
            ("1", false),
            ("yes", false),
        ] {
            let env = Environment::from_pairs([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", value)]);
            assert_eq!(
                env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED"),
                want,
                "{value:?}"
            );
        }
    }
}
