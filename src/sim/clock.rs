//! The simulator's clock: real time, or a fixed instant for replaying captured requests.
//!
//! Everything time-dependent in the simulator reads this one clock: the timestamp window, the
//! nonce memory, the rate limiter, the quota day, the outage window and the recorded call times.
//! While the clock is fixed, time stands still for all of them, which also makes the rate limit
//! deterministic in tests.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct SimClock {
    origin: Instant,
    fixed: Arc<Mutex<Option<Fixed>>>,
}

#[derive(Debug, Clone, Copy)]
struct Fixed {
    epoch_ms: i64,
    /// The monotonic reading when the clock was fixed; the rate limiter sees time stop there.
    monotonic: Duration,
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock {
            origin: Instant::now(),
            fixed: Arc::new(Mutex::new(None)),
        }
    }

    fn fixed(&self) -> MutexGuard<'_, Option<Fixed>> {
        // A panic while holding this lock cannot leave an `Option<Copy>` half-written.
        self.fixed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fixes the clock at `epoch_secs`, or lets it run again with `None`.
    pub fn set(&self, epoch_secs: Option<i64>) {
        self.set_ms(epoch_secs.map(|s| s.saturating_mul(1000)));
    }

    /// As [`SimClock::set`], to the millisecond.
    pub fn set_ms(&self, epoch_ms: Option<i64>) {
        let monotonic = self.origin.elapsed();
        *self.fixed() = epoch_ms.map(|epoch_ms| Fixed {
            epoch_ms,
            monotonic,
        });
    }

    pub fn now_ms(&self) -> i64 {
        match *self.fixed() {
            Some(f) => f.epoch_ms,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

/// Monotonic time for governor: elapsed since start, frozen while the clock is fixed. After the
/// clock is released it jumps forward to real elapsed time, never backwards.
impl governor::clock::Clock for SimClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        match *self.fixed() {
            Some(f) => f.monotonic,
            None => self.origin.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::Clock as _;

    #[test]
    fn fixed_and_released() {
        let clock = SimClock::new();
        assert!(clock.now_secs() > 1_700_000_000);
        clock.set(Some(1_736_929_800));
        assert_eq!(clock.now_ms(), 1_736_929_800_000);
        let frozen = clock.now();
        assert_eq!(clock.now(), frozen);
        clock.set(None);
        assert!(clock.now() >= frozen);
        assert!(clock.now_secs() > 1_700_000_000);
    }
}
