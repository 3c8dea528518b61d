//! The simulator's shared state: accounts, limits, remembered nonces, jobs, quota, recorded calls.
//!
//! One `SimState` per simulator, shared by its handlers (no globals, so several simulators can run
//! in one test process). Each store has its own lock and every lock is held only for a few map
//! operations, never across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use super::clock::SimClock;
use super::config::{Account, ImdsMode, SimConfig};
use super::faults::Faults;

/// One call as the simulator saw it; `GET /_sim/calls` returns a list of these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedCall {
    /// When it arrived, epoch milliseconds by the simulator's clock.
    pub at_ms: i64,
    /// `GET` or `POST`.
    pub method: String,
    /// Empty when the request had none.
    pub action: String,
    /// Empty when the request had none.
    pub access_key_id: String,
    /// Every parameter (query and form body, decoded) except `Signature`.
    pub params: BTreeMap<String, String>,
    pub status: u16,
    /// The error `Code`, for failed calls.
    pub code: Option<String>,
    /// `MediaIds` split at commas and trimmed.
    pub media_ids: Vec<String>,
    pub task_type: Option<String>,
}

/// A token bucket per AccessKey and action on the simulator's clock: VOD's limits are per
/// operation (50 calls per second each for `RefreshMediaPlayUrls` and `GetMediaRefreshJobs`).
pub type Limiter = RateLimiter<
    (String, String),
    HashMapStateStore<(String, String)>,
    SimClock,
    NoOpMiddleware<Duration>,
>;

pub struct SimState {
    pub accounts: HashMap<String, Account>,
    pub tolerance: Duration,
    pub nonexistent: HashSet<String>,
    pub forbidden: HashSet<String>,
    pub failing: HashSet<String>,
    pub clock: SimClock,
    /// The configured calls per second per AccessKey and action (`--qps`).
    pub qps: NonZeroU32,
    /// The limiter in force and the rate it was built for (the `qps` fault changes it).
    limiter: Mutex<(NonZeroU32, std::sync::Arc<Limiter>)>,
    /// Calls per AccessKey and action in the current second (the `qps_window` fault).
    windows: Mutex<HashMap<(String, String), (i64, u32)>>,
    pub nonces: Mutex<NonceStore>,
    pub jobs: Mutex<JobStore>,
    pub quota: Mutex<QuotaState>,
    pub calls: Mutex<CallLog>,
    pub faults: Mutex<Faults>,
    /// STS keys handed out, by AccessKeyId.
    pub issued: Mutex<IssuedKeys>,
    /// IMDSv2 session tokens handed out → epoch milliseconds at which each expires.
    pub imds_tokens: Mutex<HashMap<String, i64>>,
    pub sts_lifetime: Duration,
    pub imds: ImdsMode,
    pub ecs_role: String,
}

/// A temporary key handed out by STS or the metadata service.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub secret: String,
    pub token: String,
    pub expires_ms: i64,
}

/// The temporary keys handed out. An expired key is remembered a day, so that a call signed with
/// it gets `InvalidSecurityToken.Expired` rather than `InvalidAccessKeyId.NotFound`.
#[derive(Debug, Default)]
pub struct IssuedKeys {
    keys: HashMap<String, IssuedKey>,
}

const FORGET_EXPIRED_MS: i64 = 24 * 3600 * 1000;

impl IssuedKeys {
    /// Hands out a new key valid until `expires_ms`; returns its ID.
    pub fn issue(&mut self, now_ms: i64, expires_ms: i64) -> (String, IssuedKey) {
        if self.keys.len() >= 10_000 {
            self.keys
                .retain(|_, k| k.expires_ms.saturating_add(FORGET_EXPIRED_MS) > now_ms);
        }
        let id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let key = IssuedKey {
            secret: uuid::Uuid::new_v4().simple().to_string(),
            token: format!(
                "CAIS{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            expires_ms,
        };
        self.keys.insert(id.clone(), key.clone());
        (id, key)
    }

    pub fn get(&self, access_key_id: &str) -> Option<&IssuedKey> {
        self.keys.get(access_key_id)
    }
}

/// The account that STS keys handed out by this simulator belong to: every renewal of a role's
/// credential is the same account, so a job created with one key is seen with the next.
pub const ROLE_ACCOUNT: &str = "sts-role-account";

impl SimState {
    /// Counts a call of `key` in the current one-second window of the simulator's clock; false
    /// when the window already holds `qps` calls (the `qps_window` fault).
    pub fn within_window(&self, key: (String, String), qps: u32) -> bool {
        let second = self.clock.now_ms().div_euclid(1000);
        let mut windows = lock(&self.windows);
        windows.retain(|_, (s, _)| *s == second);
        let (_, count) = windows.entry(key).or_insert((second, 0));
        if *count >= qps {
            return false;
        }
        *count += 1;
        true
    }

    /// The limiter for a rate of `qps` calls per second (the configured one when `None`): the
    /// one in force, or a new one when the rate changed (its buckets start full).
    pub fn limiter(&self, qps: Option<u32>) -> std::sync::Arc<Limiter> {
        let wanted = qps.and_then(NonZeroU32::new).unwrap_or(self.qps);
        let mut slot = lock(&self.limiter);
        if slot.0 != wanted {
            *slot = (
                wanted,
                std::sync::Arc::new(RateLimiter::hashmap_with_clock(
                    Quota::per_second(wanted),
                    self.clock.clone(),
                )),
            );
        }
        slot.1.clone()
    }

    /// The account a call's AccessKey acts for: the key itself for a configured account, the
    /// role's account for a key this simulator handed out.
    pub fn account_of(&self, access_key_id: &str) -> String {
        if !self.accounts.contains_key(access_key_id)
            && lock(&self.issued).get(access_key_id).is_some()
        {
            ROLE_ACCOUNT.to_owned()
        } else {
            access_key_id.to_owned()
        }
    }
}

/// Locks a store; a handler that panicked mid-update leaves maps that are still usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    pub fn new(cfg: &SimConfig) -> std::io::Result<SimState> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let qps =
            NonZeroU32::new(cfg.qps).ok_or_else(|| invalid("qps must be at least 1".to_owned()))?;
        if cfg.accounts.is_empty() {
            return Err(invalid(
                "the simulator needs at least one account".to_owned(),
            ));
        }
        let clock = SimClock::new();
        let faults = cfg
            .faults
            .clone()
            .normalised(clock.now_ms())
            .map_err(invalid)?;
        let calls_file = match &cfg.calls_log {
            Some(path) => Some(File::options().create(true).append(true).open(path)?),
            None => None,
        };
        Ok(SimState {
            accounts: cfg
                .accounts
                .iter()
                .map(|a| (a.access_key_id.clone(), a.clone()))
                .collect(),
            tolerance: cfg.tolerance,
            nonexistent: cfg.nonexistent.iter().cloned().collect(),
            forbidden: cfg.forbidden.iter().cloned().collect(),
            failing: cfg.failing.iter().cloned().collect(),
            windows: Mutex::new(HashMap::new()),
            limiter: Mutex::new((
                qps,
                std::sync::Arc::new(RateLimiter::hashmap_with_clock(
                    Quota::per_second(qps),
                    clock.clone(),
                )),
            )),
            qps,
            clock,
            nonces: Mutex::new(NonceStore::default()),
            jobs: Mutex::new(JobStore::new(cfg.max_jobs)),
            quota: Mutex::new(QuotaState::new(cfg.quota_refresh, cfg.quota_preload)),
            calls: Mutex::new(CallLog::new(cfg.max_recorded_calls, calls_file)),
            faults: Mutex::new(faults),
            issued: Mutex::new(IssuedKeys::default()),
            imds_tokens: Mutex::new(HashMap::new()),
            sts_lifetime: cfg.sts_lifetime,
            imds: cfg.imds,
            ecs_role: cfg.ecs_role.clone(),
        })
    }
}

/// Nonces seen within the timestamp window. An entry can be forgotten once its request's
/// timestamp has left the window, because a replay would then fail the timestamp check anyway.
#[derive(Debug, Default)]
pub struct NonceStore {
    /// (AccessKeyId, nonce) → epoch second after which the entry is no longer needed.
    seen: HashMap<(String, String), i64>,
    /// Size at which expired entries are next swept; keeps memory within twice the live set.
    sweep_at: usize,
}

impl NonceStore {
    const MIN_SWEEP: usize = 1024;

    /// Remembers the nonce; `false` if it was already used and is still remembered.
    pub fn insert(&mut self, key: (String, String), keep_until: i64, now: i64) -> bool {
        if self.seen.get(&key).is_some_and(|until| *until >= now) {
            return false;
        }
        if self.seen.len() >= self.sweep_at {
            self.seen.retain(|_, until| *until >= now);
            self.sweep_at = (self.seen.len() * 2).max(Self::MIN_SWEEP);
        }
        self.seen.insert(key, keep_until);
        true
    }
}

/// One media ID of a job, serialised as `GetMediaRefreshJobs` returns it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobItem {
    pub media_refresh_job_id: String,
    pub media_id: String,
    pub task_type: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub filter_policy: String,
    pub success_play_urls: String,
    pub task_ids: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    pub gmt_create: String,
    pub gmt_modified: String,
}

/// Jobs created by `RefreshMediaPlayUrls`, the oldest dropped beyond `max`.
#[derive(Debug)]
pub struct JobStore {
    jobs: HashMap<String, (String, Vec<JobItem>)>,
    order: VecDeque<String>,
    max: usize,
}

impl JobStore {
    fn new(max: usize) -> JobStore {
        JobStore {
            jobs: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub fn insert(&mut self, job_id: String, owner: String, items: Vec<JobItem>) {
        while self.order.len() >= self.max {
            if let Some(old) = self.order.pop_front() {
                self.jobs.remove(&old);
            }
        }
        self.order.push_back(job_id.clone());
        self.jobs.insert(job_id, (owner, items));
    }

    /// The items of a job the caller created; empty for unknown jobs and other callers' jobs.
    pub fn items(&self, job_id: &str, owner: &str, media_id: Option<&str>) -> Vec<JobItem> {
        match self.jobs.get(job_id) {
            Some((job_owner, items)) if job_owner == owner => items
                .iter()
                .filter(|i| media_id.is_none_or(|m| i.media_id == m))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The daily quota, counted in media IDs; it resets at midnight China time (UTC+8), which is
/// when the real quota is believed to reset (`vod-api.md` §7).
#[derive(Debug)]
pub struct QuotaState {
    pub refresh_quota: u64,
    pub preload_quota: u64,
    day: i64,
    refresh_used: u64,
    preload_used: u64,
}

impl QuotaState {
    fn new(refresh_quota: u64, preload_quota: u64) -> QuotaState {
        QuotaState {
            refresh_quota,
            preload_quota,
            day: i64::MIN,
            refresh_used: 0,
            preload_used: 0,
        }
    }

    fn roll_over(&mut self, now_secs: i64) {
        let day = (now_secs + 8 * 3600).div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.refresh_used = 0;
            self.preload_used = 0;
        }
    }

    /// Remaining (refresh, preload) units today.
    pub fn remaining(&mut self, now_secs: i64) -> (u64, u64) {
        self.roll_over(now_secs);
        (
            self.refresh_quota.saturating_sub(self.refresh_used),
            self.preload_quota.saturating_sub(self.preload_used),
        )
    }

    /// What `GET /_sim/quota` shows.
    pub fn view(&mut self, now_secs: i64) -> QuotaView {
        let (refresh_remaining, preload_remaining) = self.remaining(now_secs);
        QuotaView {
            refresh_quota: self.refresh_quota,
            refresh_remaining,
            preload_quota: self.preload_quota,
            preload_remaining,
        }
    }

    /// Sets what is left of today's quotas (`PUT /_sim/quota`): a used-up quota, or one reset
    /// before midnight, as if the day had rolled over. A figure above the daily quota is capped.
    pub fn set_remaining(&mut self, change: &QuotaChange, now_secs: i64) {
        self.roll_over(now_secs);
        if let Some(left) = change.refresh_remaining {
            self.refresh_used = self.refresh_quota.saturating_sub(left);
        }
        if let Some(left) = change.preload_remaining {
            self.preload_used = self.preload_quota.saturating_sub(left);
        }
    }

    /// Takes `units` of the refresh (or preload) quota; `false`, taking nothing, if too few remain.
    pub fn take(&mut self, preload: bool, units: u64, now_secs: i64) -> bool {
        let (refresh_left, preload_left) = self.remaining(now_secs);
        let (left, used) = if preload {
            (preload_left, &mut self.preload_used)
        } else {
            (refresh_left, &mut self.refresh_used)
        };
        if units > left {
            return false;
        }
        *used += units;
        true
    }
}

/// Today's quotas and what is left of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QuotaView {
    pub refresh_quota: u64,
    pub refresh_remaining: u64,
    pub preload_quota: u64,
    pub preload_remaining: u64,
}

/// A change of what is left today; an absent figure stays as it is.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    pub refresh_remaining: Option<u64>,
    pub preload_remaining: Option<u64>,
}

/// Recorded calls in memory (bounded) and, optionally, as JSON lines in a file (unbounded).
#[derive(Debug)]
pub struct CallLog {
    calls: VecDeque<RecordedCall>,
    max: usize,
    file: Option<File>,
}

impl CallLog {
    fn new(max: usize, file: Option<File>) -> CallLog {
        CallLog {
            calls: VecDeque::new(),
            max: max.max(1),
            file,
        }
    }

    pub fn push(&mut self, call: RecordedCall) {
        if let Some(file) = &mut self.file {
            let written = serde_json::to_string(&call)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(file, "{line}"));
            if let Err(err) = written {
                tracing::warn!(%err, "cannot append to the calls log");
            }
        }
        if self.calls.len() >= self.max {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub fn all(&self) -> Vec<RecordedCall> {
        self.calls.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.calls.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> (String, String) {
        ("ak".to_owned(), n.to_owned())
    }

    #[test]
    fn nonces_are_single_use_and_forgotten_after_the_window() {
        let mut store = NonceStore::default();
        assert!(store.insert(key("a"), 100, 0));
        assert!(!store.insert(key("a"), 100, 50));
        assert!(store.insert(key("b"), 100, 50));
        assert!(
            store.insert(key("a"), 300, 101),
            "expired entries may be reused"
        );
    }

    #[test]
    fn nonce_memory_is_swept() {
        let mut store = NonceStore::default();
        for i in 0..5000 {
            store.insert(key(&i.to_string()), i, i);
        }
        assert!(
            store.seen.len() <= 2 * NonceStore::MIN_SWEEP,
            "{}",
            store.seen.len()
        );
    }

    #[test]
    fn quota_resets_daily_in_china_time() {
        let mut q = QuotaState::new(3, 1);
        let day1 = 1_736_899_200; // 2025-01-15T00:00:00Z = 08:00 in UTC+8
        assert!(q.take(false, 2, day1));
        assert!(!q.take(false, 2, day1));
        assert!(q.take(true, 1, day1));
        assert_eq!(q.remaining(day1), (1, 0));
        assert_eq!(
            q.remaining(day1 + 15 * 3600 + 59),
            (1, 0),
            "still the same day in UTC+8"
        );
        assert_eq!(q.remaining(day1 + 16 * 3600), (3, 1), "midnight in UTC+8");
    }

    #[test]
    fn jobs_are_bounded_and_private() {
        let mut jobs = JobStore::new(2);
        let item = |id: &str| JobItem {
            media_refresh_job_id: id.to_owned(),
            media_id: "m".to_owned(),
            task_type: "Refresh".to_owned(),
            status: "success".to_owned(),
            error_code: None,
            error_message: None,
            filter_policy: "{}".to_owned(),
            success_play_urls: String::new(),
            task_ids: String::new(),
            user_data: None,
            gmt_create: String::new(),
            gmt_modified: String::new(),
        };
        for id in ["j1", "j2", "j3"] {
            jobs.insert(id.to_owned(), "ak".to_owned(), vec![item(id)]);
        }
        assert!(jobs.items("j1", "ak", None).is_empty());
        assert_eq!(jobs.items("j3", "ak", None).len(), 1);
        assert!(jobs.items("j3", "other", None).is_empty());
        assert!(jobs.items("j3", "ak", Some("x")).is_empty());
    }
}
