//! What a purge names besides media IDs: files and directories on the account's VOD CDN.
//!
//! A target is a media ID (`RefreshMediaPlayUrls`), a file URL or a directory URL
//! (`RefreshVodObjectCaches` / `PreloadVodObjectCaches`). URLs are normalised before they are
//! stored, so that two spellings of one URL land in one pending item, and only URLs on one of
//! the account's CDN domains (`vod.cdn_domains`) are accepted: a typo or a hostile payload must
//! not spend the daily URL quota on someone else's domain.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// What kind of thing a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A VOD media ID: its play URLs.
    Media,
    /// One file on the VOD CDN (a cover, a snapshot, a subtitle file), by URL.
    File,
    /// Everything under a URL ending in `/`.
    Directory,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Media => "media",
            TargetKind::File => "file",
            TargetKind::Directory => "directory",
        }
    }
}

/// Why a URL target is refused; the text goes back to the sender and never repeats the user
/// info of the URL it refuses (it may be a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL purge is not enabled: vod.cdn_domains lists no domain")]
    Disabled,
    #[error("{0}")]
    Invalid(String),
    #[error("host {host:?} is not one of vod.cdn_domains")]
    NotAllowed { host: String },
}

impl UrlError {
    /// The error code of the `422` answer.
    pub fn code(&self) -> &'static str {
        match self {
            UrlError::Disabled => "url_purge_disabled",
            UrlError::Invalid(_) => "invalid_url",
            UrlError::NotAllowed { .. } => "url_not_allowed",
        }
    }
}

/// The account's CDN domains, and the rule that turns a URL into its stored form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct CdnDomains {
    /// Lower-case host names.
    domains: Vec<String>,
}

impl CdnDomains {
    /// From `vod.cdn_domains`; each must be a plain host name (checked when the settings load).
    pub fn new(domains: &[String]) -> Result<CdnDomains, String> {
        let mut out = Vec::new();
        for (i, raw) in domains.iter().enumerate() {
            let host = raw.trim().to_ascii_lowercase();
            let parsed = url::Url::parse(&format!("https://{host}/"))
                .map_err(|e| format!("vod.cdn_domains[{i}] {raw:?}: {e}"))?;
            if host.is_empty() || parsed.host_str() != Some(host.as_str()) {
                return Err(format!(
                    "vod.cdn_domains[{i}] {raw:?}: expected a host name such as cdn.example.com (no scheme, port or path)"
                ));
            }
            if !out.contains(&host) {
                out.push(host);
            }
        }
        Ok(CdnDomains { domains: out })
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    pub fn list(&self) -> &[String] {
        &self.domains
    }

    /// Validates and normalises a file (`Directory == false`) or directory URL: `http` or
    /// `https` only, no user info, host lower-cased and on one of the domains, default port and
    /// fragment dropped, path percent-encoded as a browser would send it; a directory ends with
    /// `/` and has no query, a file does not end with `/`.
    pub fn normalise(&self, raw: &str, kind: TargetKind) -> Result<String, UrlError> {
        if self.domains.is_empty() {
            return Err(UrlError::Disabled);
        }
        let invalid = |why: &str| UrlError::Invalid(why.to_owned());
        let raw = raw.trim();
        if raw.len() > MAX_URL_BYTES {
            return Err(UrlError::Invalid(format!(
                "a URL of {} bytes: at most {MAX_URL_BYTES} are accepted",
                raw.len()
            )));
        }
        let mut url = url::Url::parse(raw).map_err(|e| {
            // The parser's message names no part of the URL.
            UrlError::Invalid(format!("not an absolute http(s) URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Invalid(format!(
                "scheme {:?}: only http and https URLs can be purged",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "a URL with user info (user:password@) cannot be purged",
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.domains.contains(&host) {
            return Err(UrlError::NotAllowed { host });
        }
        url.set_fragment(None);
        let ends_in_slash = url.path().ends_with('/');
        match kind {
            TargetKind::Directory => {
                if !ends_in_slash {
                    return Err(invalid("a directory URL must end with /"));
                }
                if url.query().is_some() {
                    return Err(invalid("a directory URL cannot have a query"));
                }
            }
            TargetKind::File if ends_in_slash => {
                return Err(invalid(
                    "a URL ending with / names a directory: send it in directories",
                ));
            }
            _ => {}
        }
        let normalised = String::from(url);
        if normalised.len() > MAX_URL_BYTES {
            return Err(UrlError::Invalid(format!(
                "a URL of {} bytes once normalised: at most {MAX_URL_BYTES} are accepted",
                normalised.len()
            )));
        }
        Ok(normalised)
    }
}

impl TryFrom<Vec<String>> for CdnDomains {
    type Error = String;
    fn try_from(domains: Vec<String>) -> Result<CdnDomains, String> {
        CdnDomains::new(&domains)
    }
}

impl From<CdnDomains> for Vec<String> {
    fn from(domains: CdnDomains) -> Vec<String> {
        domains.domains
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> CdnDomains {
        CdnDomains::new(&["cdn.example.com".to_owned(), "IMG.Example.com".to_owned()]).unwrap()
    }

    #[test]
    fn urls_are_normalised_or_refused() {
        use TargetKind::{Directory, File};
        let long = format!("https://cdn.example.com/{}", "a".repeat(MAX_URL_BYTES));
        for (raw, kind, want) in [
            (
                "https://cdn.example.com/a/cover.jpg",
                File,
                Ok("https://cdn.example.com/a/cover.jpg"),
            ),
            (
                "HTTPS://CDN.Example.COM/a/Cover.jpg",
                File,
                Ok("https://cdn.example.com/a/Cover.jpg"),
            ),
            (
                "https://cdn.example.com:443/a.jpg#top",
                File,
                Ok("https://cdn.example.com/a.jpg"),
            ),
            (
                "http://img.example.com/a b.vtt",
                File,
                Ok("http://img.example.com/a%20b.vtt"),
            ),
            (
                "https://cdn.example.com/a.jpg?v=2",
                File,
                Ok("https://cdn.example.com/a.jpg?v=2"),
            ),
            (
                "  https://cdn.example.com/x/  ",
                Directory,
                Ok("https://cdn.example.com/x/"),
            ),
            ("https://cdn.example.com/x/", File, Err("invalid_url")),
            ("https://cdn.example.com/x", Directory, Err("invalid_url")),
            (
                "https://cdn.example.com/x/?a=1",
                Directory,
                Err("invalid_url"),
            ),
            ("ftp://cdn.example.com/a.jpg", File, Err("invalid_url")),
            ("cdn.example.com/a.jpg", File, Err("invalid_url")),
            (
                "https://user:pw@cdn.example.com/a.jpg",
                File,
                Err("invalid_url"),
            ),
            (
                "https://evil.example.net/a.jpg",
                File,
                Err("url_not_allowed"),
            ),
            (
                "https://cdn.example.com.evil.net/a.jpg",
                File,
                Err("url_not_allowed"),
            ),
            (long.as_str(), File, Err("invalid_url")),
        ] {
            let got = domains().normalise(raw, kind);
            match want {
                Ok(url) => assert_eq!(got.as_deref(), Ok(url), "{raw}"),
                Err(code) => assert_eq!(got.map_err(|e| e.code()), Err(code), "{raw}"),
            }
        }
    }

    #[test]
    fn a_refusal_never_repeats_the_user_info() {
        let error = domains()
            .normalise(
                "https://admin:s3cret@cdn.example.com/a.jpg",
                TargetKind::File,
            )
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn without_domains_url_purge_is_disabled() {
        let none = CdnDomains::new(&[]).unwrap();
        assert_eq!(
            none.normalise("https://cdn.example.com/a.jpg", TargetKind::File),
            Err(UrlError::Disabled)
        );
    }

    #[test]
    fn domains_are_plain_host_names() {
        for bad in [
            "https://cdn.example.com",
            "cdn.example.com/x",
            "cdn.example.com:8080",
            "",
        ] {
            assert!(CdnDomains::new(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
        assert_eq!(domains().list(), ["cdn.example.com", "img.example.com"]);
    }
}
