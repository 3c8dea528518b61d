//! Claims: which items are due, and moving them into a job (`FOR UPDATE SKIP LOCKED`, so
//! replicas that claim at once take disjoint batches).

use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::store::backend::Claims;
use crate::store::rows::{self, PRELOAD_RULE};
use crate::store::sql::Dialect;
use crate::store::types::*;

/// A claim's candidates: up to `$4` due items of the account `$5` and the group (`$1` task, `$2`
/// fingerprint), urgent or not, oldest first, locked (`$3` is the time). Public for the plan
/// test, which holds that the scan stops after them (`items_group_order` ends with the ID).
pub fn candidates_sql(urgent: bool) -> String {
    format!(
        "SELECT i.id, i.media_id, i.options, i.first_seen, i.events, i.priority FROM items i
         WHERE i.account = $5 AND i.task = $1 AND i.fingerprint = $2 AND i.due_at <= $3 AND {} AND {PRELOAD_RULE}
         ORDER BY i.first_seen, i.id LIMIT $4
         FOR UPDATE OF i SKIP LOCKED",
        if urgent { "i.priority > 0" } else { "i.priority = 0" }
    )
}

impl Claims for PgStore {
    async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::new();
        for (urgent, wanted) in [
            (true, claim.looks_for_urgent()),
            (false, !claim.urgent_only),
        ] {
            let max = claim.max - rows.len();
            if !wanted || max == 0 {
                continue;
            }
            rows.extend(
                sqlx::query(AssertSqlSafe(candidates_sql(urgent)))
                    .bind(claim.task.as_str())
                    .bind(&claim.fingerprint)
                    .bind(claim.now.0)
                    .bind(max as i64)
                    .bind(claim.account.as_str())
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let options: String = rows[0].get("options");
        let priority = rows
            .iter()
            .map(|r| r.get::<i64, _>("priority"))
            .max()
            .unwrap_or_default();
        insert_claimed_job!(&mut *tx, Dialect::Postgres, claim, &options, priority)?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
        let media_ids: Vec<String> = rows.iter().map(|r| r.get("media_id")).collect();
        let first_seen: Vec<i64> = rows.iter().map(|r| r.get("first_seen")).collect();
        let events: Vec<i64> = rows.iter().map(|r| r.get("events")).collect();
        sqlx::query(
            "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
             SELECT $1, t.ord - 1, t.media_id, 'pending', t.first_seen, t.events
             FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
                  AS t(media_id, first_seen, events, ord)",
        )
        .bind(&claim.job_id)
        .bind(&media_ids)
        .bind(&first_seen)
        .bind(&events)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM items WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let items = media_ids.into_iter().zip(first_seen).zip(events);
        let items = items.map(|((media_id, first_seen), events)| (media_id, first_seen, events));
        let job = rows::claimed_job(claim, &options, priority, items)?;
        tx.commit().await?;
        Ok(Some(job))
    }
}
