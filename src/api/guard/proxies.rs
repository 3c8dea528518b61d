//! Whom a request comes from, behind proxies.
//!
//! Each proxy adds the address of its own peer to `X-Forwarded-For` (or a `for=` element to
//! `Forwarded`, RFC 7239), so the header lists the hops oldest first, and only what the proxies
//! we trust wrote is known to be honest: anything left of the nearest untrusted hop may be
//! forged by the client. The client is therefore found walking from the right, from the TCP
//! peer past every hop that is a trusted proxy, to the first one that is not.
//!
//! - Every line of the header counts, joined in order: HAProxy (`option forwardfor`) and others
//!   add a line of their own instead of appending to the client's, which comes first, so the
//!   first line alone is what the client wrote.
//! - A hop that names no address ends the walk, and the client is that hop: `unknown`, an
//!   obfuscated `_name` or garbage, counted under its text. Going on past it would believe what
//!   its client may have forged; giving up for the peer would put every such client under the
//!   proxy's own budget. An address written with a port (`1.2.3.4:5678`, `[2001:db8::1]:443`:
//!   not X-Forwarded-For's syntax, but some gateways write their hops so) is an address, walked
//!   past when it is a trusted proxy's.
//! - In `Forwarded`, a line whose quoted string never closes is one hop that names no address.
//! - Empty list elements are skipped (RFC 9110, 5.6.1).
//! - Only the header named in `server.forwarded_header` is read: reading both would let a
//!   client pick the one its proxy does not write.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;

use crate::config::ForwardedHeader;

pub use crate::config::parse_proxy;

/// Whom a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Addr(IpAddr),
    /// A hop that names no address (`unknown`, `_hidden`, garbage), lower-cased and cut to
    /// [`MAX_NAME`] bytes.
    Named(Box<str>),
}

/// The longest hop text kept as a client's name.
pub const MAX_NAME: usize = 64;

impl Client {
    fn named(text: &str) -> Client {
        let mut end = text.len().min(MAX_NAME);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Client::Named(text[..end].to_ascii_lowercase().into())
    }
}

/// One entry of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A plain address: passed when it is a trusted proxy, the client otherwise.
    Addr(IpAddr),
    /// Anything else: the client, and the end of the walk.
    End(Client),
}

/// The client of a request from `peer` whose forwarding header lists `hops`.
pub fn walk(peer: IpAddr, hops: &[Hop], trusted: &[IpNet]) -> Client {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return Client::Addr(peer);
    }
    let mut client = Client::Addr(peer);
    for hop in hops.iter().rev() {
        match hop {
            Hop::Addr(ip) => {
                let ip = ip.to_canonical();
                client = Client::Addr(ip);
                if !is_trusted(&ip) {
                    break;
                }
            }
            Hop::End(named) => return named.clone(),
        }
    }
    // Every hop a trusted proxy: the leftmost one.
    client
}

/// The hops of `X-Forwarded-For`, all its lines in order.
pub fn x_forwarded_for<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Hop> {
    lines
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .map(|hop| match hop.parse::<IpAddr>() {
            Ok(ip) => Hop::Addr(ip),
            // An address written with a port (as some gateways write their hops) is an address.
            Err(_) => {
                address_with_port(hop).map_or_else(|| Hop::End(Client::named(hop)), Hop::Addr)
            }
        })
        .collect()
}

/// `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:5678`: the address.
fn address_with_port(text: &str) -> Option<IpAddr> {
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The hops of `Forwarded` (RFC 7239), all its lines in order: each element's `for=` node.
///
/// A line whose quoted string never closes is one hop that names no address: a client's
/// `for="…` would otherwise swallow what a proxy appended to the same line.
pub fn forwarded<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Hop> {
    lines
        .into_iter()
        .flat_map(|line| {
            if closes_its_quotes(line) {
                split_unquoted(line, ',').collect()
            } else {
                vec!["for=malformed"]
            }
        })
        .filter(|element| !element.trim().is_empty())
        .map(|element| {
            let node = split_unquoted(element, ';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| unquote(value.trim()))
            });
            match node {
                Some(node) => forwarded_node(&node),
                // The proxy did not say whom it received this from.
                None => Hop::End(Client::named("unknown")),
            }
        })
        .collect()
}

/// A `for=` node: `192.0.2.43`, `"192.0.2.43:47011"`, `"[2001:db8:cafe::17]:4711"`, `unknown`,
/// `_hidden`.
fn forwarded_node(node: &str) -> Hop {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Hop::Addr(ip);
    }
    let address = if let Some(rest) = node.strip_prefix('[') {
        rest.split_once(']')
            .filter(|(_, port)| port.is_empty() || port.len() > 1 && port.starts_with(':'))
            .and_then(|(ip, _)| ip.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6)
    } else {
        node.split_once(':')
            .filter(|(_, port)| !port.is_empty())
            .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok())
            .map(IpAddr::V4)
    };
    address.map_or_else(|| Hop::End(Client::named(node)), Hop::Addr)
}

/// Whether every quoted string in `text` is closed.
fn closes_its_quotes(text: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// Splits `text` at `separator`, except inside a quoted string.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// A token as it is, a quoted string without its quotes and escapes.
fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        }
        None => value.to_owned(),
    }
}

/// `server.trusted_proxies` and `server.forwarded_header`, and whether the warning about an
/// untrusted proxy has been logged.
pub struct Proxies {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    warned: AtomicBool,
}

impl Proxies {
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Proxies {
        Proxies {
            trusted,
            header,
            warned: AtomicBool::new(false),
        }
    }

    /// The header the client is read from (lower case).
    pub fn header_name(&self) -> &'static str {
        match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }

    /// The client of a request from `peer` with `lines`, the lines of the configured header.
    pub fn client<'a>(&self, peer: IpAddr, lines: impl IntoIterator<Item = &'a str>) -> Client {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return Client::Addr(peer);
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(lines),
            ForwardedHeader::Forwarded => forwarded(lines),
        };
        walk(peer, &hops, &self.trusted)
    }

    fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// Whether the warning of [`Proxies::report_unlisted`] has been logged.
    pub fn reported(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }

    /// Call for a request that carried `X-Forwarded-For` or `Forwarded` from `peer`. From a peer
    /// that is not a trusted proxy, that means a proxy nobody listed, and every client behind it
    /// is counted as one: the first such request is logged, once per process.
    ///
    /// Only a peer in a private, loopback, link-local or shared range is reported: a proxy of
    /// the operator's is there, while a stranger on the internet may send the header to be
    /// named in the log (and listed as a proxy by an operator who follows it).
    pub fn report_unlisted(&self, peer: IpAddr) {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) && is_internal(peer) && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                peer = %peer,
                "a request carried X-Forwarded-For or Forwarded from {peer}, which is not in server.trusted_proxies: the header is ignored for the budget of failed requests, and every client behind that proxy is counted as one. If {peer} is your proxy or ingress, list it in server.trusted_proxies (see \"Exposed to the internet\" in docs/deploy.md). Logged once."
            );
        }
    }

    /// The last hop of the configured header, as its writer (the peer) names it.
    pub fn last_hop<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> Option<Client> {
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(lines),
            ForwardedHeader::Forwarded => forwarded(lines),
        };
        hops.last().map(|hop| match hop {
            Hop::Addr(ip) => Client::Addr(ip.to_canonical()),
            Hop::End(client) => client.clone(),
        })
    }

    /// Whether `peer` is a trusted proxy.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.is_trusted(peer.to_canonical())
    }
}

/// A private (RFC 1918, unique local), loopback, link-local or shared (RFC 6598) address.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Client {
        Client::Addr(s.parse().unwrap())
    }

    fn named(s: &str) -> Client {
        Client::Named(s.into())
    }

    fn trusted() -> Vec<IpNet> {
        ["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"]
            .iter()
            .map(|e| parse_proxy(e).unwrap())
            .collect()
    }

    #[test]
    fn the_client_behind_trusted_proxies_in_x_forwarded_for() {
        // (peer, the header's lines) -> client
        let table: &[(&str, &[&str], Client)] = &[
            // Not from a proxy: the header is not believed.
            ("203.0.113.9", &["198.51.100.1"], addr("203.0.113.9")),
            ("127.0.0.1", &[], addr("127.0.0.1")),
            ("::ffff:127.0.0.1", &["198.51.100.1"], addr("198.51.100.1")),
            ("127.0.0.1", &["198.51.100.1"], addr("198.51.100.1")),
            // The rightmost hop that is not a trusted proxy; what is left of it may be forged.
            (
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.1, 10.1.2.3"],
                addr("198.51.100.1"),
            ),
            // Every hop trusted: the leftmost.
            ("10.0.0.5", &["10.9.9.9, 10.1.1.1"], addr("10.9.9.9")),
            ("127.0.0.1", &["2001:db8::1"], addr("2001:db8::1")),
            (
                "127.0.0.1",
                &["2001:db8::1, 2001:db8:ffff::2"],
                addr("2001:db8::1"),
            ),
            // HAProxy's own line comes last; the client's forged one first.
            (
                "127.0.0.1",
                &["198.51.100.1", "203.0.113.66"],
                addr("203.0.113.66"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1, 6.6.6.6", "203.0.113.66, 10.0.0.2"],
                addr("203.0.113.66"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1", "10.0.0.2"],
                addr("198.51.100.1"),
            ),
            // Empty elements are skipped.
            ("127.0.0.1", &["198.51.100.1, "], addr("198.51.100.1")),
            ("127.0.0.1", &["", " ,, "], addr("127.0.0.1")),
            // A hop that names no address ends the walk and is the client.
            ("127.0.0.1", &["198.51.100.1, unknown"], named("unknown")),
            (
                "127.0.0.1",
                &["198.51.100.1, Unknown, 10.0.0.2"],
                named("unknown"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1, not-an-address"],
                named("not-an-address"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1, 1.2.3.4:5678"],
                addr("1.2.3.4"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1, [2001:db8::1]"],
                addr("2001:db8::1"),
            ),
            (
                "127.0.0.1",
                &["198.51.100.1, [2001:db8::1]:443"],
                addr("2001:db8::1"),
            ),
            // An address with a port is an address: a trusted proxy's is walked past.
            (
                "127.0.0.1",
                &["198.51.100.1, 10.0.0.9:80"],
                addr("198.51.100.1"),
            ),
            // Only what a trusted proxy wrote is read: garbage left of the client is not.
            (
                "127.0.0.1",
                &["unknown, 198.51.100.1"],
                addr("198.51.100.1"),
            ),
            ("10.0.0.5", &["198.51.100.1, x"], named("x")),
        ];
        let trusted = trusted();
        for (peer, lines, want) in table {
            let hops = x_forwarded_for(lines.iter().copied());
            assert_eq!(
                &walk(peer.parse().unwrap(), &hops, &trusted),
                want,
                "{peer} {lines:?}"
            );
        }
        let long = "x".repeat(500);
        let hops = x_forwarded_for([long.as_str()]);
        assert_eq!(
            walk("127.0.0.1".parse().unwrap(), &hops, &trusted),
            named(&long[..MAX_NAME])
        );
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.local").is_err());
    }

    #[test]
    fn the_client_behind_trusted_proxies_in_forwarded() {
        let table: &[(&[&str], Client)] = &[
            (&["for=198.51.100.1"], addr("198.51.100.1")),
            (&["For=\"198.51.100.1:4711\""], addr("198.51.100.1")),
            (
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                addr("192.0.2.60"),
            ),
            (
                &["for=\"[2001:db8:cafe::17]:4711\""],
                addr("2001:db8:cafe::17"),
            ),
            (&["for=\"[2001:db8:cafe::17]\""], addr("2001:db8:cafe::17")),
            (
                &["for=6.6.6.6, for=198.51.100.1;proto=https, for=10.0.0.2"],
                addr("198.51.100.1"),
            ),
            (
                &["for=198.51.100.1", "for=203.0.113.66"],
                addr("203.0.113.66"),
            ),
            (&["for=10.0.0.3", "for=10.0.0.2"], addr("10.0.0.3")),
            (&["for=6.6.6.6, for=unknown"], named("unknown")),
            (&["for=6.6.6.6, for=_Hidden;by=_proxy"], named("_hidden")),
            (&["for=6.6.6.6, for=\"_x\\\"y\""], named("_x\"y")),
            // A comma or semicolon inside quotes belongs to the value.
            (&["for=6.6.6.6, for=\"a,b;c\""], named("a,b;c")),
            (&["for=6.6.6.6, proto=https"], named("unknown")),
            (&["for=\"[2001:db8::1\""], named("[2001:db8::1")),
            (&["for=6.6.6.6, , for=198.51.100.7"], addr("198.51.100.7")),
            (&[""], addr("127.0.0.1")),
            // A quote that never closes would swallow what the proxy appended: one bad hop.
            (
                &["for=198.51.100.1;x=\", for=203.0.113.66"],
                named("malformed"),
            ),
            (
                &["for=198.51.100.1;x=\"", "for=203.0.113.66"],
                addr("203.0.113.66"),
            ),
        ];
        let trusted = trusted();
        for (lines, want) in table {
            let hops = forwarded(lines.iter().copied());
            assert_eq!(
                &walk("127.0.0.1".parse().unwrap(), &hops, &trusted),
                want,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let proxies = Proxies::new(trusted(), ForwardedHeader::Forwarded);
        let peer = "127.0.0.1".parse().unwrap();
        assert_eq!(proxies.header_name(), "forwarded");
        assert_eq!(
            proxies.client(peer, ["for=198.51.100.1"]),
            addr("198.51.100.1")
        );
        let xff = Proxies::new(trusted(), ForwardedHeader::XForwardedFor);
        assert_eq!(xff.header_name(), "x-forwarded-for");
        assert_eq!(xff.client(peer, ["198.51.100.1"]), addr("198.51.100.1"));
        assert_eq!(
            xff.client(peer, ["for=198.51.100.1"]),
            named("for=198.51.100.1")
        );
        let untrusted: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(xff.client(untrusted, ["198.51.100.1"]), addr("203.0.113.9"));
        xff.report_unlisted(peer);
        assert!(!xff.reported(), "a trusted proxy is not reported");
        xff.report_unlisted("::ffff:203.0.113.9".parse().unwrap());
        assert!(!xff.reported(), "a stranger on the internet is not named");
        xff.report_unlisted("::ffff:192.168.5.5".parse().unwrap());
        assert!(xff.reported(), "an unlisted proxy in a private range is");
        for (ip, internal) in [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("169.254.1.1", true),
            ("127.0.0.1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::1", true),
            ("203.0.113.9", false),
            ("100.128.0.1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_internal(ip.parse().unwrap()), internal, "{ip}");
        }
    }
}
