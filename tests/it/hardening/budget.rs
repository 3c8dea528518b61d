//! The budget of failures per client address refuses strangers, never a sender that
//! authenticates; one address cannot hold every unauthenticated read; the client behind trusted
//! proxies is the one the proxies named (every `X-Forwarded-For` line, or `Forwarded`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::support::TestApp;

/// The GitHub-style HMAC source `gh`, the unauthenticated source `open` and VOD's event
/// notifications `vod`, besides the bearer source `cms` of the test settings.
const SOURCES: &str = "[[sources]]\nname = \"gh\"\nauth = \"hmac\"\nsecrets = [\"gh-webhook-secret\"]\n\
     header = \"X-Hub-Signature-256\"\nprefix = \"sha256=\"\nformat = \"native\"\n\
     [[sources]]\nname = \"open\"\nauth = \"none\"\nformat = \"native\"\n\
     [[sources]]\nname = \"vod\"\nauth = \"vod-callback\"\nsecrets = [\"vod-key\"]\n\
     callback_url = \"https://cms.example.com/webhooks/vod\"\nformat = \"vod-events\"\n";

async fn app_with(server: &str) -> TestApp {
    spawn_app(Spawn {
        extra: format!("[server]\n{server}\n{SOURCES}"),
        ..Spawn::default()
    })
    .await
}

/// A request to source `cms` with `token`, through the `X-Forwarded-For` lines `forwarded`.
async fn bearer(app: &TestApp, token: &str, forwarded: &[&str], ids: &[&str]) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/webhooks/cms", app.address))
        .bearer_auth(token)
        .json(&json!({ "media_ids": ids }));
    for line in forwarded {
        request = request.header("X-Forwarded-For", *line);
    }
    request.send().await.unwrap()
}

/// A delivery to source `gh`, signed (or not) over its body.
async fn signed(app: &TestApp, valid: bool, forwarded: &[&str], ids: &[&str]) -> reqwest::Response {
    let body = serde_json::to_vec(&json!({ "media_ids": ids })).unwrap();
    let signature = if valid {
        github_signature(&body)
    } else {
        github_signature(b"another body")
    };
    let mut request = app
        .http
        .post(format!("{}/webhooks/gh", app.address))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body);
    for line in forwarded {
        request = request.header("X-Forwarded-For", *line);
    }
    request.send().await.unwrap()
}

/// Failures from one client in a row: far enough past the burst (20) that the client is still
/// refused after them however slowly they go (60 at 5 per second is 8 s of excess).
const FAILURES: usize = 60;

async fn answer(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Behind an ingress that is not in `server.trusted_proxies`, every request comes from its
/// address (here 127.0.0.1): strangers' failures are refused, the real senders never are.
#[tokio::test]
async fn strangers_behind_an_unlisted_ingress_do_not_lock_out_the_senders() {
    let app = app_with("").await;
    let mut statuses = Vec::new();
    for _ in 0..FAILURES {
        statuses.push(answer(bearer(&app, "wrong-token", &[], &["x"]).await).await);
    }
    assert!(
        statuses[..20].iter().all(|(s, _)| *s == 401),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().unwrap(),
        &(429, "too_many_failures".to_owned()),
        "the strangers are refused: {statuses:?}"
    );
    for _ in 0..25 {
        assert_eq!(signed(&app, false, &[], &["x"]).await.status(), 429);
    }
    // The address is over its budget; the senders behind it are not refused.
    assert_eq!(
        bearer(&app, SOURCE_TOKEN, &[], &["bearer-1"])
            .await
            .status(),
        202
    );
    assert_eq!(signed(&app, true, &[], &["signed-1"]).await.status(), 202);
    let open = app
        .http
        .post(format!("{}/webhooks/open", app.address))
        .json(&json!({"media_ids": ["open-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 202);
    assert_eq!(
        app.purge(json!({"media_ids": ["admin-1"]})).await.status(),
        202,
        "the admin token"
    );
    // VOD's signature, md5("<callback url>|<timestamp>|<key>"), written out here.
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = {
        use md5::Digest;
        let text = format!("https://cms.example.com/webhooks/vod|{timestamp}|vod-key");
        hex::encode(md5::Md5::digest(text.as_bytes()))
    };
    let vod = app
        .http
        .post(format!("{}/webhooks/vod", app.address))
        .header("X-VOD-TIMESTAMP", &timestamp)
        .header("X-VOD-SIGNATURE", signature)
        .json(&json!({"EventType": "NotAPurge", "VideoId": "vod-1", "Status": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(vod.status(), 200, "a vod-callback delivery");
    // ... and the strangers still are.
    let (status, code) = answer(bearer(&app, "wrong-token", &[], &["x"]).await).await;
    assert_eq!((status, code.as_str()), (429, "too_many_failures"));
    app.stop().await;
}

/// A CMS that sends deliveries without a media ID (content without a video) gets `422` for
/// each, and its next valid delivery is stored: its own mistakes are not failures to count.
#[tokio::test]
async fn a_senders_own_refused_deliveries_do_not_count_against_it() {
    let app = app_with("").await;
    for _ in 0..25 {
        let (status, code) = answer(bearer(&app, SOURCE_TOKEN, &[], &[]).await).await;
        assert_eq!((status, code.as_str()), (422, "no_usable_ids"));
        let (status, code) = answer(signed(&app, true, &[], &[]).await).await;
        assert_eq!((status, code.as_str()), (422, "no_usable_ids"));
    }
    assert_eq!(
        bearer(&app, SOURCE_TOKEN, &[], &["after-422"])
            .await
            .status(),
        202
    );
    assert_eq!(
        signed(&app, true, &[], &["after-422-signed"])
            .await
            .status(),
        202
    );
    // Nor did they use up the address's budget for a stranger's first failures.
    assert_eq!(bearer(&app, "wrong-token", &[], &["x"]).await.status(), 401);
    app.stop().await;
}

/// Failures past the budget lengthen the refusal: 100 at once from one address are refused for
/// about (100 - 20) / 5 = 16 s, not until the next token (200 ms).
#[tokio::test]
async fn a_refusal_lasts_in_proportion_to_the_excess() {
    let app = app_with("").await;
    let mut last = None;
    for _ in 0..100 {
        last = Some(bearer(&app, "wrong-token", &[], &["x"]).await);
    }
    let last = last.unwrap();
    assert_eq!(last.status(), 429);
    let retry_after: u64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (5..=17).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    app.stop().await;
}

/// Headers and one byte of a 1,000-byte body to source `gh` from `client` (through the
/// trusted proxy 127.0.0.1), then nothing. Counts an answer (it was turned away) in
/// `answered`.
async fn stall(port: u16, client: &str, answered: Arc<AtomicUsize>) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /webhooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Forwarded-For: {client}\r\nX-Hub-Signature-256: sha256=00\r\n\
         Content-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    if answer.starts_with(b"HTTP/1.1 ") {
        answered.fetch_add(1, Ordering::SeqCst);
    }
}

/// 300 connections from one address stall mid-body on an HMAC source: they hold at most a share
/// of the 256 unauthenticated reads, so the real sender's signed deliveries, from another
/// address, are all read and stored; and the stranger's `503`s are not counted as failures.
#[tokio::test]
async fn stalled_reads_from_one_address_do_not_turn_another_away() {
    let app = app_with("trusted_proxies = [\"127.0.0.1/32\"]\nbody_timeout = \"60s\"").await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let stalls: Vec<_> = (0..300)
        .map(|_| tokio::spawn(stall(port, "203.0.113.66", answered.clone())))
        .collect();
    // Once 300 - 256 stalls have been turned away, the others are being read: with one cap for
    // all addresses, every read would be held now.
    wait_until(
        Duration::from_secs(20),
        "the stalls past the cap answered",
        || {
            let answered = answered.clone();
            async move { answered.load(Ordering::SeqCst) >= 300 - 256 }
        },
    )
    .await;
    let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
    for n in 0..10 {
        let id = format!("during-the-stall-{n}");
        let asked = Instant::now();
        let response = signed(&app, true, &["198.51.100.1"], &[id.as_str()]).await;
        slowest = slowest.max(asked.elapsed());
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202; 10], "the real sender's deliveries");
    // The stranger holds at most half of the reads: the rest of its stalls were turned away.
    wait_until(Duration::from_secs(20), "one address's share", || {
        let answered = answered.clone();
        async move { answered.load(Ordering::SeqCst) >= 300 - 128 }
    })
    .await;
    println!(
        "300 stalls from one address: {} turned away; the real sender's 10 deliveries: {statuses:?}, the slowest in {slowest:?}",
        answered.load(Ordering::SeqCst)
    );
    // Its hundreds of 503s did not use up its budget: its next failure is a plain 401.
    let (status, code) = answer(bearer(&app, "wrong-token", &["203.0.113.66"], &["x"]).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    for stall in stalls {
        stall.abort();
    }
    app.stop().await;
}

/// Behind an ingress nobody listed in `trusted_proxies`, every request comes from its address:
/// 60 connections of one client stall mid-body (more than one address's share of the reads),
/// and the real sender behind the same ingress, named by the ingress in its last hop, is still
/// read and stored.
#[tokio::test]
async fn stalled_reads_behind_an_unlisted_ingress_do_not_turn_the_sender_away() {
    let app = app_with("body_timeout = \"60s\"").await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let share = 256 / 8;
    let stalls: Vec<_> = (0..60)
        .map(|_| tokio::spawn(stall(port, "203.0.113.66", answered.clone())))
        .collect();
    // The stalls past the stranger's share are turned away; the others are being read.
    wait_until(Duration::from_secs(20), "the stalls past the share", || {
        let answered = answered.clone();
        async move { answered.load(Ordering::SeqCst) >= 60 - share }
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..10 {
        let id = format!("behind-the-ingress-{n}");
        let response = signed(&app, true, &["198.51.100.1"], &[id.as_str()]).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202; 10], "the real sender's deliveries");
    for stall in stalls {
        stall.abort();
    }
    app.stop().await;
}

/// HAProxy (`option forwardfor`) adds its own `X-Forwarded-For` line after the client's: a
/// stranger who forges the sender's address in the first line spends its own budget.
#[tokio::test]
async fn a_forged_first_forwarded_line_spends_the_strangers_budget() {
    let app = app_with("trusted_proxies = [\"127.0.0.1/32\"]").await;
    let forged = ["198.51.100.1", "203.0.113.66"];
    for _ in 0..FAILURES {
        bearer(&app, "wrong-token", &forged, &["x"]).await;
    }
    let (status, code) = answer(bearer(&app, "wrong-token", &["203.0.113.66"], &["x"]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "too_many_failures"),
        "the stranger"
    );
    let (status, code) = answer(bearer(&app, "wrong-token", &["198.51.100.1"], &["x"]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (401, "invalid_token"),
        "the sender's budget is whole"
    );
    assert_eq!(
        bearer(&app, SOURCE_TOKEN, &["198.51.100.1"], &["real"])
            .await
            .status(),
        202
    );
    // Lines are joined in order: the rightmost untrusted hop of all of them.
    let (status, _) = answer(
        bearer(
            &app,
            "wrong-token",
            &["198.51.100.1, 203.0.113.66", "127.0.0.1"],
            &["x"],
        )
        .await,
    )
    .await;
    assert_eq!(status, 429, "the stranger, behind two proxies");
    app.stop().await;
}

/// A hop that is not a plain address ends the walk and is the client, under a key of its own:
/// neither the proxy's (the peer's) nor the forgeable hop left of it.
#[tokio::test]
async fn an_unparsable_hop_is_a_client_of_its_own() {
    let app = app_with("trusted_proxies = [\"127.0.0.1/32\"]").await;
    // (the hop the strangers come through, another request with the same client)
    let table = [
        ("unknown", "unknown"),
        ("1.2.3.4:5678", "1.2.3.4"),
        ("[2001:db8::1]", "2001:db8::1"),
    ];
    for (hop, same) in table {
        for _ in 0..FAILURES {
            let line = format!("198.51.100.1, {hop}");
            bearer(&app, "wrong-token", &[line.as_str()], &["x"]).await;
        }
        let (status, _) = answer(bearer(&app, "wrong-token", &[same], &["x"]).await).await;
        assert_eq!(status, 429, "{hop}: the same client");
        let (status, _) = answer(bearer(&app, "wrong-token", &[], &["x"]).await).await;
        assert_eq!(status, 401, "{hop}: not the proxy's budget");
        let (status, _) =
            answer(bearer(&app, "wrong-token", &["198.51.100.1"], &["x"]).await).await;
        assert_eq!(status, 401, "{hop}: not the hop left of it");
    }
    app.stop().await;
}

/// With `server.forwarded_header = "forwarded"` the client is read from RFC 7239's `for=`
/// (every line, quoted IPv6 with a port, obfuscated names), and `X-Forwarded-For` is ignored.
#[tokio::test]
async fn the_forwarded_header_names_the_client_when_configured() {
    let app =
        app_with("trusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"forwarded\"").await;
    let request = |token: &'static str, header: &'static str, lines: &'static [&'static str]| {
        let mut request = app
            .http
            .post(format!("{}/webhooks/cms", app.address))
            .bearer_auth(token)
            .json(&json!({"media_ids": ["x"]}));
        for line in lines {
            request = request.header(header, *line);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let forged: &[&str] = &[
        "for=198.51.100.1",
        "for=\"[2001:db8:cafe::17]:4711\";proto=https",
    ];
    for _ in 0..FAILURES {
        request("wrong-token", "Forwarded", forged).await;
    }
    assert_eq!(
        request("wrong-token", "Forwarded", &["for=\"[2001:db8:cafe::99]\""]).await,
        429
    );
    assert_eq!(
        request("wrong-token", "Forwarded", &["for=198.51.100.1"]).await,
        401
    );
    assert_eq!(
        request("wrong-token", "X-Forwarded-For", &["2001:db8:cafe::17"]).await,
        401
    );
    assert_eq!(request(SOURCE_TOKEN, "Forwarded", forged).await, 202);
    for _ in 0..FAILURES {
        request("wrong-token", "Forwarded", &["for=6.6.6.6, for=_hidden"]).await;
    }
    assert_eq!(
        request("wrong-token", "Forwarded", &["for=_hidden"]).await,
        429
    );
    assert_eq!(
        request("wrong-token", "Forwarded", &["for=6.6.6.6"]).await,
        401
    );
    app.stop().await;
}

/// A request with `X-Forwarded-For` from a peer that is not a trusted proxy means an ingress
/// nobody listed: one warning, once per process, whether the request authenticates or not. And
/// a client over its budget does not write a warning per refused request.
#[tokio::test]
async fn an_unlisted_proxy_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path(), "").await;
    let http = http_client();
    let post = |body: Vec<u8>, signature: String, n: usize| {
        http.post(format!("{base}/webhooks/gh"))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .header("X-Forwarded-For", format!("198.51.100.{n}"))
            .body(body)
            .send()
    };
    for n in 0..3 {
        let body = serde_json::to_vec(&json!({ "media_ids": [format!("valid-{n}")] })).unwrap();
        let response = post(body.clone(), github_signature(&body), n)
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let mut statuses = Vec::new();
    for n in 0..FAILURES {
        let response = post(b"{}".to_vec(), github_signature(b"[]"), n)
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..20], [401; 20]);
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    child.kill().unwrap();
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |text: &str| lines.iter().position(|l| l.contains(text));
    let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("not in server.trusted_proxies"), 1, "{stderr}");
    assert!(
        stderr.contains("from 127.0.0.1"),
        "the peer is named: {stderr}"
    );
    assert!(
        at("not in server.trusted_proxies") < at("webhook refused"),
        "reported for the valid deliveries: {stderr}"
    );
    let answered_401 = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(count("webhook refused"), answered_401, "{stderr}");
}
