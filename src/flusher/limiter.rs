//! The outbound rate limit: a fixed governor ceiling, plus an adaptive slow-down on throttling.
//!
//! The ceiling is built once from `vod.max_requests_per_second` and never changes, so no code
//! path can exceed it. Its spacing is padded by 1% so that network jitter between this process
//! and VOD cannot squeeze N+1 calls into one second as seen by the server.
//!
//! When VOD throttles anyway (another client shares the account), the limiter pauses for a
//! second and then paces calls through a second, slower governor whose rate is halved on every
//! throttle and grows back by one call per second on every success (AIMD). governor cannot change
//! a quota in place, so the slower limiter is rebuilt on each change; it only ever adds delay on top
//! of the ceiling.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct Limiter {
    max_rps: u32,
    ceiling: DefaultDirectRateLimiter,
    /// The same quota, checked again just before each request leaves. The claim between the
    /// permit and the request takes a variable time (a database commit), which could bring two
    /// departures closer than the quota allows; this second check keeps departures conforming.
    departure: DefaultDirectRateLimiter,
    state: Mutex<Adaptive>,
}

struct Adaptive {
    /// The reduced rate and its limiter, while recovering from throttling.
    reduced: Option<(u32, Arc<DefaultDirectRateLimiter>)>,
    paused_until: Option<Instant>,
}

fn quota(rps: u32, burst: u32) -> Quota {
    let interval = Duration::from_secs(1) / rps.max(1);
    let padded = interval + interval / 100;
    Quota::with_period(padded)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero burst"))
}

impl Limiter {
    pub fn new(max_rps: u32, burst: u32) -> Limiter {
        Limiter {
            max_rps,
            ceiling: RateLimiter::direct(quota(max_rps, burst)),
            departure: RateLimiter::direct(quota(max_rps, burst)),
            state: Mutex::new(Adaptive {
                reduced: None,
                paused_until: None,
            }),
        }
    }

    /// Waits until one call may go out; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
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

    /// VOD answered with a throttling error: pause briefly and halve the rate.
    pub fn on_throttled(&self) {
        let mut state = self.state.lock().expect("limiter lock");
        let current = state.reduced.as_ref().map_or(self.max_rps, |(r, _)| *r);
        let next = (current / 2).max(1);
        state.reduced = Some((next, Arc::new(RateLimiter::direct(quota(next, 1)))));
        state.paused_until = Some(Instant::now() + Duration::from_secs(1));
    }

    /// A call succeeded: grow the rate back by one call per second.
    pub fn on_success(&self) {
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
}
