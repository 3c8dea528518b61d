//! What VOD keeps for an account, as the simulator plays it: the refresh jobs it created (what
//! `GetMediaRefreshJobs` reads) and the daily quotas (what `RefreshMediaPlayUrls` and the URL
//! calls use up and `DescribeVodRefreshQuota` reports), each account's apart. The CDN tasks are
//! in `tasks.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};

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
    pub(super) fn new(max: usize) -> JobStore {
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

/// One of the daily quotas (`vod-api.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// URL purges (`UrlQuota`): the URLs of `RefreshVodObjectCaches` and the media IDs of a
    /// `RefreshMediaPlayUrls` refresh draw from this one pool.
    Url,
    /// Directory purges (`DirQuota`), one unit per directory.
    Dir,
    /// Prefetches (`PreloadQuota`): the URLs of `PreloadVodObjectCaches` and the media IDs of a
    /// `RefreshMediaPlayUrls` preload.
    Preload,
}

/// The daily quotas; they reset together at midnight China time (UTC+8), which is when the real
/// quota is believed to reset (`vod-api.md` §7). A media refresh counts its media IDs (as it
/// always has here), a URL call its URLs, a directory call its directories.
#[derive(Debug)]
pub struct QuotaState {
    /// The URL pool (`quota_refresh`).
    pub refresh_quota: u64,
    pub preload_quota: u64,
    pub dir_quota: u64,
    /// Reported by `DescribeVodRefreshQuota`; no operation of the simulator draws from it.
    pub block_quota: u64,
    day: i64,
    refresh_used: u64,
    preload_used: u64,
    dir_used: u64,
}

impl QuotaState {
    pub(super) fn new(refresh_quota: u64, preload_quota: u64, dir_quota: u64) -> QuotaState {
        QuotaState {
            refresh_quota,
            preload_quota,
            dir_quota,
            block_quota: 500,
            day: i64::MIN,
            refresh_used: 0,
            preload_used: 0,
            dir_used: 0,
        }
    }

    fn roll_over(&mut self, now_secs: i64) {
        let day = (now_secs + 8 * 3600).div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.refresh_used = 0;
            self.preload_used = 0;
            self.dir_used = 0;
        }
    }

    /// What is left of `pool` today.
    pub fn left(&mut self, pool: Pool, now_secs: i64) -> u64 {
        self.roll_over(now_secs);
        let (quota, used) = self.slot(pool);
        quota.saturating_sub(*used)
    }

    fn slot(&mut self, pool: Pool) -> (u64, &mut u64) {
        match pool {
            Pool::Url => (self.refresh_quota, &mut self.refresh_used),
            Pool::Dir => (self.dir_quota, &mut self.dir_used),
            Pool::Preload => (self.preload_quota, &mut self.preload_used),
        }
    }

    /// What `GET /_sim/quota` shows.
    pub fn view(&mut self, now_secs: i64) -> QuotaView {
        QuotaView {
            refresh_quota: self.refresh_quota,
            refresh_remaining: self.left(Pool::Url, now_secs),
            preload_quota: self.preload_quota,
            preload_remaining: self.left(Pool::Preload, now_secs),
            dir_quota: self.dir_quota,
            dir_remaining: self.left(Pool::Dir, now_secs),
        }
    }

    /// Sets what is left of today's quotas (`PUT /_sim/quota`): a used-up quota, or one reset
    /// before midnight, as if the day had rolled over. A figure above the daily quota is capped.
    pub fn set_remaining(&mut self, change: &QuotaChange, now_secs: i64) {
        self.set_left(Pool::Url, change.refresh_remaining, now_secs);
        self.set_left(Pool::Preload, change.preload_remaining, now_secs);
    }

    /// Sets what is left of `pool` today (nothing changes with `None`).
    pub fn set_left(&mut self, pool: Pool, left: Option<u64>, now_secs: i64) {
        self.roll_over(now_secs);
        if let Some(left) = left {
            let (quota, used) = self.slot(pool);
            *used = quota.saturating_sub(left);
        }
    }

    /// Takes what is left of `units`, at most: how many it took.
    pub fn take_up_to(&mut self, pool: Pool, units: u64, now_secs: i64) -> u64 {
        let left = self.left(pool, now_secs);
        let taken = units.min(left);
        *self.slot(pool).1 += taken;
        taken
    }

    /// Takes `units` of `pool`; `false`, taking nothing, if too few remain.
    pub fn take(&mut self, pool: Pool, units: u64, now_secs: i64) -> bool {
        units <= self.left(pool, now_secs) && self.take_up_to(pool, units, now_secs) == units
    }
}

/// The size of an account's three daily pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyQuotas {
    /// The URL pool (`UrlQuota`).
    pub refresh: u64,
    /// The prefetch pool (`PreloadQuota`).
    pub preload: u64,
    /// The directory pool (`DirQuota`).
    pub dir: u64,
}

/// The daily quotas of every account: each account draws from and reports its own pools, which
/// roll over at the same midnight.
#[derive(Debug)]
pub struct QuotaBook {
    pools: HashMap<String, QuotaState>,
    /// The pools of an account without quotas of its own (the role's account).
    default: DailyQuotas,
}

impl QuotaBook {
    /// A book with no account yet; an account opened later without quotas gets `default`.
    pub(super) fn new(default: DailyQuotas) -> QuotaBook {
        QuotaBook {
            pools: HashMap::new(),
            default,
        }
    }

    /// Gives `account` pools of the sizes `quotas` (full today), replacing any it had.
    pub(super) fn open(&mut self, account: &str, quotas: DailyQuotas) {
        self.pools.insert(
            account.to_owned(),
            QuotaState::new(quotas.refresh, quotas.preload, quotas.dir),
        );
    }

    /// The pools of `account`; an account not opened gets the default sizes, full today.
    pub fn of(&mut self, account: &str) -> &mut QuotaState {
        let default = self.default;
        self.pools
            .entry(account.to_owned())
            .or_insert_with(|| QuotaState::new(default.refresh, default.preload, default.dir))
    }

    /// The pools of every account.
    pub fn all(&mut self) -> impl Iterator<Item = &mut QuotaState> {
        self.pools.values_mut()
    }

    /// Every account's quotas and what is left of them, by account.
    pub fn views(&mut self, now_secs: i64) -> BTreeMap<String, QuotaView> {
        self.pools
            .iter_mut()
            .map(|(account, pools)| (account.clone(), pools.view(now_secs)))
            .collect()
    }
}

/// Today's quotas and what is left of them (`refresh_*` is the URL pool, `dir_*` the directory
/// pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QuotaView {
    pub refresh_quota: u64,
    pub refresh_remaining: u64,
    pub preload_quota: u64,
    pub preload_remaining: u64,
    pub dir_quota: u64,
    pub dir_remaining: u64,
}

/// A change of what is left today; an absent figure stays as it is.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    pub refresh_remaining: Option<u64>,
    pub preload_remaining: Option<u64>,
}

/// What `PUT /_sim/quota` takes: a [`QuotaChange`] and, apart from it (so that the fields of
/// `QuotaChange` stay as they were), what is left of the directory quota.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaSetting {
    pub refresh_remaining: Option<u64>,
    pub preload_remaining: Option<u64>,
    pub dir_remaining: Option<u64>,
}

impl QuotaState {
    /// Applies a `PUT /_sim/quota`.
    pub(super) fn apply(&mut self, setting: &QuotaSetting, now_secs: i64) {
        self.set_left(Pool::Url, setting.refresh_remaining, now_secs);
        self.set_left(Pool::Preload, setting.preload_remaining, now_secs);
        self.set_left(Pool::Dir, setting.dir_remaining, now_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_resets_daily_in_china_time() {
        let mut q = QuotaState::new(3, 1, 2);
        let day1 = 1_736_899_200; // 2025-01-15T00:00:00Z = 08:00 in UTC+8
        assert!(q.take(Pool::Url, 2, day1));
        assert!(!q.take(Pool::Url, 2, day1));
        assert!(q.take(Pool::Preload, 1, day1));
        assert!(!q.take(Pool::Dir, 3, day1), "more than the pool holds");
        assert!(q.take(Pool::Dir, 2, day1));
        let left = |q: &mut QuotaState, at| (q.left(Pool::Url, at), q.left(Pool::Preload, at));
        assert_eq!(left(&mut q, day1), (1, 0));
        assert_eq!(q.left(Pool::Dir, day1), 0);
        assert_eq!(
            left(&mut q, day1 + 15 * 3600 + 59),
            (1, 0),
            "still the same day in UTC+8"
        );
        assert_eq!(left(&mut q, day1 + 16 * 3600), (3, 1), "midnight in UTC+8");
        assert_eq!(q.left(Pool::Dir, day1 + 16 * 3600), 2, "every pool resets");
    }

    #[test]
    fn each_account_draws_from_its_own_pools() {
        let day1 = 1_736_899_200;
        let mut book = QuotaBook::new(DailyQuotas {
            refresh: 5,
            preload: 5,
            dir: 5,
        });
        book.open(
            "a",
            DailyQuotas {
                refresh: 2,
                preload: 1,
                dir: 1,
            },
        );
        assert!(book.of("a").take(Pool::Url, 2, day1));
        assert!(!book.of("a").take(Pool::Url, 1, day1));
        assert_eq!(
            book.of("b").left(Pool::Url, day1),
            5,
            "another account's pool"
        );
        for pools in book.all() {
            pools.set_left(Pool::Dir, Some(0), day1);
        }
        let views = book.views(day1);
        assert_eq!(views.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            (views["a"].refresh_remaining, views["a"].dir_remaining),
            (0, 0)
        );
        assert_eq!(
            (views["b"].refresh_remaining, views["b"].dir_remaining),
            (5, 0)
        );
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
