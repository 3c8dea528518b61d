//! Alibaba Cloud credentials: an AccessKey pair, optionally with an STS security token.
//!
//! The secret and the token never appear in `Debug` output or logs.

use std::fmt;

/// An AccessKey ID and secret, plus the `SecurityToken` when the key is a temporary STS key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: security_token.filter(|t| !t.is_empty()),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_and_token() {
        let creds = Credentials::new("STS.key", "s3cr3t-value", Some("tok-value".to_owned()));
        let shown = format!("{creds:?} {creds:#?}");
        assert!(shown.contains("STS.key"));
        assert!(!shown.contains("s3cr3t-value"));
        assert!(!shown.contains("tok-value"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn empty_token_means_none() {
        let creds = Credentials::new("id", "secret", Some(String::new()));
        assert_eq!(creds.security_token(), None);
    }
}
