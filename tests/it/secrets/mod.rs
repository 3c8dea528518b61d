//! What the service says about the services it calls (VOD, STS, the metadata service, a
//! credentials URI) when they fail: never a signed query, a token or a secret, in any answer or
//! log line; and what it takes from them: no redirect, no answer past its cap.
//!
//! The remote services fail for real: a [`Relay`] in front of the simulator is cut, or a
//! [`Canned`] server answers what no real service would (a redirect, a body without end).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{ADMIN_TOKEN, SOURCE_TOKEN, binary, free_port, http_client, wait_until};

mod bounds;
mod callbacks;
mod leaks;

/// A TCP relay to a server that can be cut: from then on its port refuses connections and the
/// connections it carried are closed, as when the server becomes unreachable.
pub struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => return,
                    },
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Relay { addr, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut(&self) {
        self.stop.cancel();
    }
}

/// What a [`Canned`] server answers.
#[derive(Clone)]
pub enum Answer {
    /// `200` with this body.
    Text(&'static str),
    /// A `302` to this location.
    Redirect(String),
    /// `200` with a body that does not end (chunked), or that declares this many bytes.
    Endless { declared: Option<u64> },
}

/// A bare HTTP/1.1 server that answers every request as `answer` says for its request line,
/// records each request's head, and counts the body bytes it managed to write.
pub struct Canned {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<Mutex<u64>>,
}

/// The most an endless answer writes before it gives up on the reader.
const ENDLESS_LIMIT: u64 = 256 * 1024 * 1024;

impl Canned {
    pub async fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(Mutex::new(0));
        let answer = Arc::new(answer);
        let (seen, count) = (Arc::clone(&heads), Arc::clone(&written));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, count, answer) =
                    (Arc::clone(&seen), Arc::clone(&count), Arc::clone(&answer));
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head.clone());
                    let request_line = head.lines().next().unwrap_or_default().to_owned();
                    let sent = respond(&mut stream, answer(&request_line)).await;
                    *count.lock().unwrap() += sent;
                });
            }
        });
        Canned {
            addr,
            heads,
            written,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The heads of the requests received (request line and headers), oldest first.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Body bytes written so far, over every answer.
    pub fn written(&self) -> u64 {
        *self.written.lock().unwrap()
    }
}

/// The request's head; its body (a form at most) is read as far as it has arrived and ignored.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buffer).into_owned())
}

/// Writes the answer; returns how many body bytes went out before the reader hung up.
async fn respond(stream: &mut TcpStream, answer: Answer) -> u64 {
    let head = match &answer {
        Answer::Text(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
        Answer::Redirect(location) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        ),
        Answer::Endless {
            declared: Some(len),
        } => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\
             Connection: close\r\n\r\n"
        ),
        Answer::Endless { declared: None } => {
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_owned()
        }
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let Answer::Endless { declared } = answer else {
        return 0;
    };
    let piece = vec![b' '; 64 * 1024];
    let mut sent = 0u64;
    while sent < ENDLESS_LIMIT {
        let written = match declared {
            Some(_) => stream.write_all(&piece).await,
            None => {
                let framed = [
                    format!("{:x}\r\n", piece.len()).into_bytes(),
                    piece.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat();
                stream.write_all(&framed).await
            }
        };
        if written.is_err() {
            break;
        }
        sent += piece.len() as u64;
    }
    sent
}

/// A `vod-purge serve` process with JSON logs, its standard error collected as it comes.
pub struct Served {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `serve` with `vod` as its `[vod]` table's extra keys and exactly the variables
    /// `env`; waits until it answers `/healthz`.
    pub async fn start(dir: &Path, vod: &str, env: &[(&str, String)]) -> Served {
        let mut served = Served::spawn(dir, vod, env);
        let http = http_client();
        let url = format!("{}/healthz", served.base);
        let started = std::time::Instant::now();
        while http.get(&url).send().await.is_err() {
            assert!(
                served.child.try_wait().unwrap().is_none(),
                "the service stopped: {}",
                served.log()
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the service did not start: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        served
    }

    /// Starts `serve` without waiting for it.
    pub fn spawn(dir: &Path, vod: &str, env: &[(&str, String)]) -> Served {
        let port = free_port();
        let db = dir.join("store.db").to_string_lossy().into_owned();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
                 log_format = \"json\"\n\
                 [store]\nurl = \"sqlite://{db}\"\n\
                 [vod]\naccess_key_id = \"\"\naccess_key_secret = \"\"\ntimeout = \"2s\"\n\
                 retry_base = \"50ms\"\nretry_max = \"200ms\"\ncheck_after = \"0s\"\n{vod}\n\
                 [queue]\nquiet = \"50ms\"\nlinger = \"20ms\"\npoll_interval = \"20ms\"\n\
                 [[sources]]\nname = \"cms\"\nauth = \"bearer\"\nsecrets = [\"{SOURCE_TOKEN}\"]\n\
                 format = \"native\"\n"
            ),
        )
        .unwrap();
        let mut child = binary()
            .args(["serve", "--config"])
            .arg(&config)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Everything the process has written to its log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `text`.
    pub async fn wait_for_log(&self, text: &str) {
        wait_until(Duration::from_secs(20), text, || async {
            self.log().contains(text)
        })
        .await;
    }

    /// Waits for the process to end by itself; returns whether it succeeded.
    pub async fn ended(&mut self) -> bool {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the process did not end: {}", self.log());
    }

    pub async fn webhook(&self, ids: &[&str]) {
        let response = http_client()
            .post(format!("{}/webhooks/cms", self.base))
            .bearer_auth(SOURCE_TOKEN)
            .json(&serde_json::json!({ "media_ids": ids }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> String {
        let mut request = http_client().get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().text().await.unwrap()
    }

    /// Everything the service shows: `/jobs` and each job, `/queue`, `/metrics`, the status
    /// page's data, `/readyz` (open and as the admin), and its log.
    pub async fn everything_shown(&self) -> String {
        let admin = Some(ADMIN_TOKEN);
        let jobs = self.get("/jobs?limit=100", admin).await;
        let mut shown = vec![jobs.clone()];
        let page: serde_json::Value = serde_json::from_str(&jobs).unwrap_or_default();
        for job in page["jobs"].as_array().into_iter().flatten() {
            let id = job["id"].as_str().unwrap_or_default();
            shown.push(self.get(&format!("/jobs/{id}"), admin).await);
        }
        for (path, token) in [
            ("/queue", admin),
            ("/metrics", None),
            ("/ui/status.json", admin),
            ("/readyz", None),
            ("/readyz", admin),
        ] {
            shown.push(self.get(path, token).await);
        }
        shown.push(self.log());
        shown.join("\n")
    }

    /// The first failed attempt's error text in `/jobs`, once there is one.
    pub async fn wait_for_job_error(&self, containing: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            let jobs = self.get("/jobs?limit=100", Some(ADMIN_TOKEN)).await;
            let page: serde_json::Value = serde_json::from_str(&jobs).unwrap_or_default();
            let message = page["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|j| j["error"]["message"].as_str())
                .find(|m| m.contains(containing))
                .map(str::to_owned);
            if let Some(message) = message {
                return message;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no job error with {containing:?}: {jobs}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails when `shown` holds any of `secrets` (each with a name for the message).
pub fn assert_none_shown(shown: &str, secrets: &[(&str, String)]) {
    assert!(!shown.is_empty());
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what} is empty");
        if let Some(at) = shown.find(secret.as_str()) {
            let start = shown[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            let end = (at + secret.len() + 200).min(shown.len());
            panic!(
                "{what} ({secret}) is shown: …{}…",
                shown.get(start..end).unwrap_or(&shown[at..])
            );
        }
    }
}
