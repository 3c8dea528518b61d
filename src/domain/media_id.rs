//! Media IDs (VOD `VideoId`s) and the rule that decides which strings are one.

use std::fmt;

use regex::Regex;

/// The default pattern: 1 to 64 of `A-Z a-z 0-9 _ -`. Real VOD IDs are 32 lower-case hex digits.
pub const DEFAULT_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// A media ID that passed the configured pattern. It never contains a comma or whitespace, whatever
/// the pattern says, because VOD separates IDs with commas and trims spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct MediaId(String);

impl MediaId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an ID read back from the store, where it was validated on the way in.
    pub fn from_trusted(raw: String) -> MediaId {
        MediaId(raw)
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MediaId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a media ID; the text goes back to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMediaId {
    #[error("empty media id")]
    Empty,
    #[error("media id contains a comma or whitespace")]
    Separator,
    #[error("media id does not match the pattern {0}")]
    Pattern(String),
}

/// The configured validation rule (`queue.media_id_pattern`, compiled when the settings load).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct MediaIdRules {
    pattern: Regex,
}

impl MediaIdRules {
    pub fn new(pattern: &str) -> Result<MediaIdRules, regex::Error> {
        Ok(MediaIdRules {
            pattern: Regex::new(pattern)?,
        })
    }

    pub fn parse(&self, raw: &str) -> Result<MediaId, InvalidMediaId> {
        if raw.is_empty() {
            return Err(InvalidMediaId::Empty);
        }
        if raw.chars().any(|c| c == ',' || c.is_whitespace()) {
            return Err(InvalidMediaId::Separator);
        }
        if !self.pattern.is_match(raw) {
            return Err(InvalidMediaId::Pattern(self.pattern.as_str().to_owned()));
        }
        Ok(MediaId(raw.to_owned()))
    }
}

impl TryFrom<String> for MediaIdRules {
    type Error = String;

    fn try_from(pattern: String) -> Result<MediaIdRules, String> {
        MediaIdRules::new(&pattern).map_err(|e| format!("not a regular expression: {e}"))
    }
}

impl From<MediaIdRules> for String {
    fn from(rules: MediaIdRules) -> String {
        rules.pattern.as_str().to_owned()
    }
}

impl Default for MediaIdRules {
    fn default() -> Self {
        MediaIdRules::new(DEFAULT_PATTERN).expect("the default pattern compiles")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(rules: &MediaIdRules, raw: &str, ok: bool) {
        assert_eq!(rules.parse(raw).is_ok(), ok, "{raw:?}");
    }

    #[test]
    fn default_rules() {
        let rules = MediaIdRules::default();
        check(&rules, "d0b7d0ff0d3f71f0bfd2e7f4b6a40101", true);
        check(&rules, "a", true);
        check(&rules, "A_b-9", true);
        check(&rules, &"x".repeat(64), true);
        check(&rules, &"x".repeat(65), false);
        check(&rules, "", false);
        check(&rules, "a,b", false);
        check(&rules, "a b", false);
        check(&rules, "a\tb", false);
        check(&rules, "vidé", false);
        check(&rules, "a/b", false);
    }

    #[test]
    fn separators_refused_even_if_pattern_allows() {
        let rules = MediaIdRules::new(".*").unwrap();
        assert_eq!(rules.parse("a,b"), Err(InvalidMediaId::Separator));
        check(&rules, "a.b", true);
    }
}
