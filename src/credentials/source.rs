//! The credential in use, shared by the VOD client (which reads it for every attempt) and the
//! renewer (which replaces it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Credentials, ProviderName};
use crate::domain::Ts;

/// A credential and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub credentials: Credentials,
    /// When it was obtained (by this process's clock).
    pub issued_at: Ts,
    /// When STS or the metadata service says it stops working; `None` for keys that do not
    /// expire.
    pub expires_at: Option<Ts>,
}

/// A credential is not used in its last tenth of life (at most 30 s): a call signed just before
/// the expiry could arrive after it.
const MAX_GUARD: Duration = Duration::from_secs(30);

impl Issued {
    pub fn fixed(credentials: Credentials) -> Issued {
        Issued {
            credentials,
            issued_at: Ts(0),
            expires_at: None,
        }
    }

    /// The last instant at which a call may be signed with it.
    pub fn usable_until(&self) -> Option<Ts> {
        let expires = self.expires_at?;
        let guard = (expires.since(self.issued_at) / 10).min(MAX_GUARD);
        Some(Ts(expires.0 - i64::try_from(guard.as_millis()).unwrap_or(0)))
    }

    /// No credential yet: never usable, and due for renewal at once (a lane whose provider
    /// could not fetch one at start waits for its renewer).
    pub fn none_yet() -> Issued {
        Issued {
            credentials: Credentials::new("", "", None),
            issued_at: Ts(0),
            expires_at: Some(Ts(0)),
        }
    }

    pub fn usable_at(&self, now: Ts) -> bool {
        self.usable_until().is_none_or(|until| now < until)
    }
}

/// The current credential, cheap to clone.
#[derive(Clone)]
pub struct CredentialSource {
    inner: Arc<Inner>,
}

struct Inner {
    current: watch::Sender<Arc<Issued>>,
    /// Wakes the renewer at once (a credential VOD refused as expired).
    renew_now: Notify,
    provider: ProviderName,
    /// False for fixed keys: nothing would ever replace them.
    renewable: bool,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("provider", &self.inner.provider)
            .field("current", &*self.inner.current.borrow())
            .finish()
    }
}

impl From<Credentials> for CredentialSource {
    /// Keys handed in directly (tests, tools): never renewed.
    fn from(credentials: Credentials) -> CredentialSource {
        CredentialSource::new(ProviderName::Config, Issued::fixed(credentials))
    }
}

impl CredentialSource {
    pub fn new(provider: ProviderName, first: Issued) -> CredentialSource {
        let renewable = first.expires_at.is_some();
        CredentialSource {
            inner: Arc::new(Inner {
                current: watch::Sender::new(Arc::new(first)),
                renew_now: Notify::new(),
                provider,
                renewable,
            }),
        }
    }

    pub fn provider(&self) -> ProviderName {
        self.inner.provider
    }

    /// The credential held now, usable or not.
    pub fn current(&self) -> Arc<Issued> {
        self.inner.current.borrow().clone()
    }

    /// The credential held now, if a call may still be signed with it at `now`.
    pub fn usable(&self, now: Ts) -> Option<Arc<Issued>> {
        Some(self.current()).filter(|c| c.usable_at(now))
    }

    /// Time left before the current credential expires; `None` when it does not expire.
    pub fn expires_in(&self, now: Ts) -> Option<Duration> {
        self.current().expires_at.map(|at| at.since(now))
    }

    /// A usable credential, waiting up to `timeout` for a renewal when there is none.
    pub async fn wait_usable(&self, timeout: Duration) -> Option<Arc<Issued>> {
        let mut changes = self.inner.current.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(issued) = self.usable(Ts::now()) {
                return Some(issued);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// A usable credential, however long its renewal takes.
    pub async fn wait_until_usable(&self) -> Arc<Issued> {
        loop {
            if let Some(issued) = self.wait_usable(Duration::from_secs(60)).await {
                return issued;
            }
        }
    }

    /// Installs a renewed credential and wakes whoever waits for one.
    pub fn set(&self, issued: Issued) {
        self.inner.current.send_replace(Arc::new(issued));
    }

    /// VOD refused `used` as expired (its clock is ahead, or STS revoked it): it is not used
    /// again, the renewer is woken, and this waits up to `timeout` for the next credential.
    /// Fixed keys cannot be renewed: they are handed back as they are.
    pub async fn renew_rejected(&self, used: &Issued, timeout: Duration) -> Option<Arc<Issued>> {
        if !self.inner.renewable {
            return Some(self.current());
        }
        self.inner.current.send_if_modified(|current| {
            let same = current.credentials == used.credentials;
            if same {
                let now = Ts::now();
                *current = Arc::new(Issued {
                    credentials: current.credentials.clone(),
                    issued_at: current.issued_at.min(now),
                    expires_at: Some(now),
                });
            }
            same
        });
        self.inner.renew_now.notify_one();
        self.wait_usable(timeout).await
    }

    pub(super) async fn renewal_requested(&self) {
        self.inner.renew_now.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(issued_at: i64, expires_at: Option<i64>) -> Issued {
        Issued {
            credentials: Credentials::new("STS.a", "s", Some("t".to_owned())),
            issued_at: Ts(issued_at),
            expires_at: expires_at.map(Ts),
        }
    }

    #[test]
    fn usable_until_keeps_a_guard_of_a_tenth_at_most_30s() {
        let table = [
            // (issued, expires) -> usable until
            ((0, 3_000), 2_700),
            ((0, 3_600_000), 3_570_000),
            ((1_000, 101_000), 91_000),
        ];
        for ((from, to), want) in table {
            assert_eq!(issued(from, Some(to)).usable_until(), Some(Ts(want)));
        }
        assert!(issued(0, None).usable_at(Ts(i64::MAX)));
        assert!(issued(0, Some(3_000)).usable_at(Ts(2_699)));
        assert!(!issued(0, Some(3_000)).usable_at(Ts(2_700)));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_renewed_credential() {
        let source = CredentialSource::new(ProviderName::Oidc, issued(0, Some(1)));
        assert!(source.usable(Ts::now()).is_none());
        assert!(
            source
                .wait_usable(Duration::from_millis(20))
                .await
                .is_none()
        );
        let waiter = {
            let source = source.clone();
            tokio::spawn(async move { source.wait_usable(Duration::from_secs(10)).await })
        };
        let fresh = Issued {
            issued_at: Ts::now(),
            expires_at: Some(Ts::now() + Duration::from_secs(60)),
            ..issued(0, None)
        };
        source.set(fresh.clone());
        let got = waiter.await.unwrap().expect("renewed credential");
        assert_eq!(*got, fresh);
    }

    #[tokio::test]
    async fn a_rejected_credential_is_not_used_again() {
        let now = Ts::now();
        let live = issued(now.0, Some(now.0 + 60_000));
        let source = CredentialSource::new(ProviderName::Oidc, live.clone());
        let got = source
            .renew_rejected(&live, Duration::from_millis(30))
            .await;
        assert!(got.is_none(), "no renewer: nothing usable within the wait");
        assert!(source.usable(Ts::now()).is_none());
        // Fixed keys are handed back: nothing could replace them.
        let fixed = CredentialSource::from(Credentials::new("id", "s", None));
        let again = fixed
            .renew_rejected(&fixed.current(), Duration::from_millis(30))
            .await;
        assert_eq!(again.unwrap().credentials.access_key_id(), "id");
    }
}
