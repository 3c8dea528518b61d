//! The records that cross the store contract.

use serde::{Deserialize, Serialize};

use crate::domain::{
    AccountName, MediaId, Priority, PurgeOptions, Quota, TargetKind, TaskType, Ts,
};
use crate::queue::Debounce;

/// One pending-item upsert of an ingest request.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// The VOD account it is purged in; part of the item's key.
    pub account: AccountName,
    pub media_id: MediaId,
    pub task: TaskType,
    pub options: PurgeOptions,
    pub fingerprint: String,
    pub debounce: Debounce,
    /// An urgent item skips the quiet period (its `debounce` has none) and is claimed first.
    pub priority: Priority,
}

impl NewItem {
    /// An item with the default options: a URL, a directory or a cover lookup, to which the
    /// options of `RefreshMediaPlayUrls` do not apply.
    pub fn plain(
        account: AccountName,
        target: MediaId,
        task: TaskType,
        debounce: Debounce,
        priority: Priority,
    ) -> NewItem {
        NewItem {
            account,
            media_id: target,
            task,
            options: PurgeOptions::default(),
            fingerprint: PurgeOptions::default_fingerprint(),
            debounce,
            priority,
        }
    }
}

/// One accepted request, stored whole or not at all.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub source: String,
    /// `webhook-id`, `Idempotency-Key` or similar: a repeat within the retention gets the first
    /// answer and stores nothing.
    pub delivery_id: Option<String>,
    pub event_id: String,
    pub items: Vec<NewItem>,
    pub rejected: Vec<RejectedId>,
    pub now: Ts,
    pub delivery_expires_at: Ts,
}

/// The answer to an ingest request (the body of the 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    /// ID of this delivery (the first one, when this is a redelivery).
    pub event_id: String,
    /// IDs that created a new pending item.
    pub accepted: Vec<String>,
    /// IDs folded into an item that was already pending.
    pub merged: Vec<String>,
    /// IDs that were refused, with the reason; they are never sent to VOD.
    pub rejected: Vec<RejectedId>,
    /// True when this delivery repeats one already answered; nothing new was stored.
    #[serde(default)]
    pub redelivery: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectedId {
    pub media_id: String,
    pub reason: String,
}

/// A (task, fingerprint) group of one account with items that are due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueGroup {
    pub account: AccountName,
    pub task: TaskType,
    pub fingerprint: String,
    pub due_count: u64,
    /// Due urgent items among them.
    pub urgent_count: u64,
    pub oldest_due_at: Ts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Claimed by a flusher; the call is being made (or the flusher died and the lease runs out).
    InFlight,
    /// A retryable failure; the next attempt is at `next_attempt_at`.
    Retrying,
    /// VOD's daily quota of the task type is used up; the job is tried again (a probe) at
    /// `next_attempt_at`, or sent as soon as the quota comes back.
    Held,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InFlight => "in_flight",
            JobStatus::Retrying => "retrying",
            JobStatus::Held => "held",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<JobStatus> {
        Some(match raw {
            "in_flight" => JobStatus::InFlight,
            "retrying" => JobStatus::Retrying,
            "held" => JobStatus::Held,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// What became of one media ID of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Not sent yet, or being sent.
    Pending,
    /// Accepted by VOD (or, in dry-run mode, would have been sent).
    Sent,
    /// VOD says the ID does not exist; not retried.
    NonExistent,
    /// VOD says the caller may not operate on the ID; not retried.
    Forbidden,
    /// The job failed.
    Failed,
    /// Sent, and VOD reports the ID's CDN tasks submitted (`GetMediaRefreshJobs`).
    Submitted,
    /// Sent, but VOD reports that submitting the ID's CDN tasks failed; the item carries VOD's
    /// code and message.
    SubmitFailed,
    /// Every CDN task of the target completed: the edge serves the new content.
    Complete,
    /// Sent, but a CDN task was not reported done within `vod.follow_for`.
    Unconfirmed,
}

impl ItemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Pending => "pending",
            ItemOutcome::Sent => "sent",
            ItemOutcome::NonExistent => "non_existent",
            ItemOutcome::Forbidden => "forbidden",
            ItemOutcome::Failed => "failed",
            ItemOutcome::Submitted => "submitted",
            ItemOutcome::SubmitFailed => "submit_failed",
            ItemOutcome::Complete => "complete",
            ItemOutcome::Unconfirmed => "unconfirmed",
        }
    }

    pub fn parse(raw: &str) -> Option<ItemOutcome> {
        Some(match raw {
            "pending" => ItemOutcome::Pending,
            "sent" => ItemOutcome::Sent,
            "non_existent" => ItemOutcome::NonExistent,
            "forbidden" => ItemOutcome::Forbidden,
            "failed" => ItemOutcome::Failed,
            "submitted" => ItemOutcome::Submitted,
            "submit_failed" => ItemOutcome::SubmitFailed,
            "complete" => ItemOutcome::Complete,
            "unconfirmed" => ItemOutcome::Unconfirmed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobItem {
    pub media_id: MediaId,
    pub outcome: ItemOutcome,
    pub first_seen: Ts,
    pub events: u64,
    /// VOD's code and message for a failed submission ([`ItemOutcome::SubmitFailed`]).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// A job with its media IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    /// The VOD account its calls go to.
    pub account: AccountName,
    pub task: TaskType,
    pub fingerprint: String,
    pub options: PurgeOptions,
    pub status: JobStatus,
    pub dry_run: bool,
    /// Attempts started so far; also the fencing token of the current attempt.
    pub attempts: u32,
    pub created_at: Ts,
    /// Start of the retry budget (`vod.max_age`): creation, or the last operator retry.
    pub budget_from: Ts,
    pub updated_at: Ts,
    pub next_attempt_at: Option<Ts>,
    pub lease_until: Option<Ts>,
    pub vod_job_id: Option<String>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// When VOD is next asked what became of the submissions (see the flusher's submission checks).
    pub check_at: Option<Ts>,
    /// The job whose failed submissions this job sends again (see [`Resubmission`]).
    pub resubmission_of: Option<String>,
    /// When its quota hold began (see [`JobStatus::Held`]); cleared when the hold ends.
    pub held_since: Option<Ts>,
    /// Attempts that only met a used-up quota: they do not count against `vod.max_attempts`.
    pub holds: u32,
    /// Urgent when the job carries an urgent item.
    pub priority: Priority,
    pub items: Vec<JobItem>,
}

impl Job {
    /// Attempts that count against `vod.max_attempts`.
    pub fn counted_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.holds)
    }
}

/// A job whose next attempt is due (a retry, an expired lease, or the probe of a quota hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub id: String,
    pub task: TaskType,
    pub status: JobStatus,
    /// Set for the probe of a quota hold: a held job, or a probe whose lease ran out.
    pub held_since: Option<Ts>,
    pub priority: Priority,
    /// How many media IDs it carries.
    pub ids: u64,
}

/// How many IDs a retry of a task type may carry now, by the quota's allowance: a normal one
/// and an urgent one (`None`: no bound). The probe of a hold is not a retry and always may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryRoom {
    pub normal: Option<u64>,
    pub urgent: Option<u64>,
}

impl RetryRoom {
    /// No bound known.
    pub const OPEN: RetryRoom = RetryRoom {
        normal: None,
        urgent: None,
    };

    /// The bounds as statement parameters (no bound: the largest number).
    pub(crate) fn bounds(self) -> (i64, i64) {
        let bound = |n: Option<u64>| n.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        (bound(self.normal), bound(self.urgent))
    }
}

impl DueJob {
    /// The probe of a quota hold: the one call its task type may make while held.
    pub fn is_probe(&self) -> bool {
        self.held_since.is_some()
    }
}

/// The jobs of a task type held on the daily quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTask {
    pub account: AccountName,
    pub quota: Quota,
    pub jobs: u64,
    /// When the oldest hold began.
    pub since: Ts,
    /// When the next probe goes out (`None`: a probe is in flight).
    pub until: Option<Ts>,
    /// Probes in flight (their lease may have run out).
    pub probes: u64,
    /// VOD's code (`QuotaExceeded.Refresh`, `QuotaExceeded.Preload`).
    pub code: String,
}

/// Claim up to `max` due items of one group into a new job.
#[derive(Debug, Clone)]
pub struct ClaimBatch {
    pub account: AccountName,
    pub task: TaskType,
    pub fingerprint: String,
    pub now: Ts,
    pub max: usize,
    pub lease_until: Ts,
    pub job_id: String,
    pub dry_run: bool,
    /// Claim urgent items only (normal ones wait for the quota kept for urgent work).
    pub urgent_only: bool,
    /// What the flusher's read of the due groups said of this group just before (`None`: not
    /// read, or read before earlier claims of the same step).
    pub seen: Option<GroupSeen>,
}

impl ClaimBatch {
    /// Whether the claim looks for urgent items: always for urgent items only, otherwise unless
    /// the group had none due a moment ago (see [`GroupSeen`]).
    pub fn looks_for_urgent(&self) -> bool {
        self.urgent_only || self.seen.is_none_or(|seen| seen.urgent != 0)
    }
}

/// A group's due and urgent items as [`crate::store::Store::due_groups`] counted them. A claim
/// made right after skips the look-ups that could not find anything then: urgent items when none
/// was due, the rest of a large group when its oldest items held every due one. An item that fell
/// due since is left to the next claim (ingest wakes the flusher for an urgent one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSeen {
    /// When they were counted: items due by then.
    pub at: Ts,
    pub due: u64,
    pub urgent: u64,
}

/// VOD accepted the call.
#[derive(Debug, Clone, Default)]
pub struct Success {
    pub vod_job_id: Option<String>,
    pub request_id: Option<String>,
    pub non_existent: Vec<String>,
    pub forbidden: Vec<String>,
    /// When to ask VOD what became of the submissions; `None`: never.
    pub check_at: Option<Ts>,
    /// For a URL call: its CDN tasks, followed to the edge.
    pub follow: Option<Follow>,
}

/// The CDN tasks of a URL call, to be followed until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    /// The task IDs the call answered, comma-separated.
    pub task_ids: String,
    /// `DescribeVodRefreshTasks`' `ObjectType`: `file`, `directory` or `preload`.
    pub object_type: &'static str,
    pub until: Ts,
}

/// A CDN task still followed (`Pending` or `Refreshing` when last read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCdnTask {
    pub job_id: String,
    /// The job item's target: a media ID, or the URL of a file or directory.
    pub target: String,
    /// The play URL of a media ID's task, as stored; empty for a file or directory.
    pub path: String,
    /// The URL the task purges: `path`, or the target's.
    pub url: String,
    /// The task's ID, or the IDs a URL call answered (comma-separated).
    pub task_ids: String,
    pub object_type: String,
    /// A media ID's task is known by its ID alone; a URL's by its ID and its path.
    pub kind: TargetKind,
    pub created_at: Ts,
}

/// What the CDN reported for a followed task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnTaskUpdate {
    pub job_id: String,
    pub target: String,
    pub path: String,
    /// `Complete` or `Failed`.
    pub status: String,
    pub description: String,
}

/// What one recording of the CDN's reports settled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FollowOutcome {
    pub completed: Vec<Completed>,
    /// Items with a failed task.
    pub failed: u64,
    /// Items with a task not reported done within `vod.follow_for`.
    pub unconfirmed: u64,
}

/// An item whose CDN tasks all completed, with the time from its first acknowledged event.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub kind: TargetKind,
    pub target: String,
    pub seconds: f64,
}

/// What [`Store::record_cdn_tasks`](crate::store::Store::record_cdn_tasks) may resend: the
/// items of a job whose CDN task failed go once into a new job, within the job's `max_age`.
#[derive(Debug, Clone, Copy)]
pub struct CdnResend {
    pub max_age: std::time::Duration,
}

/// A successful job whose submissions are due to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    pub job_id: String,
    /// VOD's `MediaRefreshJobId`.
    pub vod_job_id: String,
    /// Checks made so far.
    pub checks: u32,
    /// Start of the job's retry budget (`vod.max_age`), which a resubmission shares.
    pub budget_from: Ts,
}

/// What VOD reports for one media ID of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub media_id: String,
    /// `Ok` when the ID's CDN tasks were submitted, else VOD's code and message.
    pub result: Result<(), (String, String)>,
    /// The ID's CDN tasks (`TaskIds`, with the play URL of each where `SuccessPlayUrls` names
    /// it): `(task ID, URL)`.
    pub tasks: Vec<(String, String)>,
}

/// The outcome of one check: the IDs VOD reported, and when to ask again about the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub submissions: Vec<Submission>,
    /// Follow the CDN tasks of the submitted IDs until then; `None`: not at all.
    pub follow_until: Option<Ts>,
    /// When to ask again if some item is still `sent` after this check; `None`: never.
    pub again_at: Option<Ts>,
    /// A new job for the IDs whose submission failed for a passing reason.
    pub resubmission: Option<Resubmission>,
}

/// IDs of a checked job sent again in a job of their own: a `retrying` job with the checked
/// job's task, options and retry budget, whose first attempt is at `send_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubmission {
    pub job_id: String,
    pub media_ids: Vec<String>,
    pub created_at: Ts,
    pub send_at: Ts,
    /// VOD reported a used-up quota for one of the IDs: the new job starts held, with this code.
    pub held: Option<String>,
}

/// The error of the last attempt.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

/// Filters of `GET /jobs`, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub account: Option<AccountName>,
    pub status: Option<JobStatus>,
    pub media_id: Option<String>,
    pub task: Option<TaskType>,
    pub since: Option<Ts>,
    /// Only jobs with an ID below this one (the `next` cursor of the previous page).
    pub before: Option<String>,
    pub limit: usize,
}

/// One pending item, as `/media/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    pub account: AccountName,
    pub media_id: MediaId,
    pub task: TaskType,
    pub fingerprint: String,
    pub options: PurgeOptions,
    pub source: String,
    pub first_seen: Ts,
    pub last_seen: Ts,
    /// No event delays the item past this.
    pub deadline: Ts,
    pub due_at: Ts,
    pub events: u64,
    pub priority: Priority,
}

/// An account's pending items: how many, how many urgent, how many due, the oldest, and when
/// the next falls due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountQueue {
    pub account: AccountName,
    pub pending: u64,
    pub urgent: u64,
    pub due: u64,
    pub oldest_first_seen: Option<Ts>,
    /// When the next item not due yet may fall due: never later than it does (SQLite finds it
    /// by the stored due times, which logged merges may leave early).
    pub next_due_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub pending: u64,
    /// Urgent items among the pending ones.
    pub urgent: u64,
    pub due: u64,
    pub oldest_first_seen: Option<Ts>,
    pub next_due_at: Option<Ts>,
    pub in_flight_jobs: u64,
    pub retrying_jobs: u64,
    /// The task types held on the daily quota.
    pub held: Vec<HeldTask>,
    /// Each account's pending items (the accounts with none left out).
    pub accounts: Vec<AccountQueue>,
}

/// Jobs sent and their media IDs in one minute (by the time each job was claimed and first sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainMinute {
    /// The minute's start.
    pub minute: Ts,
    pub jobs: u64,
    pub ids: u64,
}

/// The result of `POST /jobs/{id}/retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Scheduled,
    NotFound,
    /// Only failed jobs can be retried.
    NotFailed(JobStatus),
}

/// Store failures. `Unavailable` is the database being unreachable; `Corrupt` is a row that does
/// not parse (never silently skipped).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    /// An error of the SQLite ingest writer's connection (see `store::sqlite::writer`).
    #[error("store unavailable: {0}")]
    Writer(#[from] rusqlite::Error),
    #[error("store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("the store is shutting down")]
    Closed,
}
