//! The hard ceiling on calls per second, as two pure schedules (the time is an argument).
//!
//! - [`Spacing`] hands out evenly spaced slots at the configured rate. A caller that comes late
//!   for its slot by up to [`CATCH_UP`] slots (a database commit took a moment) keeps its place,
//!   so small delays in the flusher's loop do not cost throughput; after a longer pause the slots
//!   start again, with no burst.
//! - [`Window`] is checked right before a request leaves: at most `max` departures in any
//!   [`WINDOW`] (one second and a margin for the jitter between this process and VOD). This is
//!   what VOD counts, so the catch-up can never put more than `max` calls into one second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Missed slots a late caller may still use.
pub const CATCH_UP: u32 = 2;

/// The width of the departure window at 50 calls a second: one second, and 10 ms for the jitter
/// between a call leaving and VOD counting it (see [`Window::width`]).
pub const WINDOW: Duration = Duration::from_millis(1010);

/// The least margin of the departure window. Calls that left a window apart were measured
/// arriving up to 8 ms closer together at the simulator, on loopback with both processes sharing
/// two cores (`bench/drain.sh`: the shortest arrival span of 51 consecutive calls, 997 ms against
/// a 1,005 ms window; 4–9 ms on a second machine); a real account counts arrivals, so the margin
/// covers that.
pub const MIN_MARGIN: Duration = Duration::from_millis(10);

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

    /// Takes the next slot for a caller asking at `now`: when it may go. A caller late by up to
    /// `catch_up` slots keeps its place (the slots it missed go out at once, one after the
    /// other); after a longer pause the slots start again from `now`, with no burst.
    pub fn take(&mut self, now: Instant) -> Instant {
        let earliest = now
            .checked_sub(self.interval * self.catch_up)
            .unwrap_or(now);
        let slot = match self.next {
            Some(next) if next >= earliest => next,
            _ => now,
        };
        self.next = Some(slot + self.interval);
        slot
    }
}

/// At most `max` departures in any [`WINDOW`].
#[derive(Debug, Clone)]
pub struct Window {
    max: usize,
    width: Duration,
    departures: VecDeque<Instant>,
}

impl Window {
    pub fn new(max: u32) -> Window {
        Window {
            max: max.max(1) as usize,
            width: Window::width(max),
            departures: VecDeque::new(),
        }
    }

    /// One second, and a margin for the jitter between a call leaving and VOD counting it: a
    /// tenth of the interval between calls, at least [`MIN_MARGIN`]. At 50 calls a second that
    /// is 10 ms (1% of the rate); at 5 a second, 20 ms, where a call is a larger share of the
    /// second and the margin costs as little.
    pub fn width(max: u32) -> Duration {
        let interval = Duration::from_secs(1) / max.max(1);
        Duration::from_secs(1) + (interval / 10).max(MIN_MARGIN)
    }

    /// Records a departure at `now` and returns `None` when one is allowed then; otherwise the
    /// instant at which one will be.
    pub fn depart(&mut self, now: Instant) -> Option<Instant> {
        while self
            .departures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.width)
        {
            self.departures.pop_front();
        }
        if self.departures.len() < self.max {
            self.departures.push_back(now);
            return None;
        }
        self.departures.front().map(|t| *t + self.width)
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
            // 30 ms late for the slot at 80 (within two slots): the missed slots go at once.
            (110, 80),
            (110, 100),
            (110, 120),
            (121, 140),
            // Idle for a while: the slots start again from now, with no burst.
            (1000, 1000),
            (1000, 1020),
            (1005, 1040),
        ];
        for (asked, want) in table {
            assert_eq!(s.take(t0 + ms(asked)), t0 + ms(want), "asked at {asked}");
        }
    }

    #[test]
    fn the_margin_is_a_tenth_of_an_interval_and_at_least_10_ms() {
        assert_eq!(Window::width(50), WINDOW);
        assert_eq!(WINDOW, ms(1010));
        assert_eq!(Window::width(20), ms(1010));
        assert_eq!(Window::width(5), ms(1020));
        assert_eq!(Window::width(1), ms(1100));
        assert_eq!(Window::width(0), ms(1100));
    }

    #[test]
    fn no_more_than_max_departures_in_any_window() {
        let t0 = Instant::now();
        let mut w = Window::new(50);
        w.max = 3;
        assert_eq!(w.depart(t0), None);
        assert_eq!(w.depart(t0 + ms(10)), None);
        assert_eq!(w.depart(t0 + ms(20)), None);
        assert_eq!(w.depart(t0 + ms(30)), Some(t0 + WINDOW));
        assert_eq!(w.depart(t0 + WINDOW - ms(1)), Some(t0 + WINDOW));
        assert_eq!(w.depart(t0 + WINDOW), None);
        assert_eq!(w.depart(t0 + WINDOW + ms(1)), Some(t0 + ms(10) + WINDOW));
    }
}
