//! What keeps strangers from taking the webhook endpoint away from the real senders.
//!
//! - [`client_addr`]: whom a request comes from: the TCP peer, or the address a trusted proxy
//!   put in `X-Forwarded-For` (the rightmost one that is not itself a trusted proxy, since every
//!   proxy appends and only the hops we trust are known to be honest).
//! - [`PeerGuard`]: requests that fail (no or a wrong credential, a malformed body, a body that
//!   never arrives) use up a budget per client address; a peer that has used it up is refused
//!   with `429` before anything is read, until the budget refills. A sender's own deliveries are
//!   counted by the source's rate limit, after authentication, so a flood of bad requests from
//!   elsewhere neither delays nor refuses them.
//! - The per-source cap on bodies read before authentication ([`crate::api::SourceState`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// Parses `server.trusted_proxies` entries: an address or a CIDR range.
pub fn parse_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not an IP address or a CIDR range"))
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the rightmost address of
/// `X-Forwarded-For` that is not a trusted proxy (the first one when all of them are). Garbage
/// in the header is ignored and the peer is used.
pub fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let hops: Option<Vec<IpAddr>> = header
        .split(',')
        .map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect();
    let Some(hops) = hops.filter(|h| !h.is_empty()) else {
        return peer;
    };
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// Failed requests per client address, and the addresses refused until their budget refills.
pub struct PeerGuard {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    refused: Mutex<HashMap<IpAddr, Instant>>,
}

/// More refused addresses than this and the expired ones are swept.
const SWEEP_AT: usize = 4096;
/// More addresses with failures counted than this and the ones whose budget has refilled are
/// forgotten, so that a flood from many addresses cannot grow the table without bound.
const FORGET_AT: usize = 65_536;

/// The key an address is counted under: an IPv6 address by its /64, which one client usually
/// holds whole (a host picks any address in it), an IPv4 address as it is.
fn budget_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::from([a, b, c, d, 0, 0, 0, 0])
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
        v4 => v4,
    }
}

impl PeerGuard {
    pub fn new(per_second: u32, burst: u32) -> PeerGuard {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        PeerGuard {
            failures: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `peer` has used up its budget of failures.
    pub fn admit(&self, peer: IpAddr) -> Result<(), Duration> {
        let peer = budget_key(peer);
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let wait = refused
            .get(&peer)
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|wait| !wait.is_zero());
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed request of `peer`; once its budget is gone it is refused until it
    /// refills by one.
    pub fn failed(&self, peer: IpAddr) {
        let peer = budget_key(peer);
        if self.failures.len() >= FORGET_AT {
            self.failures.retain_recent();
            self.failures.shrink_to_fit();
        }
        if let Err(not_until) = self.failures.check_key(&peer) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            if refused.len() >= SWEEP_AT {
                let now = Instant::now();
                refused.retain(|_, until| *until > now);
                self.failures.retain_recent();
            }
            refused.insert(peer, Instant::now() + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_address_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = ["127.0.0.1", "10.0.0.0/8"]
            .iter()
            .map(|e| parse_proxy(e).unwrap())
            .collect();
        let table = [
            // (peer, X-Forwarded-For) -> client
            ("203.0.113.9", Some("198.51.100.1"), "203.0.113.9"),
            ("127.0.0.1", None, "127.0.0.1"),
            ("127.0.0.1", Some("198.51.100.1"), "198.51.100.1"),
            (
                "127.0.0.1",
                Some("6.6.6.6, 198.51.100.1, 10.1.2.3"),
                "198.51.100.1",
            ),
            ("10.0.0.5", Some("10.9.9.9, 10.1.1.1"), "10.9.9.9"),
            ("127.0.0.1", Some("not-an-address"), "127.0.0.1"),
            ("127.0.0.1", Some("198.51.100.1, "), "127.0.0.1"),
            ("127.0.0.1", Some("2001:db8::1"), "2001:db8::1"),
        ];
        for (peer, header, want) in table {
            assert_eq!(
                client_addr(ip(peer), header, &trusted),
                ip(want),
                "{peer} {header:?}"
            );
        }
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.local").is_err());
    }

    #[test]
    fn a_peer_is_refused_once_its_failures_are_used_up() {
        let guard = PeerGuard::new(1, 3);
        let (bad, good) = (ip("203.0.113.9"), ip("198.51.100.1"));
        for _ in 0..3 {
            assert!(guard.admit(bad).is_ok());
            guard.failed(bad);
        }
        assert!(
            guard.admit(bad).is_ok(),
            "the third failure used the last token"
        );
        guard.failed(bad);
        let wait = guard.admit(bad).expect_err("refused");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(guard.admit(good).is_ok(), "another address is not affected");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let guard = PeerGuard::new(1, 2);
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            guard.failed(ip(host));
        }
        assert!(guard.admit(ip("2001:db8:1:2::77")).is_err(), "the same /64");
        assert!(guard.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        assert_eq!(budget_key(ip("::ffff:198.51.100.1")), ip("198.51.100.1"));
        assert_eq!(budget_key(ip("198.51.100.1")), ip("198.51.100.1"));
    }
}
