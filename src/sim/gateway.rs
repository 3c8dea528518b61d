//! The checks Alibaba's API gateway makes before an operation runs (`vod-api.md` §8 items 1–7):
//! parameters, timestamp, AccessKey, signature, nonce, then injected faults and the rate limit.
//!
//! The order matters: the nonce is remembered only after the signature matched, so a forged
//! request cannot burn someone's nonce, and faults and throttling only hit authenticated calls.

use std::collections::BTreeMap;

use serde_json::Value;

use super::actions;
use super::reply::ApiError;
use super::state::{SimState, lock};
use super::verify::{expected_signature, parse_timestamp, server_string_to_sign, signatures_match};

/// The decoded parameters of one request.
#[derive(Debug, Default)]
pub struct Incoming {
    /// Query and form-body parameters merged (a later value wins).
    pub params: BTreeMap<String, String>,
    /// The first name that appeared more than once; such a request is refused.
    pub duplicate: Option<String>,
}

/// Form-decodes the query and, for `application/x-www-form-urlencoded`, the body (`+` is a space
/// in both, as Python SDKs send it). Any other body is ignored, like the SDKs' empty one.
pub fn collect_params(query: &str, content_type: Option<&str>, body: &[u8]) -> Incoming {
    let is_form = content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let body = if is_form { body } else { &[] };
    let mut incoming = Incoming::default();
    for (name, value) in
        form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body))
    {
        let previous = incoming
            .params
            .insert(name.clone().into_owned(), value.into_owned());
        if previous.is_some() && incoming.duplicate.is_none() {
            incoming.duplicate = Some(name.into_owned());
        }
    }
    incoming
}

fn required<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::missing(name))
}

/// The API version of VOD's operations.
pub const VOD_VERSION: &str = "2017-03-21";

/// Runs every gateway check and then the action; `Ok` is the success body without `RequestId`.
pub fn handle(state: &SimState, method: &str, incoming: &Incoming) -> Result<Value, ApiError> {
    let access_key_id = authenticate(state, method, incoming, VOD_VERSION)?;
    let params = &incoming.params;
    let action = required(params, "Action")?;

    if let Some(fault) =
        lock(&state.faults).inject(action, state.clock.now_ms(), rand::random::<f64>())
    {
        return Err(ApiError::new(fault.status, &fault.code, fault.message));
    }

    let (qps, window, sliding) = {
        let faults = lock(&state.faults);
        (faults.qps, faults.qps_window, faults.qps_sliding)
    };
    let key = (
        access_key_id.to_owned(),
        actions::rate_group(action).to_owned(),
    );
    let allowed = match qps {
        Some(qps) if sliding => state.within_sliding_second(key, qps),
        Some(qps) if window => state.within_window(key, qps),
        // Each account has its rates, which apply to its keys and the STS keys issued for it;
        // the URL calls have a rate of their own (`url_qps`); the `qps` fault lowers both, for
        // every account.
        _ => state
            .limiter(
                &state.account_of(access_key_id),
                actions::is_url_call(action),
                qps,
            )
            .check_key(&key)
            .is_ok(),
    };
    if !allowed {
        return Err(ApiError::new(
            503,
            "Throttling",
            "Request was denied due to request throttling.",
        ));
    }

    actions::dispatch(state, method, action, access_key_id, params)
}

/// The checks of a signed call up to the nonce: parameters, `version`, timestamp, AccessKey
/// and STS token, signature. Returns the caller's AccessKeyId.
pub fn authenticate<'a>(
    state: &SimState,
    method: &str,
    incoming: &'a Incoming,
    expected_version: &str,
) -> Result<&'a str, ApiError> {
    let params = &incoming.params;
    if let Some(name) = &incoming.duplicate {
        return Err(ApiError::invalid(format!(
            "The parameter \"{name}\" is given more than once."
        )));
    }
    required(params, "Action")?;
    let version = required(params, "Version")?;
    let access_key_id = required(params, "AccessKeyId")?;
    let timestamp = required(params, "Timestamp")?;
    let string_to_sign = server_string_to_sign(method, params);
    for name in [
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
    ] {
        if params.get(name).is_none_or(|v| v.is_empty()) {
            return Err(ApiError::new(
                400,
                "IncompleteSignature",
                format!(
                    "The request signature does not conform to Aliyun standards ({name} is missing). \
                     server string to sign is:{string_to_sign}"
                ),
            ));
        }
    }
    if version != expected_version {
        return Err(ApiError::new(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    if params["SignatureMethod"] != "HMAC-SHA1" {
        return Err(ApiError::new(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        ));
    }
    if params["SignatureVersion"] != "1.0" {
        return Err(ApiError::new(
            400,
            "InvalidSignatureVersion",
            "Specified signature version is not valid.",
        ));
    }
    // VOD's default is XML; the simulator only speaks JSON, and accepts a missing Format as JSON.
    if params
        .get("Format")
        .is_some_and(|f| !f.eq_ignore_ascii_case("json"))
    {
        return Err(ApiError::invalid("The simulator only answers Format=JSON."));
    }

    let sent_at = parse_timestamp(timestamp).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted (expected yyyy-MM-ddTHH:mm:ssZ).",
        )
    })?;
    let now = state.clock.now_secs();
    let tolerance = i64::try_from(state.tolerance.as_secs()).unwrap_or(i64::MAX);
    if sent_at.abs_diff(now) > tolerance.unsigned_abs() {
        return Err(ApiError::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }

    let secret = key_secret(state, access_key_id, params.get("SecurityToken"))?;
    let expected = expected_signature(&secret, &string_to_sign);
    if !signatures_match(&expected, &params["Signature"]) {
        return Err(ApiError::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }

    let nonce_key = (access_key_id.to_owned(), params["SignatureNonce"].clone());
    if !lock(&state.nonces).insert(nonce_key, sent_at.saturating_add(tolerance), now) {
        return Err(ApiError::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }

    Ok(access_key_id)
}

/// The secret of `access_key_id` once its STS token (if it is an STS key) checks out.
fn key_secret(
    state: &SimState,
    access_key_id: &str,
    token: Option<&String>,
) -> Result<String, ApiError> {
    let token = token.filter(|t| !t.is_empty());
    let missing_token = || {
        ApiError::new(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for this action.",
        )
    };
    let mismatch = || {
        ApiError::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    };
    if let Some(account) = state.accounts.get(access_key_id) {
        if account.is_sts() {
            let token = token.ok_or_else(missing_token)?;
            if !account.security_tokens.is_empty() && !account.security_tokens.contains(token) {
                return Err(mismatch());
            }
        }
        return Ok(account.access_key_secret.clone());
    }
    let issued = lock(&state.issued).get(access_key_id).cloned();
    let Some(key) = issued else {
        return Err(ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    let token = token.ok_or_else(missing_token)?;
    if *token != key.token {
        return Err(mismatch());
    }
    if state.clock.now_ms() >= key.expires_ms {
        return Err(ApiError::new(
            400,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        ));
    }
    Ok(key.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_body_merge() {
        let incoming = collect_params(
            "A=1&B=x%20y&C=p+q",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"D=%E8%A7%86+1&E=",
        );
        let got: Vec<(&str, &str)> = incoming
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "1"),
                ("B", "x y"),
                ("C", "p q"),
                ("D", "视 1"),
                ("E", "")
            ]
        );
        assert_eq!(incoming.duplicate, None);
    }

    #[test]
    fn other_bodies_are_ignored_and_duplicates_noticed() {
        let incoming = collect_params("A=1", Some("application/json"), b"B=2");
        assert!(!incoming.params.contains_key("B"));
        let incoming = collect_params("A=1", Some("application/x-www-form-urlencoded"), b"A=2");
        assert_eq!(incoming.duplicate.as_deref(), Some("A"));
    }
}
