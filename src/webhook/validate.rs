//! Validation of a `[[sources]]` table: what serde cannot check.
//!
//! A source is checked once, at start-up, and the message names the source and the key so that
//! an operator can fix the file without reading code. Keys that the chosen scheme or format would
//! ignore are refused rather than silently dropped: a `prefix` on a bearer source is a
//! misunderstanding that would otherwise surface as 401s in production.

use std::time::Duration;

use crate::domain::PurgeOptions;

use super::config::{AuthKind, Events, FormatKind, SourceConfig};
use super::payload::pointer::Pointer;

impl SourceConfig {
    /// Checks what serde cannot; the message names the source and the key.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
            .map_err(|msg| format!("sources.{}: {msg}", self.name))
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "name {:?} must be 1 to 64 of A-Z a-z 0-9 _ -",
                self.name
            ));
        }
        self.check_auth()?;
        self.check_format()?;
        PurgeOptions::parse(&self.options).map_err(|e| format!("options: {e}"))?;
        if let (Some(quiet), Some(max_wait)) = (self.quiet, self.max_wait)
            && quiet > max_wait
        {
            return Err("quiet must not be longer than max_wait".to_owned());
        }
        if self.quiet == Some(Duration::ZERO) || self.max_wait == Some(Duration::ZERO) {
            return Err("quiet and max_wait must be positive".to_owned());
        }
        match (self.rate_limit, self.burst) {
            (Some(0), _) => return Err("rate_limit must be at least 1".to_owned()),
            (_, Some(0)) => return Err("burst must be at least 1".to_owned()),
            (None, Some(_)) => return Err("burst needs rate_limit".to_owned()),
            _ => {}
        }
        Ok(())
    }

    fn check_auth(&self) -> Result<(), String> {
        let auth = self.auth;
        if auth.needs_secrets() {
            if self.secrets.is_empty() {
                return Err(format!(
                    "auth = {auth:?} needs at least one entry in secrets"
                ));
            }
            if self.secrets.iter().any(|s| s.trim().is_empty()) {
                return Err("secrets must not contain an empty string".to_owned());
            }
        } else if !self.secrets.is_empty() {
            return Err("secrets are set but auth = \"none\" would ignore them".to_owned());
        }
        if auth == AuthKind::Hmac && self.header.as_deref().is_none_or(|h| h.trim().is_empty()) {
            return Err(
                "auth = \"hmac\" needs header (the header that carries the signature)".to_owned(),
            );
        }
        if self.header.is_some() && !matches!(auth, AuthKind::Hmac | AuthKind::Bearer) {
            return Err("header is only used by auth = \"hmac\" or \"bearer\"".to_owned());
        }
        if let Some(header) = &self.delivery_id_header
            && (header.trim().is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(format!(
                "delivery_id_header {header:?} is not a header name"
            ));
        }
        if self.prefix.is_some() && auth != AuthKind::Hmac {
            return Err("prefix is only used by auth = \"hmac\"".to_owned());
        }
        if auth.has_timestamp() && self.tolerance().is_zero() {
            return Err("tolerance must be positive".to_owned());
        }
        match (&self.callback_url, auth) {
            (None, AuthKind::VodCallback) => {
                return Err("auth = \"vod-callback\" needs callback_url (the URL exactly as configured in VOD, which VOD signs)".to_owned());
            }
            (Some(url), AuthKind::VodCallback) => {
                let valid = url.starts_with("http://") || url.starts_with("https://");
                if !valid || url.contains(char::is_whitespace) || url.contains('|') {
                    return Err(format!(
                        "callback_url {url:?} is not an http:// or https:// URL"
                    ));
                }
                // The signature leaves the body out: a delivery seen on the way can be sent
                // again with any body within the tolerance.
                if url.starts_with("http://") && !self.allow_http {
                    return Err(format!(
                        "callback_url {url:?} is http://: VOD's signature does not cover the body, \
                         so anyone who sees a delivery on the way can send any body with its \
                         headers; use https:// (or set allow_http = true on a private network)"
                    ));
                }
            }
            (Some(_), _) => {
                return Err("callback_url is only used by auth = \"vod-callback\"".to_owned());
            }
            (None, _) => {}
        }
        if self.allow_http && auth != AuthKind::VodCallback {
            return Err("allow_http is only used by auth = \"vod-callback\"".to_owned());
        }
        if auth == AuthKind::StandardWebhooks {
            for (i, secret) in self.secrets.iter().enumerate() {
                super::auth::standard::decode_secret(secret)
                    .map_err(|e| format!("secrets[{i}] is not a Standard Webhooks secret: {e}"))?;
            }
        }
        Ok(())
    }

    fn check_format(&self) -> Result<(), String> {
        let format = self.format;
        if let Some(bad) = self.include.iter().find(|i| i.as_str() != "cover") {
            return Err(format!("include: unknown {bad:?}, expected \"cover\""));
        }
        if format == FormatKind::JsonPointer {
            if self.pointers.is_empty() && self.url_pointers.is_empty() {
                return Err(
                    "format = \"json-pointer\" needs at least one entry in pointers or url_pointers"
                        .to_owned(),
                );
            }
            for (key, list) in [
                ("pointers", &self.pointers),
                ("url_pointers", &self.url_pointers),
            ] {
                for (i, p) in list.iter().enumerate() {
                    Pointer::parse(p).map_err(|e| format!("{key}[{i}]: {e}"))?;
                }
            }
        } else {
            for (key, list) in [
                ("pointers", &self.pointers),
                ("url_pointers", &self.url_pointers),
            ] {
                if !list.is_empty() {
                    return Err(format!("{key} are only used by format = \"json-pointer\""));
                }
            }
        }
        if !format.is_preset() {
            for (key, set) in [
                ("id_field", self.id_field.is_some()),
                ("media_id_field", self.media_id_field.is_some()),
            ] {
                if set {
                    return Err(format!("{key} is only used by the CMS preset formats"));
                }
            }
        }
        match (&self.events, format) {
            (Some(Events::List(_)), f) if !f.is_preset() => {
                return Err(
                    "events as a list is only used by the CMS preset formats (vod-events takes a table)"
                        .to_owned(),
                );
            }
            (Some(Events::Table(_)), f) if f != FormatKind::VodEvents => {
                return Err("events as a table is only used by format = \"vod-events\"".to_owned());
            }
            (Some(Events::Table(table)), _) => {
                for (event, action) in table {
                    super::payload::vod::EventAction::parse(action)
                        .map_err(|why| format!("events.{event}: {why}"))?;
                }
            }
            _ => {}
        }
        if self.media_id_field.is_some() && format != FormatKind::Strapi {
            return Err("media_id_field is only used by format = \"strapi\"".to_owned());
        }
        if let Some(Events::List(events)) = &self.events
            && events.iter().any(|e| e.trim().is_empty())
        {
            return Err("events must not contain an empty string".to_owned());
        }
        for (key, field) in [
            ("id_field", &self.id_field),
            ("media_id_field", &self.media_id_field),
        ] {
            if let Some(field) = field {
                super::payload::presets::field_pointer(field).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RequestedTask;
    use crate::webhook::config::{DEFAULT_TOLERANCE, HmacAlgorithm, SignatureEncoding};

    fn parse(toml_text: &str) -> SourceConfig {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"))
    }

    #[test]
    fn minimal_bearer_source_and_defaults() {
        let cfg =
            parse("name = \"strapi\"\nauth = \"bearer\"\nsecrets = [\"t\"]\nformat = \"strapi\"");
        cfg.validate().unwrap();
        assert_eq!(cfg.tolerance(), DEFAULT_TOLERANCE);
        assert_eq!(cfg.algorithm, HmacAlgorithm::Sha256);
        assert_eq!(cfg.encoding, SignatureEncoding::Hex);
        assert_eq!(cfg.task, RequestedTask::Refresh);
        assert_eq!(cfg.quiet, None);
    }

    #[test]
    fn every_key() {
        let cfg = parse(
            r#"
            name = "wc"
            auth = "hmac"
            secrets = ["a", "b"]
            format = "json-pointer"
            header = "X-WC-Webhook-Signature"
            algorithm = "sha1"
            encoding = "base64"
            prefix = "sha1="
            tolerance = "90s"
            pointers = ["/meta_data/*/value"]
            task = "RefreshThenPreload"
            options = { formats = ["m3u8"] }
            quiet = "5s"
            max_wait = "1m"
            rate_limit = 10
            burst = 20
            "#,
        );
        cfg.validate().unwrap();
        assert_eq!(cfg.tolerance(), Duration::from_secs(90));
        assert_eq!(cfg.max_wait, Some(Duration::from_secs(60)));
        assert_eq!(cfg.task, RequestedTask::RefreshThenPreload);
    }

    #[test]
    fn unknown_keys_and_values_refused_by_serde() {
        for bad in [
            "name = \"s\"\nauth = \"none\"\nformat = \"native\"\nsecret = \"x\"",
            "name = \"s\"\nauth = \"basic\"\nformat = \"native\"",
            "name = \"s\"\nauth = \"none\"\nformat = \"xml\"",
            "name = \"s\"\nauth = \"none\"\nformat = \"native\"\ntask = \"refresh\"",
            "name = \"s\"\nauth = \"none\"\nformat = \"native\"\nquiet = \"soon\"",
            "name = \"s\"\nformat = \"native\"",
        ] {
            assert!(toml::from_str::<SourceConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let base = "name = \"s\"\n";
        for (rest, key) in [
            ("auth = \"bearer\"\nformat = \"native\"", "secrets"),
            (
                "auth = \"bearer\"\nsecrets = [\"\"]\nformat = \"native\"",
                "secrets",
            ),
            (
                "auth = \"none\"\nsecrets = [\"x\"]\nformat = \"native\"",
                "secrets",
            ),
            (
                "auth = \"hmac\"\nsecrets = [\"x\"]\nformat = \"native\"",
                "header",
            ),
            (
                "auth = \"bearer\"\nsecrets = [\"x\"]\nformat = \"native\"\nprefix = \"a\"",
                "prefix",
            ),
            (
                "auth = \"sanity\"\nsecrets = [\"x\"]\nformat = \"native\"\nheader = \"a\"",
                "header",
            ),
            (
                "auth = \"standard-webhooks\"\nsecrets = [\"whsec_!!\"]\nformat = \"native\"",
                "secrets[0]",
            ),
            (
                "auth = \"ghost\"\nsecrets = [\"x\"]\nformat = \"native\"\ntolerance = \"0s\"",
                "tolerance",
            ),
            ("auth = \"none\"\nformat = \"json-pointer\"", "pointers"),
            (
                "auth = \"none\"\nformat = \"json-pointer\"\npointers = [\"id\"]",
                "pointers[0]",
            ),
            (
                "auth = \"none\"\nformat = \"native\"\npointers = [\"/id\"]",
                "pointers",
            ),
            (
                "auth = \"none\"\nformat = \"native\"\nid_field = \"x\"",
                "id_field",
            ),
            (
                "auth = \"none\"\nformat = \"sanity\"\nmedia_id_field = \"x\"",
                "media_id_field",
            ),
            (
                "auth = \"none\"\nformat = \"ghost\"\nevents = [\" \"]",
                "events",
            ),
            (
                "auth = \"none\"\nformat = \"strapi\"\nid_field = \"\"",
                "id_field",
            ),
            (
                "auth = \"none\"\nformat = \"native\"\noptions = { formats = [\"avi\"] }",
                "options",
            ),
            (
                "auth = \"none\"\nformat = \"native\"\nquiet = \"1m\"\nmax_wait = \"10s\"",
                "quiet",
            ),
            (
                "auth = \"none\"\nformat = \"native\"\nrate_limit = 0",
                "rate_limit",
            ),
            ("auth = \"none\"\nformat = \"native\"\nburst = 5", "burst"),
            (
                "auth = \"vod-callback\"\nsecrets = [\"k\"]\nformat = \"vod-events\"",
                "callback_url",
            ),
            (
                "auth = \"vod-callback\"\nsecrets = [\"k\"]\nformat = \"vod-events\"\ncallback_url = \"example.com/cb\"",
                "callback_url",
            ),
            (
                "auth = \"bearer\"\nsecrets = [\"k\"]\nformat = \"vod-events\"\ncallback_url = \"https://x/cb\"",
                "callback_url is only used by auth = \"vod-callback\"",
            ),
            (
                "auth = \"vod-callback\"\nsecrets = [\"k\"]\nformat = \"vod-events\"\ncallback_url = \"http://x/cb\"",
                "callback_url \"http://x/cb\" is http://",
            ),
            (
                "auth = \"bearer\"\nsecrets = [\"k\"]\nformat = \"native\"\nallow_http = true",
                "allow_http is only used by auth = \"vod-callback\"",
            ),
            (
                "auth = \"none\"\nformat = \"vod-events\"\nevents = [\"TranscodeComplete\"]",
                "events as a list",
            ),
            (
                "auth = \"none\"\nformat = \"strapi\"\nevents = { \"entry.update\" = \"Refresh\" }",
                "events as a table",
            ),
            (
                "auth = \"none\"\nformat = \"vod-events\"\nevents = { TranscodeComplete = \"Purge\" }",
                "events.TranscodeComplete: \"Purge\" is not Refresh",
            ),
        ] {
            let err = parse(&format!("{base}{rest}")).validate().expect_err(rest);
            assert!(err.starts_with("sources.s: "), "{err}");
            assert!(err.contains(key), "{rest}: {err}");
        }
        // allow_http lets an http:// callback URL through, and a vod-callback source's own
        // default tolerance is the short one.
        let local = parse(&format!(
            "{base}auth = \"vod-callback\"\nsecrets = [\"k\"]\nformat = \"vod-events\"\n\
             callback_url = \"http://127.0.0.1/cb\"\nallow_http = true"
        ));
        local.validate().unwrap();
        assert_eq!(
            local.tolerance(),
            crate::webhook::config::VOD_CALLBACK_TOLERANCE
        );
        let err = parse("name = \"a b\"\nauth = \"none\"\nformat = \"native\"")
            .validate()
            .unwrap_err();
        assert!(err.contains("name"), "{err}");
    }

    #[test]
    fn secrets_never_appear_in_messages() {
        let err = parse("name = \"s\"\nauth = \"standard-webhooks\"\nsecrets = [\"whsec_s3cr3t!\"]\nformat = \"native\"")
            .validate()
            .unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        let cfg =
            parse("name = \"s\"\nauth = \"bearer\"\nsecrets = [\"t0ken\"]\nformat = \"native\"");
        assert!(!format!("{cfg:?}").contains("t0ken"));
    }
}
