//! STS and the metadata service: issued keys, their expiry, AssumeRole signing, IMDSv2.

#[allow(unused_imports)]
use super::*;

/// A key handed out by the simulator's credentials URI.
async fn issued_key(sim: &SimHandle) -> (String, String, String) {
    let url = format!("{}/_sim/credentials", sim.base_url());
    let body: Value = http().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["Code"], "Success", "{body}");
    let field = |name: &str| body[name].as_str().unwrap().to_owned();
    (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
    )
}

#[tokio::test]
async fn issued_sts_keys_work_until_they_expire_and_only_with_their_token() {
    let sim = fixed_sim(SimConfig {
        sts_lifetime: std::time::Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await;
    let (id, secret, token) = issued_key(&sim).await;
    let (other_id, _, other_token) = issued_key(&sim).await;
    assert_ne!((&id, &token), (&other_id, &other_token));
    let call = |at: i64, token: Option<&str>| {
        let mut params = refresh_params(&["a"], at);
        params.insert("AccessKeyId".to_owned(), id.clone());
        if let Some(token) = token {
            params.insert("SecurityToken".to_owned(), token.to_owned());
        }
        signed_url(&sim, "POST", &params, Some(&secret))
    };
    assert_eq!(send_url("POST", &call(T0, Some(&token))).await.status, 200);
    let table = [
        (T0, None, "MissingSecurityToken"),
        (
            T0,
            Some(other_token.as_str()),
            "InvalidSecurityToken.MismatchWithAccessKey",
        ),
    ];
    for (at, token, code) in table {
        assert_eq!(send_url("POST", &call(at, token)).await.code(), code);
    }
    sim.set_clock(Some(T0 + 60));
    let expired = send_url("POST", &call(T0 + 60, Some(&token))).await;
    assert_eq!(
        (expired.status, expired.code()),
        (400, "InvalidSecurityToken.Expired")
    );
}

/// An STS call's query and form body; `secret` signs both together (Signature 1.0).
pub(super) async fn sts_call(
    sim: &SimHandle,
    query: &BTreeMap<String, String>,
    form: &BTreeMap<String, String>,
    secret: Option<&str>,
) -> Answer {
    let mut query = query.clone();
    if let Some(secret) = secret {
        let mut all = query.clone();
        all.extend(form.clone());
        query.insert("Signature".to_owned(), sign("POST", &all, secret));
    }
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let resp = http()
        .post(format!("{}/sts/?{}", sim.base_url(), encoded.join("&")))
        .form(form)
        .send()
        .await
        .unwrap();
    Answer {
        status: resp.status().as_u16(),
        content_type: String::new(),
        body: resp.json().await.unwrap(),
    }
}

#[tokio::test]
async fn sts_assume_role_is_signed_and_assume_role_with_oidc_is_not() {
    let sim = fixed_sim(SimConfig::default()).await;
    let mut query = common("AssumeRole", T0);
    query.insert("Version".to_owned(), "2015-04-01".to_owned());
    let form: BTreeMap<String, String> = [
        ("RoleArn", "acs:ram::1:role/r"),
        ("RoleSessionName", "session-1"),
        ("DurationSeconds", "900"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let ok = sts_call(&sim, &query, &form, Some("testsecret")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.body["Credentials"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("STS.")
    );
    assert_eq!(ok.body["Credentials"]["Expiration"], iso(T0 + 3600));
    // The form body is signed too: a signature over the query alone does not match.
    let mut query2 = common("AssumeRole", T0);
    query2.insert("Version".to_owned(), "2015-04-01".to_owned());
    let mut only_query = query2.clone();
    only_query.insert("Signature".to_owned(), sign("POST", &query2, "testsecret"));
    let bad = sts_call(&sim, &only_query, &form, None).await;
    assert_eq!(bad.code(), "SignatureDoesNotMatch");

    let oidc_query: BTreeMap<String, String> = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("Timestamp", &iso(T0)),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let mut oidc_form = form.clone();
    oidc_form.insert(
        "OIDCProviderArn".to_owned(),
        "acs:ram::1:oidc-provider/p".to_owned(),
    );
    oidc_form.insert("OIDCToken".to_owned(), "eyJ.t.s".to_owned());
    let ok = sts_call(&sim, &oidc_query, &oidc_form, None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body["OIDCTokenInfo"].is_object());
    let table = [
        ("OIDCToken", "", "MissingParameter"),
        ("DurationSeconds", "100", "InvalidParameter.DurationSeconds"),
        (
            "RoleSessionName",
            "has space",
            "InvalidParameter.RoleSessionName",
        ),
    ];
    for (name, value, code) in table {
        let mut form = oidc_form.clone();
        form.insert(name.to_owned(), value.to_owned());
        assert_eq!(
            sts_call(&sim, &oidc_query, &form, None).await.code(),
            code,
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_metadata_service_enforces_imdsv2_when_told() {
    let sim = sim::start(SimConfig {
        imds: vod_purge::sim::ImdsMode::V2Required,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let base = sim.base_url();
    let role_path = format!("{base}/latest/meta-data/ram/security-credentials/");
    let no_token = http().get(&role_path).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let no_ttl = http()
        .put(format!("{base}/latest/api/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ttl.status(), 400);
    let token = http()
        .put(format!("{base}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |path: String| {
        http()
            .get(path)
            .header("X-aliyun-ecs-metadata-token", token.clone())
            .send()
    };
    let role = get(role_path.clone()).await.unwrap().text().await.unwrap();
    assert_eq!(role, "vod-purge-role");
    let creds: Value = get(format!("{role_path}{role}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creds["Code"], "Success");
    assert!(
        creds["SecurityToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        get(format!("{role_path}other")).await.unwrap().status(),
        404
    );
}

/// Renewed STS keys of a role act for the same account: a job created with one is listed with
/// the next (a check after a renewal must find the job it checks).
#[tokio::test]
async fn a_job_is_seen_with_the_next_sts_key_of_the_role() {
    let sim = fixed_sim(SimConfig::default()).await;
    let (first, first_secret, first_token) = issued_key(&sim).await;
    let (next, next_secret, next_token) = issued_key(&sim).await;
    let signed = |action: &str,
                  method: &str,
                  id: &str,
                  secret: &str,
                  token: &str,
                  extra: &[(&str, &str)]| {
        let mut params = common(action, T0);
        params.insert("AccessKeyId".to_owned(), id.to_owned());
        params.insert("SecurityToken".to_owned(), token.to_owned());
        for (k, v) in extra {
            params.insert((*k).to_owned(), (*v).to_owned());
        }
        signed_url(&sim, method, &params, Some(secret))
    };
    let created = send_url(
        "POST",
        &signed(
            "RefreshMediaPlayUrls",
            "POST",
            &first,
            &first_secret,
            &first_token,
            &[("MediaIds", "a1"), ("TaskType", "Refresh")],
        ),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let job = created.body["MediaRefreshJobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = send_url(
        "GET",
        &signed(
            "GetMediaRefreshJobs",
            "GET",
            &next,
            &next_secret,
            &next_token,
            &[("MediaRefreshJobId", &job)],
        ),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body["MediaRefreshJobs"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    // Another account's key does not see it.
    let mut params = common("GetMediaRefreshJobs", T0);
    params.insert("MediaRefreshJobId".to_owned(), job);
    let other = send(&sim, "GET", &params).await;
    assert_eq!(
        other.body["MediaRefreshJobs"].as_array().map(Vec::len),
        Some(0),
        "{}",
        other.body
    );
}
