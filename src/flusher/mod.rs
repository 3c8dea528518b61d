//! The flusher: turns due items into VOD calls.
//!
//! [`Flusher::try_flush_once`] is one step: start the retries that are due, then, for every
//! group ready to send (see [`batch`]), take a rate-limiter permit, claim up to 20 due items as a
//! job, and start the call on its own task. [`Flusher::run`] is the thin loop around it. Calls
//! run concurrently (up to `vod.max_in_flight`), but each takes one permit first, so the rate is
//! set by the limiter alone.
//!
//! The permit is taken *before* the claim, so items that became due while the flusher waited for
//! the limiter ride along in the batch.
//!
//! Only the leader flushes (one process per store, see [`crate::store`]). The application sets
//! [`FlusherStatus::set_active`] from its leadership checks; the loop idles while it is false,
//! and a step stops claiming the moment it turns false, so a replica that loses the leadership
//! starts no further calls (those already claimed finish, or are sent again after their lease).

pub mod backoff;
pub mod batch;
pub mod ceiling;
pub mod checks;
pub mod follow;
pub mod hold;
pub mod limiter;
pub mod pacing;
pub mod quota_poll;
mod send;
mod status;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{AccountName, Priority, Quota, TargetKind, TaskType, Ts};
use crate::metrics::Metrics;
use crate::store::{ClaimBatch, GroupSeen, Job, Store, StoreError};
use crate::vod::{self, ErrorClass};
use backoff::RetryPolicy;
use hold::HoldPolicy;
use limiter::Limiter;
pub(crate) use send::error_kind;
pub use status::FlusherStatus;

/// How long after reading a group's counts its first claim may still skip the look-ups they say
/// find nothing (see [`GroupSeen`]).
const SEEN_FOR_MS: i64 = 20;
/// While a step works through a large backlog, how often it looks for due retries.
const RETRY_LOOK_INTERVAL: Duration = Duration::from_secs(1);
/// While no quota hold is known, how often the store is read for holds (another replica's, one
/// from before a restart).
const HOLDS_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// The cover and snapshot URLs of media IDs by when they were looked up (`None`: VOD does not
/// know the ID).
type CoverCache = std::collections::HashMap<String, (std::time::Instant, Option<Vec<String>>)>;

/// Where calls go: VOD, or nowhere (dry run).
#[derive(Debug, Clone)]
pub enum Sender {
    Vod(vod::Client),
    /// Records what would have been sent.
    DryRun,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Calls started in this step.
    Started(usize),
    /// Nothing to send; the earliest time a lingering group becomes ready, if any.
    Idle(Option<Ts>),
}

/// What one lane runs with: the account it sends for, its limits, and the settings every lane
/// shares.
#[derive(Debug, Clone)]
pub struct FlusherConfig {
    /// The account whose items and jobs this lane sends, and nothing else.
    pub account: AccountName,
    pub linger: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub max_in_flight: usize,
    pub max_rps: u32,
    pub burst: u32,
    pub retry: RetryPolicy,
    /// How long after a successful call its submissions are checked; `None`: never.
    pub check_after: Option<Duration>,
    /// Holds on the daily quota.
    pub hold: HoldPolicy,
    /// Most URLs or directories per call (`vod.urls_per_call`).
    pub urls_per_call: usize,
    /// Calls per second to the URL actions (`vod.url_requests_per_second`).
    pub url_rps: u32,
    /// How long the CDN tasks of a URL call are followed (`vod.follow_for`); `None`: not at all.
    pub follow_for: Option<Duration>,
    /// The account's CDN domains: the cover URLs a lookup finds are purged only on them.
    pub cdn_domains: crate::domain::CdnDomains,
    /// `GetVideoInfo` calls per second (`vod.checks_per_second`).
    pub lookups_per_second: u32,
}

/// The flusher; cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sender: Sender,
    config: FlusherConfig,
    /// Paces `RefreshMediaPlayUrls`.
    limiter: Limiter,
    /// Paces `RefreshVodObjectCaches` and `PreloadVodObjectCaches`, which VOD limits apart.
    url_limiter: Limiter,
    /// Paces `GetVideoInfo` (the cover lookups).
    lookup_limiter: Limiter,
    /// The cover and snapshot URLs of media IDs looked up lately (`None`: VOD does not know
    /// the ID), so that a burst of events for one video asks VOD once.
    covers: std::sync::Mutex<CoverCache>,
    /// Most URLs or directories per call: `vod.urls_per_call`, lowered for the rest of the
    /// process when VOD answers `SingleRequest.OverLimit`.
    urls_per_call: std::sync::atomic::AtomicUsize,
    /// One permit per call that may be waiting on VOD at once.
    in_flight: Arc<Semaphore>,
    /// The call tasks, so that shutdown can wait for them.
    calls: TaskTracker,
    /// What this lane's idle flusher waits on (its own: another lane at work does not keep it
    /// asleep).
    sleeper: Arc<crate::store::wake::Sleeper>,
    /// When the store was last read for quota holds.
    holds_read_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set after a step whose ready groups all waited on a held or spent quota: the due groups
    /// are not read again before then (see [`batch::held_reread_after`]).
    groups_not_before: std::sync::Mutex<Option<tokio::time::Instant>>,
    status: Arc<FlusherStatus>,
    metrics: Arc<Metrics>,
}

impl Flusher {
    pub fn new(
        store: Store,
        sender: Sender,
        config: FlusherConfig,
        status: Arc<FlusherStatus>,
        metrics: Arc<Metrics>,
    ) -> Flusher {
        Flusher {
            inner: Arc::new(Inner {
                limiter: Limiter::new(config.max_rps, config.burst),
                url_limiter: Limiter::new(config.url_rps, 1),
                lookup_limiter: Limiter::new(config.lookups_per_second.max(1), 1),
                covers: std::sync::Mutex::new(std::collections::HashMap::new()),
                urls_per_call: std::sync::atomic::AtomicUsize::new(config.urls_per_call),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                calls: TaskTracker::new(),
                holds_read_at: std::sync::Mutex::new(None),
                groups_not_before: std::sync::Mutex::new(None),
                sleeper: store.wake().sleeper(),
                store,
                sender,
                config,
                status,
                metrics,
            }),
        }
    }

    /// Runs steps while active (the leader) until `shutdown` is cancelled, then waits for the
    /// calls in flight.
    ///
    /// An idle flusher sleeps until work is due, and wakes earlier when ingest stores something
    /// due sooner ([`crate::store::wake`]).
    pub async fn run(&self, shutdown: CancellationToken) {
        let poll = self.inner.config.poll_interval;
        let wake = &self.inner.sleeper;
        while !shutdown.is_cancelled() {
            let pause = if !self.inner.status.is_active() {
                poll
            } else {
                self.step(&shutdown).await
            };
            if !pause.is_zero() {
                wake.sleeping_until(Ts::now() + pause);
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                    _ = wake.notified() => {}
                }
            }
            wake.working();
        }
        self.drain().await;
    }

    /// One step of the loop; returns how long to pause before the next.
    async fn step(&self, shutdown: &CancellationToken) -> Duration {
        let poll = self.inner.config.poll_interval;
        match self.try_flush_once(shutdown).await {
            Ok(FlushOutcome::Started(_)) => Duration::ZERO,
            // Sleep until something is due rather than a whole poll past it.
            Ok(FlushOutcome::Idle(next_linger)) => {
                // From here on, anything stored wakes the sleep this decides on.
                self.inner.sleeper.deciding();
                let now = Ts::now();
                let next_work = self
                    .inner
                    .store
                    .next_work(&self.inner.config.account, now)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::debug!(error = %error, "cannot read when work is next due");
                        None
                    });
                // The pause counts from the whole millisecond `now` fell in; the part of it
                // already gone is taken off, so the flusher wakes on the due time, not up to a
                // millisecond after it.
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let now = Ts(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX));
                let into_the_ms =
                    Duration::from_nanos(u64::from(since_epoch.subsec_nanos() % 1_000_000));
                batch::idle_pause(now, next_linger, next_work, poll).saturating_sub(into_the_ms)
            }
            Err(error) => {
                tracing::error!(error = %error, "flusher step failed; retrying");
                poll.max(Duration::from_secs(1))
            }
        }
    }

    /// Waits for every call in flight to finish and be recorded.
    pub async fn drain(&self) {
        self.inner.calls.close();
        self.inner.calls.wait().await;
        self.inner.calls.reopen();
    }

    /// One step: start due retries, then the batches of every ready group (looking for due
    /// retries again about once a second while it works through them).
    pub async fn try_flush_once(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<FlushOutcome, StoreError> {
        let inner = &self.inner;
        self.held_tasks().await?;
        let mut started = self.start_due_retries(shutdown).await?;
        let mut retries_looked_at = std::time::Instant::now();

        // Nothing but the quota held back the last step's ready groups: not again so soon (a
        // read of a large backlog's groups costs most of a second).
        let read_at = tokio::time::Instant::now();
        let not_before = *lock_ignoring_poison(&inner.groups_not_before);
        if not_before.is_some_and(|at| read_at < at) {
            inner.status.last_step.store(Ts::now().0, Ordering::Relaxed);
            return Ok(if started > 0 {
                FlushOutcome::Started(started)
            } else {
                FlushOutcome::Idle(None)
            });
        }
        let now = Ts::now();
        let account = &inner.config.account;
        let groups = inner.store.due_groups(account, now).await?;
        let read_took = read_at.elapsed();
        // A ready group left for its quota (held, or spent to the reserve), and one left for
        // anything else (no permit, or its claim found its items due later after all).
        let (mut quota_waits, mut other_waits) = (false, false);
        let size = |task| self.batch_size(task);
        for group in batch::ready(&groups, now, inner.config.linger, size) {
            let max_batch = self.batch_size(group.task);
            let mut remaining = group.due_count;
            // The counts just read hold for the group's first claim only, and only if it is made
            // at once (not after waiting for a slot or a credential).
            let mut seen = Some(GroupSeen {
                at: now,
                due: group.due_count,
                urgent: group.urgent_count,
            });
            loop {
                // A held quota sends nothing but its probe; the last poll bounds the others.
                let spends = group.task.quota();
                if inner.status.quota.is_held(spends) {
                    quota_waits = true;
                    break;
                }
                // Normal items leave the reserve to urgent ones: once only the reserve is left,
                // a batch carries urgent items only.
                let quota = &inner.status.quota;
                let (policy, at) = (&inner.config.hold, Ts::now());
                let normal = quota.allowance(spends, policy, false, at);
                let urgent_only = normal == Some(0);
                let allowance = if urgent_only {
                    quota.allowance(spends, policy, true, at)
                } else {
                    normal
                };
                if allowance == Some(0) || (urgent_only && group.urgent_count == 0) {
                    quota_waits = true;
                    break;
                }
                let Some(permit) = self.permit(group.task, shutdown).await else {
                    other_waits = true;
                    break;
                };
                // The quota may have run out while this waited for its slot.
                if quota.is_held(spends) {
                    quota_waits = true;
                    break;
                }
                let now = Ts::now();
                let claim = ClaimBatch {
                    account: account.clone(),
                    task: group.task,
                    fingerprint: group.fingerprint.clone(),
                    now,
                    max: allowance.map_or(max_batch, |n| {
                        max_batch.min(usize::try_from(n).unwrap_or(usize::MAX))
                    }),
                    lease_until: now + inner.config.lease,
                    job_id: uuid::Uuid::now_v7().to_string(),
                    dry_run: matches!(inner.sender, Sender::DryRun),
                    urgent_only,
                    seen: seen.take().filter(|seen| now.0 - seen.at.0 <= SEEN_FOR_MS),
                };
                let Some(job) = inner.store.claim_batch(&claim).await? else {
                    other_waits = true;
                    break;
                };
                let full = job.items.len() >= max_batch;
                remaining = remaining.saturating_sub(job.items.len() as u64);
                self.start(job, permit);
                started += 1;
                // A large backlog takes this loop minutes at the configured rate: due retries
                // are looked for in between, not only when it is done.
                if retries_looked_at.elapsed() >= RETRY_LOOK_INTERVAL {
                    started += self.start_due_retries(shutdown).await?;
                    retries_looked_at = std::time::Instant::now();
                }
                // A short remainder lingers again; the next step decides with fresh counts.
                if !full || remaining < max_batch as u64 {
                    break;
                }
            }
        }
        *lock_ignoring_poison(&inner.groups_not_before) =
            (started == 0 && quota_waits && !other_waits)
                .then(|| read_at + batch::held_reread_after(read_took, inner.config.poll_interval));
        inner.status.last_step.store(Ts::now().0, Ordering::Relaxed);
        Ok(if started > 0 {
            FlushOutcome::Started(started)
        } else {
            FlushOutcome::Idle(batch::next_ready_at(
                &groups,
                now,
                inner.config.linger,
                size,
            ))
        })
    }

    /// Reads which task types are held on the daily quota, after ending the holds that the last
    /// poll of the quota says are over (quota left, read after the hold began).
    ///
    /// While no hold is known, the store is read at most once per [`HOLDS_LOOK_INTERVAL`] (a
    /// quota answer sets the hold at once): an idle flusher's step stays three reads.
    async fn held_tasks(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let quota = &inner.status.quota;
        let any_held = Quota::ALL.into_iter().any(|q| quota.is_held(q));
        {
            let mut read_at = inner.holds_read_at.lock().expect("holds lock");
            if !any_held && read_at.is_some_and(|at| at.elapsed() < HOLDS_LOOK_INTERVAL) {
                return Ok(());
            }
            *read_at = Some(std::time::Instant::now());
        }
        let mut held = Vec::new();
        let account = &inner.config.account;
        for hold in inner.store.held_tasks(Some(account)).await? {
            // A probe in flight answers for itself; the probe's size is read only when a
            // reading could end the hold at all.
            let back = hold.probes == 0
                && quota.poll_ends_hold(hold.quota, hold.since, 1)
                && quota.poll_ends_hold(
                    hold.quota,
                    hold.since,
                    inner.store.probe_size(account, hold.quota).await?,
                );
            if back {
                let released = inner
                    .store
                    .release_held(account, hold.quota, Ts::now())
                    .await?;
                inner
                    .metrics
                    .quota_hold_ends
                    .with_label_values(&[account.as_str(), hold.quota.as_str(), "poll"])
                    .inc();
                tracing::info!(quota = %hold.quota, jobs = released, "the quota poll reports quota left: the hold ends and the held jobs are sent");
                self.groups_may_be_sendable();
            } else {
                held.push(hold.quota);
            }
        }
        for q in Quota::ALL {
            inner.status.quota.set_held(q, held.contains(&q));
        }
        Ok(())
    }

    /// Starts the jobs whose retry time has come or whose lease ran out, and at most one probe
    /// per task type held on the quota; returns how many.
    async fn start_due_retries(&self, shutdown: &CancellationToken) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let mut started = 0;
        let mut probed: Vec<Quota> = Vec::new();
        let (quota, policy) = (&inner.status.quota, &inner.config.hold);
        let now = Ts::now();
        let due_jobs = inner
            .store
            .due_jobs_within(&inner.config.account, now, 64, |task| {
                quota.retry_room(task, policy, now)
            })
            .await?;
        for due in due_jobs {
            let probe = due.is_probe();
            let spends = due.task.quota();
            if probe && probed.contains(&spends) {
                continue;
            }
            // A retry spends quota as a new batch does: it waits while its task type is held
            // (a quota answer marks it before the store does) or the allowance cannot carry it.
            let urgent = due.priority == Priority::Urgent;
            if !probe
                && (quota.is_held(spends)
                    || !quota.admits(spends, policy, urgent, due.ids, Ts::now()))
            {
                continue;
            }
            // A job held for vod.max_hold fails without a call: no permit, and no probe spent.
            if let Some(since) = due
                .held_since
                .filter(|since| policy.expired(*since, Ts::now()))
            {
                let now = Ts::now();
                let lease = now + inner.config.lease;
                if let Some(job) = inner.store.claim_probe(&due.id, spends, now, lease).await? {
                    self.fail_held(&job, since, now).await?;
                }
                continue;
            }
            let Some(permit) = self.permit(due.task, shutdown).await else {
                break;
            };
            let now = Ts::now();
            let lease = now + inner.config.lease;
            let claimed = if probe {
                // Marked before the claim: a claim that fails does not let another probe in.
                probed.push(spends);
                inner.store.claim_probe(&due.id, spends, now, lease).await?
            } else {
                inner.store.claim_job(&due.id, now, lease).await?
            };
            let Some(job) = claimed else {
                continue;
            };
            if probe {
                // One probe at a time: the task type's other held jobs wait for its answer.
                let since = due.held_since.unwrap_or(now);
                let next = inner.config.hold.next_probe(since, now);
                inner
                    .store
                    .defer_held(&inner.config.account, spends, next)
                    .await?;
                tracing::info!(quota = %spends, job_id = %job.id, "quota hold: probing with one held job");
            }
            self.start(job, permit);
            started += 1;
        }
        Ok(started)
    }

    /// Most targets in one call of `task`: 20 media IDs, or `vod.urls_per_call` URLs (lowered
    /// after `SingleRequest.OverLimit`).
    fn batch_size(&self, task: TaskType) -> usize {
        match task.kind() {
            TargetKind::Media => batch::MAX_BATCH,
            TargetKind::File | TargetKind::Directory => {
                self.inner.urls_per_call.load(Ordering::Relaxed)
            }
        }
    }

    /// The limiter that paces the calls of `task` (VOD limits each action on its own).
    fn limiter(&self, task: TaskType) -> &Limiter {
        if task == TaskType::ResolveCovers {
            return &self.inner.lookup_limiter;
        }
        match task.kind() {
            TargetKind::Media => &self.inner.limiter,
            TargetKind::File | TargetKind::Directory => &self.inner.url_limiter,
        }
    }

    /// A hold ended: the next step reads the due groups, whatever the last one found.
    pub(crate) fn groups_may_be_sendable(&self) {
        *lock_ignoring_poison(&self.inner.groups_not_before) = None;
    }

    /// A slot for one more call, then a permit of the limiter of `task`'s action; `None` when
    /// shutting down or no longer the leader (checked after the wait, right before the caller
    /// claims).
    async fn permit(
        &self,
        task: TaskType,
        shutdown: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        let inner = &self.inner;
        let slot = tokio::select! {
            _ = shutdown.cancelled() => None,
            permit = async {
                self.credential_ready().await;
                let slot = inner.in_flight.clone().acquire_owned().await.ok()?;
                let waited = self.limiter(task).acquire().await;
                inner.metrics.limiter_wait.inc_by(waited.as_secs_f64());
                Some(slot)
            } => permit,
        };
        slot.filter(|_| inner.status.is_active())
    }

    /// Waits while no valid credential is left (STS or the metadata service cannot renew it), so
    /// that no job is claimed, and no attempt spent, for a call that could not be signed.
    async fn credential_ready(&self) {
        let Sender::Vod(client) = &self.inner.sender else {
            return;
        };
        let source = client.credentials();
        if source.usable(Ts::now()).is_some() {
            return;
        }
        tracing::warn!(provider = %source.provider(), "no valid credential: calls wait for its renewal");
        source.wait_until_usable().await;
        tracing::info!("a valid credential is back: calls resume");
    }

    fn start(&self, job: Job, slot: OwnedSemaphorePermit) {
        // A cover lookup spends no quota; the purges it queues do.
        if job.task != TaskType::ResolveCovers {
            self.inner
                .status
                .quota
                .sent(job.task.quota(), job.items.len() as u64);
        }
        let flusher = self.clone();
        self.inner.calls.spawn(async move {
            flusher.send(job).await;
            drop(slot);
        });
    }
}

/// A lock whose holder cannot leave its value half-changed (a plain value is replaced whole).
fn lock_ignoring_poison<T>(lock: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
