//! What the flusher knows that health checks, metrics and the status page report.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::hold::QuotaBook;
use crate::domain::Ts;

/// What the flusher knows that health checks and metrics report.
#[derive(Debug, Default)]
pub struct FlusherStatus {
    /// This process is the store's leader and its flusher is running steps.
    pub(super) active: AtomicBool,
    /// Epoch milliseconds of the last completed step.
    pub(super) last_step: AtomicI64,
    /// The last credential error from VOD, cleared by the next success.
    credential_error: std::sync::Mutex<Option<String>>,
    /// The limiter's target rate after the last call, in calls per second (0: no call yet).
    rate: std::sync::atomic::AtomicU32,
    /// When VOD throttled this process's calls, within the last minute.
    throttled: std::sync::Mutex<std::collections::VecDeque<Ts>>,
    /// The last reading of the daily quota (the quota poller's) and the IDs sent since.
    pub quota: QuotaBook,
}

impl FlusherStatus {
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Starts or stops the flusher (leadership gained or lost).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
    }

    pub fn last_step(&self) -> Option<Ts> {
        match self.last_step.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Ts(ms)),
        }
    }

    pub fn credential_error(&self) -> Option<String> {
        self.credential_error.lock().expect("status lock").clone()
    }

    pub(super) fn set_credential_error(&self, error: Option<String>) {
        *self.credential_error.lock().expect("status lock") = error;
    }

    /// The limiter's target rate after this process's last call; `None` before any call.
    pub fn current_rate(&self) -> Option<u32> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Throttled answers to this process's calls in the minute before `now`.
    pub fn throttled_in_last_minute(&self, now: Ts) -> usize {
        let mut seen = self.throttled.lock().expect("status lock");
        forget_before(&mut seen, now);
        seen.len()
    }

    pub(super) fn note_rate(&self, rate: u32) {
        self.rate.store(rate.max(1), Ordering::Relaxed);
    }

    pub(super) fn note_throttled(&self, at: Ts) {
        let mut seen = self.throttled.lock().expect("status lock");
        forget_before(&mut seen, at);
        seen.push_back(at);
    }
}

/// Drops the instants older than a minute before `now`.
fn forget_before(seen: &mut std::collections::VecDeque<Ts>, now: Ts) {
    while seen
        .front()
        .is_some_and(|t| now.since(*t) > Duration::from_secs(60))
    {
        seen.pop_front();
    }
}
