//! The simulator's gateway fed arbitrary and correctly signed requests over HTTP.

use super::*;

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
/// Sends a request to the simulator's gateway; it must answer in JSON with a request ID, and
/// not with a server error. Returns the answer's `Code` (empty when it has none).
fn send(method: &str, query: &str, content_type: Option<&str>, body: Vec<u8>) -> String {
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
    value["Code"].as_str().unwrap_or_default().to_owned()
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
        let code = if post {
            send("POST", "", Some("application/x-www-form-urlencoded"), encode(&params).into_bytes())
        } else {
            send("GET", &encode(&params), None, Vec::new())
        };
        // Whatever else is wrong with the request (a parameter missing or out of range), the
        // client's signature of it matches the simulator's, which is written apart from it.
        prop_assert!(code != "SignatureDoesNotMatch", "{code} for {params:?}");
    }
}
