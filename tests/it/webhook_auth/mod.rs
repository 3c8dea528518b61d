//! Every authentication scheme against deliveries signed by an independent implementation
//! (`tests/fixtures/webhooks/gen_signatures.py`, Python standard library) and the Standard
//! Webhooks specification's published example. Nothing here signs with the project's own code.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use vod_purge::domain::Ts;
use vod_purge::webhook::{Request, Source};

use super::webhook_support::{fixture, headers, source};

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    source: Value,
    signed_with: String,
    other_secret: String,
    method: String,
    path: String,
    headers: serde_json::Map<String, Value>,
    required_headers: Vec<String>,
    signature_header: String,
    signed_at_ms: i64,
    body: Option<String>,
    body_file: Option<String>,
}

impl Case {
    fn source(&self, secrets: &[&str]) -> Source {
        let mut cfg = self.source.clone();
        cfg["secrets"] = json!(secrets);
        source(cfg)
    }

    fn body(&self) -> Vec<u8> {
        match (&self.body, &self.body_file) {
            (Some(body), _) => body.clone().into_bytes(),
            (None, Some(file)) => fixture(file),
            (None, None) => panic!("{}: no body", self.name),
        }
    }

    fn pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// Verifies with the given secrets, body, headers and clock; returns the error code.
    fn check(
        &self,
        secrets: &[&str],
        body: &[u8],
        pairs: &[(String, String)],
        now: Ts,
    ) -> Result<(), &'static str> {
        self.with_request(body, pairs, |req| {
            self.source(secrets).verify(req, now).map_err(|e| e.code())
        })
    }

    /// Calls `f` with the case's request made of `body` and the header `pairs`.
    fn with_request<R>(
        &self,
        body: &[u8],
        pairs: &[(String, String)],
        f: impl FnOnce(&Request<'_>) -> R,
    ) -> R {
        let headers = headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = Request {
            method: &self.method,
            path: &self.path,
            headers: &headers,
            body,
        };
        f(&req)
    }

    /// Calls `f` with the case's request as it was signed.
    fn as_signed<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        self.with_request(&self.body(), &self.pairs(), f)
    }
}

fn cases() -> Vec<Case> {
    let raw = fixture("signatures.json");
    let fixtures: Fixtures = serde_json::from_slice(&raw).expect("signatures.json parses");
    assert!(fixtures.cases.len() >= 10);
    fixtures.cases
}

const TOLERANCE: Duration = Duration::from_secs(5 * 60);

mod schemes;
mod signatures;
