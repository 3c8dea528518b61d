//! The status page at `/ui/`, in a real browser (chromium through chromedriver) on SQLite and on
//! PostgreSQL, and its protections over plain HTTP.

use std::time::Duration;
use vod_purge::config::StoreLocation;

use serde_json::{Value, json};
use vod_purge::sim::{self, Faults, SimConfig};

use crate::support::postgres::fresh_database;
use crate::support::{ADMIN_TOKEN, TestApp, browser, settings, spawn_with_settings, wait_until};

/// A VOD error code made to break a page that inserted it as markup.
const NASTY: &str = "Evil<script>document.title=\"owned\"</script>";

/// An application (on `store_url`, or a fresh SQLite file) with one failed job (VOD refused it
/// with [`NASTY`]), one purged ID, `page-ok`, and a batch of 30 more; the daily quota polled.
async fn app_with_jobs(store_url: Option<&str>) -> (TestApp, tempfile::TempDir) {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite").to_string_lossy().into_owned();
    let mut settings = settings(
        &db,
        &sim.base_url(),
        "[vod]\nquota_poll_interval = \"1s\"\ncheck_after = \"300ms\"\n",
    );
    if let Some(url) = store_url {
        settings.store.url = StoreLocation::Postgres(url.to_owned());
    }
    let app = spawn_with_settings(settings, sim).await;
    // The error code carries no slash: `Code/Status` is how the simulator reads a status.
    app.sim.set_faults(Faults {
        fail_next: 1,
        fail_action: Some("RefreshMediaPlayUrls".into()),
        error_code: NASTY.replace("</", "<\\"),
        ..Faults::default()
    });
    assert_eq!(
        app.webhook(json!({"media_ids": ["page-bad"]}))
            .await
            .status(),
        202
    );
    wait_until(Duration::from_secs(10), "the failed job", || async {
        app.get_json("/jobs?status=failed").await["jobs"]
            .as_array()
            .is_some_and(|j| !j.is_empty())
    })
    .await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["page-ok"]}))
            .await
            .status(),
        202
    );
    let batch: Vec<String> = (0..30u64)
        .map(|n| format!("{:032x}", 0x3a3b_7b0e_u64 * 7919 + n))
        .collect();
    assert_eq!(
        app.webhook(json!({ "media_ids": batch })).await.status(),
        202
    );
    wait_until(Duration::from_secs(10), "the purges", || async {
        let sent: Vec<String> = app
            .successful_calls()
            .into_iter()
            .flat_map(|c| c.media_ids)
            .collect();
        sent.iter().any(|m| m == "page-ok") && batch.iter().all(|id| sent.contains(id))
    })
    .await;
    (app, dir)
}

async fn browser_scenario(test: &str, store_url: Option<&str>) {
    let Some(browser) = browser::launch(test).await else {
        return;
    };
    let (app, _dir) = app_with_jobs(store_url).await;
    browser.goto(&format!("{}/ui/", app.address)).await;
    // An admin token is configured: the page asks for it, and shows nothing without it.
    browser.wait_text("#notice", "admin token").await;
    assert_eq!(browser.text("#q-pending").await, "–");
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#token-form button").await;

    // The purged IDs' jobs are among the recent jobs; opening one lists its IDs.
    browser.wait_text("#jobs", "succeeded").await;
    browser.click("#jobs tr.job td.status-succeeded").await;
    let opened = browser.wait_text("#job", "media ID").await;
    assert!(opened.contains("succeeded"), "{opened}");
    let listed = browser
        .script(
            "return document.querySelectorAll('#job tbody tr').length;",
            json!([]),
        )
        .await;
    assert!(listed.as_u64().is_some_and(|n| n >= 10), "{listed}");
    let drawn = browser
        .script(
            "return document.querySelectorAll('#chart rect.ids').length;",
            json!([]),
        )
        .await;
    assert_eq!(drawn, json!(60), "one bar per minute");

    // Which replica flushes: this one (on PostgreSQL, read from the session holding the lock).
    let status = app.get_json("/ui/status.json").await;
    let flusher = &status["flusher"];
    let here = flusher["replica"].as_str().filter(|r| !r.is_empty());
    assert_eq!(here, Some(vod_purge::telemetry::host_name()), "{status}");
    assert_eq!(flusher["replica_flushing"].as_str(), here, "{status}");
    browser.wait_text("#flusher", "is flushing").await;

    // The media search.
    browser.type_into("#media-id", "page-ok").await;
    browser.click("#search button").await;
    browser.wait_text("#media", "page-ok").await;
    assert!(browser.text("#media").await.contains("succeeded"));

    // VOD's error message is text, not markup.
    let failed = browser.wait_text("#failed", "Evil<script>").await;
    assert!(failed.contains("document.title=\"owned\""), "{failed}");
    let injected = browser
        .script(
            "return [document.querySelectorAll('main script').length, document.title];",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([0, "vod-purge status"]));

    // Without the token, the Retry button is refused and the page says why.
    browser
        .script(
            "sessionStorage.setItem('vod-purge-admin-token', 'not-the-token');",
            json!([]),
        )
        .await;
    browser.click("#failed button[data-action=retry]").await;
    let said = browser.wait_text("#notice", "401").await;
    assert!(said.contains("Retry refused"), "{said}");
    assert!(
        !app.successful_calls()
            .iter()
            .any(|c| c.media_ids.iter().any(|m| m == "page-bad"))
    );

    // With it, Retry sends the failed job again and VOD records the call.
    browser
        .script(
            &format!("sessionStorage.setItem('vod-purge-admin-token', '{ADMIN_TOKEN}');"),
            json!([]),
        )
        .await;
    browser.click("#failed button[data-action=retry]").await;
    wait_until(
        Duration::from_secs(10),
        "the retried job's call",
        || async {
            app.successful_calls()
                .iter()
                .any(|c| c.media_ids.iter().any(|m| m == "page-bad"))
        },
    )
    .await;

    // The README's picture (`VOD_PURGE_SCREENSHOT=docs/status-page.png`).
    if store_url.is_none()
        && let Some(path) = std::env::var_os("VOD_PURGE_SCREENSHOT")
    {
        browser.goto(&format!("{}/ui/", app.address)).await;
        browser.wait_text("#quota", "URLs left").await;
        browser.type_into("#media-id", "page-ok").await;
        browser.click("#search button").await;
        browser.wait_text("#media", "submitted").await;
        browser.click("#jobs tr.job td.status-succeeded").await;
        browser.wait_text("#job", "submitted").await;
        std::fs::write(path, browser.screenshot_png().await).unwrap();
    }
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn the_status_page_in_a_browser_on_sqlite() {
    browser_scenario("the_status_page_in_a_browser_on_sqlite", None).await;
}

#[tokio::test]
async fn the_status_page_in_a_browser_on_postgres() {
    let test = "the_status_page_in_a_browser_on_postgres";
    let Some(db) = fresh_database(test).await else {
        return;
    };
    browser_scenario(test, Some(&db.url)).await;
}

#[tokio::test]
async fn the_page_is_locked_down_and_its_figures_are_in_the_api() {
    let (app, _dir) = app_with_jobs(None).await;
    let page = app
        .http
        .get(format!("{}/ui/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    // Every script is a file of this origin: none is inline.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/ui/app.js\" defer></script>"));
    assert!(!html.contains("onclick") && !html.contains("javascript:"));

    // A cross-site form post to an action carries no bearer token: refused, nothing sent.
    let job = app.get_json("/jobs?status=failed").await["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = app
        .http
        .post(format!("{}/jobs/{job}/retry", app.address))
        .header("Origin", "https://attacker.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Cookie", "session=whatever")
        .body("confirm=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        app.get_json(&format!("/jobs/{job}")).await["status"],
        "failed"
    );

    // The figures the page draws, for scripts.
    let unauthenticated = app
        .http
        .get(format!("{}/ui/status.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let status: Value = app.get_json("/ui/status.json").await;
    let minutes = status["drain"]["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let ids: u64 = minutes.iter().map(|m| m["ids"].as_u64().unwrap()).sum();
    let jobs: u64 = minutes.iter().map(|m| m["jobs"].as_u64().unwrap()).sum();
    // page-ok and the batch of 30 take two calls (20 and 11 IDs), or three when page-ok went
    // out alone; the failed call is one more.
    assert_eq!(ids, 32, "{status}");
    assert!((3..=4).contains(&jobs), "{status}");
    assert_eq!(status["drain"]["rate_configured"], 50);
    assert!(
        status["drain"]["rate_current"].as_u64().is_some(),
        "{status}"
    );
    assert_eq!(status["flusher"]["active_here"], true);
    // Which replica flushes: this one, named (both fields present, not two nulls).
    let here = status["flusher"]["replica"].as_str();
    assert_eq!(here, Some(vod_purge::telemetry::host_name()), "{status}");
    assert_eq!(
        status["flusher"]["replica_flushing"].as_str(),
        here,
        "{status}"
    );
    assert_eq!(status["queue"]["pending"], 0);
    wait_until(Duration::from_secs(5), "the quota poll", || async {
        app.get_json("/ui/status.json").await["quota"][0]["kind"] == "refresh"
    })
    .await;
    app.stop().await;
}

/// A URL is searched like a media ID, and `?target=` and `?job=` links open a search and a job.
#[tokio::test]
async fn urls_are_searched_and_links_open_a_search_or_a_job() {
    let Some(browser) = browser::launch("urls_are_searched_and_links_open_a_search_or_a_job").await
    else {
        return;
    };
    let app = crate::targets::spawn_cdn("", crate::targets::cdn_sim()).await;
    let cover = crate::targets::url("linked/cover.jpg");
    assert_eq!(app.purge(json!({"urls": [cover]})).await.status(), 202);
    crate::targets::wait_for_outcome(&app, &cover, "complete").await;
    let spelled = cover.replace("cdn.example.com", "CDN.example.com");
    let link: String = form_urlencoded::byte_serialize(spelled.as_bytes()).collect();
    browser
        .goto(&format!("{}/ui/?target={link}", app.address))
        .await;
    browser.wait_text("#notice", "admin token").await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#token-form button").await;
    let found = browser.wait_text("#media", "complete").await;
    assert!(found.contains("File") && found.contains(&cover), "{found}");
    // The time to purge of the last hour is on the page.
    let figures = browser.wait_text("#q-complete", " / ").await;
    assert!(!figures.contains('–'), "{figures}");

    let job = app.get_json("/jobs").await["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .goto(&format!("{}/ui/?job={job}", app.address))
        .await;
    let opened = browser.wait_text("#job", &job).await;
    assert!(
        opened.contains("FileRefresh") && opened.contains(&cover),
        "{opened}"
    );
    browser.quit().await;
    app.stop().await;
}

/// Each account has its line (queue, rate, quota, holds), and the recent jobs filter by account.
#[tokio::test]
async fn each_account_has_its_line_and_the_jobs_filter_by_account() {
    let test = "each_account_has_its_line_and_the_jobs_filter_by_account";
    let Some(browser) = browser::launch(test).await else {
        return;
    };
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite").to_string_lossy().into_owned();
    let settings = settings(
        &db,
        &sim.base_url(),
        "[[accounts]]\nname = \"intl\"\ndry_run = true\nmax_requests_per_second = 7\n",
    );
    let app = spawn_with_settings(settings, sim).await;
    assert_eq!(
        app.webhook(json!({"media_ids": ["cnpage1"]}))
            .await
            .status(),
        202
    );
    let r = app
        .purge(json!({"media_ids": ["sgpage1", "sgpage2"], "account": "intl"}))
        .await;
    assert_eq!(r.status(), 202);
    wait_until(Duration::from_secs(10), "both accounts' jobs", || async {
        let jobs = app.get_json("/jobs?status=succeeded").await;
        let accounts: Vec<String> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["account"].as_str().unwrap().to_owned())
            .collect();
        accounts.contains(&"default".to_owned()) && accounts.contains(&"intl".to_owned())
    })
    .await;
    let status = app.get_json("/ui/status.json").await;
    let names: Vec<&str> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "intl"], "{status}");
    assert_eq!(status["accounts"][1]["rate_configured"], 7);
    let queue = app.get_json("/queue").await;
    assert_eq!(queue["accounts"][1]["account"], "intl", "{queue}");

    browser.goto(&format!("{}/ui/", app.address)).await;
    browser.wait_text("#notice", "admin token").await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#token-form button").await;
    let line = browser
        .wait_text("#accounts tr[data-account=intl]", "intl")
        .await;
    assert!(
        line.contains("of 7/s") && line.contains("(dry run)"),
        "{line}"
    );
    browser.wait_text("#jobs", "intl").await;
    browser
        .script(
            "const s = document.getElementById('jobs-account'); s.value = 'intl'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    wait_until(Duration::from_secs(10), "only the intl jobs listed", || async {
        let accounts = browser
            .script(
                "return [...document.querySelectorAll('#jobs tr.job td:nth-child(2)')].map(td => td.textContent);",
                json!([]),
            )
            .await;
        let accounts: Vec<&str> = accounts
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        !accounts.is_empty() && accounts.iter().all(|a| *a == "intl")
    })
    .await;
    browser.quit().await;
    app.stop().await;
}
