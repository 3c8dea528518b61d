//! What the simulator accepts and how it behaves: accounts, limits, known media IDs, faults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Faults;

/// An account of the simulator, named by the AccessKey it accepts. An ID starting with `STS.` is
/// a temporary key: requests with it must carry a `SecurityToken`, which must be one of
/// `security_tokens` (any token is accepted when the list is empty).
///
/// Each account has limits of its own: its rates (`qps`, `url_qps`) apply to its key and to the
/// STS keys issued for it, and its daily quotas (`quota_refresh`, `quota_preload`, `quota_dir`)
/// are pools no other account draws from. A limit left out takes the simulator's setting
/// (`SimConfig::qps` and so on). `uid` is the account's numeric ID, which a role's ARN names
/// (`acs:ram::<uid>:role/<name>`): the STS keys of such a role belong to this account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default)]
    pub security_tokens: Vec<String>,
    /// The account's numeric ID (digits only), written as a string or a number in the file.
    #[serde(default, deserialize_with = "uid_text")]
    pub uid: Option<String>,
    /// Calls per second per AccessKey and action; `SimConfig::qps` when `None`.
    #[serde(default)]
    pub qps: Option<u32>,
    /// The same for the URL calls; `SimConfig::url_qps` when `None`, and the account's rate
    /// (above) when that is not set either.
    #[serde(default)]
    pub url_qps: Option<u32>,
    /// The account's daily URL refresh quota; `SimConfig::quota_refresh` when `None`.
    #[serde(default)]
    pub quota_refresh: Option<u64>,
    /// The account's daily preload quota; `SimConfig::quota_preload` when `None`.
    #[serde(default)]
    pub quota_preload: Option<u64>,
    /// The account's daily directory refresh quota; `SimConfig::quota_dir` when `None`.
    #[serde(default)]
    pub quota_dir: Option<u64>,
}

/// Reads `uid` as TOML writes it either way: `"1234"` or `1234`.
fn uid_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Uid {
        Text(String),
        Number(u64),
    }
    let uid = <Uid as serde::Deserialize>::deserialize(deserializer).map_err(|_| {
        <D::Error as serde::de::Error>::custom("uid must be a string of digits or a number")
    })?;
    Ok(Some(match uid {
        Uid::Text(text) => text,
        Uid::Number(n) => n.to_string(),
    }))
}

impl Account {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Account {
        Account {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_tokens: Vec::new(),
            uid: None,
            qps: None,
            url_qps: None,
            quota_refresh: None,
            quota_preload: None,
            quota_dir: None,
        }
    }

    /// An STS key that accepts exactly the given tokens.
    pub fn sts(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        tokens: Vec<String>,
    ) -> Account {
        Account {
            security_tokens: tokens,
            ..Account::new(access_key_id, access_key_secret)
        }
    }

    pub fn is_sts(&self) -> bool {
        self.access_key_id.starts_with("STS.")
    }

    /// Parses the command-line form `ID:SECRET` or `ID:SECRET:TOKEN` (for an `STS.` key).
    pub fn parse_spec(spec: &str) -> Result<Account, String> {
        let mut parts = spec.splitn(3, ':');
        let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "account {spec:?}: expected ID:SECRET or ID:SECRET:TOKEN"
            ));
        };
        if id.is_empty() || secret.is_empty() {
            return Err(format!("account {spec:?}: ID and SECRET must not be empty"));
        }
        let tokens = parts.next().map(|t| vec![t.to_owned()]).unwrap_or_default();
        Ok(Account::sts(id, secret, tokens))
    }
}

/// The accounts file (`--accounts-file`), TOML:
///
/// ```toml
/// [[accounts]]
/// access_key_id = "testid"
/// access_key_secret = "testsecret"
///
/// [[accounts]]
/// access_key_id = "STS.example"
/// access_key_secret = "testsecret"
/// security_tokens = ["token-1", "token-2"]   # optional; empty accepts any token
///
/// [[accounts]]
/// access_key_id = "other"
/// access_key_secret = "othersecret"
/// uid = "1234"            # optional: the account's ID, as role ARNs name it
/// qps = 5                 # optional: --qps when left out
/// url_qps = 2             # optional: --url-qps, else the account's qps, when left out
/// quota_refresh = 100     # optional: --quota-refresh when left out
/// quota_preload = 10      # optional: --quota-preload when left out
/// quota_dir = 5           # optional: --quota-dir when left out
/// ```
///
/// Any other key, in the file or in an account, is refused.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    accounts: Vec<Account>,
}

/// Reads and checks an accounts file (see [`AccountsFile`]).
pub fn load_accounts_file(path: &Path) -> anyhow::Result<Vec<Account>> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: AccountsFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    check_accounts(&file.accounts)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(file.accounts)
}

/// Checks the limits and IDs of `accounts`: rates of at least 1, `uid`s of digits only, no
/// `uid` given to two accounts (a role's ARN must name one account).
pub fn check_accounts(accounts: &[Account]) -> Result<(), String> {
    let mut uids = std::collections::HashMap::new();
    for account in accounts {
        let id = &account.access_key_id;
        if account.qps == Some(0) {
            return Err(format!("account {id:?}: qps must be at least 1"));
        }
        if account.url_qps == Some(0) {
            return Err(format!("account {id:?}: url_qps must be at least 1"));
        }
        if let Some(uid) = &account.uid {
            if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "account {id:?}: uid {uid:?} must be the account's numeric ID"
                ));
            }
            if let Some(other) = uids.insert(uid.as_str(), id.as_str())
                && other != id
            {
                return Err(format!(
                    "accounts {other:?} and {id:?} have the same uid {uid:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The whole simulator configuration. `Default` is what the tests and `vod-purge sim` start from.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; `None` means `127.0.0.1:0` (a free port).
    pub listen: Option<SocketAddr>,
    /// The accounts; the first one is the default account of the quota helpers (`GET
    /// /_sim/quota` without an account). Each may set limits of its own.
    pub accounts: Vec<Account>,
    /// Calls per second per AccessKey and action (token bucket, burst of the same size): VOD
    /// limits each operation on its own. An account's `qps` replaces it for its keys.
    pub qps: u32,
    /// The same limit for `RefreshVodObjectCaches` and `PreloadVodObjectCaches`; `None` is `qps`.
    /// An account's `url_qps` (or else its `qps`) replaces it for its keys.
    pub url_qps: Option<u32>,
    /// Accepted distance between `Timestamp` and the simulator's clock.
    pub tolerance: Duration,
    /// Well-formed IDs reported in `NonExistMediaIds`. Every other well-formed ID exists.
    pub nonexistent: Vec<String>,
    /// IDs reported in `ForbiddenMediaIds`.
    pub forbidden: Vec<String>,
    /// IDs that a call accepts but whose submission then fails: `GetMediaRefreshJobs` reports
    /// them with `Status` `fail` and an `ErrorCode` (`TooMany.Refresh` or `PreloadQueueFull`).
    pub failing: Vec<String>,
    /// How a call meets a used-up quota: `false` (the default), the call is refused with
    /// `QuotaExceeded.Refresh` / `.Preload`; `true`, the call is accepted and the IDs past what
    /// is left are reported by `GetMediaRefreshJobs` with `Status` `fail` and that code
    /// (`vod-api.md` §8 leaves both open).
    pub quota_per_id: bool,
    /// Faults active from the start.
    pub faults: Faults,
    /// Appends every recorded call as a JSON line to this file.
    pub calls_log: Option<PathBuf>,
    /// The daily URL purge quota (`UrlQuota`) of each account that sets none of its own, one
    /// pool per account for both ways of purging: a `RefreshVodObjectCaches` call of files takes
    /// one unit per URL, a `RefreshMediaPlayUrls` refresh one per media ID (as it always has
    /// here).
    pub quota_refresh: u64,
    /// The daily prefetch quota (`PreloadQuota`) of each account that sets none of its own: a
    /// `PreloadVodObjectCaches` call takes one unit per URL, a `RefreshMediaPlayUrls` preload one
    /// per media ID.
    pub quota_preload: u64,
    /// The daily directory purge quota (`DirQuota`) of each account that sets none of its own,
    /// one unit per directory.
    pub quota_dir: u64,
    /// At most this many URLs in one `RefreshVodObjectCaches` / `PreloadVodObjectCaches` call,
    /// beyond which it is refused with `SingleRequest.OverLimit`.
    pub urls_per_request: usize,
    /// The account's CDN domains. When not empty, a URL call naming another host is refused with
    /// `InvalidDomain.NotFound` (404). The first one is the host of the covers and snapshots
    /// `GetVideoInfo` answers with, and of the play URLs of media jobs.
    pub cdn_domains: Vec<String>,
    /// Domains of the account that are offline: a URL call naming one is refused with
    /// `InvalidDomain.Offline` (404).
    pub offline_domains: Vec<String>,
    /// A CDN task is `Pending` until this long after its creation, then `Refreshing`.
    pub task_refreshing_after: Duration,
    /// A CDN task is `Complete` (or `Failed`) from this long after its creation.
    pub task_complete_after: Duration,
    /// How many CDN tasks are kept for `DescribeVodRefreshTasks` (oldest dropped first).
    pub max_tasks: usize,
    /// How many calls are kept in memory for `/_sim/calls` (oldest dropped first).
    pub max_recorded_calls: usize,
    /// How many jobs are kept for `GetMediaRefreshJobs` (oldest dropped first).
    pub max_jobs: usize,
    /// How long the STS credentials the simulator hands out (`AssumeRole`,
    /// `AssumeRoleWithOIDC`, the metadata service, the credentials URI) stay valid; VOD calls
    /// signed with one after that get `InvalidSecurityToken.Expired`.
    pub sts_lifetime: Duration,
    /// Which metadata-service requests work: IMDSv2 tokens, IMDSv1 requests without one, or both.
    pub imds: ImdsMode,
    /// The instance's RAM role, as the metadata service names it.
    pub ecs_role: String,
}

/// What the simulated metadata service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ImdsMode {
    /// Tokens are handed out, and requests without one are answered too (ECS's default).
    #[default]
    Both,
    /// Requests without a valid token are refused with 401 (IMDSv2 enforced).
    V2Required,
    /// No token endpoint (it answers 404), as on older instances.
    V1Only,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: None,
            accounts: vec![Account::new("testid", "testsecret")],
            qps: 50,
            url_qps: None,
            tolerance: Duration::from_secs(15 * 60),
            nonexistent: Vec::new(),
            forbidden: Vec::new(),
            failing: Vec::new(),
            quota_per_id: false,
            faults: Faults::default(),
            calls_log: None,
            quota_refresh: 2000,
            quota_preload: 500,
            quota_dir: 100,
            urls_per_request: 1000,
            cdn_domains: Vec::new(),
            offline_domains: Vec::new(),
            task_refreshing_after: Duration::from_millis(100),
            task_complete_after: Duration::from_millis(300),
            max_tasks: 100_000,
            max_recorded_calls: 100_000,
            max_jobs: 10_000,
            sts_lifetime: Duration::from_secs(3600),
            imds: ImdsMode::Both,
            ecs_role: "vod-purge-role".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_specs() {
        let a = Account::parse_spec("testid:testsecret").unwrap();
        assert_eq!(
            (a.access_key_id.as_str(), a.access_key_secret.as_str()),
            ("testid", "testsecret")
        );
        assert!(a.security_tokens.is_empty() && !a.is_sts());
        let s = Account::parse_spec("STS.x:sec:tok=+/").unwrap();
        assert!(s.is_sts());
        assert_eq!(s.security_tokens, ["tok=+/"]);
        for bad in ["nocolon", ":secret", "id:"] {
            assert!(Account::parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            "[[accounts]]\naccess_key_id = \"a\"\naccess_key_secret = \"b\"\n\n\
             [[accounts]]\naccess_key_id = \"STS.c\"\naccess_key_secret = \"d\"\nsecurity_tokens = [\"t\"]\n",
        )
        .unwrap();
        let accounts = load_accounts_file(&path).unwrap();
        assert_eq!(
            accounts,
            [
                Account::new("a", "b"),
                Account::sts("STS.c", "d", vec!["t".to_owned()])
            ]
        );
        std::fs::write(&path, "[[accounts]]\naccess_key_id = \"a\"\n").unwrap();
        assert!(load_accounts_file(&path).is_err());
    }

    #[test]
    fn accounts_file_limits_and_uid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            "[[accounts]]\naccess_key_id = \"a\"\naccess_key_secret = \"b\"\nuid = \"1234\"\n\
             qps = 2\nurl_qps = 1\nquota_refresh = 10\nquota_preload = 3\nquota_dir = 4\n\n\
             [[accounts]]\naccess_key_id = \"c\"\naccess_key_secret = \"d\"\nuid = 5678\n",
        )
        .unwrap();
        let accounts = load_accounts_file(&path).unwrap();
        assert_eq!(
            accounts[0],
            Account {
                uid: Some("1234".to_owned()),
                qps: Some(2),
                url_qps: Some(1),
                quota_refresh: Some(10),
                quota_preload: Some(3),
                quota_dir: Some(4),
                ..Account::new("a", "b")
            }
        );
        assert_eq!(
            accounts[1],
            Account {
                uid: Some("5678".to_owned()),
                ..Account::new("c", "d")
            }
        );
        let entry = "[[accounts]]\naccess_key_id = \"a\"\naccess_key_secret = \"b\"\n";
        for bad in [
            "qps_limit = 2\n",
            "qps = 0\n",
            "url_qps = 0\n",
            "qps = -1\n",
            "quota_dir = \"x\"\n",
            "uid = \"12a\"\n",
            "uid = \"\"\n",
            "uid = true\n",
        ] {
            std::fs::write(&path, format!("{entry}{bad}")).unwrap();
            assert!(load_accounts_file(&path).is_err(), "{bad}");
        }
        std::fs::write(
            &path,
            format!(
                "{entry}uid = \"1\"\n[[accounts]]\naccess_key_id = \"c\"\n\
                 access_key_secret = \"d\"\nuid = \"1\"\n"
            ),
        )
        .unwrap();
        let err = format!("{:#}", load_accounts_file(&path).unwrap_err());
        assert!(err.contains("same uid"), "{err}");
    }
}
