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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::merges::{self, FOLD_CHUNK, Logged, MergeLog, Progress};
use crate::domain::{Priority, Ts};
use crate::queue::{Pushed, Timing};
use crate::store::rows;
use crate::store::types::*;

/// How long a commit waits for the write lock held by the other writer connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A new item. `OR IGNORE`: an item already pending under the same key is merged into instead
/// (see [`super::merges`]). (Neither statement can abort half-way, so SQLite needs no statement journal
/// for them; an `ON CONFLICT DO UPDATE` upsert copied every page it touched into one.)
const INSERT_ITEM: &str = "INSERT OR IGNORE INTO items (media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events, priority, quiet, account)
     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, 1, ?8, ?9, ?10)";

/// The options of a fingerprint, stored once (an option set seen before is left as it is: equal
/// fingerprints mean equal options).
const INSERT_OPTION_SET: &str =
    "INSERT OR IGNORE INTO option_sets (fingerprint, options) VALUES (?1, ?2)";

/// The pending item of a key, with its timing: its ID names it in the merge log.
const FIND_ITEM: &str = "SELECT id, last_seen, deadline, due_at, events, priority, quiet FROM items
     WHERE account = ?4 AND media_id = ?1 AND task = ?2 AND fingerprint = ?3";

/// The ID of the pending item of a key: a lookup in the key's unique index alone.
const FIND_ID: &str =
    "SELECT id FROM items WHERE account = ?4 AND media_id = ?1 AND task = ?2 AND fingerprint = ?3";

/// Writes an item's timing after a fold that brought its due time forward.
const SET_TIMING: &str =
    "UPDATE items SET last_seen = ?2, due_at = ?3, events = ?4, priority = ?5, quiet = ?6
     WHERE id = ?1";

/// Folds an item's logged events in a fold's chunk: the latest time, the count and the latest quiet delay
/// ([`Timing::merge`] on what it changes for events that only delay the item). The stored due
/// time stays (never later than the real one, which these columns decide), and so does its index
/// entry; the row is not read first.
const FOLD_LOGGED: &str =
    "UPDATE items SET last_seen = MAX(last_seen, ?2), events = events + ?3, quiet = ?4
     WHERE id = ?1";

/// [`FOLD_LOGGED`], returning the stored due time and the account: for a fold that meets more
/// items stored as due than it folds (a backlog), each is marked stale by its own row.
const FOLD_LOGGED_RETURNING: &str =
    "UPDATE items SET last_seen = MAX(last_seen, ?2), events = events + ?3, quiet = ?4
     WHERE id = ?1 RETURNING due_at, account";

/// The items stored as due by a time, with their accounts, at most ?2: each account's due range
/// of `items_account_due` (the accounts with items are those with counts).
pub(super) const STORED_DUE: &str = "SELECT i.id, i.account
     FROM (SELECT DISTINCT account FROM item_counts) AS a
     CROSS JOIN items i INDEXED BY items_account_due
     WHERE i.account = a.account AND i.due_at <= ?1 LIMIT ?2";

/// Appends an event to the merge log (see [`super::merges`]).
const LOG_MERGE: &str = "INSERT INTO merges (seq, item_id, seen, quiet) VALUES (?1, ?2, ?3, ?4)";

/// Removes one folded event from the merge log.
const FORGET_MERGE: &str = "DELETE FROM merges WHERE seq = ?1";

/// Removes the events a fold in chunks has folded: every row up to its watermark.
const FORGET_FOLDED: &str = "DELETE FROM merges WHERE seq <= ?1";

const FIND_DELIVERY: &str =
    "SELECT receipt FROM deliveries WHERE source = ?1 AND delivery_id = ?2 AND expires_at > ?3";

const RECORD_DELIVERY: &str = "INSERT INTO deliveries (source, delivery_id, receipt, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (source, delivery_id) DO UPDATE SET receipt = excluded.receipt,
         created_at = excluded.created_at, expires_at = excluded.expires_at";

/// The writer connection. Opened after the migrations have run.
pub(crate) struct IngestWriter {
    conn: Connection,
    /// The merge log in memory, shared with the flusher's claims.
    log: Arc<Mutex<MergeLog>>,
    /// No pending item has a longer quiet delay (milliseconds): an event with at least this one
    /// cannot bring its item's due time forward, so it is logged without reading the item.
    longest_quiet_ms: i64,
    /// A group failed and the log could not be read back then: the next group reads it first.
    log_unread: bool,
}

impl IngestWriter {
    pub(crate) fn open(path: &str, log: Arc<Mutex<MergeLog>>) -> Result<IngestWriter, StoreError> {
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
        conn.pragma_update(None, "wal_autocheckpoint", super::WAL_AUTOCHECKPOINT)?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                table: "(database file)",
                detail: format!("journal_mode is {mode}, expected wal"),
            });
        }
        *lock(&log) = read_log(&conn)?;
        let longest_quiet_ms =
            conn.query_row("SELECT COALESCE(MAX(quiet), 0) FROM items", [], |row| {
                row.get(0)
            })?;
        Ok(IngestWriter {
            conn,
            log,
            longest_quiet_ms,
            log_unread: false,
        })
    }

    /// Applies several ingest requests in one transaction and returns their receipts, in order.
    ///
    /// A request whose delivery ID was answered before (or earlier in the same group) gets that
    /// answer again and stores nothing. Any error rolls the whole group back (and the merge log
    /// in memory is read back from the table, which the rollback restored).
    pub(crate) fn ingest_group(&mut self, group: &[Ingest]) -> Result<Vec<Receipt>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if self.log_unread {
            lock(&self.log).reload(read_log(&tx)?);
            self.log_unread = false;
        }
        let result =
            apply_group(&tx, &self.log, &mut self.longest_quiet_ms, group).and_then(|receipts| {
                tx.commit()?;
                Ok(receipts)
            });
        lock(&self.log).fold_ends();
        if result.is_err() {
            // The transaction is over (rolled back on drop); the table holds the truth. Read
            // under the write lock: a claim in between takes events out of the log and deletes
            // their rows, and both must show in what is read back. If the lock cannot be had
            // now, the next group reads it first.
            self.log_unread = true;
            let reread = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)
                .and_then(|tx| read_log(&tx));
            match reread {
                Ok(log) => {
                    lock(&self.log).reload(log);
                    self.log_unread = false;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read the merge log back after a failed group; the next group reads it first")
                }
            }
        }
        result
    }
}

/// The merge log's rows, in order, and the progress of a fold under way.
pub(crate) fn read_log(conn: &Connection) -> Result<MergeLog, StoreError> {
    let progress = conn
        .query_row("SELECT watermark, next_item FROM merge_folds", [], |row| {
            Ok(Progress {
                watermark: row.get(0)?,
                next_item: row.get(1)?,
            })
        })
        .optional()?;
    let mut statement =
        conn.prepare("SELECT item_id, seq, seen, quiet FROM merges ORDER BY seq")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            Logged {
                seq: row.get(1)?,
                seen: Ts(row.get(2)?),
                quiet_ms: row.get(3)?,
            },
        ))
    })?;
    Ok(MergeLog::from_rows(
        rows.collect::<Result<Vec<_>, _>>()?,
        progress,
    ))
}

pub(crate) fn lock(log: &Mutex<MergeLog>) -> MutexGuard<'_, MergeLog> {
    // A panic while holding the lock cannot leave the map half-changed in a way the table does
    // not also show; go on with it.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An item's row: its ID, its real timing and its stored due time (see
/// [`merges::stored_timing`]).
fn timing_from_row(row: &rusqlite::Row) -> rusqlite::Result<(i64, Timing, Ts)> {
    let stored_due = Ts(row.get(3)?);
    Ok((
        row.get(0)?,
        merges::stored_timing(
            Ts(row.get(1)?),
            Ts(row.get(2)?),
            stored_due,
            row.get::<_, i64>(4)? as u64,
            Priority::from_rank(row.get(5)?),
            row.get(6)?,
        ),
        stored_due,
    ))
}

fn apply_group(
    tx: &Transaction,
    log: &Mutex<MergeLog>,
    longest_quiet_ms: &mut i64,
    group: &[Ingest],
) -> Result<Vec<Receipt>, StoreError> {
    let mut receipts: Vec<Receipt> = Vec::with_capacity(group.len());
    let mut insert = tx.prepare_cached(INSERT_ITEM)?;
    let mut insert_options = tx.prepare_cached(INSERT_OPTION_SET)?;
    // Items usually share their options: each set is written once per group.
    let mut option_sets: HashSet<&str> = HashSet::new();
    for ingest in group {
        // The requests go in one after the other, each recording its delivery ID, so a repeat
        // later in the same group finds the first one's answer here too.
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
        let mut pushed = Vec::with_capacity(ingest.items.len());
        for item in &ingest.items {
            if option_sets.insert(item.fingerprint.as_str()) {
                insert_options.execute(params![item.fingerprint, rows::options_json(item)])?;
            }
            let deadline = item.debounce.deadline(ingest.now);
            let due_at = item.debounce.due_at(ingest.now, deadline);
            // The quiet delay, bounded by max_wait.
            let quiet_ms = due_at.0 - ingest.now.0;
            // Longer than every pending item's, it can only delay the item it merges into.
            let delays_only = item.priority == Priority::Normal && quiet_ms >= *longest_quiet_ms;
            *longest_quiet_ms = (*longest_quiet_ms).max(quiet_ms);
            let inserted = insert.execute(params![
                item.media_id.as_str(),
                item.task.as_str(),
                item.fingerprint,
                ingest.source,
                ingest.now.0,
                deadline.0,
                due_at.0,
                item.priority.rank(),
                quiet_ms,
                item.account.as_str(),
            ])?;
            if inserted == 1 {
                pushed.push(Pushed::New);
            } else {
                merge(tx, log, item, ingest.now, due_at, delays_only)?;
                pushed.push(Pushed::Merged);
            }
        }
        let receipt = rows::receipt_for(ingest, &pushed);
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
    // Nothing is stored when a fold begins: until its first chunk commits, the log reads back
    // whole.
    lock(log).begin_chunks();
    let now = group
        .iter()
        .map(|ingest| ingest.now)
        .max()
        .unwrap_or_else(Ts::now);
    fold_chunk(tx, log, now)?;
    Ok(receipts)
}

/// Merges an event (at `now`, due by itself at `due_at`) into the pending item of its key:
/// logged, or folded at once when it brings the item's due time forward. An event known to
/// `delay_only` (see [`IngestWriter::longest_quiet_ms`]) is logged without reading the item.
fn merge(
    tx: &Transaction,
    log: &Mutex<MergeLog>,
    item: &NewItem,
    now: Ts,
    due_at: Ts,
    delays_only: bool,
) -> Result<(), StoreError> {
    let key = params![
        item.media_id.as_str(),
        item.task.as_str(),
        item.fingerprint,
        item.account.as_str()
    ];
    let quiet_ms = due_at.0 - now.0;
    let id = if delays_only {
        tx.prepare_cached(FIND_ID)?
            .query_row(key, |row| row.get(0))?
    } else {
        let (id, timing, stored_due) = tx
            .prepare_cached(FIND_ITEM)?
            .query_row(key, timing_from_row)?;
        if merges::folds_at_once(item.priority, due_at, stored_due) {
            let logged = lock(log).take(id);
            let mut timing = merges::fold(timing, &logged);
            timing.merge(now, Duration::from_millis(quiet_ms as u64), item.priority);
            return write_fold(tx, id, &timing, &logged);
        }
        id
    };
    let seq = lock(log).next_seq();
    tx.prepare_cached(LOG_MERGE)?
        .execute(params![seq, id, now.0, quiet_ms])?;
    lock(log).push(
        id,
        Logged {
            seq,
            seen: now,
            quiet_ms,
        },
    );
    Ok(())
}

/// Folds the next chunk of the fold under way, if any (see [`merges`]): each item's events up to
/// the fold's watermark, by item ID. (A claim takes an item's events with it, so every logged
/// item is pending; one that were not would be left alone.) The chunk's transaction stores where
/// the fold stands; the last one deletes the folded rows.
///
/// The fold leaves stored due times as they are, so the items it changes that are stored as due
/// (by the group's time `now`, or a settled time) are marked stale for the settle step (see
/// [`merges`]). Those are usually few, the flusher keeping up: they are read from `items_account_due`
/// first, unless there are more of them than items folded, and then each fold returns its row's.
fn fold_chunk(tx: &Transaction, log: &Mutex<MergeLog>, now: Ts) -> Result<(), StoreError> {
    let (chunk, horizon) = {
        let mut log = lock(log);
        let Some(chunk) = log.take_chunk(FOLD_CHUNK) else {
            return Ok(());
        };
        log.fold_begins();
        (chunk, log.horizon(now))
    };
    let all = &chunk.events;
    let due: HashMap<i64, String> = tx
        .prepare_cached(STORED_DUE)?
        .query_map(params![horizon.0, all.len() as i64 + 1], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let backlog = due.len() > all.len();
    let mut write = tx.prepare_cached(if backlog {
        FOLD_LOGGED_RETURNING
    } else {
        FOLD_LOGGED
    })?;
    let mut stale: Vec<(String, i64)> = Vec::new();
    for (id, events) in all {
        let Some(latest) = events.last() else {
            continue;
        };
        let seen = events.iter().map(|e| e.seen).max().unwrap_or(latest.seen);
        let values = params![id, seen.0, events.len() as i64, latest.quiet_ms];
        if backlog {
            let row: Option<(i64, String)> = write
                .query_row(values, |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            stale.extend(
                row.filter(|(stored, _)| Ts(*stored) <= horizon)
                    .map(|(_, a)| (a, *id)),
            );
        } else {
            write.execute(values)?;
            stale.extend(due.get(id).map(|account| (account.clone(), *id)));
        }
    }
    let mut log = lock(log);
    for (account, id) in stale {
        log.mark(&account, [id]);
    }
    drop(log);
    match chunk.next_item {
        Some(next_item) => write_progress(
            tx,
            Some(Progress {
                watermark: chunk.watermark,
                next_item,
            }),
        )?,
        None => {
            // A range at the front of the table: the rows of events logged since stay.
            tx.prepare_cached(FORGET_FOLDED)?
                .execute(params![chunk.watermark])?;
            write_progress(tx, None)?;
        }
    }
    Ok(())
}

/// Stores where the fold under way stands, or that none is.
fn write_progress(tx: &Transaction, progress: Option<Progress>) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM merge_folds")?.execute([])?;
    if let Some(p) = progress {
        tx.prepare_cached("INSERT INTO merge_folds (watermark, next_item) VALUES (?1, ?2)")?
            .execute(params![p.watermark, p.next_item])?;
    }
    Ok(())
}

/// Writes an item's folded timing and removes its folded events from the log.
fn write_fold(
    tx: &Transaction,
    id: i64,
    timing: &Timing,
    logged: &[Logged],
) -> Result<(), StoreError> {
    tx.prepare_cached(SET_TIMING)?.execute(params![
        id,
        timing.last_seen.0,
        timing.due_at.0,
        timing.events as i64,
        timing.priority.rank(),
        timing.quiet.as_millis() as i64
    ])?;
    let mut forget = tx.prepare_cached(FORGET_MERGE)?;
    for event in logged {
        forget.execute(params![event.seq])?;
    }
    Ok(())
}
