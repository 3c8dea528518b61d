//! The SQLite ingest writer: group commit on a thread of its own, with its own connection.
//!
//! Ingest requests wait on a channel. The writer thread takes everything that is waiting (up to
//! [`MAX_GROUP`](crate::store::MAX_GROUP) requests), applies it in one `BEGIN IMMEDIATE`
//! transaction with cached prepared statements, commits (one disk sync for the whole group), and
//! only then answers each request.
//!
//! Why a plain thread and a synchronous binding: with sqlx every statement is a round trip from
//! the async task to sqlx's own SQLite thread and back, so a commit crossed threads several
//! times, and on a busy machine each crossing waited for a time slice while new requests piled
//! up. Here nothing on the commit path waits for another thread: the requests that arrive while
//! a commit is on disk simply form the next group.
//!
//! The flusher's writes still go through the sqlx writer connection; both connections take the
//! write lock with `BEGIN IMMEDIATE` and wait for each other through the busy timeout.

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::store::rows;
use crate::store::types::*;

/// How long a commit waits for the write lock held by the other writer connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A new item. `OR IGNORE`: an item already pending under the same key is left for
/// [`MERGE_ITEM`]. (Neither statement can abort half-way, so SQLite needs no statement journal
/// for them; an `ON CONFLICT DO UPDATE` upsert copied every page it touched into one.)
const INSERT_ITEM: &str = "INSERT OR IGNORE INTO items (media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events, priority)
     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, 1, ?8)";

/// The options of a fingerprint, stored once (an option set seen before is left as it is: equal
/// fingerprints mean equal options).
const INSERT_OPTION_SET: &str =
    "INSERT OR IGNORE INTO option_sets (fingerprint, options) VALUES (?1, ?2)";

/// Folds an event into the pending item of its key: `?4` is the event's time, `?5` its quiet
/// delay (at most max_wait) and `?6` its priority; see [`crate::queue::MERGE_DUE_AT`].
const MERGE_ITEM: &str = "UPDATE OR IGNORE items SET
         last_seen = MAX(last_seen, ?4),
         events = events + 1,
         priority = MAX(priority, ?6),
         due_at = CASE WHEN MAX(priority, ?6) > 0 THEN MIN(due_at, MAX(last_seen, ?4) + ?5)
                       ELSE MIN(MAX(last_seen, ?4) + ?5, deadline) END
     WHERE media_id = ?1 AND task = ?2 AND fingerprint = ?3
     RETURNING events";

const FIND_DELIVERY: &str =
    "SELECT receipt FROM deliveries WHERE source = ?1 AND delivery_id = ?2 AND expires_at > ?3";

const RECORD_DELIVERY: &str = "INSERT INTO deliveries (source, delivery_id, receipt, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (source, delivery_id) DO UPDATE SET receipt = excluded.receipt,
         created_at = excluded.created_at, expires_at = excluded.expires_at";

/// The writer connection. Opened after the migrations have run.
pub(crate) struct IngestWriter {
    conn: Connection,
}

impl IngestWriter {
    pub(crate) fn open(path: &str) -> Result<IngestWriter, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL is a property of the file (set when the store opened it); these two are per
        // connection. FULL: a commit is on disk before any 202 goes out, even across a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                table: "(database file)",
                detail: format!("journal_mode is {mode}, expected wal"),
            });
        }
        Ok(IngestWriter { conn })
    }

    /// Applies several ingest requests in one transaction and returns their receipts, in order.
    ///
    /// A request whose delivery ID was answered before (or earlier in the same group) gets that
    /// answer again and stores nothing. Any error rolls the whole group back.
    pub(crate) fn ingest_group(&mut self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut receipts: Vec<Receipt> = Vec::with_capacity(group.len());
        {
            let mut insert = tx.prepare_cached(INSERT_ITEM)?;
            let mut merge = tx.prepare_cached(MERGE_ITEM)?;
            let mut insert_options = tx.prepare_cached(INSERT_OPTION_SET)?;
            // Items usually share their options: each set is written once per group.
            let mut option_sets: HashSet<&str> = HashSet::new();
            for ingest in group {
                // The requests go in one after the other, each recording its delivery ID, so a
                // repeat later in the same group finds the first one's answer here too.
                if let Some(delivery_id) = ingest.delivery_id.as_deref() {
                    let previous: Option<String> = tx
                        .prepare_cached(FIND_DELIVERY)?
                        .query_row(params![ingest.source, delivery_id, ingest.now.0], |row| {
                            row.get(0)
                        })
                        .optional()?;
                    if let Some(previous) = previous {
                        receipts.push(rows::previous_receipt(&previous)?);
                        continue;
                    }
                }
                let mut events = Vec::with_capacity(ingest.items.len());
                for item in &ingest.items {
                    if option_sets.insert(item.fingerprint.as_str()) {
                        insert_options
                            .execute(params![item.fingerprint, rows::options_json(item)])?;
                    }
                    let deadline = item.debounce.deadline(ingest.now);
                    let due_at = item.debounce.due_at(ingest.now, deadline);
                    let inserted = insert.execute(params![
                        item.media_id.as_str(),
                        item.task.as_str(),
                        item.fingerprint,
                        ingest.source,
                        ingest.now.0,
                        deadline.0,
                        due_at.0,
                        item.priority.rank(),
                    ])?;
                    let count: i64 = if inserted == 1 {
                        1
                    } else {
                        merge.query_row(
                            params![
                                item.media_id.as_str(),
                                item.task.as_str(),
                                item.fingerprint,
                                ingest.now.0,
                                // The quiet delay, bounded by max_wait.
                                due_at.0 - ingest.now.0,
                                item.priority.rank(),
                            ],
                            |row| row.get(0),
                        )?
                    };
                    events.push(count);
                }
                let receipt = rows::receipt_for(ingest, &events);
                if let Some(delivery_id) = &ingest.delivery_id {
                    tx.prepare_cached(RECORD_DELIVERY)?.execute(params![
                        ingest.source,
                        delivery_id,
                        rows::receipt_json(&receipt),
                        ingest.now.0,
                        ingest.delivery_expires_at.0,
                    ])?;
                }
                receipts.push(receipt);
            }
        }
        tx.commit()?;
        Ok(receipts)
    }
}
