//! Which due groups to send now: the batching policy, pure.
//!
//! A group with a full batch of due items goes at once. A smaller group waits until its oldest
//! due item has been due for `linger`, so that a burst arriving over a few hundred milliseconds
//! fills whole batches instead of a trickle of small calls.

use std::time::Duration;

use crate::domain::{TaskType, Ts};
use crate::store::DueGroup;

/// Most media IDs `RefreshMediaPlayUrls` takes in one call.
pub const MAX_BATCH: usize = 20;

/// The groups ready to send at `now`, in the order given (the store puts groups with urgent
/// items first, then Refresh, then the oldest); `size` is the most targets a call of a task
/// carries.
pub fn ready(
    groups: &[DueGroup],
    now: Ts,
    linger: Duration,
    size: impl Fn(TaskType) -> usize,
) -> Vec<&DueGroup> {
    groups
        .iter()
        .filter(|g| is_ready(g, now, linger, size(g.task)))
        .collect()
}

/// A group is ready with a full batch (`size` targets), once its oldest due item has lingered,
/// or at once when it holds an urgent item.
pub fn is_ready(group: &DueGroup, now: Ts, linger: Duration, size: usize) -> bool {
    group.due_count >= size as u64 || group.urgent_count > 0 || group.oldest_due_at + linger <= now
}

/// When the first group that is not ready yet will be.
pub fn next_ready_at(
    groups: &[DueGroup],
    now: Ts,
    linger: Duration,
    size: impl Fn(TaskType) -> usize,
) -> Option<Ts> {
    groups
        .iter()
        .filter(|g| !is_ready(g, now, linger, size(g.task)))
        .map(|g| g.oldest_due_at + linger)
        .min()
}

/// How long an idle flusher sleeps: until the first of the next lingering group's end, the next
/// pending item's due time and the next retry (`next_work`), but at most `poll` (the fallback
/// that notices work another process added, and anything else). Work already due means no pause.
pub fn idle_pause(
    now: Ts,
    next_linger: Option<Ts>,
    next_work: Option<Ts>,
    poll: Duration,
) -> Duration {
    match [next_linger, next_work].into_iter().flatten().min() {
        Some(at) => at.since(now).min(poll),
        None => poll,
    }
}

/// How long after it began a read of the due groups is not made again, once every ready group it
/// found waited on a held or spent quota (nothing could be sent): at most a fifth of the time goes
/// to reading them, at least `poll` passes and at most [`HELD_REREAD_MAX`]; a hold that ends
/// clears it. A million due items take most of a second to
/// group; read at every poll while the quota is held, they kept a core busy for nothing. Retries
/// and quota probes do not wait for this.
pub fn held_reread_after(read_took: Duration, poll: Duration) -> Duration {
    (read_took * HELD_READ_SHARE).clamp(poll, HELD_REREAD_MAX.max(poll))
}

/// The longest a held lane leaves its groups unread: an urgent item the reserve would let through,
/// or a group of another task type, waits at most this (and a read slowed by a wait for the write
/// lock does not stretch it).
const HELD_REREAD_MAX: Duration = Duration::from_secs(2);

/// One read of the due groups in this many spans of its own length, while the quota holds back
/// every ready group.
const HELD_READ_SHARE: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_held_on_its_quota_reads_its_groups_a_fifth_of_the_time_at_most() {
        let poll = Duration::from_millis(50);
        // (read time, then no read for) in ms
        let table = [
            (1, 50),
            (10, 50),
            (20, 100),
            (300, 1_500),
            (800, 2_000),
            (6_000, 2_000),
        ];
        for (took, want) in table {
            assert_eq!(
                held_reread_after(Duration::from_millis(took), poll),
                Duration::from_millis(want),
                "{took} ms"
            );
        }
    }

    #[test]
    fn an_idle_flusher_wakes_when_work_is_due() {
        let poll = Duration::from_millis(50);
        let now = Ts(10_000);
        // (next linger end, next due item or retry) -> pause in ms
        let table = [
            (None, None, 50),
            (Some(10_020), None, 20),
            (None, Some(10_007), 7),
            (Some(10_030), Some(10_012), 12),
            (Some(10_900), Some(11_000), 50),
            (None, Some(9_990), 0),
            (Some(10_000), None, 0),
        ];
        for (linger, work, want) in table {
            assert_eq!(
                idle_pause(now, linger.map(Ts), work.map(Ts), poll),
                Duration::from_millis(want),
                "{linger:?} {work:?}"
            );
        }
    }

    fn group(due_count: u64, oldest_due_at: i64) -> DueGroup {
        urgent_group(due_count, 0, oldest_due_at)
    }

    fn urgent_group(due_count: u64, urgent_count: u64, oldest_due_at: i64) -> DueGroup {
        DueGroup {
            account: crate::domain::AccountName::default(),
            task: TaskType::Refresh,
            fingerprint: "f".into(),
            due_count,
            urgent_count,
            oldest_due_at: Ts(oldest_due_at),
        }
    }

    #[test]
    fn readiness_table() {
        let linger = Duration::from_millis(250);
        // (due items, oldest due at, now) -> ready
        let table = [
            (20, 1000, 1000, true),
            (25, 1000, 1000, true),
            (19, 1000, 1000, false),
            (19, 1000, 1249, false),
            (19, 1000, 1250, true),
            (1, 0, 5000, true),
        ];
        for (count, oldest, now, want) in table {
            assert_eq!(
                is_ready(&group(count, oldest), Ts(now), linger, MAX_BATCH),
                want,
                "{count} due since {oldest} at {now}"
            );
        }
        // An urgent item does not linger.
        assert!(is_ready(
            &urgent_group(1, 1, 1000),
            Ts(1000),
            linger,
            MAX_BATCH
        ));
        assert!(is_ready(
            &urgent_group(5, 1, 1000),
            Ts(1000),
            linger,
            MAX_BATCH
        ));
    }

    #[test]
    fn next_ready_is_the_earliest_lingering_group() {
        let linger = Duration::from_millis(250);
        let groups = [group(3, 1000), group(20, 900), group(1, 800)];
        assert_eq!(
            next_ready_at(&groups, Ts(1000), linger, |_| MAX_BATCH),
            Some(Ts(1050))
        );
        assert_eq!(ready(&groups, Ts(1000), linger, |_| MAX_BATCH).len(), 1);
    }
}
