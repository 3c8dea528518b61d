//! Several accounts in one simulator: each throttled at its own rate, each spending and reporting
//! its own daily quotas, STS keys acting for the account they were issued for, and the accounts
//! file that sets it all.

use super::sts::sts_call;
use super::*;
use crate::support::SendJson;
use vod_purge::sim::{QuotaChange, ROLE_ACCOUNT};

/// A key that signs calls: a configured account's, or an STS key with its token.
struct Key {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Key {
    fn new(id: &str, secret: &str) -> Key {
        Key {
            id: id.to_owned(),
            secret: secret.to_owned(),
            token: None,
        }
    }

    /// `params` (made for `testid`) signed with this key instead.
    fn url(&self, sim: &SimHandle, method: &str, params: &BTreeMap<String, String>) -> String {
        let mut params = params.clone();
        params.insert("AccessKeyId".to_owned(), self.id.clone());
        if let Some(token) = &self.token {
            params.insert("SecurityToken".to_owned(), token.clone());
        }
        signed_url(sim, method, &params, Some(&self.secret))
    }

    async fn send(
        &self,
        sim: &SimHandle,
        method: &str,
        params: &BTreeMap<String, String>,
    ) -> Answer {
        send_url(method, &self.url(sim, method, params)).await
    }

    /// `RefreshMediaPlayUrls` of `ids` at `T0`.
    async fn refresh(&self, sim: &SimHandle, ids: &[&str]) -> Answer {
        self.send(sim, "POST", &refresh_params(ids, T0)).await
    }

    /// The items `GetMediaRefreshJobs` lists for `job`.
    async fn job_items(&self, sim: &SimHandle, job: &str) -> Vec<Value> {
        let mut params = common("GetMediaRefreshJobs", T0);
        params.insert("MediaRefreshJobId".to_owned(), job.to_owned());
        let answer = self.send(sim, "GET", &params).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["MediaRefreshJobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `DescribeVodRefreshQuota`'s answer.
    async fn quota(&self, sim: &SimHandle) -> Value {
        let answer = self
            .send(sim, "POST", &common("DescribeVodRefreshQuota", T0))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// How many tasks `DescribeVodRefreshTasks` counts for the key.
    async fn task_count(&self, sim: &SimHandle) -> u64 {
        let answer = self
            .send(sim, "POST", &common("DescribeVodRefreshTasks", T0))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["TotalCount"].as_u64().unwrap_or(u64::MAX)
    }
}

const A_UID: &str = "1111";
const B_UID: &str = "2222";

/// Account A (`ak-a`, uid 1111).
fn account_a() -> Account {
    Account {
        uid: Some(A_UID.to_owned()),
        ..Account::new("ak-a", "secret-a")
    }
}

/// Account B (`ak-b`, uid 2222).
fn account_b() -> Account {
    Account {
        uid: Some(B_UID.to_owned()),
        ..Account::new("ak-b", "secret-b")
    }
}

fn key_a() -> Key {
    Key::new("ak-a", "secret-a")
}

fn key_b() -> Key {
    Key::new("ak-b", "secret-b")
}

fn two_accounts(a: Account, b: Account) -> SimConfig {
    SimConfig {
        accounts: vec![a, b],
        ..SimConfig::default()
    }
}

fn credentials(body: &Value) -> Key {
    let field = |name: &str| {
        body["Credentials"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_owned()
    };
    Key {
        id: field("AccessKeyId"),
        secret: field("AccessKeySecret"),
        token: Some(field("SecurityToken")),
    }
}

fn role_form(role_arn: &str) -> BTreeMap<String, String> {
    [("RoleArn", role_arn), ("RoleSessionName", "session-1")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
}

/// The STS key `AssumeRole` signed by `signer` hands out for `role_arn`.
async fn assume_role(sim: &SimHandle, signer: &Key, role_arn: &str) -> Key {
    let mut query = common("AssumeRole", T0);
    query.insert("Version".to_owned(), "2015-04-01".to_owned());
    query.insert("AccessKeyId".to_owned(), signer.id.clone());
    let answer = sts_call(sim, &query, &role_form(role_arn), Some(&signer.secret)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    credentials(&answer.body)
}

/// The STS key `AssumeRoleWithOIDC` hands out for `role_arn`.
async fn assume_role_with_oidc(sim: &SimHandle, role_arn: &str) -> Key {
    let query: BTreeMap<String, String> = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("Timestamp", &iso(T0)),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let mut form = role_form(role_arn);
    form.insert(
        "OIDCProviderArn".to_owned(),
        "acs:ram::1:oidc-provider/p".to_owned(),
    );
    form.insert("OIDCToken".to_owned(), "eyJ.t.s".to_owned());
    let answer = sts_call(sim, &query, &form, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    credentials(&answer.body)
}

fn outcome(answer: &Answer) -> (u16, String) {
    (answer.status, answer.code().to_owned())
}

fn passed() -> (u16, String) {
    (200, String::new())
}

fn throttled() -> (u16, String) {
    (503, "Throttling".to_owned())
}

/// The outcomes of `n` `RefreshMediaPlayUrls` calls by `key` in the same instant.
async fn burst(sim: &SimHandle, key: &Key, n: usize) -> Vec<(u16, String)> {
    let mut outcomes = Vec::new();
    for _ in 0..n {
        outcomes.push(outcome(&key.refresh(sim, &["m1"]).await));
    }
    outcomes
}

/// `n` calls that pass, then one throttled.
fn allowed_then_throttled(n: usize) -> Vec<(u16, String)> {
    let mut want = vec![passed(); n];
    want.push(throttled());
    want
}

#[tokio::test]
async fn each_account_is_throttled_at_its_own_rate() {
    // The fixed clock stops the limiters' time: what passes depends on the counts alone.
    let sim = fixed_sim(two_accounts(
        Account {
            qps: Some(2),
            url_qps: Some(1),
            ..account_a()
        },
        Account {
            qps: Some(5),
            ..account_b()
        },
    ))
    .await;
    let (a, b) = (key_a(), key_b());
    assert_eq!(burst(&sim, &a, 3).await, allowed_then_throttled(2));
    // A is throttled; B's calls of the same action in the same instant pass, up to its own rate.
    assert_eq!(burst(&sim, &b, 6).await, allowed_then_throttled(5));

    // The URL calls: A's own url_qps, B's qps (no url_qps of its own nor --url-qps).
    let purge = |key: &Key| {
        let mut params = common("RefreshVodObjectCaches", T0);
        params.insert("ObjectPath".to_owned(), "a.example.com/x.mp4".to_owned());
        key.url(&sim, "POST", &params)
    };
    let mut a_urls = Vec::new();
    for _ in 0..2 {
        a_urls.push(outcome(&send_url("POST", &purge(&a)).await));
    }
    assert_eq!(a_urls, allowed_then_throttled(1));
    let mut b_urls = Vec::new();
    for _ in 0..6 {
        b_urls.push(outcome(&send_url("POST", &purge(&b)).await));
    }
    assert_eq!(b_urls, allowed_then_throttled(5));

    // STS keys have the rate of the account they were issued for (each key its own bucket).
    let a_role = assume_role(&sim, &a, &format!("acs:ram::{A_UID}:role/r")).await;
    assert_eq!(burst(&sim, &a_role, 3).await, allowed_then_throttled(2));
    let b_role = assume_role(&sim, &a, &format!("acs:ram::{B_UID}:role/r")).await;
    assert_eq!(burst(&sim, &b_role, 6).await, allowed_then_throttled(5));

    // The throttled calls are recorded with the same answer as ever.
    let throttled_by: Vec<String> = sim
        .calls()
        .into_iter()
        .filter(|c| c.code.as_deref() == Some("Throttling"))
        .map(|c| c.access_key_id)
        .collect();
    assert_eq!(
        throttled_by,
        ["ak-a", "ak-b", "ak-a", "ak-b", &a_role.id, &b_role.id]
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_account_that_used_up_its_quota_leaves_the_others_untouched() {
    let sim = fixed_sim(two_accounts(
        Account {
            quota_refresh: Some(2),
            ..account_a()
        },
        Account {
            quota_refresh: Some(100),
            ..account_b()
        },
    ))
    .await;
    let (a, b) = (key_a(), key_b());
    assert_eq!(outcome(&a.refresh(&sim, &["m1", "m2"]).await), passed());
    let over = a.refresh(&sim, &["m3"]).await;
    assert_eq!(
        outcome(&over),
        (400, "QuotaExceeded.Refresh".to_owned()),
        "{}",
        over.body
    );
    // The URL calls draw from the same pool of the account.
    let mut purge = common("RefreshVodObjectCaches", T0);
    purge.insert("ObjectPath".to_owned(), "a.example.com/x.mp4".to_owned());
    assert_eq!(
        outcome(&a.send(&sim, "POST", &purge).await),
        (400, "QuotaExceeded.Refresh".to_owned())
    );

    assert_eq!(
        outcome(&b.refresh(&sim, &["m1", "m2", "m3"]).await),
        passed()
    );
    assert_eq!(outcome(&b.send(&sim, "POST", &purge).await), passed());
    let b_quota = b.quota(&sim).await;
    assert_eq!(
        (&b_quota["UrlQuota"], &b_quota["UrlRemain"]),
        (&Value::from("100"), &Value::from("96")),
        "{b_quota}"
    );
    let a_quota = a.quota(&sim).await;
    assert_eq!(
        (&a_quota["UrlQuota"], &a_quota["UrlRemain"]),
        (&Value::from("2"), &Value::from("0")),
        "{a_quota}"
    );
    // The other pools are each account's too, at the simulator's sizes.
    assert_eq!(a_quota["PreloadRemain"], "500");
    assert_eq!(b_quota["DirRemain"], "100");

    // The helpers: without an account they read the first one, with one its pools.
    assert_eq!(sim.quota().refresh_remaining, 0);
    assert_eq!(sim.quota_of("ak-b").map(|q| q.refresh_remaining), Some(96));
    assert_eq!(sim.quota_of("nobody"), None);
    let used_up = sim.set_quota_of(
        "ak-b",
        QuotaChange {
            refresh_remaining: Some(0),
            ..QuotaChange::default()
        },
    );
    assert_eq!(used_up.map(|q| q.refresh_remaining), Some(0));
    assert_eq!(
        b.refresh(&sim, &["m4"]).await.code(),
        "QuotaExceeded.Refresh"
    );
    assert_eq!(sim.quota_of("ak-a").map(|q| q.refresh_remaining), Some(0));
    assert!(
        sim.set_quota_of("nobody", QuotaChange::default()).is_none(),
        "an unknown key changes nothing"
    );

    // The steering endpoint: `?access_key_id=` names one account.
    let base = sim.base_url();
    let given_back: Value = http()
        .put(format!("{base}/_sim/quota?access_key_id=ak-a"))
        .json(&serde_json::json!({"refresh_remaining": 2}))
        .send_json()
        .await;
    assert_eq!(
        (
            &given_back["refresh_remaining"],
            &given_back["refresh_quota"]
        ),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(outcome(&a.refresh(&sim, &["m4"]).await), passed());
    let b_view: Value = http()
        .get(format!("{base}/_sim/quota?access_key_id=ak-b"))
        .send_json()
        .await;
    assert_eq!(
        (&b_view["refresh_remaining"], &b_view["refresh_quota"]),
        (&Value::from(0), &Value::from(100))
    );
    for (query, status) in [("access_key_id=nobody", 404), ("account=ak-a", 400)] {
        let answer = http()
            .get(format!("{base}/_sim/quota?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{query}");
    }
    let all: Value = http().get(format!("{base}/_sim/quotas")).send_json().await;
    let accounts: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(accounts, ["ak-a", "ak-b", ROLE_ACCOUNT]);
    assert_eq!(all["ak-a"]["refresh_remaining"], 1);

    // Without an account, a change is every account's (capped at each one's quota).
    sim.set_quota(QuotaChange {
        refresh_remaining: Some(50),
        ..QuotaChange::default()
    });
    let remaining: Vec<u64> = sim.quotas().values().map(|q| q.refresh_remaining).collect();
    assert_eq!(remaining, [2, 50, 50]);
    sim.set_dir_remaining(0);
    assert_eq!(
        sim.set_dir_remaining_of("ak-b", 7).map(|q| q.dir_remaining),
        Some(7)
    );
    let dirs: Vec<u64> = sim.quotas().values().map(|q| q.dir_remaining).collect();
    assert_eq!(dirs, [0, 7, 0]);
    sim.stop().await;
}

#[tokio::test]
async fn a_used_up_pool_is_reported_per_id_for_its_account_only() {
    let sim = fixed_sim(SimConfig {
        quota_per_id: true,
        ..two_accounts(
            Account {
                quota_refresh: Some(1),
                ..account_a()
            },
            account_b(),
        )
    })
    .await;
    let (a, b) = (key_a(), key_b());
    let mut statuses = Vec::new();
    for key in [&a, &b] {
        let created = key.refresh(&sim, &["m1", "m2"]).await;
        assert_eq!(created.status, 200, "{}", created.body);
        let job = created.body["MediaRefreshJobId"].as_str().unwrap();
        let items = key.job_items(&sim, job).await;
        statuses.push(
            items
                .iter()
                .map(|i| {
                    (
                        i["Status"].as_str().unwrap_or("").to_owned(),
                        i["ErrorCode"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    let item = |status: &str, code: &str| (status.to_owned(), code.to_owned());
    assert_eq!(
        statuses,
        [
            vec![item("success", ""), item("fail", "QuotaExceeded.Refresh")],
            vec![item("success", ""), item("success", "")],
        ]
    );
    assert_eq!(b.quota(&sim).await["UrlRemain"], "1998");
    sim.stop().await;
}

#[tokio::test]
async fn sts_keys_act_for_the_account_they_were_issued_for() {
    let sim = fixed_sim(two_accounts(account_a(), account_b())).await;
    let (a, b) = (key_a(), key_b());
    let created = b.refresh(&sim, &["m1"]).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let b_job = created.body["MediaRefreshJobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_tasks = b.task_count(&sim).await;
    assert!(b_tasks > 0);

    // AssumeRole signed by A: A's key, for a role of A or of an account not configured.
    let a_role = assume_role(&sim, &a, &format!("acs:ram::{A_UID}:role/r")).await;
    let a_unknown = assume_role(&sim, &a, "acs:ram::9999:role/r").await;
    for key in [&a_role, &a_unknown] {
        assert!(key.job_items(&sim, &b_job).await.is_empty());
        assert_eq!(key.task_count(&sim).await, 0);
    }
    let created = a_role.refresh(&sim, &["m2"]).await;
    let a_job = created.body["MediaRefreshJobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.job_items(&sim, &a_job).await.len(), 1);
    assert_eq!(a_unknown.job_items(&sim, &a_job).await.len(), 1);
    assert!(b.job_items(&sim, &a_job).await.is_empty());
    // The role's key spends and reports A's quota.
    assert_eq!(a.quota(&sim).await["UrlRemain"], "1999");
    assert_eq!(a_role.quota(&sim).await["UrlRemain"], "1999");
    assert_eq!(b.quota(&sim).await["UrlRemain"], "1999");
    assert_eq!(sim.quota_of(&a_role.id), sim.quota_of("ak-a"));

    // A role of B, assumed from A or through OIDC, is B's.
    let b_role = assume_role(&sim, &a, &format!("acs:ram::{B_UID}:role/r")).await;
    let b_oidc = assume_role_with_oidc(&sim, &format!("acs:ram::{B_UID}:role/r")).await;
    for key in [&b_role, &b_oidc] {
        assert_eq!(key.job_items(&sim, &b_job).await.len(), 1);
        assert!(key.job_items(&sim, &a_job).await.is_empty());
        assert_eq!(key.task_count(&sim).await, b_tasks);
    }
    // An OIDC role of no configured account is the role's account, which sees neither.
    let other_oidc = assume_role_with_oidc(&sim, "acs:ram::9999:role/r").await;
    assert!(other_oidc.job_items(&sim, &b_job).await.is_empty());
    assert!(other_oidc.job_items(&sim, &a_job).await.is_empty());
    assert_eq!(other_oidc.task_count(&sim).await, 0);

    let issued: BTreeMap<String, String> = sim
        .issued_keys()
        .into_iter()
        .map(|(id, key)| (id, key.account))
        .collect();
    let accounts: Vec<&str> = [&a_role, &a_unknown, &b_role, &b_oidc, &other_oidc]
        .iter()
        .map(|key| issued.get(&key.id).map_or("", String::as_str))
        .collect();
    assert_eq!(accounts, ["ak-a", "ak-a", "ak-b", "ak-b", ROLE_ACCOUNT]);
    sim.stop().await;
}

#[tokio::test]
async fn an_accounts_file_sets_each_accounts_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.toml");
    let plain = "[[accounts]]\naccess_key_id = \"ak-a\"\naccess_key_secret = \"secret-a\"\n";
    std::fs::write(
        &path,
        format!(
            "{plain}\n[[accounts]]\naccess_key_id = \"ak-b\"\naccess_key_secret = \"secret-b\"\n\
             uid = \"2222\"\nqps = 3\nurl_qps = 1\nquota_refresh = 7\nquota_preload = 4\n\
             quota_dir = 3\n"
        ),
    )
    .unwrap();
    let accounts = sim::load_accounts_file(&path).unwrap();
    assert_eq!(accounts[0], Account::new("ak-a", "secret-a"));
    assert_eq!(
        accounts[1],
        Account {
            uid: Some("2222".to_owned()),
            qps: Some(3),
            url_qps: Some(1),
            quota_refresh: Some(7),
            quota_preload: Some(4),
            quota_dir: Some(3),
            ..Account::new("ak-b", "secret-b")
        }
    );

    let sim = fixed_sim(SimConfig {
        accounts,
        ..SimConfig::default()
    })
    .await;
    let figures = |quota: &Value| {
        ["UrlQuota", "PreloadQuota", "DirQuota"]
            .map(|name| quota[name].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(figures(&key_a().quota(&sim).await), ["2000", "500", "100"]);
    assert_eq!(figures(&key_b().quota(&sim).await), ["7", "4", "3"]);
    assert_eq!(burst(&sim, &key_b(), 4).await, allowed_then_throttled(3));
    sim.stop().await;

    for bad in [
        format!("{plain}qps_limit = 3\n"),
        format!("{plain}qps = 0\n"),
        format!("{plain}uid = \"acct-1\"\n"),
        format!("{plain}\n[options]\nqps = 3\n"),
    ] {
        std::fs::write(&path, &bad).unwrap();
        assert!(sim::load_accounts_file(&path).is_err(), "{bad}");
    }
}
