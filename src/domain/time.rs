//! Wall-clock instants as milliseconds since the Unix epoch.
//!
//! The queue rules and the store both compare instants; keeping them as plain integers makes the
//! rules pure (time is an argument) and the database columns portable between SQLite and
//! PostgreSQL.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ts(pub i64);

impl Ts {
    /// The current wall-clock time.
    pub fn now() -> Ts {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// The same instant as a date and time (UTC); `None` out of its range.
    pub fn to_datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    /// RFC 3339 form, for JSON answers.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    /// Parses RFC 3339 (`2026-11-25T10:00:00Z`) or a plain number of epoch milliseconds.
    pub fn parse(raw: &str) -> Option<Ts> {
        if let Ok(ms) = raw.parse::<i64>() {
            return Some(Ts(ms));
        }
        let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
            .ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Ts)
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Ts) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Ts {
    type Output = Ts;
    fn add(self, d: Duration) -> Ts {
        Ts(self.0.saturating_add(millis_of(d)))
    }
}

impl Sub<Duration> for Ts {
    type Output = Ts;
    fn sub(self, d: Duration) -> Ts {
        Ts(self.0.saturating_sub(millis_of(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Ts(1_764_000_000_123);
        assert_eq!(Ts::parse(&t.to_rfc3339()), Some(t));
        assert_eq!(Ts::parse("1764000000123"), Some(t));
        assert_eq!(Ts::parse("yesterday"), None);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Ts(i64::MAX) + Duration::from_secs(1), Ts(i64::MAX));
        assert_eq!(Ts(5).since(Ts(10)), Duration::ZERO);
        assert_eq!(Ts(10).since(Ts(5)), Duration::from_millis(5));
    }
}
