//! Fresh PostgreSQL databases for tests, one per test, dropped when the guard goes.
//!
//! The server comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test creates `vp_<uuid>` through it, so
//! tests never share tables or the flusher lock (advisory locks are per database). When the
//! server is unreachable, the PostgreSQL part of a test fails if `CI` is set, and otherwise is
//! skipped with a note on stderr.

use std::io::Write;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A connection to the server's administrative database.
pub async fn admin() -> Result<PgConnection, String> {
    let url = admin_url();
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer within 5 s")),
    }
}

/// A new, empty database; `None` (after saying so) when PostgreSQL is unreachable outside CI.
pub async fn fresh_database(test: &str) -> Option<TestDb> {
    let mut conn = match admin().await {
        Ok(conn) => conn,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but PostgreSQL is unreachable ({why}); {test} needs it")
        }
        Err(why) => {
            // Written to stderr directly: `eprintln!` output of a passing test is captured, and
            // this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: the PostgreSQL part of {test} did NOT run: {why} \
                 (set TEST_POSTGRES_URL, or CI=1 to make this a failure)"
            );
            return None;
        }
    };
    let name = format!("vp_{}", uuid::Uuid::new_v4().simple());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    let mut url = reqwest::Url::parse(&admin_url()).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    Some(TestDb {
        url: url.to_string(),
        name,
    })
}

pub struct TestDb {
    /// `postgres://.../vp_<uuid>`
    pub url: String,
    pub name: String,
}

impl TestDb {
    /// Closes every session on this database and refuses new ones until [`TestDb::unblock`].
    pub async fn block(&self) {
        let mut conn = admin().await.expect("admin connection");
        conn.execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            self.name
        )))
        .await
        .unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut conn)
        .await
        .unwrap();
    }

    pub async fn unblock(&self) {
        let mut conn = admin().await.expect("admin connection");
        conn.execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        )))
        .await
        .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async code; a thread with its own runtime does the async work.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = admin().await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
