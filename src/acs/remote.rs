//! How the service talks to the services it depends on (VOD, STS, the metadata service, a
//! credentials URI): the rules every one of those requests shares, kept in one place so that no
//! caller can forget one.
//!
//! - **No redirects.** None of these services redirects a caller; a redirect comes from
//!   something in between, and following it would carry a signed query or the metadata token
//!   header to whatever host it names (reqwest follows ten by default, across hosts and from
//!   https to http). A 3xx is an answer like any other refusal.
//! - **Answers under a cap.** An answer is read chunk by chunk up to a cap (64 KiB for a
//!   credential, 1 MiB for VOD), so a broken or hostile endpoint cannot make the process hold an
//!   unbounded body; a declared length over the cap is refused before a byte is read.
//! - **No URL in an error.** reqwest's error text carries the whole request URL, and these URLs
//!   carry a signature, an STS security token or a credentials URI's query token. Errors drop
//!   it ([`reqwest::Error::without_url`]) and name the endpoint by its host only ([`host_of`]),
//!   so nothing that reaches a log line, a job's error or an API answer holds a secret.
//! - **No secret echoed back.** An answer's text is quoted in errors, and servers echo what they
//!   were sent: Alibaba's `SignatureDoesNotMatch` quotes its string to sign, which holds the
//!   security token. Quoted text goes through [`Carried::scrub`], which takes out what the
//!   request carried.

use std::time::Duration;

/// The largest credential answer read (STS, the metadata service, a credentials URI): the
/// real ones are under 4 KiB.
pub const CREDENTIAL_ANSWER_CAP: usize = 64 * 1024;
/// The largest VOD answer read: a `GetMediaRefreshJobs` answer for 20 IDs is a few KiB.
pub const VOD_ANSWER_CAP: usize = 1024 * 1024;

/// A client for one of the remote services: no redirects, the given timeouts.
pub fn client(connect: Option<Duration>, total: Duration) -> Result<reqwest::Client, String> {
    super::install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(total);
    if let Some(connect) = connect {
        builder = builder.connect_timeout(connect);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e)))
}

/// At most `chars` characters of `text`, and `…` when it was longer: what a message quotes of a
/// remote answer, whose size is the remote's to choose.
pub fn cut(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// The host (and port, when one is given) of `url`, which is all an error may say of it: no
/// user information, no path, no query.
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "an endpoint without a host".to_owned(),
        },
        Err(_) => "an endpoint that is not a URL".to_owned(),
    }
}

/// What went wrong with a request, without its URL: reqwest's message and its causes.
pub fn describe(err: reqwest::Error) -> String {
    error_chain(&err.without_url())
}

/// reqwest's own message is terse ("error sending request"); the causes say what happened.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The secrets one request carried (a security token, a signature, an OIDC token, a
/// credentials URI's query): text quoted from its answer is shown without them.
#[derive(Debug, Clone, Default)]
pub struct Carried(Vec<String>);

/// Shorter values are not taken out (they would cut ordinary words out of a message); every
/// secret a request carries is far longer.
const SHORTEST_SECRET: usize = 8;
/// Alibaba's gateways quote their canonical request after this; it holds every parameter.
const STRING_TO_SIGN: &str = "string to sign is:";
const REDACTED: &str = "<redacted>";

impl Carried {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Carried {
        let mut forms = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.len() < SHORTEST_SECRET {
                continue;
            }
            // As sent, and percent-encoded once and twice (a string to sign encodes the
            // encoded query again), the longest first so that no part of one is left.
            let once = super::signing::percent_encode(secret);
            let twice = super::signing::percent_encode(&once);
            forms.extend([twice, once, secret.to_owned()]);
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Carried(forms)
    }

    /// `text` without the carried secrets and without a quoted string to sign.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(at) = out.find(STRING_TO_SIGN) {
            out.truncate(at + STRING_TO_SIGN.len());
            out.push_str(" <not shown: it quotes the request's parameters>");
        }
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the cap (declared or as read).
    TooLarge { cap: usize },
    /// The connection failed or timed out while reading.
    Transport(reqwest::Error),
}

/// Reads an answer's body, at most `cap` bytes, chunk by chunk.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    let cap_bytes = u64::try_from(cap).unwrap_or(u64::MAX);
    if response.content_length().is_some_and(|len| len > cap_bytes) {
        return Err(ReadError::TooLarge { cap });
    }
    // The buffer grows with the bytes received: a declared length is not trusted to reserve.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `64 KiB`, `1 MiB`: a cap as an operator reads it.
pub fn size_text(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_only() {
        let table = [
            ("https://sts.aliyuncs.com/?Signature=x", "sts.aliyuncs.com"),
            (
                "http://127.0.0.1:9000/_sim/credentials?token=secret",
                "127.0.0.1:9000",
            ),
            ("http://user:pass@example.com/path", "example.com"),
            ("http://[::1]:8080/", "[::1]:8080"),
            ("not a url ?token=secret", "an endpoint that is not a URL"),
        ];
        for (url, want) in table {
            assert_eq!(host_of(url), want, "{url}");
        }
    }

    #[test]
    fn carried_secrets_are_taken_out_in_every_form() {
        let token = "CAIS+token/with=signs";
        let carried = Carried::new([token, "short", "sig+nature/value="]);
        let table = [
            (format!("token {token} echoed"), "token <redacted> echoed"),
            (
                "encoded CAIS%2Btoken%2Fwith%3Dsigns here".to_owned(),
                "encoded <redacted> here",
            ),
            (
                "twice CAIS%252Btoken%252Fwith%253Dsigns".to_owned(),
                "twice <redacted>",
            ),
            ("a short word stays".to_owned(), "a short word stays"),
            (
                "Specified signature is not matched with our calculation. server string to sign is:\
                 POST&%2F&AccessKeyId%3DSTS.x%26SecurityToken%3Dabc"
                    .to_owned(),
                "Specified signature is not matched with our calculation. server string to sign \
                 is: <not shown: it quotes the request's parameters>",
            ),
        ];
        for (text, want) in table {
            assert_eq!(carried.scrub(&text), want, "{text}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size_text(CREDENTIAL_ANSWER_CAP), "64 KiB");
        assert_eq!(size_text(VOD_ANSWER_CAP), "1 MiB");
        assert_eq!(size_text(1000), "1000 bytes");
    }
}
