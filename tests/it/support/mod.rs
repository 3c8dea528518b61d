//! Spawns the real application and a simulator on free ports, with a fresh SQLite file each;
//! [`postgres`] makes fresh PostgreSQL databases.

pub mod browser;
pub mod postgres;

use std::future::Future;
use std::time::{Duration, Instant};

use vod_purge::config::{Settings, StoreLocation};
use vod_purge::sim::{self, RecordedCall, SimConfig, SimHandle};
use vod_purge::startup::{Application, ShutdownHandle};

pub const ADMIN_TOKEN: &str = "admin-token";
pub const SOURCE_TOKEN: &str = "source-token";

pub struct TestApp {
    pub address: String,
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub db_path: String,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// Configuration for a test application; `extra` is TOML appended to the test defaults.
pub struct Spawn {
    pub extra: String,
    pub sim: SimConfig,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            extra: String::new(),
            sim: SimConfig {
                quota_refresh: 10_000_000,
                quota_preload: 10_000_000,
                ..SimConfig::default()
            },
        }
    }
}

pub fn settings(db_path: &str, endpoint: &str, extra: &str) -> Settings {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_token = "{ADMIN_TOKEN}"
        max_body_bytes = 65536
        shutdown_grace = "5s"
        [store]
        url = "sqlite://{db_path}"
        [vod]
        endpoint = "{endpoint}"
        access_key_id = "testid"
        access_key_secret = "testsecret"
        timeout = "2s"
        retry_base = "50ms"
        retry_max = "200ms"
        [queue]
        quiet = "200ms"
        max_wait = "5s"
        linger = "100ms"
        lease = "10s"
        poll_interval = "20ms"
        [[sources]]
        name = "cms"
        auth = "bearer"
        secrets = ["{SOURCE_TOKEN}"]
        format = "native"
        "#
    );
    // `extra`'s keys win; its sources are added to "cms".
    Settings::from_layers(&[&text, extra]).expect("test settings are valid")
}

/// A fresh directory and the path of a store file in it (gone with the directory).
pub fn temp_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("vod-purge.db")
        .to_string_lossy()
        .into_owned();
    (dir, db)
}

pub async fn spawn_app(spawn: Spawn) -> TestApp {
    let sim = sim::start(spawn.sim).await.expect("simulator starts");
    let (dir, db_path) = temp_store();
    let mut app = spawn_on(&db_path, sim, &spawn.extra).await;
    app._dir = Some(dir);
    app
}

/// A simulator with a quota of a million IDs a day, and the application on it with the test
/// settings, `extra` (TOML, see [`settings`]) and then `configure` applied.
pub async fn spawn_configured(extra: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let sim = sim::start(SimConfig {
        quota_refresh: 1_000_000,
        quota_preload: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let (dir, db) = temp_store();
    let mut settings = settings(&db, &sim.base_url(), extra);
    configure(&mut settings);
    spawn_with_settings(settings, sim).await.keeping(dir)
}

/// Starts the application on an existing database file and simulator.
pub async fn spawn_on(db_path: &str, sim: SimHandle, extra: &str) -> TestApp {
    let settings = settings(db_path, &sim.base_url(), extra);
    spawn_with_settings(settings, sim).await
}

/// Starts the application with `settings` as they are (their store and simulator).
pub async fn spawn_with_settings(settings: Settings, sim: SimHandle) -> TestApp {
    let db_path = match &settings.store.url {
        StoreLocation::Sqlite(path) => path.clone(),
        StoreLocation::Postgres(_) => String::new(),
    };
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        sim,
        http: http_client(),
        db_path,
        shutdown,
        task,
        _dir: None,
    }
}

impl TestApp {
    /// Keeps `dir` (the store's directory, say) until the application is stopped.
    pub fn keeping(mut self, dir: tempfile::TempDir) -> TestApp {
        self._dir = Some(dir);
        self
    }

    /// Stops the application gracefully and returns its simulator and database directory.
    pub async fn stop(self) -> (SimHandle, Option<tempfile::TempDir>) {
        self.shutdown.shutdown();
        self.task
            .await
            .expect("app task")
            .expect("app stops cleanly");
        (self.sim, self._dir)
    }

    pub async fn purge(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/purge", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn webhook(&self, body: serde_json::Value) -> reqwest::Response {
        self.webhook_to("cms", SOURCE_TOKEN, body).await
    }

    /// A delivery to `POST /webhooks/{source}` with a bearer token.
    pub async fn webhook_to(
        &self,
        source: &str,
        token: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/webhooks/{source}", self.address))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A `POST` with no body, with the admin token or without any.
    pub async fn post_empty(&self, path: String, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// The `/metrics` text (no token needed).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Successful `RefreshMediaPlayUrls` calls recorded by the simulator.
    pub fn refresh_calls(&self) -> Vec<RecordedCall> {
        self.sim
            .calls()
            .into_iter()
            .filter(|c| c.action == "RefreshMediaPlayUrls")
            .collect()
    }

    pub fn successful_calls(&self) -> Vec<RecordedCall> {
        self.refresh_calls()
            .into_iter()
            .filter(|c| c.status == 200)
            .collect()
    }
}

/// Sends a request and reads its JSON answer, failing the test on a transport error or an
/// answer that is not JSON.
pub trait SendJson {
    async fn send_json<T: serde::de::DeserializeOwned>(self) -> T;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json<T: serde::de::DeserializeOwned>(self) -> T {
        let answer = self.send().await.expect("an answer");
        answer.json().await.expect("a JSON answer")
    }
}

/// A reqwest client (with the TLS provider the crate's reqwest build needs).
pub fn http_client() -> reqwest::Client {
    vod_purge::vod::install_tls_provider();
    reqwest::Client::new()
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `vod-purge` binary built for these tests.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_vod-purge"))
}

/// The acknowledged events (a media ID, and when its request was sent, epoch milliseconds) that
/// no call among `purges` carried after them.
pub fn unpurged<'a>(
    acked: &[(String, i64)],
    purges: impl IntoIterator<Item = &'a RecordedCall>,
) -> Vec<(String, i64)> {
    let purges: Vec<&RecordedCall> = purges.into_iter().collect();
    acked
        .iter()
        .filter(|(id, sent_at)| {
            !purges
                .iter()
                .any(|c| c.at_ms >= *sent_at && c.media_ids.contains(id))
        })
        .cloned()
        .collect()
}

/// A `vod-purge serve` process and the file its log goes to; killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    log: std::path::PathBuf,
}

impl Served {
    /// SIGKILL: the process ends where it stands, nothing is flushed or released.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vod-purge serve` on the configuration file `config`, its log (at `info`) written to
/// the file `log`.
pub fn serve_logging_to(config: &std::path::Path, log: &std::path::Path) -> Served {
    let child = binary()
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("the log file"))
        .spawn()
        .expect("vod-purge starts");
    Served {
        child,
        log: log.to_owned(),
    }
}

/// Runs `command` (a `vod-purge` subcommand) to its end; it must succeed. Returns its output.
pub fn stdout_of(command: &mut std::process::Command) -> String {
    let out = command.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `command` (a `vod-purge` that serves), its output discarded, and waits until `url`
/// answers 200 (at most 10 s).
pub async fn start_serving(command: &mut std::process::Command, url: &str) -> std::process::Child {
    use std::process::Stdio;
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let http = http_client();
    wait_until(Duration::from_secs(10), url, || async {
        http.get(url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    child
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of the series `name` (with its labels, exactly as rendered) in a `/metrics` text.
///
/// # Panics
/// When the series is absent or its value is not a number.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Whether a `/metrics` text has `sample`: with a value (`name{labels} 1`), a line exactly so (a
/// substring would take `… 12` for `… 1`); without one, a series of that name.
pub fn has_sample(metrics: &str, sample: &str) -> bool {
    if sample.contains(' ') {
        metrics.lines().any(|line| line == sample)
    } else {
        metrics.lines().any(|line| {
            line.strip_prefix(sample)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
    }
}

/// What `vod-purge check-config --config FILE` printed, run with exactly the variables `env`.
pub struct CheckConfig {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn check_config<'a>(
    config: &std::path::Path,
    env: impl IntoIterator<Item = (&'a str, String)>,
) -> CheckConfig {
    let out = binary()
        .args(["check-config", "--config"])
        .arg(config)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    CheckConfig {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
