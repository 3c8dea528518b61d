//! What keeps strangers from taking the webhook endpoint away from the real senders, without
//! ever refusing a sender that authenticates.
//!
//! - [`proxies`]: whom a request comes from: the TCP peer, or the hop a trusted proxy named in
//!   `X-Forwarded-For` (or `Forwarded`).
//! - [`PeerGuard`], the budget of failures per client: requests that do not authenticate and
//!   fail (no or a wrong credential, a body that never arrives, an unknown source) use it up.
//!   It is consulted only once a request has failed to authenticate, so it decides how a
//!   stranger is answered (`429` with a `Retry-After` once over budget), never whether a sender
//!   may speak: behind an ingress that is not listed in `server.trusted_proxies` every request
//!   comes from one address, and a budget checked first would let any stranger lock the real
//!   sender out. A request that authenticates is neither refused nor counted, whatever it
//!   carries afterwards (a sender's own `422` is its business, and the source's rate limit
//!   counts it). A refusal lasts in proportion to the excess: every failure past the burst
//!   adds `1 / peer_failures_per_second` to it (up to [`MAX_REFUSAL`]), failures answered
//!   `429` included, so a client that keeps failing stays refused and one that stops is let
//!   in again once its debt is paid.
//! - What a stranger can hold: bodies of body-signed sources are read before their sender is
//!   known, and each client may have at most a share of `server.unauthenticated_reads` of them
//!   in flight ([`PeerGuard::begin_read`]), so one address cannot hold every read while the
//!   real sender, from another address, waits. The per-source cap ([`crate::api::SourceState`])
//!   stays the bound for all addresses together. A client over its share is answered
//!   `503 busy`, which is not a failure: nothing was tried.
//! - What the ingest handlers call: [`client`], [`stranger_failed`] and
//!   [`report_unlisted_proxy`].
//!
//! The budget is GCRA with debt: governor's keyed limiter refuses a cell instead of recording
//! it, so it cannot tell how far over the budget a client went. Time is an argument.

pub mod proxies;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

use crate::api::AppState;
use crate::api::body::header_lines;
use crate::api::error::{ApiError, retry_after_secs};

pub use proxies::{Client, Proxies, parse_proxy};

/// The longest a client stays refused, however far over its budget it went.
pub const MAX_REFUSAL: Duration = Duration::from_secs(15 * 60);

/// The share of `server.unauthenticated_reads` one client may hold: this fraction of it (at
/// least one).
pub const READ_SHARE_DIVISOR: usize = 8;

/// More clients with a budget in use than this and the ones whose budget has refilled are
/// forgotten (the threshold then doubles with what is left), so that a flood from many
/// addresses cannot grow the table without bound.
const FORGET_AT: usize = 65_536;

/// What a client is counted under: an IPv6 address by its /64, which one client usually holds
/// whole (a host picks any address in it), an IPv4 address as it is, a hop that is not an
/// address by its text (see [`proxies`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Addr(IpAddr),
    Named(Box<str>),
}

impl Key {
    pub fn of(client: &Client) -> Key {
        match client {
            Client::Addr(ip) => Key::Addr(addr_key(*ip)),
            Client::Named(name) => Key::Named(name.clone()),
        }
    }
}

fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::from([a, b, c, d, 0, 0, 0, 0])
            }
        },
        v4 => v4,
    }
}

/// Failed requests and in-flight unauthenticated reads per client.
pub struct PeerGuard {
    /// `1 / peer_failures_per_second`: what one failure adds to a client's debt.
    interval: Duration,
    /// `peer_failure_burst` failures' worth of debt: more and the client is refused.
    tolerance: Duration,
    reads_per_client: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When each client's budget is full again (GCRA's theoretical arrival time).
    full_at: HashMap<Key, Instant>,
    forget_at: usize,
    /// Unauthenticated reads in flight per client (absent: none).
    reads: HashMap<Key, usize>,
}

/// A client's unauthenticated read in flight; dropping it ends the read.
pub struct ReadSlot<'a> {
    guard: &'a PeerGuard,
    key: Key,
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        let mut state = self.guard.lock();
        if let Some(held) = state.reads.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                state.reads.remove(&self.key);
            }
        }
    }
}

impl PeerGuard {
    /// `per_second` and `burst` from `server.peer_failures_per_second` and
    /// `server.peer_failure_burst`; `unauthenticated_reads` from the setting of that name.
    pub fn new(per_second: u32, burst: u32, unauthenticated_reads: usize) -> PeerGuard {
        let interval = Duration::from_secs(1) / per_second.max(1);
        PeerGuard {
            interval,
            tolerance: interval * burst.max(1),
            reads_per_client: (unauthenticated_reads / READ_SHARE_DIVISOR).max(1),
            state: Mutex::new(State {
                forget_at: FORGET_AT,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` stays refused, if it has used up its budget at `now`.
    pub fn refusal(&self, key: &Key, now: Instant) -> Option<Duration> {
        let full_at = *self.lock().full_at.get(key)?;
        Self::over(full_at, now, self.tolerance)
    }

    fn over(full_at: Instant, now: Instant, tolerance: Duration) -> Option<Duration> {
        let debt = full_at.checked_duration_since(now)?;
        debt.checked_sub(tolerance).filter(|wait| !wait.is_zero())
    }

    /// Counts a failed request of `key` at `now`. When `key` was already refused before it,
    /// returns how long it is refused now (`None`: it was within its budget, and is answered as
    /// its failure deserves).
    pub fn failed(&self, key: &Key, now: Instant) -> Option<Duration> {
        let mut state = self.lock();
        if state.full_at.len() >= state.forget_at && !state.full_at.contains_key(key) {
            state.full_at.retain(|_, full_at| *full_at > now);
            state.full_at.shrink_to_fit();
            state.forget_at = FORGET_AT.max(state.full_at.len() * 2);
        }
        let full_at = state.full_at.entry(key.clone()).or_insert(now);
        let before = Self::over(*full_at, now, self.tolerance);
        let cap = now + self.tolerance + MAX_REFUSAL;
        *full_at = ((*full_at).max(now) + self.interval).min(cap);
        let after = Self::over(*full_at, now, self.tolerance);
        before.and(after)
    }

    /// Starts an unauthenticated read for `key`, unless it already holds its share of them.
    pub fn begin_read(&self, key: &Key) -> Option<ReadSlot<'_>> {
        let mut state = self.lock();
        let held = state.reads.entry(key.clone()).or_insert(0);
        if *held >= self.reads_per_client {
            return None;
        }
        *held += 1;
        Some(ReadSlot {
            guard: self,
            key: key.clone(),
        })
    }

    /// The unauthenticated reads `key` may hold at once.
    pub fn reads_per_client(&self) -> usize {
        self.reads_per_client
    }
}

// What the ingest handlers ask of the guard.

/// What an unauthenticated read is counted under: the `client` (see [`client`]); but from a peer
/// that is not a trusted proxy and forwards (an ingress nobody listed, where every request has
/// its address), the client that peer names in the last hop, which a proxy appends and its
/// client cannot forge, under the peer's own name: the clients behind it do not share one share
/// of the reads, and no one can name themselves into a client elsewhere. A stranger who writes
/// the header himself gets a key per value, bounded by `server.unauthenticated_reads` as
/// before.
pub(super) fn reader(state: &AppState, req: &HttpRequest, client: &Key) -> Key {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
        .to_canonical();
    if state.proxies.trusts(peer) {
        return client.clone();
    }
    let lines = header_lines(req, state.proxies.header_name());
    let peer_key = Key::Addr(addr_key(peer));
    match state.proxies.last_hop(lines.iter().map(AsRef::as_ref)) {
        None => peer_key,
        Some(hop) => Key::Named(format!("{peer_key} for {}", Key::of(&hop)).into()),
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Addr(ip) => write!(f, "{ip}"),
            Key::Named(name) => f.write_str(name),
        }
    }
}

/// The client, behind the trusted proxies, as its budget and reads are counted. Looked up only
/// for requests that are not (yet) authenticated.
pub(super) fn client(state: &AppState, req: &HttpRequest) -> Key {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let lines = header_lines(req, state.proxies.header_name());
    let client = state.proxies.client(peer, lines.iter().map(AsRef::as_ref));
    Key::of(&client)
}

/// Logs, once per process, a request that carries `X-Forwarded-For` or `Forwarded` from a peer
/// that is not a trusted proxy: an ingress nobody listed (an atomic load once it has been).
pub(super) fn report_unlisted_proxy(state: &AppState, req: &HttpRequest) {
    if state.proxies.reported() {
        return;
    }
    let headers = req.headers();
    if (headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded"))
        && let Some(peer) = req.peer_addr()
    {
        state.proxies.report_unlisted(peer.ip());
    }
}

/// A request that did not authenticate failed with `error`: it is counted against `client`,
/// and answered `429` instead when `client` was already over its budget (except a body that
/// never arrived, whose answer closes the connection).
pub(super) fn stranger_failed(state: &AppState, client: &Key, error: ApiError) -> ApiError {
    match state.peers.failed(client, Instant::now()) {
        Some(wait) if !matches!(error, ApiError::BodyTimeout { .. }) => ApiError::PeerLimited {
            retry_after_secs: retry_after_secs(wait),
        },
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::of(&Client::Addr(s.parse().unwrap()))
    }

    #[test]
    fn a_client_is_refused_once_its_failures_are_used_up() {
        let guard = PeerGuard::new(1, 3, 256);
        let (bad, good) = (key("203.0.113.9"), key("198.51.100.1"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(guard.failed(&bad, t0), None);
        }
        assert_eq!(
            guard.refusal(&bad, t0),
            None,
            "three failures are the burst"
        );
        assert_eq!(
            guard.failed(&bad, t0),
            None,
            "answered as its failure deserves"
        );
        assert_eq!(guard.refusal(&bad, t0), Some(Duration::from_secs(1)));
        assert_eq!(
            guard.refusal(&good, t0),
            None,
            "another client is not affected"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(guard.refusal(&bad, t1), None, "the debt is paid");
    }

    #[test]
    fn a_refusal_lasts_in_proportion_to_the_excess() {
        // (failures at once, then the refusal): 5 per second in bursts of 20.
        let table = [
            (20, None),
            (21, Some(200)),
            (25, Some(1_000)),
            (70, Some(10_000)),
            // Capped.
            (20 + 5 * 15 * 60 + 50, Some(15 * 60 * 1_000)),
        ];
        for (failures, want) in table {
            let guard = PeerGuard::new(5, 20, 256);
            let client = key("203.0.113.9");
            let t0 = Instant::now();
            for _ in 0..failures {
                guard.failed(&client, t0);
            }
            let got = guard.refusal(&client, t0).map(|d| d.as_millis());
            assert_eq!(got, want, "{failures} failures");
        }
        // Failing while refused extends the refusal; stopping lets the client in once paid.
        let guard = PeerGuard::new(5, 20, 256);
        let client = key("203.0.113.9");
        let t0 = Instant::now();
        for _ in 0..21 {
            guard.failed(&client, t0);
        }
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            guard.failed(&client, t1),
            Some(Duration::from_millis(300)),
            "refused when it failed again, and for longer"
        );
        assert_eq!(guard.refusal(&client, t1), Some(Duration::from_millis(300)));
        assert_eq!(
            guard.refusal(&client, t1 + Duration::from_millis(300)),
            None
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_named_hop_by_its_name() {
        let guard = PeerGuard::new(1, 2, 256);
        let t0 = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            guard.failed(&key(host), t0);
        }
        assert!(
            guard.refusal(&key("2001:db8:1:2::77"), t0).is_some(),
            "the same /64"
        );
        assert!(
            guard.refusal(&key("2001:db8:1:3::1"), t0).is_none(),
            "another /64"
        );
        assert_eq!(key("::ffff:198.51.100.1"), key("198.51.100.1"));
        let unknown = Key::of(&Client::Named("unknown".into()));
        for _ in 0..3 {
            guard.failed(&unknown, t0);
        }
        assert!(guard.refusal(&unknown, t0).is_some());
        assert!(guard.refusal(&key("127.0.0.1"), t0).is_none());
    }

    #[test]
    fn one_client_holds_at_most_its_share_of_the_reads() {
        let guard = PeerGuard::new(5, 20, 256);
        assert_eq!(guard.reads_per_client(), 32);
        let (stranger, sender) = (key("203.0.113.9"), key("198.51.100.1"));
        let held: Vec<_> = (0..32)
            .map(|_| guard.begin_read(&stranger).unwrap())
            .collect();
        assert!(guard.begin_read(&stranger).is_none(), "over its share");
        assert!(guard.begin_read(&sender).is_some(), "another client reads");
        drop(held);
        assert!(guard.begin_read(&stranger).is_some(), "the reads ended");
        assert!(guard.lock().reads.len() <= 1, "ended reads are forgotten");
        assert_eq!(PeerGuard::new(5, 20, 4).reads_per_client(), 1);
    }

    #[test]
    fn clients_whose_budget_refilled_are_forgotten() {
        let guard = PeerGuard::new(1000, 1, 256);
        let t0 = Instant::now();
        for n in 0..FORGET_AT as u32 {
            guard.failed(&Key::Addr(IpAddr::from(n.to_be_bytes())), t0);
        }
        let later = t0 + Duration::from_secs(1);
        guard.failed(&key("198.51.100.1"), later);
        assert_eq!(guard.lock().full_at.len(), 1);
    }
}
