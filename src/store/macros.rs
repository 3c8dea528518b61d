//! The macros that let one body of code serve both backends (see `sql.rs`).

/// Calls the same method on whichever backend is configured: an operation each backend does its
/// own way (the traits of `backend.rs`).
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.engine {
            $crate::store::Engine::Sqlite($s) => $call,
            $crate::store::Engine::Postgres($s) => $call,
        }
    };
}

/// Runs `$body` once per backend, with `$b` the backend's store and `$sql` its
/// [`Dialect`](sql::Dialect): an operation written once for both (`jobs.rs`, `checks.rs`,
/// `holds.rs`, `reads.rs`). The body reaches the database through `$b.reads()`, `$b.writes()`
/// and `$b.begin_write()`, which both backends have.
macro_rules! with_backend {
    ($self:ident, $b:ident, $sql:ident => $body:expr) => {
        match &$self.engine {
            $crate::store::Engine::Sqlite($b) => {
                let $sql = $crate::store::sql::Dialect::Sqlite;
                $body
            }
            $crate::store::Engine::Postgres($b) => {
                let $sql = $crate::store::sql::Dialect::Postgres;
                $body
            }
        }
    };
}

/// A job with its items, read on `$conn` (a `&mut` connection, in a transaction or not) in
/// dialect `$sql`: `Result<Option<Job>, StoreError>`.
macro_rules! load_job {
    ($conn:expr, $sql:expr, $id:expr) => {
        async {
            let conn = $conn;
            let row = sqlx::query($sql.sql(&format!(
                "SELECT {} FROM jobs WHERE id = $1",
                $crate::store::rows::JOB_COLUMNS
            )))
            .bind($id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut job = $crate::store::rows::job_from_row(&row)?;
            let items = sqlx::query($sql.sql(&format!(
                "SELECT {} FROM job_items WHERE job_id = $1 ORDER BY position",
                $crate::store::rows::JOB_ITEM_COLUMNS
            )))
            .bind($id)
            .fetch_all(&mut *conn)
            .await?;
            job.items = items
                .iter()
                .map($crate::store::rows::job_item_from_row)
                .collect::<Result<_, _>>()?;
            Ok::<_, StoreError>(Some(job))
        }
        .await
    };
}

/// Creates the job a claim takes its items into ($1 id, $2 task, $3 fingerprint, $4 options,
/// $5 dry run, $6 now, $7 lease, $8 priority, $9 account), in flight with its first attempt. Its `quota`
/// is computed from its task.
macro_rules! insert_claimed_job {
    ($conn:expr, $sql:expr, $claim:expr, $options:expr, $priority:expr) => {
        sqlx::query($sql.sql(
            "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from,
                               updated_at, lease_until, priority, account)
             VALUES ($1, $2, $3, $4, 'in_flight', $5, 1, $6, $6, $6, $7, $8, $9)",
        ))
        .bind(&$claim.job_id)
        .bind($claim.task.as_str())
        .bind(&$claim.fingerprint)
        .bind($options)
        .bind($claim.dry_run)
        .bind($claim.now.0)
        .bind($claim.lease_until.0)
        .bind($priority)
        .bind($claim.account.as_str())
        .execute($conn)
        .await
    };
}
