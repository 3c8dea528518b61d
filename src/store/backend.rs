//! What each backend does its own way, by concern: one trait each, implemented by
//! [`SqliteStore`](super::sqlite::SqliteStore) and [`PgStore`](super::postgres::PgStore) in the
//! file of that concern (`claims.rs`, `reads.rs`, `mod.rs`).
//!
//! The rest of the store is one body for both backends (`jobs.rs`, `checks.rs`, `holds.rs`,
//! `reads.rs` beside this file, over the [`Dialect`](super::sql::Dialect)); ingest belongs to the
//! group committer (`commit.rs`), a thread with a synchronous connection on SQLite and a task on
//! PostgreSQL, so it is not a method of a common trait.

//! The traits are public so that tests can drive a backend directly; they are called on the
//! concrete backend types only (never as `dyn` or through a generic bound), so their futures keep
//! their `Send`-ness.
#![allow(async_fn_in_trait)]

use super::types::*;
use crate::domain::{AccountName, Ts};

/// Which items are due, and taking them into a job. SQLite folds its merge log in first.
pub trait Claims {
    /// Makes the stored due times of the items due by them exact, before the flusher reads
    /// which groups are due (`sql::due_groups_sql`). SQLite folds its merge log; PostgreSQL's
    /// stored due times are always exact.
    async fn settle_due(&self, _account: &AccountName, _now: Ts) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes up to `claim.limit` due items of one group, urgent and oldest first, into a new
    /// job in flight, in one transaction; `None` when none is due any more.
    async fn claim_batch(&self, claim: &ClaimBatch) -> Result<Option<Job>, StoreError>;
}

/// Pending items as the read API shows them (SQLite folds in the logged merges).
pub trait PendingReads {
    async fn pending_for_media(&self, media_id: &str) -> Result<Vec<PendingItem>, StoreError>;

    /// Corrects each account's figures, read by the stored due times
    /// ([`Store::queue_by_account`](super::Store::queue_by_account)), to the real due times.
    /// SQLite's stored due times may be early (see `sqlite::merges`); PostgreSQL's are exact.
    async fn correct_due(&self, _queues: &mut [AccountQueue], _now: Ts) -> Result<(), StoreError> {
        Ok(())
    }

    /// The same figures counted from every pending item, by its real due time: what the kept
    /// counts must equal (tests and benchmarks check them against it). Reads the whole queue.
    async fn recount(&self, now: Ts) -> Result<Vec<AccountQueue>, StoreError>;
}

/// Health, the schema, closing, and pruning what each backend keeps on the side.
pub trait Housekeeping {
    async fn ping(&self) -> Result<(), StoreError>;

    /// True when every migration this binary knows has been applied.
    async fn migrated(&self) -> Result<bool, StoreError>;

    async fn close(&self);

    /// Forgets option sets that no pending item (of these accounts: every account with items)
    /// names any more.
    async fn prune_option_sets(&self, accounts: &[AccountName]) -> Result<u64, StoreError>;
}

/// Which process may flush: exactly one per store.
pub trait Leadership {
    /// Becomes the one flusher of this store if no live process is, or confirms this process
    /// still is. An error means the database is unreachable; this process is then not the
    /// leader.
    async fn try_acquire_leadership(&self) -> Result<bool, StoreError>;

    /// The answer of the last [`Leadership::try_acquire_leadership`]; no I/O.
    fn is_leader(&self) -> bool;

    /// The host name of the process that flushes this store (`None` when none does).
    async fn flusher_replica(&self) -> Result<Option<String>, StoreError>;
}
