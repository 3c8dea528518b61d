//! The hard ceiling on calls per second, as two pure schedules (the time is an argument).
//!
//! - [`Spacing`] hands out evenly spaced slots at the configured rate. A caller that comes late
//!   for its slot (a database commit took a moment) may use up to [`CATCH_UP`] slots it missed,
//!   so small delays in the flusher's loop do not cost throughput.
//! - [`Window`] is checked right before a request leaves: at most `max` departures in any
//!   [`WINDOW`] (one second and a margin for the jitter between this process and VOD). This is
//!   what VOD counts, so the catch-up can never put more than `max` calls into one second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Missed slots a late caller may still use.
pub const CATCH_UP: u32 = 2;

/// The width of the departure window: one second, and 0.5% for the network jitter between a
/// call leaving and VOD counting it.
pub const WINDOW: Duration = Duration::from_millis(1005);

/// Evenly spaced slots.
#[derive(Debug, Clone)]
pub struct Spacing {
    interval: Duration,
    /// Missed slots a late caller may still use (at least [`CATCH_UP`]).
    catch_up: u32,
    next: Option<Instant>,
}

impl Spacing {
    /// Slots at `rate` per second (at least one); a late caller may use up to `catch_up` missed
    /// slots (`vod.burst`, at least [`CATCH_UP`]).
    pub fn new(rate: f64, catch_up: u32) -> Spacing {
        Spacing {
            interval: Duration::from_secs_f64(1.0 / rate.max(1.0)),
            catch_up: catch_up.max(CATCH_UP),
            next: None,
        }
    }

    /// Changes the rate; the next slot keeps its place.
    pub fn set_rate(&mut self, rate: f64) {
        self.interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    }

    /// Takes the next slot for a caller asking at `now`: when it may go.
    pub fn take(&mut self, now: Instant) -> Instant {
        let earliest = now
            .checked_sub(self.interval * self.catch_up)
            .unwrap_or(now);
        let slot = self.next.map_or(now, |next| next.max(earliest));
        self.next = Some(slot + self.interval);
        slot
    }
}

/// At most `max` departures in any [`WINDOW`].
#[derive(Debug, Clone)]
pub struct Window {
    max: usize,
    departures: VecDeque<Instant>,
}

impl Window {
    pub fn new(max: u32) -> Window {
        Window {
            max: max.max(1) as usize,
            departures: VecDeque::new(),
        }
    }

    /// Records a departure at `now` and returns `None` when one is allowed then; otherwise the
    /// instant at which one will be.
    pub fn depart(&mut self, now: Instant) -> Option<Instant> {
        while self
            .departures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.departures.pop_front();
        }
        if self.departures.len() < self.max {
            self.departures.push_back(now);
            return None;
        }
        self.departures.front().map(|t| *t + WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slots_are_evenly_spaced_and_a_late_caller_catches_up_a_little() {
        let t0 = Instant::now();
        let mut s = Spacing::new(50.0, 1);
        // (asked at ms, slot at ms)
        let table = [
            (0, 0),
            (0, 20),
            (5, 40),
            (60, 60),
            // 50 ms late for the slot at 80: it may use slots down to 110 - 40 = 70.
            (130, 90),
            (130, 110),
            (130, 130),
            (131, 150),
            // Idle for a while: no burst of old slots, two at most.
            (1000, 960),
            (1000, 980),
            (1000, 1000),
            (1000, 1020),
        ];
        for (asked, want) in table {
            assert_eq!(s.take(t0 + ms(asked)), t0 + ms(want), "asked at {asked}");
        }
    }

    #[test]
    fn no_more_than_max_departures_in_any_window() {
        let t0 = Instant::now();
        let mut w = Window::new(3);
        assert_eq!(w.depart(t0), None);
        assert_eq!(w.depart(t0 + ms(10)), None);
        assert_eq!(w.depart(t0 + ms(20)), None);
        assert_eq!(w.depart(t0 + ms(30)), Some(t0 + WINDOW));
        assert_eq!(w.depart(t0 + WINDOW - ms(1)), Some(t0 + WINDOW));
        assert_eq!(w.depart(t0 + WINDOW), None);
        assert_eq!(w.depart(t0 + WINDOW + ms(1)), Some(t0 + ms(10) + WINDOW));
    }
}
