//! The bodies the read API answers with (`/jobs`, `/media/{id}`, `/queue`), as the OpenAPI
//! document describes them, and how store types become them.

use serde::{Deserialize, Serialize};

use crate::domain::{Priority, PurgeOptions, Quota, TargetKind, TaskType, Ts};
use crate::store::{ItemOutcome, Job, JobStatus, PendingItem};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    /// The VOD account its calls go to (`default`, or an `[[accounts]]` name).
    #[schema(value_type = String)]
    pub account: crate::domain::AccountName,
    /// `Refresh` and `Preload` for media IDs; `FileRefresh`, `FilePreload`, `DirectoryRefresh`.
    pub task: TaskType,
    /// What the job's targets are: `media`, `file` or `directory`.
    pub kind: TargetKind,
    pub status: JobStatus,
    /// `urgent` when the job carries an urgent item.
    pub priority: Priority,
    /// True when the call was not made (`vod.dry_run`).
    pub dry_run: bool,
    pub attempts: u32,
    /// While `held`: when the hold on the daily quota began. `next_attempt_at` is the next probe.
    pub held_since: Option<String>,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    /// `MediaRefreshJobId` returned by VOD; for URL calls, the CDN task IDs (`RefreshTaskId`,
    /// `PreloadTaskId`), comma-separated.
    pub vod_job_id: Option<String>,
    /// `RequestId` of the last VOD answer.
    pub request_id: Option<String>,
    /// The last error (code and message), if the last attempt failed.
    pub error: Option<JobError>,
    /// When VOD is next asked what became of the submissions (`GetMediaRefreshJobs`).
    pub next_check_at: Option<String>,
    /// The job whose IDs this one sends again, after VOD reported their submission failed for a
    /// passing reason.
    pub resubmission_of: Option<String>,
    pub items: Vec<JobItemView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobItemView {
    /// The target, as `target` (kept for readers of media jobs).
    pub media_id: String,
    pub kind: TargetKind,
    /// The media ID, or the normalised URL of a file or directory.
    pub target: String,
    pub outcome: ItemOutcome,
    pub first_seen: String,
    /// Events merged into this ID before it was sent.
    pub events: u64,
    /// VOD's code and message when submitting the ID's CDN tasks failed (`submit_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingView {
    /// The VOD account it will be purged in.
    #[schema(value_type = String)]
    pub account: crate::domain::AccountName,
    pub task: TaskType,
    pub kind: TargetKind,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub source: String,
    pub first_seen: String,
    pub last_seen: String,
    pub due_at: String,
    pub events: u64,
    pub priority: Priority,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaView {
    pub media_id: String,
    /// Items waiting for their debounce to end.
    pub pending: Vec<PendingView>,
    /// The most recent jobs that carried this ID, newest first.
    pub jobs: Vec<JobView>,
}

/// What `/targets?url=` answers for a URL: as `/media/{id}` for a media ID.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetView {
    pub kind: TargetKind,
    /// The URL as it is stored (normalised).
    pub target: String,
    /// Items waiting for their debounce to end.
    pub pending: Vec<PendingView>,
    /// The most recent jobs that carried this target, newest first.
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueView {
    pub pending: u64,
    /// Urgent items among the pending ones.
    pub urgent: u64,
    pub due: u64,
    /// Age in seconds of the oldest pending item.
    pub oldest_age_seconds: Option<f64>,
    pub next_due_at: Option<String>,
    pub in_flight_batches: u64,
    pub retrying_batches: u64,
    /// The daily quotas that are held (no batch spending them goes out but one probe).
    pub held: Vec<HeldView>,
    /// The `default` account's daily quotas by the last poll; read on the active flusher only
    /// (empty on other replicas and before the first poll).
    pub quota: Vec<QuotaLeftView>,
    /// Each account's part, `default` first.
    pub accounts: Vec<AccountQueueView>,
}

/// One account's queue: its pending items, its holds and its quotas.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountQueueView {
    pub account: String,
    pub pending: u64,
    /// Due by their stored due time (a lower bound of the real one).
    pub due: u64,
    pub held: Vec<HeldView>,
    pub quota: Vec<QuotaLeftView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldView {
    /// The account whose quota it is.
    pub account: String,
    /// The quota: `Refresh` (URL purges: the play URLs of media IDs and files), `Preload` or
    /// `Directory`.
    pub task: Quota,
    /// Jobs held, the probe in flight included.
    pub jobs: u64,
    /// VOD's code: `QuotaExceeded.Refresh` or `QuotaExceeded.Preload`.
    pub reason: String,
    pub since: String,
    /// When the next probe goes out (the sooner of the probe interval and the daily reset);
    /// absent while a probe is in flight.
    pub until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaLeftView {
    /// The quota, as in [`HeldView`].
    pub task: Quota,
    pub daily: u64,
    /// What the last poll reported left, less the IDs sent since.
    pub remaining: u64,
    /// URLs kept for urgent items (`vod.urgent_quota_reserve`).
    pub reserve: u64,
    pub polled_at: String,
    /// Set when normal items wait for the quota (what is left is within the reserve): the time
    /// of the next reset.
    pub normal_held_until: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only the jobs of this account (`default`, or an `[[accounts]]` name).
    pub account: Option<String>,
    /// `in_flight`, `retrying`, `held`, `succeeded` or `failed`.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Only jobs that carried this media ID.
    pub media_id: Option<String>,
    /// Only jobs that carried this target: a media ID, or a file or directory URL (normalised
    /// as it was when stored).
    pub target: Option<String>,
    /// `Refresh`, `Preload`, `FileRefresh`, `FilePreload` or `DirectoryRefresh`.
    #[param(value_type = Option<TaskType>)]
    pub task: Option<String>,
    /// Only jobs created at or after this time: epoch milliseconds (an RFC 3339 time is
    /// accepted too).
    #[param(pattern = "^[0-9]{1,13}$")]
    pub since: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

fn options_json(options: &PurgeOptions) -> serde_json::Value {
    serde_json::to_value(options).unwrap_or(serde_json::Value::Null)
}

impl From<Job> for JobView {
    fn from(job: Job) -> JobView {
        let error = match (job.error_code, job.error_message) {
            (Some(code), message) => Some(JobError {
                code,
                message: message.unwrap_or_default(),
            }),
            _ => None,
        };
        JobView {
            options: options_json(&job.options),
            id: job.id,
            account: job.account,
            task: job.task,
            kind: job.task.kind(),
            status: job.status,
            priority: job.priority,
            dry_run: job.dry_run,
            attempts: job.attempts,
            held_since: job.held_since.map(Ts::to_rfc3339),
            created_at: job.created_at.to_rfc3339(),
            updated_at: job.updated_at.to_rfc3339(),
            next_attempt_at: job.next_attempt_at.map(Ts::to_rfc3339),
            vod_job_id: job.vod_job_id,
            request_id: job.request_id,
            error,
            next_check_at: job.check_at.map(Ts::to_rfc3339),
            resubmission_of: job.resubmission_of,
            items: job
                .items
                .into_iter()
                .map(|i| JobItemView {
                    media_id: i.media_id.to_string(),
                    kind: job.task.kind(),
                    target: i.media_id.to_string(),
                    outcome: i.outcome,
                    first_seen: i.first_seen.to_rfc3339(),
                    events: i.events,
                    error: i.error_code.map(|code| JobError {
                        code,
                        message: i.error_message.unwrap_or_default(),
                    }),
                })
                .collect(),
        }
    }
}

impl From<PendingItem> for PendingView {
    fn from(p: PendingItem) -> PendingView {
        PendingView {
            account: p.account,
            task: p.task,
            kind: p.task.kind(),
            options: options_json(&p.options),
            source: p.source,
            first_seen: p.first_seen.to_rfc3339(),
            last_seen: p.last_seen.to_rfc3339(),
            due_at: p.due_at.to_rfc3339(),
            events: p.events,
            priority: p.priority,
        }
    }
}
