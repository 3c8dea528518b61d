//! The in-memory model of the queue (`queue::Queue`) as the oracle of the backends: random
//! sequences of events and claims are replayed through the model and through each backend, and
//! after every step the pending items (their timing and counts) must be the same, and every
//! claim must take what the model says may be taken.
//!
//! The events are what the service meets: 25 IDs, urgent and normal mixed, each event with its
//! source's quiet delay, events older than the latest one (replicas' clocks, a slow request),
//! and events and claims landing exactly on an item's `last_seen + quiet` and due time. SQLite
//! folds its merge log with the model's own rule (`Timing::merge`), so there the model checks
//! the plumbing; PostgreSQL writes the rule in SQL, so there it checks the rule too. The rule
//! itself is pinned by hand-written cases with literal due times (`literal_due_times`), on
//! both backends.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use vod_purge::domain::{MediaId, Priority};
use vod_purge::queue::{ItemKey, Queue};

use super::*;

/// How many media IDs a sequence uses: more than one batch.
const IDS: usize = 25;
/// The largest batch a claim takes.
const BATCH: usize = 20;
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The quiet delays of the sources events come from.
const QUIETS: [u64; 3] = [500, 2_000, 5_000];

#[derive(Debug, Clone)]
enum Step {
    /// An event for ID `id`: the clock moves `after` ms, and the event is stamped `skew` ms
    /// before the clock (older than events already stored).
    Event {
        id: usize,
        after: i64,
        skew: i64,
        quiet: usize,
        urgent: bool,
    },
    /// One request naming every ID (a bulk import), `after` ms later; `urgent[id]` marks the
    /// urgent ones. It makes batches of more than `BATCH` due items.
    Bulk {
        after: i64,
        quiet: usize,
        urgent: Vec<bool>,
    },
    /// A normal event for ID `id` exactly at its pending item's `last_seen + quiet` (at the
    /// clock when none is pending).
    EventAtQuietEnd { id: usize, quiet: usize },
    /// A claim of at most `BATCH` due items, `after` ms later.
    Claim { after: i64 },
    /// A claim exactly at the due time of ID `id`'s pending item (at the clock when none is
    /// pending).
    ClaimAtDue { id: usize },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let after = prop_oneof![Just(0), Just(300), Just(1_500), Just(2_500), Just(6_000)];
    let skew = prop_oneof![3 => Just(0), 1 => Just(300), 1 => Just(1_500)];
    let quiet = 0..QUIETS.len();
    let step = prop_oneof![
        8 => (0..IDS, after.clone(), skew, quiet.clone(), proptest::bool::weighted(0.2))
            .prop_map(|(id, after, skew, quiet, urgent)| Step::Event { id, after, skew, quiet, urgent }),
        2 => (0..IDS, quiet.clone()).prop_map(|(id, quiet)| Step::EventAtQuietEnd { id, quiet }),
        1 => (after.clone(), quiet, proptest::collection::vec(proptest::bool::weighted(0.3), IDS))
            .prop_map(|(after, quiet, urgent)| Step::Bulk { after, quiet, urgent }),
        2 => after.prop_map(|after| Step::Claim { after }),
        1 => (0..IDS).prop_map(|id| Step::ClaimAtDue { id }),
    ];
    proptest::collection::vec(step, 1..60)
}

/// What is compared of a pending item: first and last seen, deadline, due time, events,
/// priority.
type Seen = (i64, i64, i64, i64, u64, Priority);

/// Where a due item stands in a claim: urgent ones first, then the oldest.
fn rank(urgent: bool, first_seen: i64) -> (bool, i64) {
    (!urgent, first_seen)
}

struct Replay<'a> {
    store: &'a Store,
    case: usize,
    fingerprint: String,
    model: Queue,
    now: i64,
}

impl Replay<'_> {
    fn media(&self, id: usize) -> MediaId {
        MediaIdRules::default()
            .parse(&format!("c{}m{id:02}", self.case))
            .unwrap()
    }

    fn key(&self, id: &MediaId) -> ItemKey {
        ItemKey {
            media_id: id.clone(),
            task: TaskType::Refresh,
            fingerprint: self.fingerprint.clone(),
        }
    }

    fn pending(&self, id: usize) -> Option<&vod_purge::queue::Pending> {
        let key = self.key(&self.media(id));
        self.model.items().find(|p| p.key == key)
    }

    /// One request at `at` with an event for each of `events` (ID, priority), from a source
    /// with the quiet delay `quiet`.
    async fn request(
        &mut self,
        at: i64,
        quiet: u64,
        events: &[(usize, Priority)],
    ) -> Result<(), TestCaseError> {
        let debounce = Debounce {
            quiet: Duration::from_millis(quiet),
            max_wait: MAX_WAIT,
        };
        let mut request = ingest(&[], TaskType::Refresh, at, None);
        for &(id, priority) in events {
            let media_id = self.media(id);
            self.model
                .push_event(self.key(&media_id), Ts(at), debounce, priority);
            request.items.push(NewItem {
                account: vod_purge::domain::AccountName::default(),
                media_id,
                task: TaskType::Refresh,
                options: PurgeOptions::default(),
                fingerprint: self.fingerprint.clone(),
                debounce: debounce.for_priority(priority),
                priority,
            });
        }
        self.store.ingest(request).await.map_err(fail)?;
        Ok(())
    }

    /// A claim at the clock: what the backend takes must be due by the model, as many as may
    /// be taken, none passed over for one ranked after it; the model then loses what it took.
    async fn claim(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let due: BTreeMap<String, (bool, i64, u64)> = self
            .model
            .due(Ts(self.now), &|_| false)
            .into_iter()
            .map(|p| {
                let urgent = p.timing.priority == Priority::Urgent;
                let seen = (urgent, p.first_seen.0, p.timing.events);
                (p.key.media_id.to_string(), seen)
            })
            .collect();
        let batch = ClaimBatch {
            account: vod_purge::domain::AccountName::default(),
            fingerprint: self.fingerprint.clone(),
            ..claim(self.now, TaskType::Refresh)
        };
        // As the flusher does: the due groups first (SQLite settles the due items), whose count
        // for this case's group is the model's.
        let groups = self
            .store
            .due_groups(&batch.account, Ts(self.now))
            .await
            .map_err(fail)?;
        let group = groups.iter().find(|g| g.fingerprint == self.fingerprint);
        let counted = group.map_or(0, |g| g.due_count);
        prop_assert_eq!(counted as usize, due.len(), "due count at {:?}", step);
        // With the counts just read, as the flusher's first claim of a group has them (the claim
        // skips the look-ups they say would find nothing).
        let batch = ClaimBatch {
            seen: group.map(|g| vod_purge::store::GroupSeen {
                at: Ts(self.now),
                due: g.due_count,
                urgent: g.urgent_count,
            }),
            ..batch
        };
        let job = self.store.claim_batch(&batch).await.map_err(fail)?;
        let claimed: BTreeMap<String, u64> = job
            .iter()
            .flat_map(|j| &j.items)
            .map(|i| (i.media_id.to_string(), i.events))
            .collect();
        prop_assert_eq!(
            claimed.len(),
            due.len().min(BATCH),
            "{:?} at {}: claimed {:?}, due {:?}",
            step,
            self.now,
            claimed,
            due
        );
        for (id, events) in &claimed {
            let Some(&(urgent, first_seen, modelled)) = due.get(id) else {
                return Err(TestCaseError::fail(format!(
                    "{step:?} at {}: {id} claimed, not due; due {due:?}",
                    self.now
                )));
            };
            prop_assert_eq!(*events, modelled, "{} in {:?}", id, step);
            for (other, &(o_urgent, o_first_seen, _)) in &due {
                if !claimed.contains_key(other) {
                    prop_assert!(
                        rank(urgent, first_seen) <= rank(o_urgent, o_first_seen),
                        "{:?}: {} claimed before {}; due {:?}",
                        step,
                        id,
                        other,
                        due
                    );
                }
            }
        }
        let keys: Vec<ItemKey> = self
            .model
            .items()
            .filter(|p| claimed.contains_key(&p.key.media_id.to_string()))
            .map(|p| p.key.clone())
            .collect();
        self.model.claim(&keys);
        Ok(())
    }

    /// The pending items of `ids` in the backend and in the model are the same.
    async fn compare(&self, ids: &[usize], n: usize, step: &Step) -> Result<(), TestCaseError> {
        let mut stored: BTreeMap<String, Seen> = BTreeMap::new();
        let mut modelled: BTreeMap<String, Seen> = BTreeMap::new();
        for &id in ids {
            let media = self.media(id);
            for item in self
                .store
                .pending_for_media(media.as_ref())
                .await
                .map_err(fail)?
            {
                let seen = (
                    item.first_seen.0,
                    item.last_seen.0,
                    item.deadline.0,
                    item.due_at.0,
                    item.events,
                    item.priority,
                );
                prop_assert!(
                    stored.insert(item.media_id.to_string(), seen).is_none(),
                    "two pending items of {}",
                    item.media_id
                );
            }
            if let Some(p) = self.pending(id) {
                let t = &p.timing;
                let seen = (
                    p.first_seen.0,
                    t.last_seen.0,
                    t.deadline.0,
                    t.due_at.0,
                    t.events,
                    t.priority,
                );
                modelled.insert(media.to_string(), seen);
            }
        }
        prop_assert_eq!(
            stored,
            modelled,
            "after step {} {:?} at {}",
            n,
            step,
            self.now
        );
        // The queue's figures, kept as items change, equal a count of every pending item.
        let now = Ts(self.now);
        let kept = self.store.queue_by_account(now).await.map_err(fail)?;
        let counted = self.store.recount_queue(now).await.map_err(fail)?;
        prop_assert_eq!(kept, counted, "figures after step {} {:?}", n, step);
        Ok(())
    }
}

async fn replay(store: &Store, case: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    // Each case has an option set of its own, so the cases share a store without meeting.
    let mut replay = Replay {
        store,
        case,
        fingerprint: format!("model-{case}"),
        model: Queue::default(),
        now: 1_000_000,
    };
    let all: Vec<usize> = (0..IDS).collect();
    for (n, step) in steps.iter().enumerate() {
        match *step {
            Step::Event {
                id,
                after,
                skew,
                quiet,
                urgent,
            } => {
                replay.now += after;
                let priority = if urgent {
                    Priority::Urgent
                } else {
                    Priority::Normal
                };
                replay
                    .request(replay.now - skew, QUIETS[quiet], &[(id, priority)])
                    .await?;
                replay.compare(&[id], n, step).await?;
            }
            Step::EventAtQuietEnd { id, quiet } => {
                let at = replay
                    .pending(id)
                    .map_or(replay.now, |p| (p.timing.last_seen + p.timing.quiet).0);
                replay.now = replay.now.max(at);
                replay
                    .request(at, QUIETS[quiet], &[(id, Priority::Normal)])
                    .await?;
                replay.compare(&[id], n, step).await?;
            }
            Step::Bulk {
                after,
                quiet,
                ref urgent,
            } => {
                replay.now += after;
                let events: Vec<(usize, Priority)> = urgent
                    .iter()
                    .enumerate()
                    .map(|(id, &u)| {
                        (
                            id,
                            if u {
                                Priority::Urgent
                            } else {
                                Priority::Normal
                            },
                        )
                    })
                    .collect();
                replay.request(replay.now, QUIETS[quiet], &events).await?;
                replay.compare(&all, n, step).await?;
            }
            Step::Claim { after } => {
                replay.now += after;
                replay.claim(step).await?;
                replay.compare(&all, n, step).await?;
            }
            Step::ClaimAtDue { id } => {
                let at = replay.pending(id).map_or(replay.now, |p| p.timing.due_at.0);
                replay.now = replay.now.max(at);
                replay.claim(step).await?;
                replay.compare(&all, n, step).await?;
            }
        }
    }
    Ok(())
}

fn fail(error: StoreError) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// Replays 64 random sequences through `location`'s backend and the model.
fn the_backend_agrees_with_the_model(location: StoreLocation) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::open(&location)).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: crate::fuzz_props::cases(64),
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&steps(), |steps| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(replay(&store, case, &steps))
    });
    rt.block_on(store.close());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db").to_string_lossy().into_owned();
    the_backend_agrees_with_the_model(StoreLocation::Sqlite(path));
}

#[test]
fn postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(fresh_database("store::model::postgres")) else {
        return;
    };
    the_backend_agrees_with_the_model(StoreLocation::Postgres(db.url.clone()));
    rt.block_on(async move { drop(db) });
}
