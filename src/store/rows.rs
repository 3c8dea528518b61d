//! Rows into domain types, for both backends: everything that reads a row back is written once
//! here, generic over the sqlx database, so the two cannot drift apart in how they interpret the
//! same schema; and how an ingest request's upsert results become its receipt.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::domain::{AccountName, MediaId, Priority, PurgeOptions, Quota, TaskType, Ts};
use crate::store::types::*;

/// The columns [`job_from_row`] reads, in `SELECT` order.
pub(crate) const JOB_COLUMNS: &str = "id, account, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at, \
     next_attempt_at, lease_until, vod_job_id, request_id, error_code, error_message, check_at, resubmission_of, held_since, holds, priority";

/// The columns [`job_item_from_row`] reads.
pub(crate) const JOB_ITEM_COLUMNS: &str =
    "media_id, outcome, first_seen, events, error_code, error_message";

/// The columns [`pending_from_row`] reads.
pub(crate) const PENDING_COLUMNS: &str = "account, media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events, priority";

/// A Preload is held back while a Refresh of the same media ID or file is pending or being sent.
/// Plain SQL that both dialects accept; `i` is the `items` row under consideration.
pub(crate) const PRELOAD_RULE: &str = "(i.task NOT IN ('Preload', 'FilePreload') OR (
        NOT EXISTS (SELECT 1 FROM items r WHERE r.media_id = i.media_id AND r.account = i.account
                    AND r.task IN ('Refresh', 'FileRefresh'))
    AND NOT EXISTS (SELECT 1 FROM job_items ji JOIN jobs j ON j.id = ji.job_id
                    WHERE ji.media_id = i.media_id AND j.account = i.account
                      AND j.task IN ('Refresh', 'FileRefresh')
                      AND j.status IN ('in_flight', 'retrying', 'held'))))";

/// The job a claim has just created, built from what the claim wrote rather than read back:
/// in flight, first attempt, its items pending, in `items` order (media ID, first seen, events).
pub(crate) fn claimed_job(
    claim: &ClaimBatch,
    options: &str,
    priority: i64,
    items: impl IntoIterator<Item = (String, i64, i64)>,
) -> Result<Job, StoreError> {
    Ok(Job {
        id: claim.job_id.clone(),
        account: claim.account.clone(),
        task: claim.task,
        fingerprint: claim.fingerprint.clone(),
        options: parse_options(options)?,
        status: JobStatus::InFlight,
        dry_run: claim.dry_run,
        attempts: 1,
        created_at: claim.now,
        budget_from: claim.now,
        updated_at: claim.now,
        next_attempt_at: None,
        lease_until: Some(claim.lease_until),
        vod_job_id: None,
        request_id: None,
        error_code: None,
        error_message: None,
        check_at: None,
        resubmission_of: None,
        held_since: None,
        holds: 0,
        priority: Priority::from_rank(priority),
        items: items
            .into_iter()
            .map(|(media_id, first_seen, events)| JobItem {
                media_id: MediaId::from_trusted(media_id),
                outcome: ItemOutcome::Pending,
                first_seen: Ts(first_seen),
                events: events as u64,
                error_code: None,
                error_message: None,
            })
            .collect(),
    })
}

/// Reads a column by name into the types the schema uses; implemented for the rows of every
/// sqlx database that can decode them, so the parsers below are written once.
pub(crate) trait StoreRow {
    fn text(&self, column: &str) -> String;
    fn opt_text(&self, column: &str) -> Option<String>;
    fn int(&self, column: &str) -> i64;
    fn opt_int(&self, column: &str) -> Option<i64>;
    fn flag(&self, column: &str) -> bool;
}

impl<R> StoreRow for R
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> String {
        self.get(column)
    }
    fn opt_text(&self, column: &str) -> Option<String> {
        self.get(column)
    }
    fn int(&self, column: &str) -> i64 {
        self.get(column)
    }
    fn opt_int(&self, column: &str) -> Option<i64> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> bool {
        self.get(column)
    }
}

/// A `jobs` row (columns [`JOB_COLUMNS`]), without its items.
pub(crate) fn job_from_row(row: &impl StoreRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: row.text("id"),
        account: parse_account(&row.text("account"))?,
        task: parse_task(&row.text("task"))?,
        fingerprint: row.text("fingerprint"),
        options: parse_options(&row.text("options"))?,
        status: parse_status(&row.text("status"))?,
        dry_run: row.flag("dry_run"),
        attempts: row.int("attempts") as u32,
        created_at: Ts(row.int("created_at")),
        budget_from: Ts(row.int("budget_from")),
        updated_at: Ts(row.int("updated_at")),
        next_attempt_at: row.opt_int("next_attempt_at").map(Ts),
        lease_until: row.opt_int("lease_until").map(Ts),
        vod_job_id: row.opt_text("vod_job_id"),
        request_id: row.opt_text("request_id"),
        error_code: row.opt_text("error_code"),
        error_message: row.opt_text("error_message"),
        check_at: row.opt_int("check_at").map(Ts),
        resubmission_of: row.opt_text("resubmission_of"),
        held_since: row.opt_int("held_since").map(Ts),
        holds: row.int("holds") as u32,
        priority: Priority::from_rank(row.int("priority")),
        items: Vec::new(),
    })
}

/// A page of jobs: their rows (columns [`JOB_COLUMNS`]) and, read in one query, the rows of all
/// their items (`job_id` and [`JOB_ITEM_COLUMNS`], in position order within each job).
pub(crate) fn jobs_with_items(
    job_rows: &[impl StoreRow],
    item_rows: &[impl StoreRow],
) -> Result<Vec<Job>, StoreError> {
    let mut items: std::collections::HashMap<String, Vec<JobItem>> =
        std::collections::HashMap::new();
    for row in item_rows {
        items
            .entry(row.text("job_id"))
            .or_default()
            .push(job_item_from_row(row)?);
    }
    job_rows
        .iter()
        .map(|row| {
            let mut job = job_from_row(row)?;
            job.items = items.remove(&job.id).unwrap_or_default();
            Ok(job)
        })
        .collect()
}

/// A `job_items` row (columns [`JOB_ITEM_COLUMNS`]).
pub(crate) fn job_item_from_row(row: &impl StoreRow) -> Result<JobItem, StoreError> {
    let outcome = row.text("outcome");
    Ok(JobItem {
        media_id: MediaId::from_trusted(row.text("media_id")),
        outcome: ItemOutcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt {
            table: "job_items",
            detail: format!("outcome {outcome:?}"),
        })?,
        first_seen: Ts(row.int("first_seen")),
        events: row.int("events") as u64,
        error_code: row.opt_text("error_code"),
        error_message: row.opt_text("error_message"),
    })
}

/// The `outcome`, `error_code` and `error_message` a reported submission gives its item.
pub(crate) fn submission_outcome(
    submission: &Submission,
) -> (&'static str, Option<&str>, Option<&str>) {
    match &submission.result {
        Ok(()) => (ItemOutcome::Submitted.as_str(), None, None),
        Err((code, message)) => (
            ItemOutcome::SubmitFailed.as_str(),
            Some(code.as_str()),
            Some(message.as_str()),
        ),
    }
}

/// An `items` row (columns [`PENDING_COLUMNS`]).
pub(crate) fn pending_from_row(row: &impl StoreRow) -> Result<PendingItem, StoreError> {
    Ok(PendingItem {
        account: parse_account(&row.text("account"))?,
        media_id: MediaId::from_trusted(row.text("media_id")),
        task: parse_task(&row.text("task"))?,
        fingerprint: row.text("fingerprint"),
        options: parse_options(&row.text("options"))?,
        source: row.text("source"),
        first_seen: Ts(row.int("first_seen")),
        last_seen: Ts(row.int("last_seen")),
        deadline: Ts(row.int("deadline")),
        due_at: Ts(row.int("due_at")),
        events: row.int("events") as u64,
        priority: Priority::from_rank(row.int("priority")),
    })
}

/// A `due_groups` row: `task`, `fingerprint`, `n` (due items), `urgent` (due urgent items) and
/// `oldest` (earliest due time).
pub(crate) fn due_group_from_row(row: &impl StoreRow) -> Result<DueGroup, StoreError> {
    Ok(DueGroup {
        account: parse_account(&row.text("account"))?,
        task: parse_task(&row.text("task"))?,
        fingerprint: row.text("fingerprint"),
        due_count: row.int("n") as u64,
        urgent_count: row.int("urgent") as u64,
        oldest_due_at: Ts(row.int("oldest")),
    })
}

pub(crate) fn parse_task(raw: &str) -> Result<TaskType, StoreError> {
    raw.parse().map_err(|_| StoreError::Corrupt {
        table: "items/jobs",
        detail: format!("task {raw:?}"),
    })
}

pub(crate) fn parse_account(raw: &str) -> Result<AccountName, StoreError> {
    AccountName::parse(raw).map_err(|_| StoreError::Corrupt {
        table: "items/jobs",
        detail: format!("account {:?}", raw.chars().take(40).collect::<String>()),
    })
}

pub(crate) fn parse_quota(raw: &str) -> Result<Quota, StoreError> {
    raw.parse().map_err(|_| StoreError::Corrupt {
        table: "jobs",
        detail: format!("quota {raw:?}"),
    })
}

pub(crate) fn parse_status(raw: &str) -> Result<JobStatus, StoreError> {
    JobStatus::parse(raw).ok_or_else(|| StoreError::Corrupt {
        table: "jobs",
        detail: format!("status {raw:?}"),
    })
}

pub(crate) fn parse_options(raw: &str) -> Result<PurgeOptions, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        table: "items/jobs",
        detail: format!("options: {e}"),
    })
}

/// The stored answer to an earlier delivery, marked as a redelivery.
pub(crate) fn previous_receipt(raw: &str) -> Result<Receipt, StoreError> {
    let mut receipt: Receipt = serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        table: "deliveries",
        detail: e.to_string(),
    })?;
    receipt.redelivery = true;
    Ok(receipt)
}

/// The options column of an item.
pub(crate) fn options_json(item: &NewItem) -> String {
    serde_json::to_string(&item.options).expect("options serialise")
}

/// The receipt column of a delivery.
pub(crate) fn receipt_json(receipt: &Receipt) -> String {
    serde_json::to_string(receipt).expect("receipt serialises")
}

/// The receipt of a stored request, from what each of its items did (created a pending item, or
/// joined one).
pub(crate) fn receipt_for(ingest: &Ingest, pushed: &[crate::queue::Pushed]) -> Receipt {
    use std::collections::HashSet;
    // Sets beside the lists keep this linear for requests of a thousand IDs.
    let (mut accepted, mut accepted_set) = (Vec::new(), HashSet::new());
    let (mut merged, mut merged_set) = (Vec::new(), HashSet::new());
    for (item, &pushed) in ingest.items.iter().zip(pushed) {
        let id = item.media_id.as_str();
        let (list, set) = if pushed == crate::queue::Pushed::New {
            (&mut accepted, &mut accepted_set)
        } else {
            (&mut merged, &mut merged_set)
        };
        if set.insert(id) {
            list.push(id.to_owned());
        }
    }
    // An ID that created one item (say its Refresh) and joined another counts as accepted.
    merged.retain(|id| !accepted_set.contains(id.as_str()));
    Receipt {
        event_id: ingest.event_id.clone(),
        accepted,
        merged,
        rejected: ingest.rejected.clone(),
        redelivery: false,
    }
}
