//! Ingest: a group of requests in one transaction, its items in one upsert per round, its delivery
//! IDs locked, looked up and recorded with one statement each.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::queue::Pushed;
use crate::store::rows;
use crate::store::sql::by_size;
use crate::store::types::*;

/// How often a group that deadlocked with another replica's is tried again.
const DEADLOCK_RETRIES: usize = 3;

/// Creates the pending items of one round of a group, or folds each event into the item already
/// pending under the same key. The arrays, one element per row, are media IDs, tasks,
/// fingerprints, options, sources, event times, deadlines, due times, priorities and accounts. For a
/// pending item the due time follows [`crate::queue::MERGE_DUE_AT`] (`due_at - last_seen` of the
/// new row is the event's quiet delay, at most max_wait).
const UPSERT_ITEMS: &str = "INSERT INTO items (account, media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events, priority)
     SELECT u.account, u.media_id, u.task, u.fingerprint, u.options, u.source, u.now, u.now, u.deadline, u.due_at, 1, u.priority
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[])
          AS u(media_id, task, fingerprint, options, source, now, deadline, due_at, priority, account)
     ON CONFLICT (account, media_id, task, fingerprint) DO UPDATE SET
         last_seen = GREATEST(items.last_seen, EXCLUDED.last_seen),
         events = items.events + 1,
         priority = GREATEST(items.priority, EXCLUDED.priority),
         due_at = CASE WHEN GREATEST(items.priority, EXCLUDED.priority) > 0
                       THEN LEAST(items.due_at, GREATEST(items.last_seen, EXCLUDED.last_seen) + (EXCLUDED.due_at - EXCLUDED.last_seen))
                       ELSE LEAST(GREATEST(items.last_seen, EXCLUDED.last_seen) + (EXCLUDED.due_at - EXCLUDED.last_seen), items.deadline) END
     RETURNING account, media_id, task, fingerprint, events";

impl PgStore {
    pub async fn ingest_group(&self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let mut retries = 0;
        loop {
            match self.try_ingest_group(group).await {
                Err(StoreError::Unavailable(sqlx::Error::Database(e)))
                    if retries < DEADLOCK_RETRIES
                        && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
                {
                    retries += 1;
                    tracing::debug!(error = %e, retries, "ingest group conflicted with another replica; retrying");
                }
                other => return other,
            }
        }
    }

    async fn try_ingest_group(&self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let receipts = ingest_in(&mut tx, group).await?;
        tx.commit().await?;
        Ok(receipts)
    }
}

/// What a request's delivery ID says before anything of it is stored.
enum Delivery {
    /// No delivery ID, or one not answered before: the request stores its items.
    Fresh,
    /// Answered before this group (the stored answer, as JSON).
    Answered(String),
    /// Repeats the delivery ID of the request at this index, earlier in the same group.
    RepeatOf(usize),
}

/// Locks the group's delivery IDs and finds the ones answered before.
///
/// Another replica storing one of the same deliveries waits at the lock until it commits, then
/// sees its answer here. The locks are taken in one order (by hash) on every replica.
async fn deliveries_of(
    conn: &mut PgConnection,
    group: &[Ingest],
) -> Result<Vec<Delivery>, StoreError> {
    let mut answers: Vec<Delivery> = group.iter().map(|_| Delivery::Fresh).collect();
    let keyed: Vec<(usize, &str, &str)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, ingest)| {
            let id = ingest.delivery_id.as_deref()?;
            Some((i, ingest.source.as_str(), id))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(answers);
    }
    let sources: Vec<&str> = keyed.iter().map(|k| k.1).collect();
    let ids: Vec<&str> = keyed.iter().map(|k| k.2).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h) FROM (
             SELECT DISTINCT hashtextextended(s || '/' || d, 0) AS h
             FROM UNNEST($1::text[], $2::text[]) AS t(s, d) ORDER BY h) AS locks",
    )
    .bind(&sources)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let stored = sqlx::query(
        "SELECT source, delivery_id, receipt, expires_at FROM deliveries
         WHERE (source, delivery_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
    )
    .bind(&sources)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut previous: HashMap<(String, String), (String, i64)> = HashMap::new();
    for row in stored {
        previous.insert(
            (row.try_get("source")?, row.try_get("delivery_id")?),
            (row.try_get("receipt")?, row.try_get("expires_at")?),
        );
    }
    let mut first_in_group: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, source, id) in keyed {
        let answered = previous
            .get(&(source.to_owned(), id.to_owned()))
            .filter(|(_, expires_at)| *expires_at > group[i].now.0);
        answers[i] = match (answered, first_in_group.get(&(source, id))) {
            (Some((receipt, _)), _) => Delivery::Answered(receipt.clone()),
            (None, Some(&first)) => Delivery::RepeatOf(first),
            (None, None) => {
                first_in_group.insert((source, id), i);
                Delivery::Fresh
            }
        };
    }
    Ok(answers)
}

/// Records the answers of the group's fresh deliveries (in statements under
/// [`MAX_STATEMENT_BYTES`](crate::store::sql::MAX_STATEMENT_BYTES)).
async fn record_deliveries(
    conn: &mut PgConnection,
    group: &[Ingest],
    deliveries: &[Delivery],
    receipts: &[Receipt],
) -> Result<(), StoreError> {
    // (request, delivery ID, answer as JSON) of every fresh delivery.
    let recorded: Vec<(&Ingest, &str, String)> = group
        .iter()
        .zip(deliveries)
        .zip(receipts)
        .filter(|((_, delivery), _)| matches!(delivery, Delivery::Fresh))
        .filter_map(|((ingest, _), receipt)| {
            Some((
                ingest,
                ingest.delivery_id.as_deref()?,
                rows::receipt_json(receipt),
            ))
        })
        .collect();
    let size = |(ingest, id, json): &(&Ingest, &str, String)| {
        ingest.source.len() + id.len() + json.len() + 2 * 8 + 5 * 4
    };
    for part in by_size(&recorded, size) {
        sqlx::query(
            "INSERT INTO deliveries (source, delivery_id, receipt, created_at, expires_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
             ON CONFLICT (source, delivery_id) DO UPDATE SET receipt = EXCLUDED.receipt,
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
        )
        .bind(part.iter().map(|r| r.0.source.as_str()).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .bind(part.iter().map(|r| r.0.now.0).collect::<Vec<_>>())
        .bind(
            part.iter()
                .map(|r| r.0.delivery_expires_at.0)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores a group of requests in the open transaction and returns their receipts, in order.
async fn ingest_in(conn: &mut PgConnection, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
    let deliveries = deliveries_of(conn, group).await?;
    let fresh: Vec<usize> = (0..group.len())
        .filter(|&i| matches!(deliveries[i], Delivery::Fresh))
        .collect();
    let events = upsert_items(conn, group, &fresh).await?;
    // In group order, so a repeat finds the answer of its first delivery, which comes earlier.
    let mut receipts: Vec<Receipt> = Vec::with_capacity(group.len());
    for (i, (ingest, delivery)) in group.iter().zip(&deliveries).enumerate() {
        let receipt = match delivery {
            Delivery::Fresh => {
                let pushed: Vec<Pushed> = events[i]
                    .iter()
                    .map(|&n| if n == 1 { Pushed::New } else { Pushed::Merged })
                    .collect();
                rows::receipt_for(ingest, &pushed)
            }
            Delivery::Answered(json) => rows::previous_receipt(json)?,
            Delivery::RepeatOf(first) => Receipt {
                redelivery: true,
                ..receipts[*first].clone()
            },
        };
        receipts.push(receipt);
    }
    record_deliveries(conn, group, &deliveries, &receipts).await?;
    Ok(receipts)
}

/// Creates or joins the pending item of every item of the `fresh` requests of a group; returns,
/// for each request of the group, each item's event count after its upsert (1: created), in
/// order (nothing for a request that is not fresh).
///
/// One statement per round instead of one per item or per request: round `k` holds the `k`-th
/// occurrence of every key in the group, since one upsert statement may touch a row only once. A
/// group naming each ID once therefore costs one round trip however many requests and IDs it
/// holds. Applying the occurrences of a key in their order, round after round, gives the same
/// rows and counts as applying the items one by one.
async fn upsert_items(
    conn: &mut PgConnection,
    group: &[Ingest],
    fresh: &[usize],
) -> Result<Vec<Vec<i64>>, StoreError> {
    // (request index, item index) of every item, in group order, split into rounds.
    let mut rounds: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut occurrences: HashMap<Key<'_>, usize> = HashMap::new();
    // Items usually share their options: serialise each set once.
    let mut options: HashMap<&str, String> = HashMap::new();
    for &r in fresh {
        for (index, item) in group[r].items.iter().enumerate() {
            let seen = occurrences.entry(key(item)).or_insert(0);
            if rounds.len() == *seen {
                rounds.push(Vec::new());
            }
            rounds[*seen].push((r, index));
            *seen += 1;
            options
                .entry(item.fingerprint.as_str())
                .or_insert_with(|| rows::options_json(item));
        }
    }
    let mut events: Vec<Vec<i64>> = vec![Vec::new(); group.len()];
    for &r in fresh {
        events[r] = vec![0; group[r].items.len()];
    }
    let at = |&(r, index): &(usize, usize)| (&group[r], &group[r].items[index]);
    for mut round in rounds {
        // Rows in key order: replicas storing overlapping IDs lock them in the same order, so
        // one waits for the other instead of deadlocking.
        round.sort_by_key(|slot| key(at(slot).1));
        for part in by_size(&round, |slot| {
            let (ingest, item) = at(slot);
            item.media_id.as_str().len()
                + item.account.as_str().len()
                + item.fingerprint.len()
                + options[item.fingerprint.as_str()].len()
                + ingest.source.len()
                + ROW_OVERHEAD
        }) {
            upsert_part(conn, part, &at, &options, &mut events).await?;
        }
    }
    Ok(events)
}

/// The key of a pending item: account, media ID, task, options fingerprint.
type Key<'a> = (&'a str, &'a str, &'a str, &'a str);

fn key(item: &NewItem) -> Key<'_> {
    (
        item.account.as_str(),
        item.media_id.as_str(),
        item.task.as_str(),
        item.fingerprint.as_str(),
    )
}

/// Bytes a row adds to an upsert besides its strings: the task, four numbers, and the length
/// of each of its ten array elements.
const ROW_OVERHEAD: usize = 7 + 4 * 8 + 10 * 4;

/// One upsert statement: the rows of `part` (slots of one round, in key order); their event
/// counts go into `events`.
async fn upsert_part<'g, F>(
    conn: &mut PgConnection,
    part: &[(usize, usize)],
    at: &F,
    options: &HashMap<&str, String>,
    events: &mut [Vec<i64>],
) -> Result<(), StoreError>
where
    F: Fn(&(usize, usize)) -> (&'g Ingest, &'g NewItem),
{
    let slots: Vec<(&Ingest, &NewItem)> = part.iter().map(at).collect();
    let column = |value: &dyn Fn(&'g Ingest, &'g NewItem) -> i64| -> Vec<i64> {
        slots
            .iter()
            .map(|&(ingest, item)| value(ingest, item))
            .collect()
    };
    let text = |value: &dyn Fn(&'g Ingest, &'g NewItem) -> &'g str| -> Vec<&'g str> {
        slots
            .iter()
            .map(|&(ingest, item)| value(ingest, item))
            .collect()
    };
    let rows = sqlx::query(UPSERT_ITEMS)
        .bind(text(&|_, item| item.media_id.as_str()))
        .bind(text(&|_, item| item.task.as_str()))
        .bind(text(&|_, item| item.fingerprint.as_str()))
        .bind(
            slots
                .iter()
                .map(|(_, item)| options[item.fingerprint.as_str()].as_str())
                .collect::<Vec<_>>(),
        )
        .bind(text(&|ingest, _| ingest.source.as_str()))
        .bind(column(&|ingest, _| ingest.now.0))
        .bind(column(&|ingest, item| item.debounce.deadline(ingest.now).0))
        .bind(column(&|ingest, item| {
            let deadline = item.debounce.deadline(ingest.now);
            item.debounce.due_at(ingest.now, deadline).0
        }))
        .bind(column(&|_, item| item.priority.rank()))
        .bind(text(&|_, item| item.account.as_str()))
        .fetch_all(&mut *conn)
        .await?;
    let returned = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("account")?,
                row.try_get::<String, _>("media_id")?,
                row.try_get::<String, _>("task")?,
                row.try_get::<String, _>("fingerprint")?,
                row.try_get::<i64, _>("events")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let counts: HashMap<Key<'_>, i64> = returned
        .iter()
        .map(|(account, media_id, task, fingerprint, events)| {
            (
                (
                    account.as_str(),
                    media_id.as_str(),
                    task.as_str(),
                    fingerprint.as_str(),
                ),
                *events,
            )
        })
        .collect();
    for &(r, index) in part {
        let key = key(at(&(r, index)).1);
        events[r][index] = *counts.get(&key).ok_or_else(|| StoreError::Corrupt {
            table: "items",
            detail: format!("the upsert returned no row for {} ({})", key.1, key.2),
        })?;
    }
    Ok(())
}
