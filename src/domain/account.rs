//! The name of a VOD account the deployment serves: `default` (the `[vod]` section) or one of
//! `[[accounts]]`. Items, jobs, holds and metrics carry it, and it is part of an item's key: the
//! same media ID in two accounts is two items.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most bytes in an account name (it is a metric label and a column of every row).
pub const MAX_ACCOUNT_NAME: usize = 32;

/// A valid account name: 1 to 32 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

/// A name that is not one (the message says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAccountName(String);

impl AccountName {
    /// The account of the `[vod]` section.
    pub const DEFAULT: &'static str = "default";

    /// The `default` account.
    pub fn default_account() -> AccountName {
        AccountName(Self::DEFAULT.to_owned())
    }

    pub fn parse(name: &str) -> Result<AccountName, InvalidAccountName> {
        let shown: String = name.chars().take(MAX_ACCOUNT_NAME + 8).collect();
        if name.is_empty() || name.len() > MAX_ACCOUNT_NAME {
            return Err(InvalidAccountName(format!(
                "account name {shown:?} must be 1 to {MAX_ACCOUNT_NAME} characters"
            )));
        }
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let all_ok = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !first_ok || !all_ok {
            return Err(InvalidAccountName(format!(
                "account name {shown:?} may hold only a-z, 0-9, '-' and '_', and starts with a letter or digit"
            )));
        }
        Ok(AccountName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }
}

impl Default for AccountName {
    fn default() -> Self {
        AccountName::default_account()
    }
}

impl TryFrom<String> for AccountName {
    type Error = InvalidAccountName;
    fn try_from(name: String) -> Result<AccountName, InvalidAccountName> {
        AccountName::parse(&name)
    }
}

impl From<AccountName> for String {
    fn from(name: AccountName) -> String {
        name.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AccountName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "intl", "cn-prod", "a", "0_x", &"a".repeat(32)] {
            assert_eq!(AccountName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Intl", "-x", "_x", "a b", "a/b", "é", &"a".repeat(33)] {
            assert!(AccountName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AccountName::default().is_default());
        let parsed: AccountName = serde_json::from_str("\"intl\"").unwrap();
        assert_eq!(parsed.to_string(), "intl");
        assert!(serde_json::from_str::<AccountName>("\"INTL\"").is_err());
    }
}
