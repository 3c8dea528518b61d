//! Living within the daily quota: when a task type is held, when it is tried again, and how
//! many IDs a batch may still carry. Pure; the time is an argument.
//!
//! A call answered `QuotaExceeded.Refresh` (or `.Preload`) does not fail its job: the job is
//! *held* (status `held`), no other batch of that task type goes out, and one job of it is tried
//! again (a probe) every `vod.quota_probe_interval`, or at the daily reset (`vod.quota_reset`)
//! if that comes first. The hold ends when a probe goes through (or gets a definite answer that
//! is not about the quota), or when `DescribeVodRefreshQuota`, asked after the hold began,
//! reports enough quota left for the probe's batch ([`poll_ends_hold`]). Answers that say nothing
//! about the quota (timeouts, 5xx, throttling) leave the hold as it is. A hold lasts at most
//! `vod.max_hold`; past it the job fails with the quota code.
//!
//! Between holds, the last poll of the quota bounds what goes out, new batches and retries
//! alike ([`QuotaBook::retry_room`]): a batch carries no more IDs than the quota has left (every
//! ID costs at least one URL), and normal items leave `vod.urgent_quota_reserve` URLs to urgent
//! ones.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::domain::quota_terms::{QuotaReset, Reserve};
use crate::domain::{Quota, Ts};
use crate::store::RetryRoom;

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

/// Whether the last poll ends a hold that began at `since`:
/// - the reading's request left after the hold began (an earlier one says nothing about it);
/// - it shows enough left, after the IDs sent since, for the probe's batch (`probe_ids`): less,
///   and the released jobs would only meet the quota again;
/// - and, when the reading in force as the hold began is known (`at_hold`), more is left than
///   then. What is left is counted in URLs and a media ID may cost several, so only quota that
///   came back (a reset, a raised quota) is worth a release; the same figure again would release
///   jobs that meet the quota again and start a new hold at every poll.
pub fn poll_ends_hold(
    polled: Option<Polled>,
    sent_since_poll: u64,
    since: Ts,
    probe_ids: u64,
    at_hold: Option<u64>,
) -> bool {
    polled.is_some_and(|p| {
        p.at > since
            && p.remaining.saturating_sub(sent_since_poll) >= probe_ids.max(1)
            && at_hold.is_none_or(|before| p.remaining > before)
    })
}

/// What the quota poller last read for a quota, and what the flusher knows of it.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    polled: Option<Polled>,
    /// IDs sent since the request of `polled` left.
    sent: u64,
    /// Held on the quota, as this flusher last knew: a quota answer sets it at once, so that a
    /// step claiming a backlog stops before its next claim.
    held: bool,
    /// What was left by the reading in force when `held` was set (see [`poll_ends_hold`]).
    at_hold: Option<u64>,
}

/// What the quota poller last read, per quota, and the IDs sent since; shared by the poller,
/// the flusher and `/queue`.
#[derive(Debug, Default)]
pub struct QuotaBook {
    entries: Mutex<[Entry; 3]>,
}

fn slot(quota: Quota) -> usize {
    match quota {
        Quota::Refresh => 0,
        Quota::Preload => 1,
        Quota::Directory => 2,
    }
}

impl QuotaBook {
    fn with<T>(&self, task: Quota, f: impl FnOnce(&mut Entry) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner())[slot(task)])
    }

    /// The IDs counted so far, taken as a poll's request leaves: the reading it brings back
    /// already counts them.
    pub fn mark(&self, task: Quota) -> u64 {
        self.with(task, |e| e.sent)
    }

    /// A new reading, whose request left when the count stood at `mark`: only the IDs sent
    /// since stay counted.
    pub fn polled(&self, task: Quota, polled: Polled, mark: u64) {
        self.with(task, |e| {
            e.polled = Some(polled);
            e.sent = e.sent.saturating_sub(mark);
        });
    }

    /// `ids` more IDs are on their way to VOD.
    pub fn sent(&self, task: Quota, ids: u64) {
        self.with(task, |e| e.sent += ids);
    }

    pub fn last(&self, task: Quota) -> (Option<Polled>, u64) {
        self.with(task, |e| (e.polled, e.sent))
    }

    /// Marks a quota held (remembering what the reading in force says is left) or not.
    pub fn set_held(&self, task: Quota, held: bool) {
        self.with(task, |e| {
            if held && !e.held {
                e.at_hold = e.polled.map(|p| p.remaining);
            }
            if !held {
                e.at_hold = None;
            }
            e.held = held;
        });
    }

    pub fn is_held(&self, task: Quota) -> bool {
        self.with(task, |e| e.held)
    }

    /// See [`poll_ends_hold`].
    pub fn poll_ends_hold(&self, task: Quota, since: Ts, probe_ids: u64) -> bool {
        let e = self.with(task, |e| *e);
        poll_ends_hold(e.polled, e.sent, since, probe_ids, e.at_hold)
    }

    /// How many IDs a normal and an urgent retry of `task` may carry (see [`allowance`]):
    /// retries spend quota as new batches do, so they meet the same bound and leave the reserve
    /// to urgent ones.
    pub fn retry_room(&self, task: Quota, policy: &HoldPolicy, now: Ts) -> RetryRoom {
        RetryRoom {
            normal: self.allowance(task, policy, false, now),
            urgent: self.allowance(task, policy, true, now),
        }
    }

    /// Whether a job of `ids` IDs (urgent or not) fits in what the allowance leaves at `now`.
    pub fn admits(
        &self,
        task: Quota,
        policy: &HoldPolicy,
        urgent: bool,
        ids: u64,
        now: Ts,
    ) -> bool {
        self.allowance(task, policy, urgent, now)
            .is_none_or(|left| left >= ids)
    }

    /// See [`allowance`].
    pub fn allowance(
        &self,
        task: Quota,
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
    fn retries_meet_the_allowance_of_new_batches() {
        // 150 left of a 2,000 quota whose reserve is 200: the normal backlog may not spend it.
        let p = policy();
        let book = QuotaBook::default();
        let polled_at = at("2026-11-30T04:00:00Z");
        let reading = Polled {
            at: polled_at,
            total: 2000,
            remaining: 150,
        };
        book.polled(Quota::Refresh, reading, 0);
        let now = polled_at + Duration::from_secs(1);
        let room = |normal, urgent| RetryRoom { normal, urgent };
        assert_eq!(
            book.retry_room(Quota::Refresh, &p, now),
            room(Some(0), Some(150))
        );
        assert!(!book.admits(Quota::Refresh, &p, false, 20, now));
        assert!(book.admits(Quota::Refresh, &p, true, 20, now));
        book.sent(Quota::Refresh, 140);
        assert_eq!(
            book.retry_room(Quota::Refresh, &p, now),
            room(Some(0), Some(10))
        );
        assert!(!book.admits(Quota::Refresh, &p, true, 20, now), "10 left");
        assert!(book.admits(Quota::Refresh, &p, true, 10, now));
        assert_eq!(
            book.retry_room(Quota::Preload, &p, now),
            RetryRoom::OPEN,
            "no reading"
        );
        // A reading whose request left after 100 of those 140 were counted keeps the other 40.
        let mark = 100;
        book.polled(
            Quota::Refresh,
            Polled {
                remaining: 1000,
                ..reading
            },
            mark,
        );
        assert_eq!(book.last(Quota::Refresh).1, 40);
    }

    #[test]
    fn a_hold_remembers_what_was_left_when_it_began() {
        let since = at("2026-11-30T04:00:00Z");
        let book = QuotaBook::default();
        let reading = |secs: u64, remaining| Polled {
            at: since + Duration::from_secs(secs),
            total: 2000,
            remaining,
        };
        book.polled(
            Quota::Refresh,
            Polled {
                at: Ts(since.0 - 1_000),
                total: 2000,
                remaining: 30,
            },
            0,
        );
        book.set_held(Quota::Refresh, true);
        // The same 30 URLs, read after the hold began: a 20-ID probe may cost more than that.
        book.polled(Quota::Refresh, reading(60, 30), 0);
        assert!(!book.poll_ends_hold(Quota::Refresh, since, 20));
        // Held again (the flag is kept): the figure it began with is kept too.
        book.set_held(Quota::Refresh, true);
        book.polled(Quota::Refresh, reading(120, 30), 0);
        assert!(!book.poll_ends_hold(Quota::Refresh, since, 20));
        // The quota came back.
        book.polled(Quota::Refresh, reading(180, 2000), 0);
        assert!(book.poll_ends_hold(Quota::Refresh, since, 20));
        // Once the hold is over, the next one starts from the reading in force then.
        book.set_held(Quota::Refresh, false);
        book.set_held(Quota::Refresh, true);
        assert!(!book.poll_ends_hold(Quota::Refresh, since, 20));
    }

    #[test]
    fn a_poll_ends_a_hold_only_when_taken_after_it_began_and_covering_the_probe() {
        let since = at("2026-11-30T04:00:00Z");
        let reading = |secs: u64, remaining| {
            Some(Polled {
                at: since + Duration::from_secs(secs),
                total: 2000,
                remaining,
            })
        };
        let before = |remaining| {
            Some(Polled {
                at: Ts(since.0 - 1),
                total: 2000,
                remaining,
            })
        };
        let table = [
            // (reading, sent since it, probe's IDs, ends)
            (None, 0, 20, false),
            (before(2000), 0, 20, false),
            (
                Some(Polled {
                    at: since,
                    total: 2000,
                    remaining: 2000,
                }),
                0,
                20,
                false,
            ),
            (reading(1, 2000), 0, 20, true),
            (reading(1, 19), 0, 20, false),
            (reading(1, 20), 0, 20, true),
            (reading(1, 30), 15, 20, false),
            (reading(1, 5), 0, 5, true),
            (reading(1, 0), 0, 0, false),
        ];
        for (polled, sent, probe, ends) in table {
            assert_eq!(
                poll_ends_hold(polled, sent, since, probe, None),
                ends,
                "{polled:?} sent {sent} probe {probe}"
            );
        }
        // Known what was left when the hold began: only more than that ends it.
        assert!(!poll_ends_hold(reading(1, 2000), 0, since, 20, Some(2000)));
        assert!(!poll_ends_hold(reading(1, 40), 0, since, 20, Some(60)));
        assert!(poll_ends_hold(reading(1, 61), 0, since, 20, Some(60)));
    }
}
