//! The terms of the daily quota, as settings: when it comes back each day (`vod.quota_reset`)
//! and how much of it is kept for urgent items (`vod.urgent_quota_reserve`). Pure; the time is
//! an argument. What the flusher does with them is in [`hold`](super::hold).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Ts;

const DAY_MS: i64 = 86_400_000;

/// The time of day at which the daily quota comes back, with its UTC offset
/// (`vod.quota_reset`, written `HH:MM[:SS]` then `Z` or `±HH:MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReset {
    /// Milliseconds after local midnight.
    time_of_day_ms: i64,
    /// The offset of local time from UTC, in milliseconds.
    offset_ms: i64,
}

impl QuotaReset {
    /// Midnight in China (UTC+8), when Alibaba Cloud's CDN quotas reset.
    pub const CHINA_MIDNIGHT: QuotaReset = QuotaReset {
        time_of_day_ms: 0,
        offset_ms: 8 * 3_600_000,
    };

    /// The first reset strictly after `now`.
    pub fn next_after(self, now: Ts) -> Ts {
        let local = now.0 + self.offset_ms;
        let local_midnight = local.div_euclid(DAY_MS) * DAY_MS;
        let mut at = local_midnight + self.time_of_day_ms - self.offset_ms;
        while at <= now.0 {
            at += DAY_MS;
        }
        Ts(at)
    }
}

impl FromStr for QuotaReset {
    type Err = String;

    fn from_str(raw: &str) -> Result<QuotaReset, String> {
        let bad = || {
            format!(
                "{raw:?} is not a time of day with its offset, such as \"00:00+08:00\" or \"16:00Z\""
            )
        };
        let (time, offset_ms) = if let Some(time) = raw.strip_suffix('Z') {
            (time, 0)
        } else {
            let at = raw.rfind(['+', '-']).ok_or_else(bad)?;
            let (time, offset) = raw.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = hours_minutes(&offset[1..]).ok_or_else(bad)?;
            if h > 14 {
                return Err(bad());
            }
            (time, sign * (h * 3_600_000 + m * 60_000))
        };
        let mut parts = time.split(':');
        let (h, m) = match (parts.next(), parts.next()) {
            (Some(h), Some(m)) => hours_minutes(&format!("{h}:{m}")).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let s = match parts.next() {
            None => 0,
            Some(s) => two_digits(s).filter(|s| *s < 60).ok_or_else(bad)?,
        };
        if parts.next().is_some() || h > 23 {
            return Err(bad());
        }
        Ok(QuotaReset {
            time_of_day_ms: h * 3_600_000 + m * 60_000 + s * 1000,
            offset_ms,
        })
    }
}

/// `HH:MM` with minutes below 60.
fn hours_minutes(raw: &str) -> Option<(i64, i64)> {
    let (h, m) = raw.split_once(':')?;
    Some((two_digits(h)?, two_digits(m).filter(|m| *m < 60)?))
}

fn two_digits(raw: &str) -> Option<i64> {
    (raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_digit())).then(|| raw.parse().ok())?
}

impl fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.time_of_day_ms / 1000;
        write!(f, "{:02}:{:02}", t / 3600, t / 60 % 60)?;
        if t % 60 != 0 {
            write!(f, ":{:02}", t % 60)?;
        }
        let o = self.offset_ms / 60_000;
        match o {
            0 => f.write_str("Z"),
            _ => write!(
                f,
                "{}{:02}:{:02}",
                if o < 0 { '-' } else { '+' },
                o.abs() / 60,
                o.abs() % 60
            ),
        }
    }
}

impl<'de> Deserialize<'de> for QuotaReset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<QuotaReset, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for QuotaReset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The part of the daily quota kept for urgent items (`vod.urgent_quota_reserve`): a share of
/// the daily quota (`"10%"`) or a number of URLs (`200`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    Percent(f64),
    Urls(u64),
}

impl Reserve {
    /// The URLs kept back out of a daily quota of `total`.
    pub fn of(self, total: u64) -> u64 {
        match self {
            Reserve::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
            Reserve::Urls(n) => n,
        }
    }
}

impl FromStr for Reserve {
    type Err = String;

    fn from_str(raw: &str) -> Result<Reserve, String> {
        let raw = raw.trim();
        if let Some(percent) = raw.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Reserve::Percent(p)),
                Ok(p) => Err(format!("{p}% is outside 0% to 100% of the daily quota")),
                Err(_) => Err(format!(
                    "{raw:?} is not a share such as \"10%\" or a number of URLs"
                )),
            };
        }
        raw.parse::<u64>()
            .map(Reserve::Urls)
            .map_err(|_| format!("{raw:?} is not a share such as \"10%\" or a number of URLs"))
    }
}

impl<'de> Deserialize<'de> for Reserve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reserve, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Reserve::Urls(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Reserve {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reserve::Percent(p) => s.collect_str(&format_args!("{p}%")),
            Reserve::Urls(n) => s.serialize_u64(*n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch milliseconds of an RFC 3339 time.
    fn at(rfc3339: &str) -> Ts {
        Ts::parse(rfc3339).expect("a valid time")
    }

    #[test]
    fn the_next_reset_around_midnight_and_in_other_offsets() {
        let china = QuotaReset::CHINA_MIDNIGHT;
        let table = [
            // Just before midnight in UTC+8: one second to go.
            (china, "2026-11-30T15:59:59Z", "2026-11-30T16:00:00Z"),
            // Exactly at the reset: the next one, a day later.
            (china, "2026-11-30T16:00:00Z", "2026-12-01T16:00:00Z"),
            (china, "2026-11-30T16:00:01Z", "2026-12-01T16:00:00Z"),
            // Early morning in China is still the previous UTC day.
            (china, "2026-11-30T23:30:00Z", "2026-12-01T16:00:00Z"),
            // Across the end of a year and of a leap February.
            (china, "2026-12-31T20:00:00Z", "2027-01-01T16:00:00Z"),
            (china, "2028-02-28T17:00:00Z", "2028-02-29T16:00:00Z"),
            (
                "00:00Z".parse().unwrap(),
                "2026-11-30T23:59:59Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "09:30-05:00".parse().unwrap(),
                "2026-11-30T14:29:00Z",
                "2026-11-30T14:30:00Z",
            ),
            (
                "09:30-05:00".parse().unwrap(),
                "2026-11-30T14:31:00Z",
                "2026-12-01T14:30:00Z",
            ),
            (
                "23:59:30+05:45".parse().unwrap(),
                "2026-11-30T18:13:00Z",
                "2026-11-30T18:14:30Z",
            ),
            // An offset past noon puts the reset on the previous UTC day.
            (
                "00:00+14:00".parse().unwrap(),
                "2026-11-30T09:00:00Z",
                "2026-11-30T10:00:00Z",
            ),
        ];
        for (reset, now, want) in table {
            assert_eq!(reset.next_after(at(now)), at(want), "{reset} after {now}");
        }
    }

    #[test]
    fn reset_times_parse_and_refuse_what_is_malformed() {
        assert_eq!("00:00+08:00".parse(), Ok(QuotaReset::CHINA_MIDNIGHT));
        for good in ["00:00+08:00", "16:00Z", "09:30-05:00", "23:59:30+05:45"] {
            let reset: QuotaReset = good.parse().unwrap();
            assert_eq!(reset.to_string(), good);
        }
        for bad in [
            "",
            "midnight",
            "24:00+08:00",
            "00:60+08:00",
            "0:00+08:00",
            "00:00",
            "00:00+8",
            "00:00+15:00",
            "00:00:61Z",
            "00:00:00:00Z",
            "00:00+08:00Z",
            "+08:00",
        ] {
            let error = bad.parse::<QuotaReset>().unwrap_err();
            assert!(error.contains("time of day"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn reserves_parse_as_a_share_or_a_count() {
        assert_eq!("10%".parse(), Ok(Reserve::Percent(10.0)));
        assert_eq!("0%".parse(), Ok(Reserve::Percent(0.0)));
        assert_eq!("250".parse(), Ok(Reserve::Urls(250)));
        assert_eq!(Reserve::Percent(10.0).of(2000), 200);
        assert_eq!(Reserve::Percent(10.0).of(55), 6);
        assert_eq!(Reserve::Urls(250).of(2000), 250);
        assert!(
            "101%"
                .parse::<Reserve>()
                .unwrap_err()
                .contains("outside 0% to 100%")
        );
        assert!("-1%".parse::<Reserve>().unwrap_err().contains("outside"));
        assert!(
            "ten"
                .parse::<Reserve>()
                .unwrap_err()
                .contains("not a share")
        );
    }
}
