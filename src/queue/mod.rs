//! The debounce and dedup rules of the queue, with time as an argument.
//!
//! A pending item is keyed by (media ID, task, options fingerprint). It becomes due at
//! `min(last_seen + quiet, first_seen + max_wait)`: a burst of events keeps pushing the quiet
//! deadline back, but never past `max_wait` after the first event. A new event for a pending item
//! only moves `last_seen` and counts the event.
//!
//! [`Timing::merge`] is the rule; the embedded store folds its merge log with it, and the
//! PostgreSQL store writes it in SQL ([`MERGE_DUE_AT`]). [`Queue`] is the in-memory model used to
//! test the rule and the batching without a database.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{MediaId, Priority, TaskType, Ts};

/// How a merge moves an item's due time, as PostgreSQL's merge statement writes it ([`Timing::merge`]
/// is the rule; SQLite folds its merge log with it): the event's time is `now`, its quiet delay
/// `quiet` (none for an urgent event) and the item's urgency after the merge `urgent`.
pub const MERGE_DUE_AT: &str = "urgent ? min(due_at, max(last_seen, now) + quiet) : min(max(last_seen, now) + quiet, deadline)";

/// How long an item waits after its last event, and at most after its first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    pub quiet: Duration,
    pub max_wait: Duration,
}

impl Debounce {
    /// The instant after which no event can delay an item first seen at `first_seen`.
    pub fn deadline(&self, first_seen: Ts) -> Ts {
        first_seen + self.max_wait
    }

    /// When an item whose latest event came at `last_seen` becomes due.
    pub fn due_at(&self, last_seen: Ts, deadline: Ts) -> Ts {
        (last_seen + self.quiet).min(deadline)
    }

    /// The debounce of an event of `priority`: an urgent event has no quiet period.
    /// The URLs a cover lookup found: their events were debounced as the media ID's, so they are
    /// due at once (and linger with their group as any short group does).
    pub fn for_covers() -> Debounce {
        Debounce {
            quiet: Duration::ZERO,
            max_wait: Duration::ZERO,
        }
    }

    pub fn for_priority(self, priority: Priority) -> Debounce {
        match priority {
            Priority::Normal => self,
            Priority::Urgent => Debounce {
                quiet: Duration::ZERO,
                ..self
            },
        }
    }
}

/// Identity of a pending item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub media_id: MediaId,
    pub task: TaskType,
    pub fingerprint: String,
}

/// One pending item and its debounce state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub key: ItemKey,
    pub first_seen: Ts,
    /// What its events decide: when it is due, and what it counts.
    pub timing: Timing,
}

impl Pending {
    pub fn new(key: ItemKey, now: Ts, debounce: Debounce) -> Pending {
        Pending::with_priority(key, now, debounce, Priority::Normal)
    }

    /// A new item of an event of `priority` (an urgent one is due at once).
    pub fn with_priority(key: ItemKey, now: Ts, debounce: Debounce, priority: Priority) -> Pending {
        let debounce = debounce.for_priority(priority);
        let deadline = debounce.deadline(now);
        Pending {
            key,
            first_seen: now,
            timing: Timing {
                last_seen: now,
                deadline,
                due_at: debounce.due_at(now, deadline),
                events: 1,
                priority,
                quiet: debounce.quiet,
            },
        }
    }

    /// Folds a later normal event into this item. The deadline set by the first event stays.
    pub fn merge(&mut self, now: Ts, debounce: Debounce) {
        self.merge_event(now, debounce, Priority::Normal);
    }

    /// Folds a later event of `priority` into this item (see [`Timing::merge`]).
    pub fn merge_event(&mut self, now: Ts, debounce: Debounce, priority: Priority) {
        let quiet = debounce.for_priority(priority).quiet;
        self.timing.merge(now, quiet, priority);
    }

    pub fn is_due(&self, now: Ts) -> bool {
        self.timing.due_at <= now
    }
}

/// What the events of a pending item decide: when it is due, and what it counts. The store folds
/// logged merges into its rows with this rule ([`Timing::merge`]), so the rule has one home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub last_seen: Ts,
    /// Set by the first event: no later event delays the item past it.
    pub deadline: Ts,
    pub due_at: Ts,
    pub events: u64,
    pub priority: Priority,
    /// The quiet delay of the latest event (at most max_wait; none for an urgent one).
    pub quiet: Duration,
}

impl Timing {
    /// Folds a later event into the item: it came at `now`, with its source's `quiet` delay
    /// (none for an urgent event) and its `priority`. A normal item is due at the end of the new
    /// quiet period, never past its deadline; once urgent, an item is due no later than it
    /// already was. An event older than the latest one does not move `last_seen` back.
    pub fn merge(&mut self, now: Ts, quiet: Duration, priority: Priority) {
        self.last_seen = self.last_seen.max(now);
        self.events += 1;
        self.priority = self.priority.max(priority);
        self.quiet = quiet;
        self.due_at = match self.priority {
            Priority::Urgent => self.due_at.min(self.last_seen + quiet),
            Priority::Normal => self.quiet_end(),
        };
    }

    /// When a normal item is due: the end of its latest quiet period, never past its deadline.
    /// (An item's latest event and its quiet delay say when it is due, whatever came before.)
    pub fn quiet_end(&self) -> Ts {
        (self.last_seen + self.quiet).min(self.deadline)
    }
}

/// Whether an event created an item or joined one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    New,
    Merged,
}

/// The in-memory model of the queue: pending items only. Claimed items are gone from it, which
/// is what makes an event for an in-flight item create a new one. It is the oracle the store's
/// backends are checked against (`tests/it/store/model.rs`: random events and claims replayed
/// through both).
#[derive(Debug, Default)]
pub struct Queue {
    items: HashMap<ItemKey, Pending>,
}

impl Queue {
    pub fn push(&mut self, key: ItemKey, now: Ts, debounce: Debounce) -> Pushed {
        self.push_event(key, now, debounce, Priority::Normal)
    }

    /// An event of `priority`: a new item, or merged into the pending one (see [`Timing::merge`]).
    pub fn push_event(
        &mut self,
        key: ItemKey,
        now: Ts,
        debounce: Debounce,
        priority: Priority,
    ) -> Pushed {
        match self.items.get_mut(&key) {
            Some(item) => {
                item.merge_event(now, debounce, priority);
                Pushed::Merged
            }
            None => {
                let item = Pending::with_priority(key.clone(), now, debounce, priority);
                self.items.insert(key, item);
                Pushed::New
            }
        }
    }

    /// The pending items, in no order.
    pub fn items(&self) -> impl Iterator<Item = &Pending> {
        self.items.values()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Due items, oldest first, each respecting "Refresh before Preload": a Preload waits while a
    /// Refresh of the same media ID is pending (`blocked` lists media IDs with a Refresh in flight).
    pub fn due(&self, now: Ts, refresh_in_flight: &dyn Fn(&MediaId) -> bool) -> Vec<&Pending> {
        let mut due: Vec<&Pending> = self
            .items
            .values()
            .filter(|p| p.is_due(now))
            .filter(|p| {
                p.key.task == TaskType::Refresh
                    || !self.preload_blocked(&p.key.media_id, refresh_in_flight)
            })
            .collect();
        due.sort_by(|a, b| (a.first_seen, &a.key).cmp(&(b.first_seen, &b.key)));
        due
    }

    fn preload_blocked(
        &self,
        media_id: &MediaId,
        refresh_in_flight: &dyn Fn(&MediaId) -> bool,
    ) -> bool {
        refresh_in_flight(media_id)
            || self
                .items
                .keys()
                .any(|k| k.task == TaskType::Refresh && &k.media_id == media_id)
    }

    /// Removes and returns up to `max` of the given items (claiming them into a batch).
    pub fn claim(&mut self, keys: &[ItemKey]) -> Vec<Pending> {
        keys.iter().filter_map(|k| self.items.remove(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MediaIdRules;

    const S: i64 = 1000;

    fn key(id: &str, task: TaskType) -> ItemKey {
        ItemKey {
            media_id: MediaIdRules::default().parse(id).unwrap(),
            task,
            fingerprint: "f".into(),
        }
    }

    fn debounce(quiet: i64, max_wait: i64) -> Debounce {
        Debounce {
            quiet: Duration::from_secs(quiet as u64),
            max_wait: Duration::from_secs(max_wait as u64),
        }
    }

    #[test]
    fn urgent_events_skip_the_quiet_period_and_are_still_merged() {
        use Priority::{Normal as N, Urgent as U};
        // (events at seconds with their priority) -> (due at seconds, priority, events), with a
        // quiet period of 2 s and max_wait of 30 s.
        type Events<'a> = &'a [(i64, Priority)];
        let table: &[(Events, (i64, Priority))] = &[
            (&[(0, U)], (0, U)),
            (&[(0, U), (1, N)], (0, U)),
            (&[(0, N), (1, U)], (1, U)),
            (&[(0, N), (1, N), (2, U)], (2, U)),
            (&[(0, U), (1, U)], (0, U)),
            (&[(0, N), (1, N)], (3, N)),
        ];
        let d = debounce(2, 30);
        for (events, (due, priority)) in table {
            let (first, p) = events[0];
            let mut item = Pending::with_priority(key("a", TaskType::Refresh), Ts(first * S), d, p);
            for (t, p) in &events[1..] {
                item.merge_event(Ts(t * S), d, *p);
            }
            assert_eq!(
                (item.timing.due_at, item.timing.priority, item.timing.events),
                (Ts(due * S), *priority, events.len() as u64),
                "{events:?}"
            );
        }
    }

    #[test]
    fn due_time_table() {
        // (events at seconds, quiet, max_wait) -> due at seconds
        let table: &[(&[i64], i64, i64, i64)] = &[
            (&[0], 2, 30, 2),
            (&[0, 1], 2, 30, 3),
            (&[0, 1, 2, 3, 4, 5], 2, 5, 5),
            (&[0, 10], 2, 30, 12),
            (&[0, 29], 2, 30, 30),
            (&[5, 3], 2, 30, 7), // an out-of-order event does not move last_seen back
        ];
        for (events, quiet, max_wait, want) in table {
            let d = debounce(*quiet, *max_wait);
            let mut item = Pending::new(key("a", TaskType::Refresh), Ts(events[0] * S), d);
            for t in &events[1..] {
                item.merge(Ts(t * S), d);
            }
            assert_eq!(
                item.timing.due_at,
                Ts(want * S),
                "{events:?} quiet={quiet} max_wait={max_wait}"
            );
            assert_eq!(item.timing.events, events.len() as u64);
        }
    }

    #[test]
    fn thousand_events_over_two_hundred_ids_make_ten_full_batches() {
        let d = debounce(2, 30);
        let mut q = Queue::default();
        let mut merged = 0;
        for i in 0..1000 {
            let id = format!("video{:03}", i % 200);
            if q.push(key(&id, TaskType::Refresh), Ts(i), d) == Pushed::Merged {
                merged += 1;
            }
        }
        assert_eq!((q.len(), merged), (200, 800));
        assert!(
            q.due(Ts(1000), &|_| false).is_empty(),
            "nothing is due inside the quiet window"
        );

        let mut batches = Vec::new();
        loop {
            let keys: Vec<ItemKey> = q
                .due(Ts(10 * S), &|_| false)
                .iter()
                .take(20)
                .map(|p| p.key.clone())
                .collect();
            if keys.is_empty() {
                break;
            }
            batches.push(q.claim(&keys));
        }
        assert_eq!(batches.len(), 10);
        assert!(batches.iter().all(|b| b.len() == 20));
        let mut ids: Vec<_> = batches
            .iter()
            .flatten()
            .map(|p| p.key.media_id.to_string())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200, "each ID exactly once");
    }

    #[test]
    fn event_for_claimed_item_creates_a_new_one() {
        let d = debounce(2, 30);
        let mut q = Queue::default();
        q.push(key("a", TaskType::Refresh), Ts(0), d);
        let claimed = q.claim(&[key("a", TaskType::Refresh)]);
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            q.push(key("a", TaskType::Refresh), Ts(3 * S), d),
            Pushed::New
        );
        assert_eq!(q.due(Ts(5 * S), &|_| false).len(), 1);
    }

    #[test]
    fn preload_waits_for_refresh() {
        let d = debounce(2, 30);
        let mut q = Queue::default();
        q.push(key("a", TaskType::Refresh), Ts(5 * S), d);
        q.push(key("a", TaskType::Preload), Ts(0), d);
        let due: Vec<_> = q
            .due(Ts(10 * S), &|_| false)
            .iter()
            .map(|p| p.key.task)
            .collect();
        assert_eq!(due, vec![TaskType::Refresh]);
        q.claim(&[key("a", TaskType::Refresh)]);
        assert!(
            q.due(Ts(10 * S), &|_| true).is_empty(),
            "still waits while the refresh is in flight"
        );
        assert_eq!(q.due(Ts(10 * S), &|_| false).len(), 1);
    }

    #[test]
    fn debounce_scenario_from_the_spec() {
        // One event per second for 10 s, quiet 2 s, max_wait 5 s: sent at the max-wait deadline
        // and once more after the last event.
        let d = debounce(2, 5);
        let mut q = Queue::default();
        let mut sends = Vec::new();
        for ms in (0..=15 * S).step_by(100) {
            if ms % S == 0 && ms < 10 * S {
                q.push(key("a", TaskType::Refresh), Ts(ms), d);
            }
            let keys: Vec<ItemKey> = q
                .due(Ts(ms), &|_| false)
                .iter()
                .map(|p| p.key.clone())
                .collect();
            if !keys.is_empty() {
                q.claim(&keys);
                sends.push(ms);
            }
        }
        assert_eq!(sends, vec![5 * S, 11 * S]);
    }
}
