//! The outbound rate limit: a fixed governor ceiling, plus an adaptive slow-down on throttling.
//!
//! The ceiling is built once from `vod.max_requests_per_second` and never changes, so no code
//! path can exceed it. Its spacing is padded by 3% so that network jitter between this process
//! and VOD cannot squeeze N+1 calls into one second as seen by the server.
//!
//! When VOD throttles anyway (another client shares the account), the limiter pauses for a
//! second and then paces calls through a second, slower governor whose rate is halved on every
//! throttle and grows back by one call per second on every success (AIMD). governor cannot change
//! a quota in place, so the slower limiter is rebuilt on each change; it only ever adds delay on top
//! of the ceiling.
//!
//! When VOD is down (several calls in a row fail with a retryable error: 5xx, timeouts, refused
//! connections), the limiter lets one call through per pause, a pause that doubles from
//! [`OUTAGE_PAUSE_MIN`] to [`OUTAGE_PAUSE_MAX`]: a probe. Any answer that is not such a failure
//! ends the outage. Without this, every new batch and every retry would still go out at the full
//! rate during an outage, and burn its attempts.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct Limiter {
    max_rps: u32,
    /// The first and the longest pause between probes while VOD is down.
    outage_pauses: (Duration, Duration),
    ceiling: DefaultDirectRateLimiter,
    /// The same quota, checked again just before each request leaves. The claim between the
    /// permit and the request takes a variable time (a database commit), which could bring two
    /// departures closer than the quota allows; this second check keeps departures conforming.
    departure: DefaultDirectRateLimiter,
    state: Mutex<Adaptive>,
    /// Wakes callers waiting for a probe slot when the outage ends.
    outage_over: tokio::sync::Notify,
}

struct Adaptive {
    /// The reduced rate and its limiter, while recovering from throttling.
    reduced: Option<(u32, Arc<DefaultDirectRateLimiter>)>,
    paused_until: Option<Instant>,
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

/// How much longer than `1 / rate` the spacing between calls is. Over any one-second window
/// this leaves `PAD_PERCENT` × 10 ms for the delays between a call leaving this process and VOD
/// receiving it to vary, without VOD counting more than `rate` calls in that window.
const PAD_PERCENT: u32 = 3;

fn quota(rps: u32, burst: u32) -> Quota {
    let interval = Duration::from_secs(1) / rps.max(1);
    let padded = interval + interval * PAD_PERCENT / 100;
    Quota::with_period(padded)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero burst"))
}

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
            max_rps,
            outage_pauses: (first, longest),
            ceiling: RateLimiter::direct(quota(max_rps, burst)),
            departure: RateLimiter::direct(quota(max_rps, burst)),
            state: Mutex::new(Adaptive {
                reduced: None,
                paused_until: None,
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
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = outage_over => {}
                    }
                }
                None => break,
            }
        }
        let (pause, reduced) = {
            let state = self.state.lock().expect("limiter lock");
            (
                state.paused_until,
                state.reduced.as_ref().map(|(_, l)| l.clone()),
            )
        };
        if let Some(until) = pause {
            tokio::time::sleep_until(until.into()).await;
        }
        if let Some(reduced) = reduced {
            reduced.until_ready().await;
        }
        self.ceiling.until_ready().await;
        started.elapsed()
    }

    /// Waits until a request may leave; call right before sending.
    pub async fn depart(&self) {
        self.departure.until_ready().await;
    }

    /// The current target rate in calls per second.
    pub fn current_rps(&self) -> u32 {
        let state = self.state.lock().expect("limiter lock");
        state.reduced.as_ref().map_or(self.max_rps, |(r, _)| *r)
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

    /// VOD answered with a throttling error: pause briefly and halve the rate.
    pub fn on_throttled(&self) {
        self.on_answer();
        let mut state = self.state.lock().expect("limiter lock");
        let current = state.reduced.as_ref().map_or(self.max_rps, |(r, _)| *r);
        let next = (current / 2).max(1);
        state.reduced = Some((next, Arc::new(RateLimiter::direct(quota(next, 1)))));
        state.paused_until = Some(Instant::now() + Duration::from_secs(1));
    }

    /// A call succeeded: grow the rate back by one call per second.
    pub fn on_success(&self) {
        self.on_answer();
        let mut state = self.state.lock().expect("limiter lock");
        state.paused_until = None;
        if let Some((rate, _)) = state.reduced {
            let next = rate + 1;
            state.reduced = if next >= self.max_rps {
                None
            } else {
                Some((next, Arc::new(RateLimiter::direct(quota(next, 1)))))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_and_success_recovers() {
        let limiter = Limiter::new(50, 1);
        assert_eq!(limiter.current_rps(), 50);
        limiter.on_throttled();
        assert_eq!(limiter.current_rps(), 25);
        limiter.on_throttled();
        assert_eq!(limiter.current_rps(), 12);
        for _ in 0..37 {
            limiter.on_success();
        }
        assert_eq!(limiter.current_rps(), 49);
        limiter.on_success();
        assert_eq!(limiter.current_rps(), 50);
        for _ in 0..10 {
            limiter.on_throttled();
        }
        assert_eq!(limiter.current_rps(), 1, "never below one call per second");
    }

    #[tokio::test]
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
        assert!(
            first >= ms(95),
            "the first probe waits one pause: {first:?}"
        );
        limiter.acquire().await;
        let second = started.elapsed();
        assert!(second >= ms(195), "one call per pause: {second:?}");
        // Failed probes double the pause up to the cap.
        assert!(limiter.on_unavailable());
        assert!(limiter.on_unavailable());
        assert!(limiter.on_unavailable());
        let before = Instant::now();
        limiter.acquire().await;
        let capped = before.elapsed();
        assert!(capped >= ms(295) && capped < ms(1000), "{capped:?}");
        // Any answer ends the outage: calls go at the full rate again.
        limiter.on_answer();
        assert!(!limiter.in_outage());
        let before = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(before.elapsed() < ms(90), "{:?}", before.elapsed());
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
        assert!(waited < ms(450), "woken when the outage ended: {waited:?}");
        // Failures that are not in a row do not make an outage.
        limiter.on_unavailable();
        limiter.on_unavailable();
        limiter.on_success();
        assert!(!limiter.on_unavailable());
    }
}
