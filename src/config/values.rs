//! Settings whose text is parsed into a type at load: the trusted proxies (the store's location
//! is [`crate::store::StoreLocation`]). A bad value fails the load with the key's name, in
//! `check-config` as in `serve`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Parses `server.trusted_proxies` entries: an address or a CIDR range.
pub fn parse_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not an IP address or a CIDR range"))
}

/// `server.trusted_proxies`: the addresses and ranges whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(entries: Vec<String>) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_proxy(entry).map_err(|why| format!("[{i}]: {why}")))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(proxies: TrustedProxies) -> Vec<String> {
        proxies.0.iter().map(IpNet::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_name_the_bad_entry() {
        let parsed = TrustedProxies::try_from(vec!["10.0.0.0/8".into(), "192.0.2.7".into()]);
        assert_eq!(
            Vec::<String>::from(parsed.unwrap()),
            ["10.0.0.0/8", "192.0.2.7/32"]
        );
        let err = TrustedProxies::try_from(vec!["10.0.0.0/8".into(), "lb.local".into()]);
        assert!(err.unwrap_err().starts_with("[1]: "));
    }
}
