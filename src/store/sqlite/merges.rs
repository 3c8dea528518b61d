//! The merge log: events for items already pending, appended instead of rewriting the item.
//!
//! Rewriting an item for each event (its row and its `items_due` entry, in the middle of two
//! large B-trees) dirtied two random pages per event, so a group commit of repeated IDs wrote
//! hundreds of pages where new IDs append to a few. Instead, the ingest writer appends a normal
//! event for a pending item to the `merges` table (one page at the end of one B-tree) and keeps
//! the same events here, in memory, by item. They are folded into the items later with the queue's
//! rule ([`Timing::merge`]), many events per row:
//!
//! - by the flusher's claim, for the items it is about to send (so it decides on their real due
//!   time, and the log never names an item that is gone);
//! - by the ingest writer in chunks, once the log reaches [`FOLD_AT`] events: the events logged
//!   by then (up to a *watermark*) are folded [`FOLD_CHUNK`] items at a time, one chunk per group
//!   commit in item order, so no request waits behind more than one chunk; the last chunk deletes
//!   their rows, a range at the front of the table. The progress is a row of `merge_folds` (the
//!   watermark and the next item to fold) written in each chunk's transaction: after a restart,
//!   rows up to the watermark of items before the next one are already folded and are not read
//!   back;
//! - by the ingest writer at once for an event that makes its item due sooner (an urgent one, or
//!   one whose quiet delay ends before the item's stored due time).
//!
//! So an item's stored `due_at` is never later than its real due time: a merge left in the log
//! only moves it later. The flusher looks for candidates by the stored due time and folds their
//! logged events before it decides, which is what keeps debounce exact.
//!
//! The map is shared by the two write connections, and each touches it only while it holds
//! SQLite's write lock, so it always equals the table's committed rows. After a restart it is
//! read back from the table.
//!
//! What the stored due times may not say is kept beside it, per account, so that finding the
//! items whose stored due time is early does not read every due item at each poll:
//!
//! - the *settled* time: every item stored as due by then has its real due time written, except
//!   those logged or marked stale (the flusher's settle step, and a read of the queue's figures,
//!   move it to the time they looked at);
//! - the *stale* items: a fold's chunk changed them while they were stored as due, or a read of the
//!   figures found them due later than stored; the settle step looks them up by ID and writes
//!   their real due times.
//!
//! So the settle step and the queue's figures read the items that fell due since the last look,
//! the logged ones and the stale ones, not the whole due range. A mark is taken off by the
//! transaction that writes the item's real timing (or deletes it), while it holds the write lock,
//! and put back if that transaction does not commit; or by a look that finds the item gone, or
//! stored as due after the look's horizon, when neither the settled time nor a fold moved
//! meanwhile. Both start empty after a restart (the first settle reads every due item once).

use std::collections::{HashMap, HashSet};

use crate::domain::{Priority, Ts};
use crate::queue::Timing;

/// Logged events at which the ingest writer begins folding the log, in chunks.
pub(crate) const FOLD_AT: usize = 32_768;

/// Items a group commit folds while the log is being folded: a chunk holds the writer for a few
/// milliseconds (BENCHMARKS.md, "The merge log folded in chunks").
pub(crate) const FOLD_CHUNK: usize = 2_048;

/// One logged event: its row in `merges`, its time and its quiet delay (at most max_wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Logged {
    pub seq: i64,
    pub seen: Ts,
    pub quiet_ms: i64,
}

/// The logged events of every pending item that has some, in log order per item.
#[derive(Debug, Default)]
pub(crate) struct MergeLog {
    by_item: HashMap<i64, Vec<Logged>>,
    events: usize,
    /// Each account's stale items (see the module's documentation).
    stale: HashMap<String, HashSet<i64>>,
    /// Each account's settled time (see the module's documentation).
    settled: HashMap<String, Ts>,
    /// Fold chunks begun or committed: a look that saw this change meanwhile does not move a
    /// settled time (a fold it did not see may have changed items under it).
    folds: u64,
    /// A fold's chunk is in a transaction not yet over.
    folding: bool,
    /// The fold under way, in chunks (see the module's documentation).
    chunks: Option<Chunks>,
    /// Claims holding events taken out of the log, not yet committed or put back: no chunk is
    /// folded meanwhile.
    takers: usize,
    /// The highest `seq` given to an event, or read back: the next event is logged after it,
    /// never under a number a deleted row had (SQLite's own choice, the largest row plus one,
    /// would reuse the number of a newest row deleted, and a number up to a fold's watermark
    /// says "logged before the fold began").
    last_seq: i64,
}

/// A fold of the events logged up to a watermark, a chunk of items at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunks {
    watermark: i64,
    /// The items with events up to the watermark still to fold, in ascending order.
    items: std::collections::VecDeque<i64>,
}

/// One chunk of a fold: each item's events up to the fold's watermark, and where the fold stands
/// after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub watermark: i64,
    pub events: Vec<(i64, Vec<Logged>)>,
    /// The next item to fold; `None`: this chunk is the last.
    pub next_item: Option<i64>,
}

/// Where a fold in chunks stands, as `merge_folds` stores it: rows up to `watermark` of items
/// before `next_item` are folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub watermark: i64,
    pub next_item: i64,
}

impl MergeLog {
    /// The log as read back from `(item_id, event)` rows in `seq` order, and the progress of a
    /// fold under way: its rows already folded are left out, and it goes on with the others.
    pub fn from_rows(
        rows: impl IntoIterator<Item = (i64, Logged)>,
        progress: Option<Progress>,
    ) -> MergeLog {
        let mut log = MergeLog::default();
        let mut to_fold = std::collections::BTreeSet::new();
        for (item, event) in rows {
            if let Some(p) = progress.filter(|p| event.seq <= p.watermark) {
                if item < p.next_item {
                    continue;
                }
                to_fold.insert(item);
            }
            log.push(item, event);
        }
        log.chunks = progress.map(|p| Chunks {
            watermark: p.watermark,
            items: to_fold.into_iter().collect(),
        });
        log.last_seq = log.last_seq.max(progress.map_or(0, |p| p.watermark));
        log
    }

    /// The `seq` of the next event to log: after every one given or read back.
    pub fn next_seq(&self) -> i64 {
        self.last_seq + 1
    }

    /// Begins a fold in chunks of the events logged so far, if the log has reached [`FOLD_AT`]
    /// events and no fold is under way; returns where it starts (its first chunk's transaction
    /// stores where it stands).
    pub fn begin_chunks(&mut self) -> Option<Progress> {
        if self.chunks.is_some() || self.events < FOLD_AT {
            return None;
        }
        // Every event logged so far has a number up to the last one given.
        let watermark = self.last_seq;
        let mut items: Vec<i64> = self.by_item.keys().copied().collect();
        items.sort_unstable();
        let next_item = *items.first()?;
        self.chunks = Some(Chunks {
            watermark,
            items: items.into(),
        });
        Some(Progress {
            watermark,
            next_item,
        })
    }

    /// Takes the next chunk of the fold under way: up to `max` items' events up to its
    /// watermark (their later events stay logged). The fold is over once the last is taken.
    ///
    /// None while a claim holds events it took (see [`MergeLog::taker_begins`]).
    pub fn take_chunk(&mut self, max: usize) -> Option<Chunk> {
        if self.takers > 0 {
            return None;
        }
        let chunks = self.chunks.as_mut()?;
        let watermark = chunks.watermark;
        let mut events = Vec::new();
        for _ in 0..max {
            let Some(item) = chunks.items.pop_front() else {
                break;
            };
            let Some(logged) = self.by_item.get_mut(&item) else {
                continue;
            };
            let later = logged.split_off(logged.partition_point(|e| e.seq <= watermark));
            let folded = std::mem::replace(logged, later);
            if logged.is_empty() {
                self.by_item.remove(&item);
            }
            self.events -= folded.len();
            if !folded.is_empty() {
                events.push((item, folded));
            }
        }
        let next_item = chunks.items.front().copied();
        if next_item.is_none() {
            self.chunks = None;
        }
        Some(Chunk {
            watermark,
            events,
            next_item,
        })
    }

    pub fn push(&mut self, item: i64, event: Logged) {
        self.last_seq = self.last_seq.max(event.seq);
        self.by_item.entry(item).or_default().push(event);
        self.events += 1;
    }

    /// Takes an item's events out of the log (they are being folded).
    pub fn take(&mut self, item: i64) -> Vec<Logged> {
        let events = self.by_item.remove(&item).unwrap_or_default();
        self.events -= events.len();
        events
    }

    /// Puts back events taken by a fold whose transaction did not commit. Events the log holds
    /// already (read back from the table meanwhile) are not put back twice.
    pub fn restore(&mut self, item: i64, mut events: Vec<Logged>) {
        let slot = self.by_item.entry(item).or_default();
        events.retain(|e| !slot.iter().any(|held| held.seq == e.seq));
        self.events += events.len();
        // Nothing else can be logged for the item meanwhile (the fold held the write lock), but
        // keep log order regardless.
        slot.append(&mut events);
        slot.sort_unstable_by_key(|e| e.seq);
        if slot.is_empty() {
            self.by_item.remove(&item);
        }
    }

    /// A claim holding events taken out of the log begins: no chunk is folded until it ends.
    pub fn taker_begins(&mut self) {
        self.takers += 1;
    }

    /// A claim that held taken events ended (committed, or put them back).
    pub fn taker_ends(&mut self) {
        self.takers = self.takers.saturating_sub(1);
    }

    /// An item's events, left in the log (to show an item as it will be).
    pub fn peek(&self, item: i64) -> &[Logged] {
        self.by_item.get(&item).map_or(&[], Vec::as_slice)
    }

    /// How many events are logged.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.events
    }

    /// The log read back from the table after a rollback: the stale marks and settled times
    /// stay (a mark of a fold that did not commit is only one more item looked at).
    pub fn reload(&mut self, fresh: MergeLog) {
        self.by_item = fresh.by_item;
        self.events = fresh.events;
        self.chunks = fresh.chunks;
        self.last_seq = self.last_seq.max(fresh.last_seq);
    }

    /// The time by which a fold's chunk at `now` marks the items it changes that are stored as
    /// due: `now`, or a later settled time (a clock stepped back), so that no item under a
    /// settled time changes unmarked.
    pub fn horizon(&self, now: Ts) -> Ts {
        self.settled.values().copied().fold(now, Ts::max)
    }

    /// Marks items of `account` stale.
    pub fn mark(&mut self, account: &str, items: impl IntoIterator<Item = i64>) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_some() {
            self.stale
                .entry(account.to_owned())
                .or_default()
                .extend(items);
        }
    }

    /// Takes an item's stale mark off (its real timing is being written); whether it had one.
    pub fn unmark(&mut self, account: &str, item: i64) -> bool {
        self.stale
            .get_mut(account)
            .is_some_and(|items| items.remove(&item))
    }

    /// Whether an item's stored due time may be earlier than its real one for a reason the
    /// settled time does not cover: logged events, or a stale mark.
    pub fn is_unsettled(&self, account: &str, item: i64) -> bool {
        self.by_item.contains_key(&item)
            || self.stale.get(account).is_some_and(|s| s.contains(&item))
    }

    /// The logged items (of any account) and `account`'s stale ones.
    pub fn unsettled_items(&self, account: &str) -> Vec<i64> {
        let stale = self.stale.get(account).into_iter().flatten();
        let mut items: Vec<i64> = self.by_item.keys().chain(stale).copied().collect();
        items.sort_unstable();
        items.dedup();
        items
    }

    /// How many items [`MergeLog::unsettled_items`] lists, at most.
    pub fn unsettled_len(&self, account: &str) -> usize {
        self.by_item.len() + self.stale.get(account).map_or(0, HashSet::len)
    }

    /// `account`'s settled time (`None`: nothing settled since the start).
    pub fn settled(&self, account: &str) -> Option<Ts> {
        self.settled.get(account).copied()
    }

    /// What a look at `account`'s unsettled items starts from.
    pub fn look(&self, account: &str) -> Look {
        Look {
            settled: self.settled(account),
            folds: self.folds,
        }
    }

    /// A fold's chunk begins (under the write lock).
    pub fn fold_begins(&mut self) {
        self.folds += 1;
        self.folding = true;
    }

    /// The transaction of a fold's chunk, if any, is over (committed or not).
    pub fn fold_ends(&mut self) {
        if std::mem::take(&mut self.folding) {
            self.folds += 1;
        }
    }

    /// Every item of `account` stored as due by `at` has its real due time written, except
    /// those logged or stale, as the look `look` found: unless a fold's chunk began or committed
    /// since it started.
    /// Returns whether it moved.
    pub fn settle(&mut self, account: &str, at: Ts, look: Look) -> bool {
        if look.folds != self.folds || self.folding {
            return false;
        }
        let time = self.settled.entry(account.to_owned()).or_insert(at);
        *time = (*time).max(at);
        true
    }

    /// Takes off the stale marks of `account`'s items for which `gone` holds (items a look found
    /// deleted, or stored as due after its horizon), unless the settled time moved since the
    /// look `look` started (its horizon would no longer cover what another look marked).
    /// Nor while a fold's chunk overlaps the look (a fold marks before it commits: the look's
    /// snapshot may not show the item it marked).
    pub fn drop_marks(&mut self, account: &str, look: Look, gone: impl Fn(i64) -> bool) {
        if self.settled(account) != look.settled || look.folds != self.folds || self.folding {
            return;
        }
        if let Some(items) = self.stale.get_mut(account) {
            items.retain(|item| !gone(*item));
        }
    }
}

/// The state a look at an account's unsettled items started from ([`MergeLog::look`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    pub settled: Option<Ts>,
    folds: u64,
}

/// An item's timing from its row. The row's `due_at` is the key the flusher finds candidates
/// by: exact for an urgent item, and for a normal one never later than the real due time, which
/// the latest event decides ([`Timing::quiet_end`]). So a fold that only moves the due time later
/// need not write `due_at` and move its index entry: the flusher's claim does that for the few
/// items it finds due by the stored time but not by the real one.
pub(crate) fn stored_timing(
    last_seen: Ts,
    deadline: Ts,
    stored_due: Ts,
    events: u64,
    priority: Priority,
    quiet_ms: i64,
) -> Timing {
    let mut timing = Timing {
        last_seen,
        deadline,
        due_at: stored_due,
        events,
        priority,
        quiet: std::time::Duration::from_millis(quiet_ms.max(0) as u64),
    };
    if priority == Priority::Normal {
        timing.due_at = timing.quiet_end();
    }
    timing
}

/// An item's timing after its logged events, in order (each a normal event: urgent ones are
/// never logged).
pub(crate) fn fold(mut timing: Timing, events: &[Logged]) -> Timing {
    for event in events {
        timing.merge(
            event.seen,
            std::time::Duration::from_millis(event.quiet_ms.max(0) as u64),
            Priority::Normal,
        );
    }
    timing
}

/// Whether an event must be folded into its item at once rather than logged: an urgent event,
/// or one whose quiet period ends before the item's stored due time (logged, it would leave the
/// item looking due later than it is).
pub(crate) fn folds_at_once(priority: Priority, event_due: Ts, stored_due: Ts) -> bool {
    priority == Priority::Urgent || event_due < stored_due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MediaIdRules, TaskType};
    use crate::queue::{Debounce, ItemKey, Pending};
    use std::time::Duration;

    const S: i64 = 1000;

    fn logged(seq: i64, seen_s: i64, quiet_s: i64) -> Logged {
        Logged {
            seq,
            seen: Ts(seen_s * S),
            quiet_ms: quiet_s * S,
        }
    }

    #[test]
    fn folding_logged_events_equals_merging_them_one_by_one() {
        // (events at seconds, each with its quiet in seconds), max_wait 30 s: the logged fold
        // gives the item the rule's answer, event by event.
        let table: &[&[(i64, i64)]] = &[
            &[(0, 2), (1, 2)],
            &[(0, 2), (1, 2), (2, 2), (29, 2)],
            &[(0, 10), (1, 2)],
            &[(0, 2), (5, 10), (3, 2)],
            &[(0, 2), (40, 2)],
        ];
        for events in table {
            let key = ItemKey {
                media_id: MediaIdRules::default().parse("a").unwrap(),
                task: TaskType::Refresh,
                fingerprint: "f".into(),
            };
            let debounce = |quiet: i64| Debounce {
                quiet: Duration::from_secs(quiet as u64),
                max_wait: Duration::from_secs(30),
            };
            let (t0, q0) = events[0];
            let mut one_by_one = Pending::new(key, Ts(t0 * S), debounce(q0));
            let start = one_by_one.timing;
            let mut log = MergeLog::default();
            for (seq, (t, q)) in events[1..].iter().enumerate() {
                one_by_one.merge(Ts(t * S), debounce(*q));
                log.push(7, logged(seq as i64, *t, *q));
            }
            assert_eq!(log.len(), events.len() - 1);
            let folded = fold(start, &log.take(7));
            assert_eq!(folded, one_by_one.timing, "{events:?}");
            assert_eq!(log.len(), 0);
        }
    }

    #[test]
    fn taken_events_come_back_in_log_order_and_the_count_follows() {
        let mut log = MergeLog::from_rows(
            [
                (1, logged(1, 0, 2)),
                (2, logged(2, 0, 2)),
                (1, logged(3, 1, 2)),
            ],
            None,
        );
        assert_eq!(log.len(), 3);
        let taken = log.take(1);
        assert_eq!(taken.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!((log.len(), log.peek(1).len()), (1, 0));
        log.restore(1, taken);
        assert_eq!(
            log.peek(1).iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(log.len(), 3);
    }

    /// A log of `n` events: item `seq % 3`, for seq 1..=n.
    fn log_of(n: i64, progress: Option<Progress>) -> MergeLog {
        MergeLog::from_rows((1..=n).map(|seq| (seq % 3, logged(seq, seq, 2))), progress)
    }

    /// (item, seqs) of a chunk's events.
    fn seqs(chunk: &Chunk) -> Vec<(i64, Vec<i64>)> {
        chunk
            .events
            .iter()
            .map(|(item, events)| (*item, events.iter().map(|e| e.seq).collect()))
            .collect()
    }

    #[test]
    fn a_fold_in_chunks_takes_the_events_up_to_its_watermark_item_by_item() {
        let n = FOLD_AT as i64;
        let mut log = log_of(n - 1, None);
        assert_eq!(log.begin_chunks(), None, "under FOLD_AT events");
        assert_eq!(log.take_chunk(2), None, "no fold under way");
        log.push(0, logged(n, n, 2));
        let progress = log.begin_chunks().unwrap();
        assert_eq!(
            progress,
            Progress {
                watermark: n,
                next_item: 0
            }
        );
        assert_eq!(log.begin_chunks(), None, "one fold at a time");
        // Logged after the watermark: stays in the log.
        log.push(1, logged(n + 1, n + 1, 2));
        let first = log.take_chunk(2).unwrap();
        assert_eq!((first.watermark, first.next_item), (n, Some(2)));
        let items: Vec<i64> = seqs(&first).iter().map(|(item, _)| *item).collect();
        assert_eq!(items, [0, 1]);
        assert!(seqs(&first).iter().all(|(_, s)| s.iter().all(|&q| q <= n)));
        assert_eq!(log.peek(0), &[]);
        assert_eq!(
            log.peek(1).iter().map(|e| e.seq).collect::<Vec<_>>(),
            [n + 1]
        );
        // A claim took item 2's events meanwhile: the last chunk is empty, and ends the fold.
        log.take(2);
        let last = log.take_chunk(2).unwrap();
        assert_eq!((last.events.len(), last.next_item), (0, None));
        assert_eq!(log.take_chunk(2), None);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn a_fold_under_way_goes_on_after_a_restart_without_its_folded_rows() {
        // Items 0 and 1 folded up to seq 9; the rows of 9 and after read back as logged.
        let progress = Progress {
            watermark: 9,
            next_item: 2,
        };
        let mut log = log_of(12, Some(progress));
        assert_eq!(
            log.len(),
            3 + 3,
            "item 2's three up to 9, and the three after 9"
        );
        assert_eq!(log.peek(0).iter().map(|e| e.seq).collect::<Vec<_>>(), [12]);
        let chunk = log.take_chunk(10).unwrap();
        assert_eq!(seqs(&chunk), [(2, vec![2, 5, 8])]);
        assert_eq!(chunk.next_item, None);
        assert_eq!(log.len(), 3);
        // Read back, the next event is logged after the watermark, even with no row above it.
        let log = log_of(
            9,
            Some(Progress {
                watermark: 12,
                next_item: 2,
            }),
        );
        assert_eq!(log.next_seq(), 13);
    }

    #[test]
    fn a_look_overlapped_by_a_bulk_fold_neither_settles_nor_drops_marks() {
        let mut log = MergeLog::default();
        let look = log.look("a");
        log.fold_begins();
        // The fold marks item 7 before it commits; the look's snapshot did not show it.
        log.mark("a", [7]);
        log.drop_marks("a", look, |_| true);
        assert!(!log.settle("a", Ts(1_000), look));
        assert_eq!((log.unsettled_len("a"), log.settled("a")), (1, None));
        log.fold_ends();
        assert!(
            !log.settle("a", Ts(1_000), look),
            "the fold ended during the look"
        );
        // A look begun after the fold: it drops what it found gone, and settles.
        let look = log.look("a");
        log.drop_marks("a", look, |item| item == 7);
        assert!(log.settle("a", Ts(1_000), look));
        assert_eq!(
            (log.unsettled_len("a"), log.settled("a")),
            (0, Some(Ts(1_000)))
        );
        // A look begun before the settled time moved drops nothing.
        log.mark("a", [8]);
        log.settle("a", Ts(2_000), log.look("a"));
        log.drop_marks("a", look, |_| true);
        assert_eq!(log.unsettled_len("a"), 1);
    }

    #[test]
    fn no_chunk_is_folded_while_a_claim_holds_taken_events() {
        let mut log = log_of(FOLD_AT as i64, None);
        log.begin_chunks().unwrap();
        log.taker_begins();
        let taken = log.take(0);
        assert_eq!(log.take_chunk(1), None, "a claim holds item 0's events");
        // Its transaction did not commit; the log was read back meanwhile (the events are
        // there already): they are not put back twice.
        let before = log.peek(1).len();
        log.restore(1, log.peek(1).to_vec());
        assert_eq!(log.peek(1).len(), before);
        log.restore(0, taken);
        log.taker_ends();
        let chunk = log.take_chunk(1).unwrap();
        assert_eq!(chunk.events[0].0, 0, "the fold goes on from item 0");
    }

    #[test]
    fn a_deleted_newest_event_does_not_give_its_number_again() {
        let mut log = log_of(5, None);
        assert_eq!(log.next_seq(), 6);
        // A claim takes the item with the newest event (seq 5 is item 2's), deleting its rows.
        log.take(2);
        assert_eq!(log.next_seq(), 6);
    }

    #[test]
    fn the_real_due_time_of_a_row() {
        use Priority::{Normal as N, Urgent as U};
        // (last seen, deadline, stored due, priority, quiet) -> real due, in seconds
        let table = [
            (10, 30, 12, N, 2, 12),
            (10, 30, 5, N, 2, 12),
            (29, 30, 5, N, 2, 30),
            (10, 30, 5, U, 2, 5),
        ];
        for (last_seen, deadline, stored, priority, quiet, want) in table {
            let timing = stored_timing(
                Ts(last_seen * S),
                Ts(deadline * S),
                Ts(stored * S),
                1,
                priority,
                quiet * S,
            );
            assert_eq!(
                timing.due_at,
                Ts(want * S),
                "{last_seen} {deadline} {stored} {priority:?}"
            );
        }
    }

    #[test]
    fn only_events_that_bring_the_due_time_forward_fold_at_once() {
        use Priority::{Normal as N, Urgent as U};
        // (priority, the event's own due time, the item's stored due time) -> folded at once
        let table = [
            (N, 10, 10, false),
            (N, 11, 10, false),
            (N, 9, 10, true),
            (U, 11, 10, true),
            (U, 0, 10, true),
        ];
        for (priority, event_due, stored, want) in table {
            assert_eq!(
                folds_at_once(priority, Ts(event_due), Ts(stored)),
                want,
                "{priority:?} {event_due} {stored}"
            );
        }
    }
}
