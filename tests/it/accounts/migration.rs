//! A database written by the release before accounts opens and drains under this one: its
//! rows belong to the `default` account, on SQLite and PostgreSQL.
//!
//! The old database is made with the previous release's migrations (the store's own, up to the
//! one that brought accounts, so the same checksums) and rows written as that release wrote
//! them: a pending item (SQLite with its options in `option_sets`), a job waiting for its retry.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Connection};
use vod_purge::domain::{PurgeOptions, Ts};
use vod_purge::sim::{self, SimConfig};

use crate::support::{postgres, settings, spawn_with_settings, wait_until};

/// The SQLite migrations of the release before accounts (version 8 brought them).
fn sqlite_before_accounts() -> Migrator {
    vod_purge::store::sqlite::migrator_before(8)
}

/// The PostgreSQL migrations of the release before accounts (version 6 brought them).
fn postgres_before_accounts() -> Migrator {
    vod_purge::store::postgres::migrator_before(6)
}

/// What the old release wrote, in its columns: a pending item due now and a job due for its
/// retry (`$1` now, `$2` the fingerprint, `$3` the options).
const OLD_JOB: &str = "INSERT INTO jobs (id, task, fingerprint, options, status, dry_run, attempts, created_at, budget_from,
                        updated_at, next_attempt_at, error_code, error_message)
     VALUES ('old-job', 'Refresh', $2, $3, 'retrying', FALSE, 1, $1, $1, $1, $1, 'ServiceUnavailable', 'down')";
const OLD_JOB_ITEM: &str =
    "INSERT INTO job_items (job_id, position, media_id, outcome, first_seen, events)
     VALUES ('old-job', 0, 'oldretried1', 'pending', $1, 1)";

async fn drains_under_the_new_release(store_url: &str, db_path: &str) {
    let sim = sim::start(SimConfig {
        quota_refresh: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut settings = settings(
        db_path,
        &sim.base_url(),
        "[[accounts]]\nname = \"intl\"\ndry_run = true\n",
    );
    settings.store.url = vod_purge::config::StoreLocation::try_from(store_url.to_owned()).unwrap();
    let app = spawn_with_settings(settings, sim).await;
    wait_until(Duration::from_secs(10), "the old rows sent", || async {
        let sent: Vec<String> = app
            .sim
            .calls()
            .iter()
            .filter(|c| c.status == 200)
            .flat_map(|c| c.media_ids.clone())
            .collect();
        sent.contains(&"oldpending1".to_owned()) && sent.contains(&"oldretried1".to_owned())
    })
    .await;
    let jobs = app.get_json("/jobs?account=default&limit=10").await;
    let listed = jobs["jobs"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|j| j["id"] == "old-job" && j["account"] == "default"),
        "{jobs}"
    );
    assert_eq!(
        listed.len(),
        2,
        "the old retry and a job for the old item: {jobs}"
    );
    let intl = app.get_json("/jobs?account=intl").await;
    assert!(intl["jobs"].as_array().unwrap().is_empty(), "{intl}");
    app.stop().await;
}

#[tokio::test]
async fn a_sqlite_database_of_the_previous_release_opens_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db").to_string_lossy().into_owned();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlite_before_accounts().run(&mut conn).await.unwrap();
    let now = Ts::now().0;
    let (fingerprint, options_json) = (
        PurgeOptions::default_fingerprint(),
        serde_json::to_string(&PurgeOptions::default()).unwrap(),
    );
    sqlx::query("INSERT INTO option_sets (fingerprint, options) VALUES (?, ?)")
        .bind(&fingerprint)
        .bind(&options_json)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO items (media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events, priority, quiet)
         VALUES ('oldpending1', 'Refresh', ?, 'cms', ?, ?, ?, ?, 1, 0, 0)",
    )
    .bind(&fingerprint)
    .bind(now)
    .bind(now)
    .bind(now + 60_000)
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    for statement in [OLD_JOB, OLD_JOB_ITEM] {
        let sql = statement.replace('$', "?");
        let query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        let query = if statement == OLD_JOB {
            query.bind(&fingerprint).bind(&options_json)
        } else {
            query
        };
        query.execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    drains_under_the_new_release(&format!("sqlite://{path}"), &path).await;
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_release_opens_and_drains() {
    let Some(db) = postgres::fresh_database("the PostgreSQL migration to accounts").await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    postgres_before_accounts().run(&mut conn).await.unwrap();
    let now = Ts::now().0;
    let (fingerprint, options_json) = (
        PurgeOptions::default_fingerprint(),
        serde_json::to_string(&PurgeOptions::default()).unwrap(),
    );
    sqlx::query(
        "INSERT INTO items (media_id, task, fingerprint, options, source, first_seen, last_seen, deadline, due_at, events, priority)
         VALUES ('oldpending1', 'Refresh', $1, $2, 'cms', $3, $3, $4, $3, 1, 0)",
    )
    .bind(&fingerprint)
    .bind(&options_json)
    .bind(now)
    .bind(now + 60_000)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(OLD_JOB)
        .bind(now)
        .bind(&fingerprint)
        .bind(&options_json)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(OLD_JOB_ITEM)
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused.db").to_string_lossy().into_owned();
    drains_under_the_new_release(&db.url, &unused).await;
}
