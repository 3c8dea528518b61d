//! Where the store lives: `store.url`, parsed at load.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the store lives, decided by the scheme of `store.url`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreLocation {
    /// The path of the embedded database file (`sqlite://<path>`).
    Sqlite(String),
    /// The whole `postgres://` URL.
    Postgres(String),
}

impl TryFrom<String> for StoreLocation {
    type Error = String;

    fn try_from(url: String) -> Result<StoreLocation, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            Ok(StoreLocation::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(url))
        } else {
            // Only the scheme is shown: the rest may hold a password.
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            Err(format!(
                "must start with sqlite:// or postgres:// (it starts with {scheme:?})"
            ))
        }
    }
}

/// The URL again, its password (if any) redacted: what `check-config` prints.
impl From<StoreLocation> for String {
    fn from(location: StoreLocation) -> String {
        location.to_string()
    }
}

impl StoreLocation {
    /// The URL with a password in it replaced by `<redacted>`: in its user info, and the value
    /// of any query parameter whose name says password (`password`, `sslpassword`).
    fn redacted(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite://{path}"),
            StoreLocation::Postgres(url) => {
                let (url, query) = match url.split_once('?') {
                    Some((url, query)) => (url, Some(query)),
                    None => (url.as_str(), None),
                };
                let mut shown = match url.split_once("://").and_then(|(scheme, rest)| {
                    let (user_info, host) = rest.rsplit_once('@')?;
                    let (user, _password) = user_info.split_once(':')?;
                    Some(format!("{scheme}://{user}:<redacted>@{host}"))
                }) {
                    Some(redacted) => redacted,
                    None => url.to_owned(),
                };
                if let Some(query) = query {
                    let pairs: Vec<String> = query
                        .split('&')
                        .map(|pair| match pair.split_once('=') {
                            Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                                format!("{name}=<redacted>")
                            }
                            _ => pair.to_owned(),
                        })
                        .collect();
                    shown = format!("{shown}?{}", pairs.join("&"));
                }
                shown
            }
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({:?})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_by_scheme() {
        let table: [(&str, Result<StoreLocation, &str>); 6] = [
            (
                "sqlite://data/x.db",
                Ok(StoreLocation::Sqlite("data/x.db".into())),
            ),
            ("sqlite://", Err("needs a file path")),
            (
                "postgres://u@h/db",
                Ok(StoreLocation::Postgres("postgres://u@h/db".into())),
            ),
            (
                "postgresql://h/db",
                Ok(StoreLocation::Postgres("postgresql://h/db".into())),
            ),
            (
                "mysql://h/db",
                Err("must start with sqlite:// or postgres://"),
            ),
            ("", Err("must start with")),
        ];
        for (url, expected) in table {
            let got = StoreLocation::try_from(url.to_owned());
            match expected {
                Ok(location) => assert_eq!(got, Ok(location), "{url}"),
                Err(why) => assert!(got.unwrap_err().contains(why), "{url}"),
            }
        }
    }

    #[test]
    fn a_password_in_the_store_url_is_never_shown() {
        let location =
            StoreLocation::try_from("postgres://app:s3cret@db:5432/purge".to_owned()).unwrap();
        let shown = [
            location.to_string(),
            format!("{location:?}"),
            String::from(location.clone()),
        ];
        for text in shown {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("app:<redacted>@db:5432/purge"), "{text}");
        }
        // The connection still gets the whole URL.
        assert_eq!(
            location,
            StoreLocation::Postgres("postgres://app:s3cret@db:5432/purge".into())
        );
        // A password in the query, and a mistyped scheme.
        let location = StoreLocation::try_from(
            "postgres://app@db/purge?sslmode=require&password=s3cret&SSLPassword=k3y".to_owned(),
        )
        .unwrap();
        let text = location.to_string();
        assert_eq!(
            text,
            "postgres://app@db/purge?sslmode=require&password=<redacted>&SSLPassword=<redacted>"
        );
        let error = StoreLocation::try_from("postgress://app:s3cret@db/purge".to_owned())
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("s3cret") && error.contains("postgress"),
            "{error}"
        );
    }
}
