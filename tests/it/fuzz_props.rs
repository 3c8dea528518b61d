//! Fuzz targets (proptest): configuration parsing, and the simulator's gateway fed arbitrary and
//! correctly signed requests over HTTP. None may panic. `bench/drills/fuzz.sh` runs them with
//! many more cases (`PROPTEST_CASES`); `cargo test` runs a few.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use vod_purge::config::Settings;
use vod_purge::sim::{self, SimConfig, SimHandle};
use vod_purge::vod::signing;

/// Cases per target: `PROPTEST_CASES`, or `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VALID_CONFIGS: [&str; 3] = [
    include_str!("../../config/default.toml"),
    include_str!("../../docker/config.toml"),
    r#"
[server]
listen = "127.0.0.1:8080"
admin_token = "t"
[store]
url = "sqlite://data/x.db"
[vod]
endpoint = "http://127.0.0.1:9000"
timeout = "2s"
retry_base = "50ms"
retry_max = "200ms"
[queue]
quiet = "200ms"
max_wait = "5s"
lease = "10s"
[[sources]]
name = "cms"
auth = "hmac"
secrets = ["s"]
header = "X-Signature"
prefix = "sha256="
format = "json-pointer"
pointers = ["/data/id", "/items/*/video"]
rate_limit = 10
[[sources]]
name = "strapi"
auth = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
format = "strapi"
id_field = "video_id"
"#,
];

/// Values a mutation may put in place of a key's value.
const VALUES: [&str; 30] = [
    "0",
    "-1",
    "1",
    "50",
    "51",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "nan",
    "true",
    "\"\"",
    "\"0s\"",
    "\"1ms\"",
    "\"18446744073709551615s\"",
    "\"584942417355y\"",
    "\"99999999999999999999h\"",
    "\"-1s\"",
    "\"2s\"",
    "\"x\"",
    "\"(\"",
    "\"[\"",
    "\"sqlite://\"",
    "\"postgres://\"",
    "\"http://\"",
    "\"ftp://x\"",
    "\"\\u0000\"",
    "[]",
    "[\"a\", \"a\"]",
    "{}",
    "{ a = 1 }",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceValue(usize, usize),
    InsertLine(usize, String),
    Uncomment(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        (any::<usize>(), "[a-z_\\[\\]=\" .0-9]{0,30}")
            .prop_map(|(l, t)| Mutation::InsertLine(l, t)),
        any::<usize>().prop_map(Mutation::Uncomment),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Mutation::ReplaceValue(i, v) => {
                // The line-th line that has a value.
                let with_value: Vec<usize> = (0..n).filter(|&j| lines[j].contains('=')).collect();
                if let Some(&j) = with_value.get(i % with_value.len().max(1)) {
                    let key = lines[j].split('=').next().unwrap_or_default().to_owned();
                    lines[j] = format!("{key}= {}", VALUES[*v]);
                }
            }
            Mutation::InsertLine(i, t) => lines.insert(i % (n + 1), t.clone()),
            Mutation::Uncomment(i) => {
                let j = i % n;
                lines[j] = lines[j].trim_start_matches(['#', ' ']).to_owned();
            }
            Mutation::Truncate(i) => {
                let j = i % n;
                let cut = lines[j].len() / 2;
                lines[j] = lines[j].chars().take(cut).collect();
            }
        }
    }
    lines.join("\n")
}

/// Everything a loaded configuration feeds, exercised; none of it may panic.
fn use_settings(text: &str) {
    match Settings::from_toml(text) {
        Ok(settings) => {
            let _ = settings.validate();
            let _ = settings.to_redacted_toml();
            let _ = settings.store.url.to_string();
            let _ = settings.vod_base_url();
            for source in &settings.sources {
                let _ = vod_purge::webhook::Source::new(source);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn config_from_arbitrary_text(text in any::<String>()) {
        use_settings(&text);
    }

    #[test]
    fn config_from_toml_like_text(text in "(\\[{1,2}[a-z_]{0,8}\\]{1,2}\n|[a-z_]{1,12} = (\"[a-z0-9:/. ]{0,12}\"|[0-9-]{1,22}|true|\\[\\])\n){0,12}") {
        use_settings(&text);
    }

    /// A complete, valid file with one to three values replaced by extreme or odd ones, so that
    /// the checks after the first failing one are reached too.
    #[test]
    fn config_with_extreme_values(
        replacements in proptest::collection::vec((any::<usize>(), 0..VALUES.len()), 1..4),
    ) {
        let mutations: Vec<Mutation> = replacements
            .into_iter()
            .map(|(line, value)| Mutation::ReplaceValue(line, value))
            .collect();
        use_settings(&mutate(VALID_CONFIGS[2], &mutations));
    }

    #[test]
    fn config_from_mutated_valid_files(
        which in 0..VALID_CONFIGS.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        use_settings(&mutate(VALID_CONFIGS[which], &mutations));
    }
}

/// One simulator and runtime for every case of the gateway targets.
fn sim() -> &'static (tokio::runtime::Runtime, SimHandle, reqwest::Client) {
    static SIM: OnceLock<(tokio::runtime::Runtime, SimHandle, reqwest::Client)> = OnceLock::new();
    SIM.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.block_on(async {
            sim::start(SimConfig {
                qps: 1_000_000,
                max_recorded_calls: 16,
                nonexistent: vec!["gone".to_owned()],
                ..SimConfig::default()
            })
            .await
            .unwrap()
        });
        (rt, handle, crate::support::http_client())
    })
}

/// Sends one request to the simulator's RPC endpoint; the answer must be JSON with a status the
/// gateway uses (never a 5xx other than the injected or 503 throttling ones).
fn send(method: &str, query: &str, content_type: Option<&str>, body: Vec<u8>) {
    let (rt, handle, http) = sim();
    let url = format!("{}/?{query}", handle.base_url());
    let (status, text) = rt.block_on(async {
        let mut req = match method {
            "POST" => http.post(&url),
            _ => http.get(&url),
        };
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.expect("the simulator answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    });
    assert!(status < 500 || status == 503, "{status}: {text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("a JSON answer");
    assert!(value.get("RequestId").is_some(), "{text}");
}

fn encode(params: &BTreeMap<String, String>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

fn param_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name = prop_oneof![
        proptest::sample::select(vec![
            "Action",
            "Version",
            "Format",
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
            "MediaIds",
            "TaskType",
            "Formats",
            "StreamType",
            "Definitions",
            "ResultType",
            "SliceFlag",
            "SliceCount",
            "UserData",
            "MediaRefreshJobId",
            "SecurityToken",
            "RegionId",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z]{1,10}",
    ];
    let value = prop_oneof![
        any::<String>(),
        proptest::sample::select(vec![
            "RefreshMediaPlayUrls",
            "GetMediaRefreshJobs",
            "DescribeVodRefreshQuota",
            "2017-03-21",
            "JSON",
            "XML",
            "HMAC-SHA1",
            "1.0",
            "testid",
            "Refresh",
            "Preload",
            "mp4,m3u8",
            "video",
            "Single",
            "Multiple",
            "true",
            "0",
            "-1",
            "99999999999",
            "a,b,,c",
            "gone",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9,]{0,300}",
    ];
    proptest::collection::btree_map(name, value, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn sim_gateway_arbitrary_requests(
        query in any::<String>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        post in any::<bool>(),
        form in any::<bool>(),
    ) {
        let query: String = form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
            .replace("%3D", "=").replace("%26", "&");
        let ct = form.then_some("application/x-www-form-urlencoded");
        send(if post { "POST" } else { "GET" }, &query, ct, body);
    }

    /// Correctly signed requests, so that the checks after the signature (nonce, parameters,
    /// the actions) see arbitrary values too.
    #[test]
    fn sim_gateway_signed_requests(
        mut params in param_strategy(),
        fresh in any::<bool>(),
        post in any::<bool>(),
        nonce in any::<u64>(),
    ) {
        for (k, v) in [
            ("Action", "RefreshMediaPlayUrls"),
            ("Version", "2017-03-21"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ] {
            params.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
        if fresh {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            params.insert("Timestamp".to_owned(), format!("{}Z", &now[..19]));
            params.insert("SignatureNonce".to_owned(), format!("{nonce:x}-{}", uuid::Uuid::new_v4()));
        }
        params.remove("Signature");
        let method = if post { "POST" } else { "GET" };
        let signature = signing::sign(method, &params, "testsecret");
        params.insert("Signature".to_owned(), signature);
        if post {
            send("POST", "", Some("application/x-www-form-urlencoded"), encode(&params).into_bytes());
        } else {
            send("GET", &encode(&params), None, Vec::new());
        }
    }
}

/// What the stand-in answers: HTTP status, `x-acs-retry-after` header, body.
type Answer = (u16, Option<String>, Vec<u8>);

/// A stand-in for VOD that answers every request with the status, header and body set for the
/// current case, so that the client's response parsing sees arbitrary answers.
struct FakeVod {
    rt: tokio::runtime::Runtime,
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    client: vod_purge::vod::Client,
}

fn fake_vod() -> &'static FakeVod {
    static FAKE: OnceLock<FakeVod> = OnceLock::new();
    FAKE.get_or_init(|| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let answer = std::sync::Arc::new(std::sync::Mutex::new((200, None, Vec::new())));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = answer.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    // Read the request head (the client sends a GET with a query and no body).
                    let mut buf = vec![0u8; 65536];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let (status, retry_after, body) = shared.lock().unwrap().clone();
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    if let Some(v) = retry_after {
                        head.push_str(&format!("x-acs-retry-after: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        let client = vod_purge::vod::Client::new(vod_purge::vod::ClientConfig {
            endpoint: format!("http://{addr}"),
            timeout: std::time::Duration::from_secs(5),
            credentials: vod_purge::vod::Credentials::new("testid", "testsecret", None).into(),
        })
        .unwrap();
        FakeVod { rt, answer, client }
    })
}

fn vod_body() -> impl Strategy<Value = Vec<u8>> {
    let field = proptest::sample::select(vec![
        "RequestId",
        "MediaRefreshJobId",
        "NonExistMediaIds",
        "ForbiddenMediaIds",
        "Code",
        "Message",
        "HostId",
        "Recommend",
        "code",
        "message",
    ]);
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        "[a-z0-9,]{0,40}".prop_map(serde_json::Value::from),
        proptest::collection::vec("[a-z0-9]{0,8}", 0..4).prop_map(|v| serde_json::json!(v)),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::btree_map(field, value, 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// The client's parsing of VOD answers: any status, `x-acs-retry-after` and body gives a
    /// result or a typed error, never a panic.
    #[test]
    fn vod_client_parses_arbitrary_answers(
        status in prop_oneof![Just(200u16), Just(400u16), Just(403u16), Just(429u16), Just(500u16), Just(503u16), 200u16..600],
        retry_after in proptest::option::of(prop_oneof!["[0-9]{1,25}", "[ -~]{0,10}"]),
        body in vod_body(),
    ) {
        let fake = fake_vod();
        *fake.answer.lock().unwrap() = (status, retry_after, body);
        let request = vod_purge::vod::RefreshRequest::new(
            vec!["m1".to_owned(), "m2".to_owned()],
            vod_purge::domain::TaskType::Refresh,
        );
        match fake.rt.block_on(fake.client.refresh_media_play_urls(&request)) {
            Ok(_) => prop_assert!((200..300).contains(&status)),
            Err(e) => {
                let _ = (e.class(), e.code(), e.message(), e.request_id(), e.retry_after());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
