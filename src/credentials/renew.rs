//! Renewal in the background: when to renew (pure, the time as an argument) and the loop that
//! does it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::fetch::Fetcher;
use super::{CredentialSource, Issued, Plan};
use crate::domain::Ts;
use crate::metrics::Metrics;

/// Renewal starts at the latest this long before the expiry, where the lifetime allows.
const MARGIN: Duration = Duration::from_secs(15 * 60);
/// The first and the longest pause between failed renewals.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_LONGEST: Duration = Duration::from_secs(10);

/// When to renew a credential that lives from `issued_at` to `expires_at`: when a third of its
/// lifetime is left, or earlier, 15 minutes before the expiry, as long as that leaves it half of
/// its life. A 1-hour STS credential is renewed after 40 minutes, a 6-hour one after 4 hours, a
/// 20-minute one after 10 minutes and a 3-second one after 1.5 seconds.
pub fn renew_at(issued_at: Ts, expires_at: Ts) -> Ts {
    let lifetime = expires_at.since(issued_at);
    let margin = (lifetime / 3).max(MARGIN.min(lifetime / 2));
    Ts(expires_at.0 - i64::try_from(margin.as_millis()).unwrap_or(i64::MAX))
}

/// The pause after `failures` failed renewals in a row: 200 ms doubling to 10 s.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    RETRY_FIRST.saturating_mul(factor).min(RETRY_LONGEST)
}

/// When the loop next renews: at [`renew_at`] while renewals succeed, after [`retry_delay`]
/// once they fail; `None` for a credential that does not expire.
pub fn next_renewal(current: &Issued, failures: u32, last_failure: Ts) -> Option<Ts> {
    if failures > 0 {
        return Some(last_failure + retry_delay(failures));
    }
    current
        .expires_at
        .map(|expires| renew_at(current.issued_at, expires))
}

/// Renews the credential of a [`CredentialSource`] as its [`Plan`] says.
pub struct Renewer {
    source: CredentialSource,
    plan: Plan,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
    /// The account whose credential this is (the metrics' `account` label).
    account: String,
}

impl Renewer {
    pub fn new(
        source: CredentialSource,
        plan: Plan,
        fetcher: Fetcher,
        metrics: Arc<Metrics>,
        account: &str,
    ) -> Renewer {
        Renewer {
            source,
            plan,
            fetcher,
            metrics,
            account: account.to_owned(),
        }
    }

    /// Renews until `stop` is cancelled (a credential that does not expire is never renewed).
    pub async fn run(self, stop: CancellationToken) {
        let provider = self.source.provider();
        let label = provider.as_str();
        let (mut failures, mut last_failure) = (0u32, Ts(0));
        loop {
            let Some(at) = next_renewal(&self.source.current(), failures, last_failure) else {
                // Nothing to renew, but a worker that ends before shutdown is reported as a
                // failure (`startup::run_until_stopped`): it waits for the stop like the others.
                tracing::debug!(%provider, "the credential does not expire; no renewal");
                stop.cancelled().await;
                return;
            };
            let pause = at.since(Ts::now());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
                _ = self.source.renewal_requested() => {
                    tracing::info!(%provider, "VOD refused the credential as expired; renewing now");
                }
            }
            match self.fetcher.fetch(provider, &self.plan).await {
                Ok(issued) => {
                    failures = 0;
                    tracing::debug!(%provider, access_key_id = issued.credentials.access_key_id(),
                        expires_at = ?issued.expires_at.map(Ts::to_rfc3339), "credential renewed");
                    self.source.set(issued);
                    self.metrics
                        .credential_renewals
                        .with_label_values(&[&self.account, label, "success"])
                        .inc();
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    last_failure = Ts::now();
                    let left = self.source.expires_in(last_failure).unwrap_or_default();
                    tracing::warn!(%error, failures, valid_for = ?left, retry_in = ?retry_delay(failures),
                        "credential renewal failed; the current credential is used while it is valid");
                    self.metrics
                        .credential_renewals
                        .with_label_values(&[&self.account, label, "failure"])
                        .inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;

    const MIN: i64 = 60_000;

    #[test]
    fn renewal_times() {
        // (lifetime in ms) -> renewal after (ms)
        let table = [
            (3_000, 1_500),
            (15 * MIN, 7 * MIN + 30_000),
            (20 * MIN, 10 * MIN),
            (45 * MIN, 30 * MIN),
            (60 * MIN, 40 * MIN),
            (360 * MIN, 240 * MIN),
        ];
        let start = 1_000_000;
        for (lifetime, after) in table {
            let at = renew_at(Ts(start), Ts(start + lifetime));
            assert_eq!(at.0 - start, after, "lifetime {lifetime} ms");
            let left = lifetime - after;
            assert!(left * 3 >= lifetime, "at least a third left ({lifetime})");
            assert!(
                left >= 15 * MIN || left * 2 == lifetime,
                "15 min or half ({lifetime})"
            );
        }
    }

    #[test]
    fn retries_double_to_ten_seconds() {
        let got: Vec<u128> = (1..=8).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(retry_delay(u32::MAX), RETRY_LONGEST);
    }

    #[test]
    fn next_renewal_follows_failures() {
        let live = Issued {
            credentials: Credentials::new("STS.a", "s", Some("t".into())),
            issued_at: Ts(0),
            expires_at: Some(Ts(3_000)),
        };
        assert_eq!(next_renewal(&live, 0, Ts(0)), Some(Ts(1_500)));
        assert_eq!(next_renewal(&live, 2, Ts(2_000)), Some(Ts(2_400)));
        let fixed = Issued::fixed(Credentials::new("id", "s", None));
        assert_eq!(next_renewal(&fixed, 0, Ts(0)), None);
    }
}
