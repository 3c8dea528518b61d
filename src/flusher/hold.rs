//! Living within the daily quota: when a task type is held, when it is tried again, and how
//! many IDs a batch may still carry. Pure; the time is an argument.
//!
//! A call answered `QuotaExceeded.Refresh` (or `.Preload`) does not fail its job: the job is
//! *held* (status `held`), no other batch of that task type goes out, and one job of it is tried
//! again (a probe) every `vod.quota_probe_interval`, or at the daily reset (`vod.quota_reset`)
//! if that comes first. The hold ends when a probe goes through or when `DescribeVodRefreshQuota`
//! reports quota left. A hold lasts at most `vod.max_hold`; past it the job fails with the
//! quota code.
//!
//! Between holds, the last poll of the quota bounds the batches: a batch carries no more IDs
//! than the quota has left (every ID costs at least one URL), and normal items leave
//! `vod.urgent_quota_reserve` URLs to urgent ones.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{TaskType, Ts};

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

/// The quota settings.
#[derive(Debug, Clone, Copy)]
pub struct HoldPolicy {
    pub probe_interval: Duration,
    pub reset: QuotaReset,
    pub max_hold: Duration,
    pub reserve: Reserve,
}

/// What to do with a job whose call was answered "quota used up".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldDecision {
    /// Hold it; the next probe is at this time.
    HoldUntil(Ts),
    /// It has been held for `max_hold`: fail it with the quota code.
    Fail,
}

impl HoldPolicy {
    pub fn from_settings(vod: &crate::config::VodSettings) -> HoldPolicy {
        HoldPolicy {
            probe_interval: vod.quota_probe_interval,
            reset: vod.quota_reset,
            max_hold: vod.max_hold,
            reserve: vod.urgent_quota_reserve,
        }
    }

    /// When a hold that started at `since` is next probed, seen at `now`: a probe interval later,
    /// at the next reset if that comes first, and never past the end of `max_hold`.
    pub fn next_probe(&self, since: Ts, now: Ts) -> Ts {
        (now + self.probe_interval)
            .min(self.reset.next_after(now))
            .min(since + self.max_hold)
            .max(now)
    }

    /// The decision after a quota answer at `now` for a job held since `held_since` (none: this
    /// is the first quota answer for it).
    pub fn on_quota_answer(&self, held_since: Option<Ts>, now: Ts) -> HoldDecision {
        let since = held_since.unwrap_or(now);
        if now.since(since) >= self.max_hold {
            HoldDecision::Fail
        } else {
            HoldDecision::HoldUntil(self.next_probe(since, now))
        }
    }

    /// True when a job held since `since` has been held too long to be tried again at `now`.
    pub fn expired(&self, since: Ts, now: Ts) -> bool {
        now.since(since) >= self.max_hold
    }
}

/// One reading of `DescribeVodRefreshQuota` for a task type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Polled {
    pub at: Ts,
    pub total: u64,
    pub remaining: u64,
}

impl Polled {
    /// False once a reset has come since the reading: it says nothing about today.
    pub fn is_current(&self, reset: QuotaReset, now: Ts) -> bool {
        reset.next_after(self.at) > now
    }
}

/// How many IDs a batch of `urgent` (or normal) items may carry at `now`, by the last poll and
/// the IDs sent since (`None`: no limit is known, either no poll yet or a reset since it).
pub fn allowance(
    polled: Option<Polled>,
    sent_since_poll: u64,
    policy: &HoldPolicy,
    urgent: bool,
    now: Ts,
) -> Option<u64> {
    let polled = polled.filter(|p| p.is_current(policy.reset, now))?;
    let left = polled.remaining.saturating_sub(sent_since_poll);
    Some(if urgent {
        left
    } else {
        left.saturating_sub(policy.reserve.of(polled.total))
    })
}

/// What the quota poller last read, per task type, and the IDs sent since; shared by the poller,
/// the flusher and `/queue`.
#[derive(Debug, Default)]
pub struct QuotaBook {
    entries: Mutex<[(Option<Polled>, u64); 2]>,
    /// Task types held on the quota, as this flusher last knew: a quota answer sets it at once,
    /// so that a step claiming a backlog stops before its next claim.
    held: Mutex<[bool; 2]>,
}

fn slot(task: TaskType) -> usize {
    match task {
        TaskType::Refresh => 0,
        TaskType::Preload => 1,
    }
}

impl QuotaBook {
    /// A new reading; the IDs counted since the last one are forgotten.
    pub fn polled(&self, task: TaskType, polled: Polled) {
        self.entries.lock().expect("quota lock")[slot(task)] = (Some(polled), 0);
    }

    /// `ids` more IDs are on their way to VOD.
    pub fn sent(&self, task: TaskType, ids: u64) {
        self.entries.lock().expect("quota lock")[slot(task)].1 += ids;
    }

    pub fn last(&self, task: TaskType) -> (Option<Polled>, u64) {
        self.entries.lock().expect("quota lock")[slot(task)]
    }

    pub fn set_held(&self, task: TaskType, held: bool) {
        self.held.lock().expect("quota lock")[slot(task)] = held;
    }

    pub fn is_held(&self, task: TaskType) -> bool {
        self.held.lock().expect("quota lock")[slot(task)]
    }

    /// See [`allowance`].
    pub fn allowance(
        &self,
        task: TaskType,
        policy: &HoldPolicy,
        urgent: bool,
        now: Ts,
    ) -> Option<u64> {
        let (polled, sent) = self.last(task);
        allowance(polled, sent, policy, urgent, now)
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

    fn policy() -> HoldPolicy {
        HoldPolicy {
            probe_interval: Duration::from_secs(300),
            reset: QuotaReset::CHINA_MIDNIGHT,
            max_hold: Duration::from_secs(48 * 3600),
            reserve: Reserve::Percent(10.0),
        }
    }

    #[test]
    fn a_hold_is_probed_every_interval_at_the_reset_and_ends_after_max_hold() {
        let p = policy();
        let noon = at("2026-11-30T04:00:00Z"); // noon in China
        // The first quota answer: held, probed five minutes later.
        assert_eq!(
            p.on_quota_answer(None, noon),
            HoldDecision::HoldUntil(noon + Duration::from_secs(300))
        );
        // Two minutes before the reset: the reset comes before the next interval.
        let before_reset = at("2026-11-30T15:58:00Z");
        assert_eq!(
            p.on_quota_answer(Some(noon), before_reset),
            HoldDecision::HoldUntil(at("2026-11-30T16:00:00Z"))
        );
        // A hold longer than a day goes on until max_hold...
        let next_day = at("2026-12-01T20:00:00Z");
        assert_eq!(
            p.on_quota_answer(Some(noon), next_day),
            HoldDecision::HoldUntil(next_day + Duration::from_secs(300))
        );
        // ...whose end is the last probe...
        let near_end = at("2026-12-02T03:58:00Z");
        assert_eq!(
            p.next_probe(noon, near_end),
            at("2026-12-02T04:00:00Z"),
            "never past the end of max_hold"
        );
        // ...after which the job fails.
        assert_eq!(
            p.on_quota_answer(Some(noon), at("2026-12-02T04:00:00Z")),
            HoldDecision::Fail
        );
        assert!(p.expired(noon, at("2026-12-02T04:00:00Z")));
        assert!(!p.expired(noon, at("2026-12-02T03:59:59Z")));
    }

    #[test]
    fn the_allowance_follows_the_poll_the_ids_sent_and_the_reserve() {
        let p = policy();
        let polled_at = at("2026-11-30T04:00:00Z");
        let poll = |remaining| {
            Some(Polled {
                at: polled_at,
                total: 2000,
                remaining,
            })
        };
        let later = polled_at + Duration::from_secs(60);
        let table = [
            // (poll, sent since, urgent, allowance)
            (None, 0, false, None),
            (poll(2000), 0, false, Some(1800)),
            (poll(2000), 0, true, Some(2000)),
            (poll(250), 30, false, Some(20)),
            (poll(250), 30, true, Some(220)),
            (poll(200), 0, false, Some(0)),
            (poll(150), 0, false, Some(0)),
            (poll(10), 20, true, Some(0)),
        ];
        for (polled, sent, urgent, want) in table {
            assert_eq!(
                allowance(polled, sent, &p, urgent, later),
                want,
                "{polled:?} sent {sent} urgent {urgent}"
            );
        }
        // A reset since the poll makes the reading stale.
        assert_eq!(
            allowance(poll(0), 0, &p, false, at("2026-11-30T16:00:00Z")),
            None
        );
        assert_eq!(
            allowance(poll(0), 0, &p, false, at("2026-11-30T15:59:59Z")),
            Some(0)
        );
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
