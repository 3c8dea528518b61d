//! What Alibaba Cloud's RPC-style APIs share, used by the VOD client and by the credential
//! chain's STS calls alike: the request signature ([`signing`], Signature Version 1.0), the
//! timestamp format, and reading a remote answer without letting a secret it carries into an
//! error ([`remote`]). It sits below both: neither `vod/` nor `credentials/` is imported here.

pub mod remote;
pub mod signing;

use time::OffsetDateTime;
use time::macros::format_description;

/// Installs rustls' ring provider for the process. reqwest is built with `rustls-no-provider`,
/// so every process must do this before it builds a `reqwest::Client`; installing twice is a
/// no-op error that is ignored.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `yyyy-MM-ddTHH:mm:ssZ` in UTC, no fractional seconds.
pub fn rpc_timestamp(now: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}
