//! Following purges to the edge: the CDN tasks of each job item, until the CDN reports them
//! done. One body for both backends (see [`sql`](super::sql)); tasks are added by
//! [`Store::record_success`] (a URL call's) and [`Store::record_check`] (a media ID's, once
//! `GetMediaRefreshJobs` names them).

use super::Store;
use super::rows::{self, StoreRow};
use super::types::*;
use crate::domain::Ts;

/// A task still followed: last read `Pending` or `Refreshing`, and within its deadline.
const OPEN: &str = "status IN ('Pending', 'Refreshing')";

/// What became of an item whose tasks are all closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Every task completed.
    Complete,
    /// A task failed, for this reason: the item is sent once more.
    Failed(String),
    /// A task was not reported done within `vod.follow_for`: nothing says it failed, so it is
    /// not sent again (a long prefetch, a listing VOD refused for a while).
    Unconfirmed,
}

/// What became of an item, from the states of its tasks; `None` while one is open.
pub fn item_state<'a>(
    tasks: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Option<Settled> {
    let (mut failed, mut expired) = (None, false);
    for (status, description) in tasks {
        match status {
            "Complete" => {}
            "Failed" => {
                failed.get_or_insert_with(|| {
                    description
                        .filter(|d| !d.is_empty())
                        .unwrap_or("the CDN task failed")
                        .to_owned()
                });
            }
            "Expired" => expired = true,
            _ => return None,
        }
    }
    Some(match failed {
        Some(reason) => Settled::Failed(reason),
        None if expired => Settled::Unconfirmed,
        None => Settled::Complete,
    })
}

impl Store {
    /// An account's tasks still open, the oldest first (at most `limit`); those past their deadline are
    /// among them until [`Store::record_cdn_tasks`] closes them.
    pub async fn open_cdn_tasks(
        &self,
        account: &crate::domain::AccountName,
        limit: usize,
    ) -> Result<Vec<OpenCdnTask>, StoreError> {
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(&format!(
                "SELECT t.job_id, t.target, t.path, t.task_ids, t.object_type, t.created_at, j.task
                 FROM cdn_tasks t JOIN jobs j ON j.id = t.job_id
                 WHERE t.{OPEN} AND j.account = $2
                 ORDER BY t.created_at, t.job_id LIMIT $1"
            )))
            .bind(limit as i64)
            .bind(account.as_str())
            .fetch_all(b.reads())
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(OpenCdnTask {
                        job_id: row.text("job_id"),
                        target: row.text("target"),
                        url: Some(row.text("path"))
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| row.text("target")),
                        path: row.text("path"),
                        task_ids: row.text("task_ids"),
                        object_type: row.text("object_type"),
                        kind: rows::parse_task(&row.text("task"))?.kind(),
                        created_at: Ts(row.int("created_at")),
                    })
                })
                .collect()
        })
    }

    /// Records what the CDN reported, in one transaction: each task's state; an item whose
    /// tasks all completed becomes `complete` (with `done_at`); one with a failed task and none
    /// open (or past `follow_until`, which this also closes) becomes `failed` with the CDN's
    /// reason, one past `follow_for` with none failed `unconfirmed`; a settled item's rows are
    /// deleted; and is sent once more in a new job (`resend`, within the job's `max_age`; a job
    /// that is itself a resubmission is not resent). Returns what was settled.
    pub async fn record_cdn_tasks(
        &self,
        updates: &[CdnTaskUpdate],
        now: Ts,
        resend: Option<CdnResend>,
    ) -> Result<FollowOutcome, StoreError> {
        with_backend!(self, b, sql => {
            let mut tx = b.begin_write().await?;
            // One recording at a time (a leader cut off and its successor): each settles what it
            // sees with the other's rows committed.
            if let Some(lock) = sql.follow_lock() {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let mut touched: Vec<(String, String)> = Vec::new();
            for update in updates {
                sqlx::query(sql.sql(&format!(
                    "UPDATE cdn_tasks SET status = $1, description = $2
                     WHERE job_id = $3 AND target = $4 AND path = $5 AND {OPEN}"
                )))
                .bind(&update.status)
                .bind(Some(update.description.as_str()).filter(|d| !d.is_empty()))
                .bind(&update.job_id)
                .bind(&update.target)
                .bind(&update.path)
                .execute(&mut *tx)
                .await?;
                let key = (update.job_id.clone(), update.target.clone());
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
            // Past the deadline: no longer read, and the item is settled as it stands.
            let expired = sqlx::query(sql.sql(&format!(
                "SELECT DISTINCT job_id, target FROM cdn_tasks WHERE {OPEN} AND follow_until <= $1"
            )))
            .bind(now.0)
            .fetch_all(&mut *tx)
            .await?;
            for row in &expired {
                let key = (row.text("job_id"), row.text("target"));
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
            sqlx::query(sql.sql(&format!(
                "UPDATE cdn_tasks SET status = 'Expired' WHERE {OPEN} AND follow_until <= $1"
            )))
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            let mut completed = Vec::new();
            let mut failed: Vec<(String, String)> = Vec::new();
            let mut unconfirmed = 0;
            for (job_id, target) in &touched {
                let tasks = sqlx::query(sql.sql(
                    "SELECT status, description FROM cdn_tasks WHERE job_id = $1 AND target = $2",
                ))
                .bind(job_id)
                .bind(target)
                .fetch_all(&mut *tx)
                .await?;
                let states: Vec<(String, Option<String>)> = tasks
                    .iter()
                    .map(|r| (r.text("status"), r.opt_text("description")))
                    .collect();
                let state = item_state(states.iter().map(|(s, d)| (s.as_str(), d.as_deref())));
                let item = sqlx::query(sql.sql(
                    "SELECT i.first_seen, j.task FROM job_items i JOIN jobs j ON j.id = i.job_id
                     WHERE i.job_id = $1 AND i.media_id = $2 AND i.outcome IN ('sent', 'submitted')",
                ))
                .bind(job_id)
                .bind(target)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(state) = state else {
                    continue;
                };
                // Settled: the item's rows have said all they can.
                sqlx::query(sql.sql("DELETE FROM cdn_tasks WHERE job_id = $1 AND target = $2"))
                    .bind(job_id)
                    .bind(target)
                    .execute(&mut *tx)
                    .await?;
                let Some(item) = item else {
                    continue;
                };
                let (outcome, code, message) = match &state {
                    Settled::Complete => ("complete", None, None),
                    Settled::Failed(reason) => ("failed", Some("CdnTaskFailed"), Some(reason.as_str())),
                    Settled::Unconfirmed => (
                        "unconfirmed",
                        Some("CdnTaskUnconfirmed"),
                        Some("the CDN did not report the task done within vod.follow_for"),
                    ),
                };
                let done = sqlx::query(sql.sql(
                    "UPDATE job_items SET outcome = $1, error_code = $2, error_message = $3,
                            done_at = CASE WHEN $1 = 'complete' THEN $4 ELSE NULL END
                     WHERE job_id = $5 AND media_id = $6 AND outcome IN ('sent', 'submitted')",
                ))
                .bind(outcome)
                .bind(code)
                .bind(message)
                .bind(now.0)
                .bind(job_id)
                .bind(target)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    continue;
                }
                match state {
                    Settled::Complete => completed.push(Completed {
                        kind: rows::parse_task(&item.text("task"))?.kind(),
                        target: target.clone(),
                        seconds: now.since(Ts(item.int("first_seen"))).as_secs_f64(),
                    }),
                    Settled::Failed(_) => failed.push((job_id.clone(), target.clone())),
                    Settled::Unconfirmed => unconfirmed += 1,
                }
            }
            if let Some(resend) = resend {
                let mut jobs: Vec<&String> = failed.iter().map(|(j, _)| j).collect();
                jobs.dedup();
                for job_id in jobs {
                    let targets: Vec<String> = failed
                        .iter()
                        .filter(|(j, _)| j == job_id)
                        .map(|(_, t)| t.clone())
                        .collect();
                    let job = sqlx::query(sql.sql(
                        "SELECT budget_from, resubmission_of FROM jobs WHERE id = $1",
                    ))
                    .bind(job_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let within = now.since(Ts(job.int("budget_from"))) <= resend.max_age;
                    if !within || job.opt_text("resubmission_of").is_some() {
                        continue;
                    }
                    let new_id = uuid::Uuid::now_v7().to_string();
                    sqlx::query(sql.sql(super::checks::RESUBMISSION_JOB))
                        .bind(&new_id)
                        .bind(now.0)
                        .bind(now.0)
                        .bind(job_id)
                        .bind(None::<String>)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(sql.sql(&format!(
                        "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
                         SELECT $1, ROW_NUMBER() OVER (ORDER BY position) - 1, media_id, 'pending', first_seen, events
                         FROM job_items WHERE job_id = $2 AND media_id IN {}",
                        sql.json_strings(3)
                    )))
                    .bind(&new_id)
                    .bind(job_id)
                    .bind(super::sql::json_list(&targets))
                    .execute(&mut *tx)
                    .await?;
                    tracing::info!(job_id = %job_id, resubmission = %new_id, targets = targets.len(),
                        "targets whose CDN task failed are sent once more");
                }
            }
            tx.commit().await?;
            Ok(FollowOutcome {
                completed,
                failed: failed.len() as u64,
                unconfirmed,
            })
        })
    }

    /// How long the items completed since `since` took, from their first acknowledged event to
    /// `complete`, in seconds (for the figures of the last hour).
    pub async fn completion_times(&self, since: Ts) -> Result<Vec<f64>, StoreError> {
        with_backend!(self, b, sql => {
            let rows = sqlx::query(sql.sql(
                "SELECT done_at - first_seen AS took FROM job_items WHERE done_at >= $1",
            ))
            .bind(since.0)
            .fetch_all(b.reads())
            .await?;
            Ok(rows.iter().map(|r| r.int("took") as f64 / 1000.0).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_done_when_no_task_is_open() {
        let failed = Some("Origin Timeout");
        let reason = |r: &str| Some(Settled::Failed(r.to_owned()));
        for (tasks, want) in [
            (vec![("Complete", None)], Some(Settled::Complete)),
            (vec![("Complete", None), ("Refreshing", None)], None),
            (vec![("Pending", None), ("Failed", failed)], None),
            (
                vec![("Complete", None), ("Failed", failed)],
                reason("Origin Timeout"),
            ),
            (vec![("Failed", Some(""))], reason("the CDN task failed")),
            (
                vec![("Complete", None), ("Expired", None)],
                Some(Settled::Unconfirmed),
            ),
            (
                vec![("Expired", None), ("Failed", failed)],
                reason("Origin Timeout"),
            ),
            (vec![], Some(Settled::Complete)),
        ] {
            assert_eq!(item_state(tasks.clone()), want, "{tasks:?}");
        }
    }
}
