//! The debounce rule with literal due times, on every backend: hand-written sequences of events
//! and claims, each step's expected item worked out by hand from the rule (an item is due at
//! its latest event plus that event's quiet delay, never past `max_wait` after its first; an
//! urgent one at once, and never later after that). The model test (`model.rs`) compares the
//! backends with `queue::Queue`, whose rule SQLite also folds with; these cases do not lean
//! on it.

use vod_purge::domain::Priority;

use super::*;

const N: Priority = Priority::Normal;
const U: Priority = Priority::Urgent;

enum Step {
    /// An event at `at` with its source's quiet delay (ms) and priority.
    Event(i64, u64, Priority),
    /// A claim at `at`, which takes the item (with so many events) or not.
    Claim(i64, Option<u64>),
}

use Step::{Claim, Event};

/// (first_seen, last_seen, due_at, events, priority) of the pending item, if any.
type Expected = Option<(i64, i64, i64, u64, Priority)>;

async fn run_case(store: &Store, name: &str, steps: &[(Step, Expected)]) {
    let fingerprint = format!("literal-{name}");
    let media_id = MediaIdRules::default().parse(name).unwrap();
    for (n, (step, expected)) in steps.iter().enumerate() {
        match *step {
            Event(at, quiet, priority) => {
                let debounce = Debounce {
                    quiet: Duration::from_millis(quiet),
                    max_wait: Duration::from_secs(10),
                };
                let mut request = ingest(&[], TaskType::Refresh, at, None);
                request.items = vec![NewItem {
                    account: vod_purge::domain::AccountName::default(),
                    media_id: media_id.clone(),
                    task: TaskType::Refresh,
                    options: PurgeOptions::default(),
                    fingerprint: fingerprint.clone(),
                    debounce: debounce.for_priority(priority),
                    priority,
                }];
                store.ingest(request).await.unwrap();
            }
            Claim(at, events) => {
                let batch = ClaimBatch {
                    account: vod_purge::domain::AccountName::default(),
                    fingerprint: fingerprint.clone(),
                    ..claim(at, TaskType::Refresh)
                };
                let job = store.claim_batch(&batch).await.unwrap();
                let took = job.map(|j| {
                    assert_eq!(j.items.len(), 1, "{name} step {n}");
                    j.items[0].events
                });
                assert_eq!(took, events, "{name} step {n}: the claim at {at}");
            }
        }
        let pending = store.pending_for_media(name).await.unwrap();
        assert!(pending.len() <= 1, "{name} step {n}: {pending:?}");
        let got = pending.first().map(|p| {
            (
                p.first_seen.0,
                p.last_seen.0,
                p.due_at.0,
                p.events,
                p.priority,
            )
        });
        assert_eq!(got, *expected, "{name} step {n}");
    }
}

each_backend! {
    async fn literal_due_times(store: Store) {
        // max_wait is 10 s: the deadline of an item first seen at 1 000 is 11 000.
        run_case(&store, "merges", &[
            (Event(1_000, 2_000, N), Some((1_000, 1_000, 3_000, 1, N))),
            (Event(2_500, 2_000, N), Some((1_000, 2_500, 4_500, 2, N))),
            // Older than the latest event: counted, moves nothing.
            (Event(1_500, 2_000, N), Some((1_000, 2_500, 4_500, 3, N))),
            // A longer quiet delay pushes the item back, a shorter one brings it forward.
            (Event(3_000, 5_000, N), Some((1_000, 3_000, 8_000, 4, N))),
            (Event(3_100, 500, N), Some((1_000, 3_100, 3_600, 5, N))),
            // An older event's quiet delay counts from the latest event.
            (Event(2_000, 5_000, N), Some((1_000, 3_100, 8_100, 6, N))),
            // Never past the deadline.
            (Event(10_500, 2_000, N), Some((1_000, 10_500, 11_000, 7, N))),
            // Urgent: due at once, and a normal event after it does not push it back.
            (Event(10_600, 2_000, U), Some((1_000, 10_600, 10_600, 8, U))),
            (Event(10_700, 2_000, N), Some((1_000, 10_700, 10_600, 9, U))),
            (Claim(10_599, None), Some((1_000, 10_700, 10_600, 9, U))),
            (Claim(10_600, Some(9)), None),
        ]).await;
        run_case(&store, "urgent-first", &[
            (Event(1_000, 2_000, U), Some((1_000, 1_000, 1_000, 1, U))),
            (Event(1_200, 2_000, N), Some((1_000, 1_200, 1_000, 2, U))),
            // An urgent event older than the item's due time brings nothing forward.
            (Event(900, 2_000, U), Some((1_000, 1_200, 1_000, 3, U))),
        ]).await;
        run_case(&store, "normal-then-older-urgent", &[
            (Event(5_000, 2_000, N), Some((5_000, 5_000, 7_000, 1, N))),
            // Urgent, but stamped before the latest event: due at the latest event.
            (Event(4_000, 2_000, U), Some((5_000, 5_000, 5_000, 2, U))),
        ]).await;
        run_case(&store, "on-the-boundary", &[
            (Event(1_000, 2_000, N), Some((1_000, 1_000, 3_000, 1, N))),
            // An event exactly at last_seen + quiet finds the item pending: merged, due later.
            (Event(3_000, 2_000, N), Some((1_000, 3_000, 5_000, 2, N))),
            (Claim(4_999, None), Some((1_000, 3_000, 5_000, 2, N))),
            // A claim exactly at the due time takes it.
            (Claim(5_000, Some(2)), None),
            // An event at the same instant, after the claim: a new item.
            (Event(5_000, 2_000, N), Some((5_000, 5_000, 7_000, 1, N))),
        ]).await;
    }
}
