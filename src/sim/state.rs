//! The simulator's shared state: accounts and their limits, remembered nonces, jobs, quotas,
//! recorded calls.
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
use super::config::{Account, ImdsMode, SimConfig, check_accounts};
use super::faults::Faults;
use super::ledger::{DailyQuotas, JobStore, QuotaBook};
use super::tasks::{Lifecycle, TaskStore};

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
    /// For `RefreshVodObjectCaches` and `PreloadVodObjectCaches`: the URLs of `ObjectPath`, one a
    /// line, trimmed, empty lines left out (as the simulator reads them).
    #[serde(default)]
    pub object_paths: Vec<String>,
    /// For `RefreshVodObjectCaches`: its `ObjectType` as sent, `File` when it sent none.
    #[serde(default)]
    pub object_type: Option<String>,
}

/// A token bucket per AccessKey and action on the simulator's clock: VOD's limits are per
/// operation (50 calls per second each for `RefreshMediaPlayUrls` and `GetMediaRefreshJobs`).
pub type Limiter = RateLimiter<
    (String, String),
    HashMapStateStore<(String, String)>,
    SimClock,
    NoOpMiddleware<Duration>,
>;

/// A limiter in force and the rate it was built for.
type LimiterSlot = (NonZeroU32, std::sync::Arc<Limiter>);

pub struct SimState {
    /// The configured accounts, by AccessKeyId.
    pub accounts: HashMap<String, Account>,
    /// The first configured account: the one the quota helpers read when not told which.
    pub default_account: String,
    /// The configured accounts' rates and quotas (their own, or the simulator's), by account.
    allowances: HashMap<String, Allowance>,
    /// The rates and quotas of an account configured without any (the role's account).
    default_allowance: Allowance,
    /// The configured accounts' numeric IDs → the account (its AccessKeyId).
    uids: HashMap<String, String>,
    pub tolerance: Duration,
    pub nonexistent: HashSet<String>,
    pub forbidden: HashSet<String>,
    pub failing: HashSet<String>,
    /// See [`SimConfig::quota_per_id`](super::SimConfig::quota_per_id).
    pub quota_per_id: bool,
    pub clock: SimClock,
    /// The limiters in force, per account and for the URL calls or the others, with the rate
    /// each was built for (the account's, or the `qps` fault's).
    limiters: Mutex<HashMap<(String, bool), LimiterSlot>>,
    /// Calls per AccessKey and action in the current second (the `qps_window` fault).
    windows: Mutex<HashMap<(String, String), (i64, u32)>>,
    /// Arrival times in the last second per AccessKey and action (the `qps_sliding` fault).
    arrivals: Mutex<HashMap<(String, String), std::collections::VecDeque<i64>>>,
    pub nonces: Mutex<NonceStore>,
    pub jobs: Mutex<JobStore>,
    /// The daily quotas of every account.
    pub quota: Mutex<QuotaBook>,
    /// The CDN tasks of every account.
    pub tasks: Mutex<TaskStore>,
    /// When tasks move from `Pending` to `Refreshing` to done.
    pub life: Lifecycle,
    /// See [`SimConfig::urls_per_request`](super::SimConfig::urls_per_request).
    pub urls_per_request: usize,
    /// The account's CDN domains, lower case.
    pub cdn_domains: Vec<String>,
    /// The account's offline domains, lower case.
    pub offline_domains: HashSet<String>,
    pub calls: Mutex<CallLog>,
    pub faults: Mutex<Faults>,
    /// The action named by the `stall_action` fault, for the calls hanging on it to watch.
    pub stall: tokio::sync::watch::Sender<Option<String>>,
    /// The calls that arrived while their action was stalled, oldest first (`GET /_sim/stalled`).
    pub stalled: Mutex<CallLog>,
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
    /// When it was handed out, epoch milliseconds by the simulator's clock.
    pub issued_ms: i64,
    pub expires_ms: i64,
    /// The account it acts for: [`ROLE_ACCOUNT`] or a configured account's AccessKeyId.
    pub account: String,
}

/// The temporary keys handed out. An expired key is remembered a day, so that a call signed with
/// it gets `InvalidSecurityToken.Expired` rather than `InvalidAccessKeyId.NotFound`.
#[derive(Debug, Default)]
pub struct IssuedKeys {
    keys: HashMap<String, IssuedKey>,
}

const FORGET_EXPIRED_MS: i64 = 24 * 3600 * 1000;

impl IssuedKeys {
    /// Hands out a new key of `account` valid until `expires_ms`; returns its ID.
    pub fn issue(&mut self, now_ms: i64, expires_ms: i64, account: String) -> (String, IssuedKey) {
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
            issued_ms: now_ms,
            expires_ms,
            account,
        };
        self.keys.insert(id.clone(), key.clone());
        (id, key)
    }

    pub fn get(&self, access_key_id: &str) -> Option<&IssuedKey> {
        self.keys.get(access_key_id)
    }

    /// Every key handed out (and not yet forgotten) with its AccessKeyId, oldest first.
    pub fn all(&self) -> Vec<(String, IssuedKey)> {
        let mut all: Vec<(String, IssuedKey)> = self
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), key.clone()))
            .collect();
        all.sort_by_key(|(id, key)| (key.issued_ms, id.clone()));
        all
    }
}

/// The account that STS keys handed out by this simulator belong to when no configured account
/// claims them (the metadata service's and the credentials URI's keys, and those of a role whose
/// ARN names no configured account's `uid`): every renewal of a role's credential is the same
/// account, so a job created with one key is seen with the next. It has the simulator's rates and
/// quotas.
pub const ROLE_ACCOUNT: &str = "sts-role-account";

/// What an account may do: its rates and the size of its daily quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Calls per second per AccessKey and action.
    pub qps: NonZeroU32,
    /// The same for the URL calls.
    pub url_qps: NonZeroU32,
    pub quotas: DailyQuotas,
}

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

    /// Counts a call of `key` arriving now; false, not counting it, when the last 1,000 ms
    /// already hold `qps` arrivals (the `qps_sliding` fault).
    pub fn within_sliding_second(&self, key: (String, String), qps: u32) -> bool {
        let now = self.clock.now_ms();
        let mut arrivals = lock(&self.arrivals);
        arrivals.retain(|_, times| times.back().is_some_and(|last| now - last < 1000));
        let times = arrivals.entry(key).or_default();
        while times.front().is_some_and(|first| now - first >= 1000) {
            times.pop_front();
        }
        if times.len() >= qps as usize {
            return false;
        }
        times.push_back(now);
        true
    }

    /// The limiter of `account`'s keys for the URL calls (`url_call`) or the others, at a rate
    /// of `qps` calls per second (the account's when `None`): the one in force, or a new one
    /// when the rate changed (its buckets start full). Each account, and each of its two rates,
    /// has a limiter of its own, so that rates in force at once do not rebuild each other's
    /// limiter on every call.
    pub fn limiter(
        &self,
        account: &str,
        url_call: bool,
        qps: Option<u32>,
    ) -> std::sync::Arc<Limiter> {
        let allowance = self.allowance(account);
        let configured = if url_call {
            allowance.url_qps
        } else {
            allowance.qps
        };
        let wanted = qps.and_then(NonZeroU32::new).unwrap_or(configured);
        let mut limiters = lock(&self.limiters);
        let slot = limiters
            .entry((account.to_owned(), url_call))
            .or_insert_with(|| (wanted, self.new_limiter(wanted)));
        if slot.0 != wanted {
            *slot = (wanted, self.new_limiter(wanted));
        }
        slot.1.clone()
    }

    fn new_limiter(&self, qps: NonZeroU32) -> std::sync::Arc<Limiter> {
        std::sync::Arc::new(RateLimiter::hashmap_with_clock(
            Quota::per_second(qps),
            self.clock.clone(),
        ))
    }

    /// The rates and quotas of `account`: a configured account's, or the simulator's for any
    /// other (the role's account).
    pub fn allowance(&self, account: &str) -> Allowance {
        self.allowances
            .get(account)
            .copied()
            .unwrap_or(self.default_allowance)
    }

    /// The account a call's AccessKey acts for: the key itself for a configured account, the
    /// account it was issued for for a key this simulator handed out.
    pub fn account_of(&self, access_key_id: &str) -> String {
        if self.accounts.contains_key(access_key_id) {
            return access_key_id.to_owned();
        }
        match lock(&self.issued).get(access_key_id) {
            Some(key) => key.account.clone(),
            None => access_key_id.to_owned(),
        }
    }

    /// The configured account whose `uid` is `uid`.
    pub fn account_with_uid(&self, uid: &str) -> Option<&str> {
        self.uids.get(uid).map(String::as_str)
    }

    /// The account `name` designates for the steering endpoints and helpers: a configured
    /// account's AccessKeyId, an STS key handed out (its account), or [`ROLE_ACCOUNT`]; `None`
    /// for anything else.
    pub fn known_account(&self, name: &str) -> Option<String> {
        if self.accounts.contains_key(name) || name == ROLE_ACCOUNT {
            return Some(name.to_owned());
        }
        lock(&self.issued).get(name).map(|key| key.account.clone())
    }
}

impl SimState {
    /// Puts `faults` (already normalised) in force, releasing the calls whose stall they end.
    pub fn replace_faults(&self, faults: Faults) {
        let stall = faults.stall_action.clone();
        *lock(&self.faults) = faults;
        self.stall.send_replace(stall);
    }
}

/// Locks a store; a handler that panicked mid-update leaves maps that are still usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    pub fn new(cfg: &SimConfig) -> std::io::Result<SimState> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let rate = |qps: u32, name: &str| {
            NonZeroU32::new(qps).ok_or_else(|| invalid(format!("{name} must be at least 1")))
        };
        let qps = rate(cfg.qps, "qps")?;
        let url_qps = cfg.url_qps.map(|n| rate(n, "url_qps")).transpose()?;
        let quotas = DailyQuotas {
            refresh: cfg.quota_refresh,
            preload: cfg.quota_preload,
            dir: cfg.quota_dir,
        };
        let default_allowance = Allowance {
            qps,
            url_qps: url_qps.unwrap_or(qps),
            quotas,
        };
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let life = Lifecycle {
            refreshing_after_ms: millis(cfg.task_refreshing_after),
            complete_after_ms: millis(cfg.task_complete_after),
        };
        if life.complete_after_ms < life.refreshing_after_ms {
            return Err(invalid(
                "task_complete_after must not be shorter than task_refreshing_after".to_owned(),
            ));
        }
        if cfg.urls_per_request == 0 {
            return Err(invalid("urls_per_request must be at least 1".to_owned()));
        }
        let lower = |domains: &[String]| -> Vec<String> {
            domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect()
        };
        let Some(first) = cfg.accounts.first() else {
            return Err(invalid(
                "the simulator needs at least one account".to_owned(),
            ));
        };
        check_accounts(&cfg.accounts).map_err(invalid)?;
        let mut allowances = HashMap::new();
        let mut uids = HashMap::new();
        let mut quota = QuotaBook::new(quotas);
        quota.open(ROLE_ACCOUNT, quotas);
        for account in &cfg.accounts {
            let qps = account.qps.and_then(NonZeroU32::new).unwrap_or(qps);
            let allowance = Allowance {
                qps,
                url_qps: account
                    .url_qps
                    .and_then(NonZeroU32::new)
                    .or(url_qps)
                    .unwrap_or(qps),
                quotas: DailyQuotas {
                    refresh: account.quota_refresh.unwrap_or(quotas.refresh),
                    preload: account.quota_preload.unwrap_or(quotas.preload),
                    dir: account.quota_dir.unwrap_or(quotas.dir),
                },
            };
            quota.open(&account.access_key_id, allowance.quotas);
            allowances.insert(account.access_key_id.clone(), allowance);
            if let Some(uid) = &account.uid {
                uids.insert(uid.clone(), account.access_key_id.clone());
            }
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
            default_account: first.access_key_id.clone(),
            allowances,
            default_allowance,
            uids,
            tolerance: cfg.tolerance,
            nonexistent: cfg.nonexistent.iter().cloned().collect(),
            forbidden: cfg.forbidden.iter().cloned().collect(),
            failing: cfg.failing.iter().cloned().collect(),
            quota_per_id: cfg.quota_per_id,
            windows: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            clock,
            nonces: Mutex::new(NonceStore::default()),
            jobs: Mutex::new(JobStore::new(cfg.max_jobs)),
            quota: Mutex::new(quota),
            // Task IDs count up from a random start, as long numbers the way the CDN's look, so
            // that IDs of two simulators (or two runs) do not collide.
            tasks: Mutex::new(TaskStore::new(
                cfg.max_tasks,
                10_000_000_000 + u64::from(rand::random::<u32>()),
            )),
            life,
            urls_per_request: cfg.urls_per_request,
            cdn_domains: lower(&cfg.cdn_domains),
            offline_domains: lower(&cfg.offline_domains).into_iter().collect(),
            calls: Mutex::new(CallLog::new(cfg.max_recorded_calls, calls_file)),
            stall: tokio::sync::watch::Sender::new(faults.stall_action.clone()),
            stalled: Mutex::new(CallLog::new(cfg.max_recorded_calls, None)),
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
    fn each_account_has_its_rates_and_quotas() {
        let config = |url_qps: Option<u32>| SimConfig {
            accounts: vec![
                Account::new("plain", "s"),
                Account {
                    qps: Some(5),
                    quota_dir: Some(1),
                    uid: Some("42".to_owned()),
                    ..Account::new("own", "s")
                },
                Account {
                    url_qps: Some(2),
                    ..Account::new("url", "s")
                },
            ],
            qps: 10,
            url_qps,
            ..SimConfig::default()
        };
        let rates = |state: &SimState, account: &str| {
            let allowance = state.allowance(account);
            (allowance.qps.get(), allowance.url_qps.get())
        };
        let state = SimState::new(&config(None)).unwrap();
        assert_eq!(rates(&state, "plain"), (10, 10));
        assert_eq!(
            rates(&state, "own"),
            (5, 5),
            "the URL rate follows the account's"
        );
        assert_eq!(rates(&state, "url"), (10, 2));
        assert_eq!(rates(&state, ROLE_ACCOUNT), (10, 10));
        assert_eq!(state.allowance("own").quotas.dir, 1);
        assert_eq!(state.allowance("own").quotas.refresh, 2000);
        assert_eq!(state.account_with_uid("42"), Some("own"));
        assert_eq!(state.default_account, "plain");
        let state = SimState::new(&config(Some(3))).unwrap();
        assert_eq!(
            rates(&state, "own"),
            (5, 3),
            "--url-qps before the account's qps"
        );
        assert_eq!(rates(&state, ROLE_ACCOUNT), (10, 3));

        let (id, _) = lock(&state.issued).issue(0, i64::MAX, "own".to_owned());
        assert_eq!(state.account_of(&id), "own");
        assert_eq!(state.known_account(&id).as_deref(), Some("own"));
        assert_eq!(state.account_of("plain"), "plain");
        assert_eq!(state.known_account("nobody"), None);

        let mut bad = config(None);
        bad.accounts[0].qps = Some(0);
        assert!(SimState::new(&bad).is_err());
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
}
