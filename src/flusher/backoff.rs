//! What to do after a failed attempt: retry later or give up. Pure; randomness is an argument.

use std::time::Duration;

use crate::domain::Ts;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub base: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RetryAt(Ts),
    GiveUp,
}

impl RetryPolicy {
    /// The ceiling of the delay after attempt `attempt` (1-based): base doubled each time, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Decides after attempt number `attempt` failed retryably. `jitter` is uniform in [0, 1):
    /// "full jitter" picks the delay uniformly below the ceiling, with a floor of half the base so
    /// retries never come back to back. A throttled call waits at least one second.
    ///
    /// An attempt that failed while VOD was down (`outage`) does not count against
    /// `max_attempts`: an outage would otherwise fail every job in a minute. `max_age` still
    /// applies.
    pub fn decide(
        &self,
        attempt: u32,
        budget_from: Ts,
        now: Ts,
        throttled: bool,
        outage: bool,
        jitter: f64,
    ) -> Decision {
        if attempt >= self.max_attempts && !outage {
            return Decision::GiveUp;
        }
        let ceiling = self.ceiling(attempt);
        let mut delay = ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(self.base / 2);
        if throttled {
            delay = delay.max(Duration::from_secs(1));
        }
        let at = now + delay;
        if at.since(budget_from) > self.max_age {
            return Decision::GiveUp;
        }
        Decision::RetryAt(at)
    }
}

/// VOD's per-minute refresh limit (`QuotaPerMinuteExceeded.Refresh`) and its full refresh queue
/// (`TooMany.Refresh`): the job waits for the next minute, and the attempt does not count.
pub fn is_minute_limit(code: &str) -> bool {
    code.starts_with("QuotaPerMinuteExceeded.") || code.starts_with("TooMany.")
}

/// The start of the minute after `now`, plus a second so that clocks a little apart agree it
/// has come.
pub fn next_minute(now: Ts) -> Ts {
    Ts(now.0.div_euclid(60_000) * 60_000 + 61_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_age: Duration::from_secs(60),
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }

    #[test]
    fn a_minute_limit_waits_for_the_next_minute() {
        for (now, want) in [
            ("2026-12-06T12:00:00.000Z", "2026-12-06T12:01:01Z"),
            ("2026-12-06T12:00:59.999Z", "2026-12-06T12:01:01Z"),
            ("2026-12-06T23:59:30Z", "2026-12-07T00:00:01Z"),
        ] {
            let now = Ts::parse(now).unwrap();
            assert_eq!(next_minute(now), Ts::parse(want).unwrap(), "{now:?}");
        }
        assert!(is_minute_limit("QuotaPerMinuteExceeded.Refresh"));
        assert!(is_minute_limit("TooMany.Refresh"));
        assert!(!is_minute_limit("QuotaExceeded.Refresh"));
        assert!(!is_minute_limit("Throttling"));
    }

    #[test]
    fn ceilings_double_and_cap() {
        let p = policy();
        let got: Vec<u128> = (1..=7).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(p.ceiling(1000), Duration::from_secs(8));
    }

    #[test]
    fn decisions_table() {
        let p = policy();
        let now = Ts(100_000);
        // (attempt, budget_from, throttled, jitter) -> decision
        let table = [
            (1, 100_000, false, 0.0, Decision::RetryAt(Ts(100_250))),
            (1, 100_000, false, 0.999_999, Decision::RetryAt(Ts(100_499))),
            (3, 100_000, false, 0.5, Decision::RetryAt(Ts(101_000))),
            (1, 100_000, true, 0.0, Decision::RetryAt(Ts(101_000))),
            (5, 100_000, false, 0.5, Decision::GiveUp),
            (2, 40_000, false, 0.0, Decision::GiveUp),
        ];
        for (attempt, budget_from, throttled, jitter, want) in table {
            assert_eq!(
                p.decide(attempt, Ts(budget_from), now, throttled, false, jitter),
                want,
                "attempt {attempt}"
            );
        }
        // During an outage the attempt count does not end the retries, the age does.
        assert_eq!(
            p.decide(5, Ts(100_000), now, false, true, 0.5),
            Decision::RetryAt(Ts(104_000))
        );
        assert_eq!(
            p.decide(50, Ts(40_000), now, false, true, 0.0),
            Decision::GiveUp
        );
    }
}
