//! A real browser for the status page tests: Debian's `chromium`, driven by `chromedriver`
//! over the W3C WebDriver protocol (a few JSON calls, made with reqwest).
//!
//! Without the two binaries the browser tests are skipped with a note, unless `CI` is set (CI
//! installs them), where a missing browser is a failure.

use crate::support::SendJson;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// `None` (after saying so) when chromium or chromedriver is missing outside CI.
pub async fn launch(test: &str) -> Option<Browser> {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing; {test} needs them");
        }
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {test} did NOT run: install chromium and chromium-driver (apt), or set CI=1 to make this a failure"
        );
        return None;
    }
    let port = super::free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = super::http_client();
    super::wait_until(Duration::from_secs(20), "chromedriver", || async {
        http.get(format!("{base}/status")).send().await.is_ok()
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Browser {
        driver,
        base,
        http,
        _profile: profile,
    };
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!(
        "--user-data-dir={}",
        browser._profile.path().display()
    )])
    .collect::<Vec<_>>();
    let session = browser
        .call(
            reqwest::Method::POST,
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}),
        )
        .await;
    let id = session["sessionId"].as_str().expect("a session").to_owned();
    browser.base = format!("{}/session/{id}", browser.base);
    Some(browser)
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        let request = if method == reqwest::Method::GET {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"]["error"].is_null(),
            "WebDriver {method} {path}: {}",
            answer["value"]
        );
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer: Value = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": css}))
                .send_json()
                .await;
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no element {css} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The text of the first element matching `css` (its `textContent`).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        self.script(
            "return document.querySelector(arguments[0]).textContent;",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits up to 15 s until the text of `css` contains `wanted`; returns the text.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.text(css).await;
            if text.contains(wanted) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{wanted:?} not in {css} within 15 s: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn screenshot_png(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
