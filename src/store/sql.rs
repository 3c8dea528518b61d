//! The two SQL dialects: where they differ, and the statement text both backends share.
//!
//! A statement that is the same in both dialects but for its parameters and a few clauses is
//! written once, with PostgreSQL's `$N` parameters, and [`Dialect`] turns it into the other
//! dialect and writes the clauses that differ. The operations written that way (`jobs.rs`,
//! `checks.rs`, `holds.rs`, `reads.rs` beside this file) are one Rust body for both backends;
//! only what really differs (the ingest path, the claims, the merge log, leadership) lives in
//! `sqlite/` and `postgres/`.

use sqlx::AssertSqlSafe;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql`, written with PostgreSQL's `$N` parameters, in this dialect (SQLite numbers its
    /// parameters `?N`). The shared statements hold no `$` elsewhere.
    pub(crate) fn sql(self, sql: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self {
            Dialect::Postgres => sql.to_owned(),
            Dialect::Sqlite => sql.replace('$', "?"),
        })
    }

    /// What locks the rows a read inside a write transaction returns. SQLite's write lock, taken
    /// when the transaction begins, already covers the whole file.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE",
        }
    }

    /// Like [`Dialect::for_update`], passing over rows another transaction has locked.
    pub(crate) fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// The strings of the JSON array bound as parameter `n` (see [`json_list`]), as a subquery.
    /// The statement that serializes the claims of a task type's quota probes (see
    /// [`Store::claim_probe`](super::Store::claim_probe)): a transaction-scoped advisory lock on
    /// PostgreSQL (two-key, beside the leader's lock `(0x7670_7572, 1)` and apart from the one-key
    /// delivery-ID locks);
    /// nothing on SQLite, where a write transaction already holds the database.
    pub(crate) fn probe_lock(self, quota: crate::domain::Quota) -> Option<&'static str> {
        use crate::domain::Quota;
        match (self, quota) {
            (Dialect::Sqlite, _) => None,
            (Dialect::Postgres, Quota::Refresh) => {
                Some("SELECT pg_advisory_xact_lock(1987081586, 2)")
            }
            (Dialect::Postgres, Quota::Preload) => {
                Some("SELECT pg_advisory_xact_lock(1987081586, 3)")
            }
            (Dialect::Postgres, Quota::Directory) => {
                Some("SELECT pg_advisory_xact_lock(1987081586, 4)")
            }
        }
    }

    /// A transaction-scoped lock that serialises the recordings of CDN task reports (PostgreSQL;
    /// SQLite has one writer).
    pub(crate) fn follow_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(1987081586, 5)"),
        }
    }

    pub(crate) fn json_strings(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => format!("(SELECT jsonb_array_elements_text(${n}::text::jsonb))"),
        }
    }

    /// Names the index SQLite must use where its planner would pick a worse one.
    pub(crate) fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!("INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }
}

/// The groups (task type, option set) of one account ($2) with due items ($1 now): their count, urgent count and
/// earliest due time, groups with urgent items first. On SQLite a range of `items_account_due` (which
/// covers every column read here): without `INDEXED BY` it walks a whole group index to avoid
/// sorting, which reads every pending item each poll.
pub(crate) fn due_groups_sql(sql: Dialect) -> AssertSqlSafe<String> {
    const URGENT: &str = "SUM(CASE WHEN i.priority > 0 THEN 1 ELSE 0 END)";
    sql.sql(&format!(
        "SELECT i.account, i.task, i.fingerprint, COUNT(*) AS n, {URGENT} AS urgent, MIN(i.due_at) AS oldest
         FROM items i {}
         WHERE i.due_at <= $1 AND i.account = $2 AND {}
         GROUP BY i.account, i.task, i.fingerprint ORDER BY {URGENT} > 0 DESC, i.task DESC, oldest",
        sql.indexed_by("items_account_due"),
        super::rows::PRELOAD_RULE
    ))
}

/// A list of strings bound as one parameter: a JSON array (see [`Dialect::json_strings`]).
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

/// Most bytes of parameters sent in one statement.
///
/// sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335): a message larger than the
/// socket's send buffer (16 KiB when a connection starts) goes out in two writes, and the
/// second waits for the server's delayed ACK, 40 ms. A group's upsert of 240 rows measured
/// 520 req/s instead of 5,300 on one PostgreSQL replica. Statements are cut below that size.
pub(crate) const MAX_STATEMENT_BYTES: usize = 8 * 1024;

/// Cuts `slots` into consecutive parts of at most [`MAX_STATEMENT_BYTES`] (a part holds at least
/// one slot, however large).
pub(crate) fn by_size<T>(slots: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, slot) in slots.iter().enumerate() {
        let n = size(slot);
        if i > start && bytes + n > MAX_STATEMENT_BYTES {
            parts.push(&slots[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < slots.len() {
        parts.push(&slots[start..]);
    }
    parts
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

/// The migrations of `all` before `version`.
pub(crate) fn migrations_before(all: &Migrator, version: i64) -> Migrator {
    Migrator::with_migrations(
        all.iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_each_dialect() {
        let sql = "UPDATE jobs SET a = $1 WHERE id = $2 AND b = $1";
        assert_eq!(Dialect::Postgres.sql(sql).0, sql);
        assert_eq!(
            Dialect::Sqlite.sql(sql).0,
            "UPDATE jobs SET a = ?1 WHERE id = ?2 AND b = ?1"
        );
        assert_eq!(
            Dialect::Sqlite.sql(&Dialect::Sqlite.json_strings(3)).0,
            "(SELECT value FROM json_each(?3))"
        );
    }

    #[test]
    fn statements_are_cut_below_the_size_limit_and_keep_every_row_in_order() {
        let half = MAX_STATEMENT_BYTES / 2;
        let cases: [(&[usize], &[usize]); 6] = [
            // sizes of the rows -> lengths of the parts
            (&[], &[]),
            (&[10, 20, 30], &[3]),
            (&[half, half], &[2]),
            (&[half, half, 1], &[2, 1]),
            // A row larger than the limit goes alone.
            (&[1, MAX_STATEMENT_BYTES * 2, 1], &[1, 1, 1]),
            (&[MAX_STATEMENT_BYTES, 1, MAX_STATEMENT_BYTES - 1], &[1, 2]),
        ];
        for (sizes, expected) in cases {
            let parts = by_size(sizes, |&n| n);
            let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lengths, expected, "{sizes:?}");
            assert_eq!(parts.concat(), sizes, "{sizes:?}");
            for part in parts.iter().filter(|p| p.len() > 1) {
                assert!(
                    part.iter().sum::<usize>() <= MAX_STATEMENT_BYTES,
                    "{sizes:?}"
                );
            }
        }
    }
}
