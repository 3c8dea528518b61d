//! Kill drills: the real `vod-purge` binary SIGKILLed in every job state that has a lease or a
//! hold, then started again on the same store, on both backends.
//!
//! Each drill catches its state by events, never by the time: the simulator's `stall_action`
//! fault holds a call unanswered once it has arrived (a call in flight), a used-up quota holds
//! the jobs, and the service's own `/jobs` confirms the state before the kill. A job *claimed*
//! whose call has not reached VOD yet is caught with [`BlackHole`], an endpoint that accepts the
//! connection and never reads the request. After the kill the simulator is put back to normal
//! (quota back, no stall, no failing submission) and a new process starts on the same store.
//! Variants kill the process after VOD carried out a call whose answer has not arrived yet (the
//! simulator's `latency_ms`): the service cannot know, so the job must be sent again.
//!
//! The invariant every drill asserts ([`settle`]): every event acknowledged `202` is followed by
//! a successful `RefreshMediaPlayUrls` call carrying its media ID, no task type stays held
//! (`/queue`'s `held` is empty, no job is `held`), and no job is left in flight or waiting.

mod calls;
mod checks;
mod follow;
mod handover;
mod holds;
mod service;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use vod_purge::sim::{self, Faults, QuotaChange, RecordedCall, SimConfig, SimHandle};

use crate::support::postgres::{TestDb, fresh_database};
use crate::support::wait_until;
pub use service::{CALL_TIMEOUT, Knobs, Service};

/// How long the restarted service may take to make everything right.
const SETTLE: Duration = Duration::from_secs(20);

/// The store of a drill (a SQLite file or a fresh PostgreSQL database) and the directory of its
/// processes' configurations and logs.
pub struct Backing {
    pub dir: tempfile::TempDir,
    pub store_url: String,
    _db: Option<TestDb>,
}

impl Backing {
    pub fn sqlite() -> Backing {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("vod-purge.db").display());
        Backing {
            dir,
            store_url,
            _db: None,
        }
    }

    /// `None` when PostgreSQL is unreachable outside CI (`fresh_database` says so).
    pub async fn postgres(test: &str) -> Option<Backing> {
        let db = fresh_database(test).await?;
        Some(Backing {
            dir: tempfile::tempdir().unwrap(),
            store_url: db.url.clone(),
            _db: Some(db),
        })
    }
}

/// A drill, once per backend: `async fn name(backing: &Backing) { … }` becomes the tests
/// `name::sqlite` and `name::postgres`. Without a reachable server outside CI the PostgreSQL one
/// says so and does nothing.
macro_rules! on_each_backend {
    ($(#[$meta:meta])* async fn $name:ident($backing:ident: &Backing) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backing: &crate::kills::Backing) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(&crate::kills::Backing::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(backing) = crate::kills::Backing::postgres(test).await {
                    run(&backing).await;
                }
            }
        }
    };
}
pub(crate) use on_each_backend;

/// Every acknowledged event: a media ID and when the request that carried it was sent (epoch
/// milliseconds).
#[derive(Debug, Default)]
pub struct Acked(pub Vec<(String, i64)>);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` media IDs that start with `prefix`.
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

/// A simulator with a quota large enough for every drill.
pub async fn simulator() -> SimHandle {
    sim::start(SimConfig {
        quota_refresh: 10_000_000,
        quota_preload: 10_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// Calls of `action` hang at the simulator until the faults change.
pub fn stall(action: &str) -> Faults {
    Faults {
        stall_action: Some(action.to_owned()),
        ..Faults::default()
    }
}

/// Every call is carried out and recorded at once, but answered only long after the service has
/// given up on it: VOD did the work, and the service cannot know.
pub fn answer_late() -> Faults {
    Faults {
        latency_ms: 10 * CALL_TIMEOUT.as_millis() as u64,
        ..Faults::default()
    }
}

/// Uses up (`0`) or gives back what is left of today's refresh quota.
pub fn set_refresh_quota(sim: &SimHandle, left: u64) {
    sim.set_quota(QuotaChange {
        refresh_remaining: Some(left),
        preload_remaining: None,
    });
}

/// The quota back and no fault: VOD as usual.
pub fn back_to_normal(sim: &SimHandle) {
    set_refresh_quota(sim, 10_000_000);
    sim.set_faults(Faults::default());
}

/// The media IDs of a job of `/jobs`.
pub fn job_ids(job: &Value) -> BTreeSet<String> {
    job["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["media_id"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a job of `/jobs` carries every one of `ids`.
pub fn job_carries(job: &Value, ids: &[String]) -> bool {
    let carried = job_ids(job);
    ids.iter().all(|id| carried.contains(id))
}

/// Whether `call` carries every one of `ids`.
pub fn carries_all(call: &RecordedCall, ids: &[String]) -> bool {
    ids.iter().all(|id| call.media_ids.contains(id))
}

/// Successful `RefreshMediaPlayUrls` calls the simulator received.
pub fn purges(sim: &SimHandle) -> Vec<RecordedCall> {
    sim.calls()
        .into_iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls" && c.status == 200)
        .collect()
}

/// The acknowledged events that no successful call sent after them.
fn unpurged(sim: &SimHandle, acked: &Acked) -> Vec<(String, i64)> {
    crate::support::unpurged(&acked.0, &purges(sim))
}

/// Waits (at most [`SETTLE`]) for the invariant: every acknowledged event purged after it was
/// sent, no task type held, no job in flight, retrying or held; then checks no job failed.
pub async fn settle(sim: &SimHandle, service: &Service, acked: &Acked) {
    let started = Instant::now();
    loop {
        let missing = unpurged(sim, acked);
        let queue = service.get("/queue").await;
        let mut open = Vec::new();
        for status in ["in_flight", "retrying", "held"] {
            for job in service.jobs(status).await {
                open.push(format!(
                    "{status} job {} (held_since {}, {} IDs)",
                    job["id"],
                    job["held_since"],
                    job_ids(&job).len()
                ));
            }
        }
        let held = queue["held"].as_array().map_or(1, Vec::len);
        if missing.is_empty() && held == 0 && open.is_empty() {
            break;
        }
        if started.elapsed() > SETTLE {
            panic!(
                "after {SETTLE:?}: {} of {} acknowledged events never purged (e.g. {:?}); \
                 /queue held: {}; open jobs: {open:?}\nrestarted process:\n{}",
                missing.len(),
                acked.0.len(),
                &missing[..missing.len().min(5)],
                queue["held"],
                service.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = service.jobs("failed").await;
    assert!(failed.is_empty(), "no job fails: {failed:?}");
}

/// Kills `service` and checks that the kill landed while the attempt `job` (as `/jobs` showed
/// it in flight) could not have timed out yet: the call was still in flight.
pub fn kill_in_flight(service: &mut Service, job: &Value) {
    let claimed = job["updated_at"]
        .as_str()
        .and_then(vod_purge::domain::Ts::parse)
        .expect("the job's claim time")
        .0;
    service.kill();
    let late = now_ms() - claimed - CALL_TIMEOUT.as_millis() as i64;
    assert!(
        late < 0,
        "the kill must land before the call times out ({late} ms late): {job}"
    );
}

/// Polls `look` until it finds something (at most 20 s), and returns it.
pub async fn wait_for<T, F, Fut>(what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = look().await {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out after 20 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `service`'s `/jobs?status=…` has a job that `pick` accepts, and returns it.
pub async fn wait_for_job(
    service: &Service,
    status: &str,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, || async {
        service.jobs(status).await.into_iter().find(|j| pick(j))
    })
    .await
}

/// An endpoint that accepts connections and never reads from them: a request sent to it has
/// left the service but has not reached VOD, and never gets an answer.
pub struct BlackHole {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn open() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        BlackHole {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
