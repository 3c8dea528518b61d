//! The outbound rate limit: a fixed ceiling, plus adaptive pacing on throttling.
//!
//! The ceiling is `vod.max_requests_per_second`: calls are handed evenly spaced slots at that
//! rate, and right before a request leaves, a window of the last departures holds it back if
//! it would make more than that many in any second (see [`super::ceiling`]). No code path can
//! exceed it.
//!
//! When VOD throttles anyway (another client shares the account), calls are also spaced at the
//! rate [`Cubic`](super::pacing::Cubic) gives: cut to 0.7 of what was getting through on a
//! throttled answer, then grown back along a cubic curve that probes above the old limit, so the
//! pacing converges on the rate really available and finds it again when it grows. That spacing
//! only ever adds delay on top of the ceiling.
//!
//! When VOD is down (several calls in a row fail with a retryable error: 5xx, timeouts, refused
//! connections), the limiter lets one call through per pause, a pause that doubles from
//! [`OUTAGE_PAUSE_MIN`] to [`OUTAGE_PAUSE_MAX`]: a probe. Any answer that is not such a failure
//! ends the outage. Without this, every new batch and every retry would still go out at the full
//! rate during an outage, and burn its attempts.

use std::sync::Mutex;
use std::time::Duration;

// Tokio's clock, which tests can pause and advance; the pure parts take it as `std` instants.
use tokio::time::Instant;

use super::ceiling::{Spacing, Window};
use super::pacing::Cubic;

pub struct Limiter {
    /// The first and the longest pause between probes while VOD is down.
    outage_pauses: (Duration, Duration),
    /// Checked just before each request leaves. The claim between the slot and the request
    /// takes a variable time (a database commit), which could bring departures closer than the
    /// rate allows; this check keeps every second within it.
    departures: Mutex<Window>,
    state: Mutex<Adaptive>,
    /// Wakes callers waiting for a probe slot when the outage ends.
    outage_over: tokio::sync::Notify,
}

struct Adaptive {
    /// The instant the pacing curve counts seconds from.
    epoch: Instant,
    pacing: Cubic,
    /// Slots at the paced rate (the ceiling, or lower after throttling).
    spacing: Spacing,
    /// Successful answers in the last second: the rate that is getting through.
    successes: std::collections::VecDeque<Instant>,
    /// Retryable failures in a row (any other outcome resets it).
    failures_in_a_row: u32,
    /// Set while VOD looks down: calls go out one per pause.
    outage: Option<Outage>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    pause: Duration,
    /// When the next probe may go out.
    next_probe: Instant,
}

/// Retryable failures in a row after which VOD is considered down.
pub const OUTAGE_AFTER_FAILURES: u32 = 3;
/// The first pause between probes while VOD is down; it doubles on every failed probe.
pub const OUTAGE_PAUSE_MIN: Duration = Duration::from_secs(1);
/// The longest pause between probes while VOD is down.
pub const OUTAGE_PAUSE_MAX: Duration = Duration::from_secs(8);

impl Limiter {
    pub fn new(max_rps: u32, burst: u32) -> Limiter {
        Limiter::with_outage_pauses(max_rps, burst, OUTAGE_PAUSE_MIN, OUTAGE_PAUSE_MAX)
    }

    /// A limiter with other pauses between outage probes (tests).
    pub fn with_outage_pauses(
        max_rps: u32,
        burst: u32,
        first: Duration,
        longest: Duration,
    ) -> Limiter {
        Limiter {
            outage_pauses: (first, longest),
            departures: Mutex::new(Window::new(max_rps)),
            state: Mutex::new(Adaptive {
                epoch: Instant::now(),
                pacing: Cubic::new(f64::from(max_rps.max(1))),
                spacing: Spacing::new(f64::from(max_rps.max(1)), burst),
                successes: std::collections::VecDeque::new(),
                failures_in_a_row: 0,
                outage: None,
            }),
            outage_over: tokio::sync::Notify::new(),
        }
    }

    /// Waits until one call may go out; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        // While VOD is down, one caller per pause gets through (the probe).
        loop {
            // Created before the check, so an outage ending right after it still wakes us.
            let outage_over = self.outage_over.notified();
            let wait = {
                let mut state = self.state.lock().expect("limiter lock");
                let now = Instant::now();
                match &mut state.outage {
                    Some(outage) if outage.next_probe > now => Some(outage.next_probe),
                    Some(outage) => {
                        outage.next_probe = now + outage.pause;
                        None
                    }
                    None => None,
                }
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = outage_over => {}
                    }
                }
                None => break,
            }
        }
        // The next slot at the paced rate: the ceiling, or the lower rate throttling has set.
        let slot = {
            let mut state = self.state.lock().expect("limiter lock");
            let now = Instant::now();
            let t = now.duration_since(state.epoch).as_secs_f64();
            state.pacing.settle(t);
            let rate = state.pacing.rate(t);
            state.spacing.set_rate(rate);
            Instant::from_std(state.spacing.take(now.into_std()))
        };
        // A slot already open goes at once: a timer even for a time already past waits for the
        // runtime's next timer tick (up to a millisecond, the idle service's latency).
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
        started.elapsed()
    }

    /// Waits until a request may leave; call right before sending.
    pub async fn depart(&self) {
        loop {
            let wait = self
                .departures
                .lock()
                .expect("limiter lock")
                .depart(Instant::now().into_std());
            match wait {
                None => return,
                Some(until) => tokio::time::sleep_until(Instant::from_std(until)).await,
            }
        }
    }

    /// The current target rate in calls per second.
    pub fn current_rps(&self) -> u32 {
        let state = self.state.lock().expect("limiter lock");
        let t = state.epoch.elapsed().as_secs_f64();
        state.pacing.rate(t).round() as u32
    }

    /// True while VOD is considered down (see the module documentation).
    pub fn in_outage(&self) -> bool {
        self.state.lock().expect("limiter lock").outage.is_some()
    }

    /// A call failed with a retryable error (5xx, timeout, connection). Returns true when VOD is
    /// now considered down.
    pub fn on_unavailable(&self) -> bool {
        let mut state = self.state.lock().expect("limiter lock");
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        let now = Instant::now();
        let (first, longest) = self.outage_pauses;
        state.outage = match state.outage {
            Some(outage) => {
                let pause = (outage.pause * 2).min(longest);
                Some(Outage {
                    pause,
                    next_probe: now + pause,
                })
            }
            None if state.failures_in_a_row >= OUTAGE_AFTER_FAILURES => Some(Outage {
                pause: first,
                next_probe: now + first,
            }),
            None => None,
        };
        state.outage.is_some()
    }

    /// VOD answered (with anything but a retryable failure): it is up.
    pub fn on_answer(&self) {
        let mut state = self.state.lock().expect("limiter lock");
        state.failures_in_a_row = 0;
        if state.outage.take().is_some() {
            self.outage_over.notify_waiters();
        }
    }

    /// VOD throttled a call that left at `sent_at`: cut the pacing rate, once per episode.
    pub fn on_throttled(&self, sent_at: Instant) {
        self.on_answer();
        let mut state = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        forget_older_than_a_second(&mut state.successes, now);
        let got_through = state.successes.len() as f64;
        let t = |i: Instant| i.saturating_duration_since(state.epoch).as_secs_f64();
        let (now_t, sent_t) = (t(now), t(sent_at));
        if state.pacing.on_throttled(now_t, sent_t, got_through) {
            tracing::info!(
                rate = state.pacing.rate(now_t),
                got_through,
                "VOD throttled: pacing calls slower"
            );
        }
    }

    /// A call succeeded.
    pub fn on_success(&self) {
        self.on_answer();
        let mut state = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        state.successes.push_back(now);
        forget_older_than_a_second(&mut state.successes, now);
    }
}

fn forget_older_than_a_second(seen: &mut std::collections::VecDeque<Instant>, now: Instant) {
    while seen
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
    {
        seen.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_lowers_the_rate_once_per_episode() {
        let limiter = Limiter::new(50, 1);
        assert_eq!(limiter.current_rps(), 50);
        let sent = Instant::now();
        for _ in 0..40 {
            limiter.on_success();
        }
        limiter.on_throttled(sent);
        assert_eq!(limiter.current_rps(), 28, "0.7 of the 40 that got through");
        // The other calls of the same episode were sent before the cut.
        limiter.on_throttled(sent);
        limiter.on_throttled(sent);
        assert_eq!(limiter.current_rps(), 28);
    }

    /// On tokio's paused clock: the waits are exact, whatever the machine is doing.
    #[tokio::test(start_paused = true)]
    async fn an_outage_lets_one_probe_through_per_pause() {
        let ms = Duration::from_millis;
        let limiter = Limiter::with_outage_pauses(50, 50, ms(100), ms(300));
        assert!(!limiter.on_unavailable());
        assert!(!limiter.on_unavailable());
        assert!(
            limiter.on_unavailable(),
            "down after three failures in a row"
        );
        let started = Instant::now();
        limiter.acquire().await;
        let first = started.elapsed();
        assert_eq!(first, ms(100), "the first probe waits one pause");
        limiter.acquire().await;
        let second = started.elapsed();
        assert_eq!(second, ms(200), "one call per pause");
        // Failed probes double the pause up to the cap.
        assert!(limiter.on_unavailable());
        assert!(limiter.on_unavailable());
        assert!(limiter.on_unavailable());
        let before = Instant::now();
        limiter.acquire().await;
        let capped = before.elapsed();
        assert_eq!(capped, ms(300), "the pause doubled up to its cap");
        // Any answer ends the outage: calls go at the full rate again.
        limiter.on_answer();
        assert!(!limiter.in_outage());
        let before = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert_eq!(before.elapsed(), ms(0), "the burst goes at once");
        // A caller waiting for the next probe slot goes as soon as the outage ends.
        let slow = std::sync::Arc::new(Limiter::with_outage_pauses(50, 50, ms(600), ms(600)));
        for _ in 0..3 {
            slow.on_unavailable();
        }
        let waiting = tokio::spawn({
            let slow = slow.clone();
            async move {
                slow.acquire().await; // the probe slot, 600 ms from now
                let before = Instant::now();
                slow.acquire().await; // the next slot is 600 ms later, unless the outage ends
                before.elapsed()
            }
        });
        tokio::time::sleep(ms(800)).await;
        slow.on_answer();
        let waited = waiting.await.unwrap();
        assert_eq!(waited, ms(200), "woken when the outage ended, 800 ms in");
        // Failures that are not in a row do not make an outage.
        limiter.on_unavailable();
        limiter.on_unavailable();
        limiter.on_success();
        assert!(!limiter.on_unavailable());
    }
}
