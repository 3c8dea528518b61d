//! The gateway: SDK requests accepted, signatures, replays, timestamps, refusals, parameters.

#[allow(unused_imports)]
use super::*;

#[tokio::test]
async fn captured_sdk_requests_are_accepted() {
    let vectors = vectors();
    let sts_tokens: Vec<String> = vectors
        .iter()
        .filter(|v| v.params["AccessKeyId"] == "STS.NTx7example")
        .map(|v| v.params["SecurityToken"].clone())
        .collect();
    assert_eq!(sts_tokens.len(), 2);
    let cfg = SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account::sts("STS.NTx7example", "testsecret", sts_tokens),
        ],
        ..SimConfig::default()
    };
    let sim = sim::start(cfg).await.unwrap();
    let mut replayed = 0;
    for v in vectors.iter().filter(|v| v.wire.is_some()) {
        let wire = v.wire.as_ref().unwrap();
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let at = time::PrimitiveDateTime::parse(&v.params["Timestamp"], &format)
            .unwrap()
            .assume_utc();
        sim.set_clock(Some(at.unix_timestamp()));
        let mut req = http()
            .request(
                Method::from_bytes(v.method.as_bytes()).unwrap(),
                format!("{}{}", sim.base_url(), wire.url_path),
            )
            .body(wire.body.clone());
        if let Some(ct) = &wire.content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{}: {body}", v.name);
        replayed += 1;

        let call = sim.calls().pop().unwrap();
        assert_eq!(
            call.params, v.params,
            "{}: the simulator decoded other parameters",
            v.name
        );
        assert_eq!(call.status, 200);
    }
    assert_eq!(replayed, 7);
    sim.stop().await;
}

#[tokio::test]
async fn a_captured_request_with_one_byte_changed_is_refused() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "refresh-post-formbody-legacy-sdk")
        .unwrap();
    let wire = v.wire.unwrap();
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_clock(Some(1_736_930_025)); // 2025-01-15T08:33:45Z
    let body = wire.body.replace("100%25", "101%25");
    let resp = http()
        .post(format!("{}{}", sim.base_url(), wire.url_path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    sim.stop().await;
}

#[tokio::test]
async fn wrong_secret_gets_signature_does_not_match_with_the_server_string() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let params = refresh_params(&["a1"], now_secs());
    let answer = send_url(
        "POST",
        &signed_url(&sim, "POST", &params, Some("wrongsecret")),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "SignatureDoesNotMatch")
    );
    assert_eq!(answer.content_type, "application/json;charset=utf-8");
    let message = answer.body["Message"].as_str().unwrap();
    let want = format!(
        "Specified signature is not matched with our calculation. server string to sign is:{}",
        string_to_sign("POST", &params)
    );
    assert_eq!(message, want);
    for field in ["RequestId", "HostId", "Recommend"] {
        assert!(
            answer.body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_a_bad_signature_does_not_burn_it() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let params = refresh_params(&["a1"], now_secs());
    let forged = send_url("POST", &signed_url(&sim, "POST", &params, Some("nope"))).await;
    assert_eq!(forged.code(), "SignatureDoesNotMatch");
    let url = signed_url(&sim, "POST", &params, Some("testsecret"));
    let first = send_url("POST", &url).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = send_url("POST", &url).await;
    assert_eq!((again.status, again.code()), (400, "SignatureNonceUsed"));
    sim.stop().await;
}

#[tokio::test]
async fn timestamps_must_be_fresh_and_well_formed() {
    let sim = fixed_sim(SimConfig::default()).await;
    let stale = send(&sim, "POST", &refresh_params(&["a1"], T0 - 16 * 60)).await;
    assert_eq!(
        (stale.status, stale.code()),
        (400, "InvalidTimeStamp.Expired")
    );
    let future = send(&sim, "POST", &refresh_params(&["a1"], T0 + 16 * 60)).await;
    assert_eq!(future.code(), "InvalidTimeStamp.Expired");
    let edge = send(&sim, "POST", &refresh_params(&["a1"], T0 - 15 * 60)).await;
    assert_eq!(edge.status, 200, "{}", edge.body);
    let mut params = refresh_params(&["a1"], T0);
    params.insert("Timestamp".to_owned(), "2025-01-15 08:30:00".to_owned());
    assert_eq!(
        send(&sim, "POST", &params).await.code(),
        "InvalidTimeStamp.Format"
    );
    sim.stop().await;
}

#[tokio::test]
async fn gateway_refusals() {
    let cfg = SimConfig {
        accounts: vec![
            Account::new("testid", "testsecret"),
            Account::sts("STS.k", "testsecret", vec!["tok".to_owned()]),
        ],
        ..SimConfig::default()
    };
    let sim = fixed_sim(cfg).await;
    let base = refresh_params(&["a1"], T0);
    let with = |name: &str, value: Option<&str>| {
        let mut p = base.clone();
        p.insert(
            "SignatureNonce".to_owned(),
            uuid::Uuid::new_v4().to_string(),
        );
        match value {
            Some(v) => p.insert(name.to_owned(), v.to_owned()),
            None => p.remove(name),
        };
        p
    };
    let cases = [
        (with("Action", None), 400, "MissingParameter"),
        (with("Timestamp", None), 400, "MissingParameter"),
        (with("SignatureNonce", None), 400, "IncompleteSignature"),
        (
            with("Action", Some("DeleteEverything")),
            404,
            "InvalidAction.NotFound",
        ),
        (
            with("AccessKeyId", Some("nobody")),
            404,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            with("AccessKeyId", Some("STS.k")),
            400,
            "MissingSecurityToken",
        ),
        (with("Version", Some("2014-05-26")), 400, "InvalidVersion"),
        (
            with("SignatureMethod", Some("HMAC-SHA256")),
            400,
            "InvalidSignatureMethod",
        ),
    ];
    for (params, status, code) in cases {
        let answer = send(&sim, "POST", &params).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{params:?}");
    }
    let unsigned = send_url("POST", &signed_url(&sim, "POST", &base, None)).await;
    assert_eq!(unsigned.code(), "IncompleteSignature");
    let mut sts = with("AccessKeyId", Some("STS.k"));
    sts.insert("SecurityToken".to_owned(), "other".to_owned());
    assert_eq!(
        send(&sim, "POST", &sts).await.code(),
        "InvalidSecurityToken.MismatchWithAccessKey"
    );
    sts.insert("SecurityToken".to_owned(), "tok".to_owned());
    assert_eq!(send(&sim, "POST", &sts).await.status, 200);
    let lower = with("Format", Some("json"));
    assert_eq!(send(&sim, "GET", &lower).await.status, 200);
    let mut jobs = common("GetMediaRefreshJobs", T0);
    jobs.insert("MediaRefreshJobId".to_owned(), "x".to_owned());
    assert_eq!(
        send(&sim, "POST", &jobs).await.code(),
        "UnsupportedHTTPMethod"
    );
    sim.stop().await;
}

#[tokio::test]
async fn refresh_parameters_are_validated() {
    let sim = fixed_sim(SimConfig::default()).await;
    let twenty_one = ids(21);
    let twenty_one: Vec<&str> = twenty_one.iter().map(String::as_str).collect();
    let over = send(&sim, "POST", &refresh_params(&twenty_one, T0)).await;
    assert_eq!((over.status, over.code()), (400, "InvalidParameter"));
    let twenty = send(&sim, "POST", &refresh_params(&twenty_one[..20], T0)).await;
    assert_eq!(twenty.status, 200, "{}", twenty.body);

    let bad = [
        ("TaskType", "refresh"),
        ("TaskType", "Purge"),
        ("Formats", "mp4,avi"),
        ("StreamType", "subtitle"),
        ("ResultType", "All"),
        ("SliceFlag", "yes"),
        ("SliceCount", "0"),
        ("SliceCount", "21"),
        ("SliceCount", "five"),
        ("UserData", "not json"),
        ("UserData", "[1,2]"),
        ("MediaIds", "a1,,b2"),
    ];
    for (name, value) in bad {
        let mut params = refresh_params(&["a1"], T0);
        params.insert(name.to_owned(), value.to_owned());
        let answer = send(&sim, "POST", &params).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "InvalidParameter"),
            "{name}={value}"
        );
    }
    let good = [
        ("SliceFlag", "TRUE"),
        ("SliceFlag", "False"),
        ("SliceCount", "20"),
        ("Formats", "MP4, m3u8"),
        ("StreamType", "video,audio"),
        ("ResultType", "Multiple"),
        ("UserData", r#"{"Extend":{"a":"b c"}}"#),
        ("MediaIds", "a1, b2"),
    ];
    for (name, value) in good {
        let mut params = refresh_params(&["a1"], T0);
        params.insert(name.to_owned(), value.to_owned());
        let answer = send(&sim, "POST", &params).await;
        assert_eq!(answer.status, 200, "{name}={value}: {}", answer.body);
    }
    let mut missing = refresh_params(&["a1"], T0);
    missing.remove("TaskType");
    assert_eq!(
        send(&sim, "POST", &missing).await.code(),
        "MissingParameter"
    );
    sim.stop().await;
}
