//! The in-memory model of the queue (`queue::Queue`) as the oracle of the backends: random
//! sequences of events (new, merged, urgent, for an item in flight) and claims are replayed
//! through the model and through each backend, and after every step the pending items (their
//! timing and counts) and every claim's IDs must be the same.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use vod_purge::domain::{MediaId, Priority};
use vod_purge::queue::{ItemKey, Queue};

use super::*;

const IDS: [&str; 4] = ["m0", "m1", "m2", "m3"];
const DEBOUNCE: Debounce = Debounce {
    quiet: Duration::from_secs(2),
    max_wait: Duration::from_secs(10),
};

#[derive(Debug, Clone)]
enum Step {
    /// An event for `IDS[id]`, `after` ms after the previous step.
    Event { id: usize, after: i64, urgent: bool },
    /// A claim of everything due, `after` ms after the previous step.
    Claim { after: i64 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let after = prop_oneof![Just(0), Just(300), Just(1_500), Just(2_500), Just(6_000)];
    let step = prop_oneof![
        4 => (0..IDS.len(), after.clone(), proptest::bool::weighted(0.2))
            .prop_map(|(id, after, urgent)| Step::Event { id, after, urgent }),
        1 => after.prop_map(|after| Step::Claim { after }),
    ];
    proptest::collection::vec(step, 1..24)
}

/// What is compared of a pending item: first and last seen, due time, events, priority.
type Seen = (i64, i64, i64, u64, Priority);

async fn replay(store: &Store, case: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    // Each case has an option set of its own, so the cases share a store without meeting.
    let fingerprint = format!("model-{case}");
    let media = |id: &str| {
        MediaIdRules::default()
            .parse(&format!("c{case}{id}"))
            .unwrap()
    };
    let key = |id: &MediaId| ItemKey {
        media_id: id.clone(),
        task: TaskType::Refresh,
        fingerprint: fingerprint.clone(),
    };
    let mut model = Queue::default();
    let mut now = 1_000_000;
    for (n, step) in steps.iter().enumerate() {
        match *step {
            Step::Event { id, after, urgent } => {
                now += after;
                let priority = if urgent {
                    Priority::Urgent
                } else {
                    Priority::Normal
                };
                let media_id = media(IDS[id]);
                model.push_event(key(&media_id), Ts(now), DEBOUNCE, priority);
                let item = NewItem {
                    media_id,
                    task: TaskType::Refresh,
                    options: PurgeOptions::default(),
                    fingerprint: fingerprint.clone(),
                    debounce: DEBOUNCE.for_priority(priority),
                    priority,
                };
                let mut request = ingest(&[], TaskType::Refresh, now, None);
                request.items = vec![item];
                store.ingest(request).await.map_err(fail)?;
            }
            Step::Claim { after } => {
                now += after;
                let due: Vec<ItemKey> = model
                    .due(Ts(now), &|_| false)
                    .into_iter()
                    .map(|p| p.key.clone())
                    .collect();
                let mut expected: Vec<(String, u64)> = model
                    .claim(&due)
                    .into_iter()
                    .map(|p| (p.key.media_id.to_string(), p.timing.events))
                    .collect();
                expected.sort();
                let batch = ClaimBatch {
                    fingerprint: fingerprint.clone(),
                    ..claim(now, TaskType::Refresh)
                };
                let job = store.claim_batch(&batch).await.map_err(fail)?;
                let mut claimed: Vec<(String, u64)> = job
                    .iter()
                    .flat_map(|j| &j.items)
                    .map(|i| (i.media_id.to_string(), i.events))
                    .collect();
                claimed.sort();
                prop_assert_eq!(claimed, expected, "step {} {:?}", n, step);
            }
        }
        let mut stored: BTreeMap<String, Seen> = BTreeMap::new();
        for id in IDS {
            for item in store
                .pending_for_media(media(id).as_ref())
                .await
                .map_err(fail)?
            {
                let seen = (
                    item.first_seen.0,
                    item.last_seen.0,
                    item.due_at.0,
                    item.events,
                    item.priority,
                );
                stored.insert(item.media_id.to_string(), seen);
            }
        }
        let modelled: BTreeMap<String, Seen> = model
            .items()
            .map(|p| {
                let t = &p.timing;
                let seen = (
                    p.first_seen.0,
                    t.last_seen.0,
                    t.due_at.0,
                    t.events,
                    t.priority,
                );
                (p.key.media_id.to_string(), seen)
            })
            .collect();
        prop_assert_eq!(
            stored,
            modelled,
            "after step {} {:?} of {:?}",
            n,
            step,
            steps
        );
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
