//! What both SQL backends share: the embedded-migration builder, row parsing, and how an ingest
//! request's upsert results become its receipt.
//!
//! The backends differ only where the SQL dialects force them to (placeholders, `MAX`/`GREATEST`,
//! row locking). Everything that reads a row back into a domain type is written once here, generic
//! over the sqlx database, so the two cannot drift apart in how they interpret the same schema.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Row, SqlSafeStr, Type};

use crate::domain::{MediaId, Priority, PurgeOptions, TaskType, Ts};
use crate::store::types::*;

/// The columns [`job_from_row`] reads, in `SELECT` order.
pub(crate) const JOB_COLUMNS: &str = "id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from, updated_at, \
     next_attempt_at, lease_until, vod_job_id, request_id, error_code, error_message, check_at, resubmission_of, held_since, holds, priority";

/// The columns [`job_item_from_row`] reads.
pub(crate) const JOB_ITEM_COLUMNS: &str =
    "media_id, outcome, first_seen, events, error_code, error_message";

/// The columns [`pending_from_row`] reads.
pub(crate) const PENDING_COLUMNS: &str = "media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events, priority";

/// A Preload is held back while a Refresh of the same media ID is pending or being sent.
/// Plain SQL that both dialects accept; `i` is the `items` row under consideration.
pub(crate) const PRELOAD_RULE: &str = "(i.task = 'Refresh' OR (
        NOT EXISTS (SELECT 1 FROM items r WHERE r.media_id = i.media_id AND r.task = 'Refresh')
    AND NOT EXISTS (SELECT 1 FROM job_items ji JOIN jobs j ON j.id = ji.job_id
                    WHERE ji.media_id = i.media_id AND j.task = 'Refresh'
                      AND j.status IN ('in_flight', 'retrying', 'held'))))";

/// The `?N` placeholder of SQLite.
pub(crate) fn sqlite_param(n: usize) -> String {
    format!("?{n}")
}

/// The `$N` placeholder of PostgreSQL.
pub(crate) fn pg_param(n: usize) -> String {
    format!("${n}")
}

/// Jobs of a task type that is held on the daily quota: held, or the probe of a hold in flight.
const HELD_OR_PROBING: &str =
    "(status = 'held' OR (status = 'in_flight' AND held_since IS NOT NULL))";

/// Jobs whose next attempt is due (parameters: now, limit), oldest first: retries and expired
/// leases, except those of a task type held on the quota, and the probes of holds.
pub(crate) fn due_jobs_sql(p: fn(usize) -> String) -> String {
    let (now, limit) = (p(1), p(2));
    format!(
        "SELECT id, task, status, held_since FROM jobs
         WHERE (status = 'held' AND next_attempt_at <= {now})
            OR (((status = 'retrying' AND next_attempt_at <= {now}) OR (status = 'in_flight' AND lease_until <= {now}))
                AND task NOT IN (SELECT task FROM jobs WHERE {HELD_OR_PROBING}))
         ORDER BY COALESCE(next_attempt_at, lease_until), id LIMIT {limit}"
    )
}

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

/// A row of [`due_jobs_sql`].
pub(crate) fn due_job_from_row(row: &impl StoreRow) -> Result<DueJob, StoreError> {
    Ok(DueJob {
        id: row.text("id"),
        task: parse_task(&row.text("task"))?,
        status: parse_status(&row.text("status"))?,
        held_since: row.opt_int("held_since").map(Ts),
    })
}

/// Starts the next attempt of a due job (parameters: lease_until, now, id). A held job's time on
/// hold is added to its retry budget, so that `max_age` does not run while it is held.
pub(crate) fn claim_job_set(p: fn(usize) -> String) -> String {
    let (lease_until, now) = (p(1), p(2));
    format!(
        "UPDATE jobs SET status = 'in_flight', lease_until = {lease_until}, next_attempt_at = NULL,
                attempts = attempts + 1, updated_at = {now},
                budget_from = CASE WHEN status = 'held' THEN budget_from + ({now} - updated_at) ELSE budget_from END"
    )
}

/// The condition under which [`claim_job_set`] may claim a job (parameter 2: now).
pub(crate) fn claimable(p: fn(usize) -> String) -> String {
    let now = p(2);
    format!(
        "((status IN ('retrying', 'held') AND next_attempt_at <= {now}) OR (status = 'in_flight' AND lease_until <= {now}))"
    )
}

/// Holds a job on the quota (parameters: until, now, code, message, request ID, id, attempt).
pub(crate) fn record_hold_sql(p: fn(usize) -> String) -> String {
    let ps: Vec<String> = (1..=7).map(p).collect();
    format!(
        "UPDATE jobs SET status = 'held', lease_until = NULL, next_attempt_at = {}, updated_at = {},
                error_code = {}, error_message = {}, request_id = {},
                held_since = COALESCE(held_since, {}), holds = holds + 1
         WHERE id = {} AND status = 'in_flight' AND attempts = {}",
        ps[0], ps[1], ps[2], ps[3], ps[4], ps[1], ps[5], ps[6]
    )
}

/// Ends the hold of a task type (parameters: now, task): its held jobs are due now, as retries,
/// with their time on hold added to their retry budget.
pub(crate) fn release_held_sql(p: fn(usize) -> String) -> String {
    let (now, task) = (p(1), p(2));
    format!(
        "UPDATE jobs SET status = 'retrying', next_attempt_at = {now}, held_since = NULL,
                budget_from = budget_from + ({now} - updated_at), updated_at = {now}
         WHERE status = 'held' AND task = {task}"
    )
}

/// Moves the next probe of a task type's held jobs to `until` (parameters: until, task).
pub(crate) fn defer_held_sql(p: fn(usize) -> String) -> String {
    let (until, task) = (p(1), p(2));
    format!(
        "UPDATE jobs SET next_attempt_at = {until}
         WHERE status = 'held' AND task = {task} AND next_attempt_at < {until}"
    )
}

/// The task types held on the quota, with their held jobs.
pub(crate) const HELD_TASKS_SQL: &str = "SELECT task, COUNT(*) AS jobs, MIN(held_since) AS since,
        MIN(CASE WHEN status = 'held' THEN next_attempt_at END) AS until, MAX(error_code) AS code
     FROM jobs WHERE status = 'held' OR (status = 'in_flight' AND held_since IS NOT NULL)
     GROUP BY task ORDER BY task";

/// A row of [`HELD_TASKS_SQL`].
pub(crate) fn held_task_from_row(row: &impl StoreRow) -> Result<HeldTask, StoreError> {
    Ok(HeldTask {
        task: parse_task(&row.text("task"))?,
        jobs: row.int("jobs") as u64,
        since: Ts(row.opt_int("since").unwrap_or_default()),
        until: row.opt_int("until").map(Ts),
        code: row.opt_text("code").unwrap_or_default(),
    })
}

/// The `GET /jobs` query with its parameters bound, for either dialect: `placeholder(n)` writes
/// the n-th (1-based) parameter.
pub(crate) fn list_jobs_query<DB>(
    filter: &JobFilter,
    placeholder: impl Fn(usize) -> String,
) -> Query<'static, DB, <DB as Database>::Arguments>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut query = sqlx::query(AssertSqlSafe(list_jobs_sql(filter, placeholder)));
    if let Some(status) = filter.status {
        query = query.bind(status.as_str());
    }
    if let Some(task) = filter.task {
        query = query.bind(task.as_str());
    }
    if let Some(since) = filter.since {
        query = query.bind(since.0);
    }
    if let Some(before) = &filter.before {
        query = query.bind(before.as_str());
    }
    if let Some(media_id) = &filter.media_id {
        query = query.bind(media_id.as_str());
    }
    query.bind(filter.limit as i64)
}

/// The SQL of [`list_jobs_query`]. Parameters come in this order: status, task, since, before,
/// media ID (each only when the filter has it), then the limit.
fn list_jobs_sql(filter: &JobFilter, placeholder: impl Fn(usize) -> String) -> String {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        placeholder(n)
    };
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = {}", next()));
    }
    if filter.task.is_some() {
        sql.push_str(&format!(" AND task = {}", next()));
    }
    if filter.since.is_some() {
        sql.push_str(&format!(" AND created_at >= {}", next()));
    }
    if filter.before.is_some() {
        sql.push_str(&format!(" AND id < {}", next()));
    }
    if filter.media_id.is_some() {
        sql.push_str(&format!(
            " AND id IN (SELECT job_id FROM job_items WHERE media_id = {})",
            next()
        ));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    sql
}

/// The next instant after `$now` at which a pending item becomes due or a retry is due: two
/// index seeks (`items_due`, `jobs_status`). `now` is bound twice.
pub(crate) fn next_work_sql(first: &str, second: &str) -> String {
    format!(
        "SELECT MIN(t) AS t FROM (
             SELECT MIN(due_at) AS t FROM items WHERE due_at > {first}
             UNION ALL
             SELECT MIN(next_attempt_at) AS t FROM jobs WHERE status IN ('retrying', 'held') AND next_attempt_at > {second}
         ) AS w"
    )
}

/// Jobs sent and their media IDs per minute since `since`, dry runs left out. Integer division
/// of the epoch milliseconds is the same in both dialects.
pub(crate) fn drain_history_sql(placeholder: &str) -> String {
    format!(
        "SELECT j.created_at / 60000 AS minute, COUNT(DISTINCT j.id) AS jobs, COUNT(*) AS ids \
         FROM jobs j JOIN job_items i ON i.job_id = j.id \
         WHERE j.created_at >= {placeholder} AND j.dry_run = {} \
         GROUP BY j.created_at / 60000 ORDER BY minute",
        "FALSE"
    )
}

/// A row of [`drain_history_sql`].
pub(crate) fn drain_minute_from_row<R>(row: &R) -> Result<DrainMinute, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let minute: i64 = row.try_get("minute")?;
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok(DrainMinute {
        minute: Ts(minute.saturating_mul(60_000)),
        jobs: count("jobs")?,
        ids: count("ids")?,
    })
}

/// Builds a migrator from `(version, name, sql)` files embedded with `include_str!` (sqlx 0.9
/// without its `macros` feature has no `migrate!`).
pub(crate) fn migrator(files: &[(i64, &str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.to_owned().into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
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

/// A `due_checks` row: `id`, `vod_job_id`, `checks`, `budget_from`.
pub(crate) fn due_check_from_row(row: &impl StoreRow) -> DueCheck {
    DueCheck {
        job_id: row.text("id"),
        vod_job_id: row.text("vod_job_id"),
        checks: row.int("checks") as u32,
        budget_from: Ts(row.int("budget_from")),
    }
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
