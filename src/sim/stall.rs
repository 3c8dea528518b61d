//! The `stall_action` fault: a call that reached VOD and gets no answer.
//!
//! Tests kill the service while one of its calls is in flight, and must know that the call is in
//! flight, not guess it from the time. A stalled call is listed when it arrives
//! ([`SimHandle::stalled`](super::SimHandle::stalled), `GET /_sim/stalled`) and then hangs until
//! the fault is cleared or names another action. It is then answered `ServiceUnavailable` (503),
//! recorded like any call, and nothing is done: its media IDs are not purged and take nothing
//! from the quota, so a purge the test sees later is one the service sent again.
//!
//! Only an authenticated call hangs (a stranger's junk is answered at once); its nonce is spent,
//! as the real gateway spends it before the operation runs.

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_TYPE;
use serde_json::Value;

use super::gateway::{self, VOD_VERSION};
use super::reply::ApiError;
use super::server::{answer_rpc, recorded};
use super::state::{SimState, lock};

/// Holds a call of the stalled action until the stall ends, then answers it; `None` (at once)
/// for any other call, which is answered as usual.
pub(super) async fn hang(req: &HttpRequest, body: &[u8], state: &SimState) -> Option<(u16, Value)> {
    let action = lock(&state.faults).stall_action.clone()?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let incoming = gateway::collect_params(req.query_string(), content_type, body);
    if incoming.params.get("Action") != Some(&action) {
        return None;
    }
    gateway::authenticate(state, req.method().as_str(), &incoming, VOD_VERSION).ok()?;
    // Subscribed before the arrival is listed, so that a test that sees the arrival and then
    // clears the fault always releases this call.
    let mut stall = state.stall.subscribe();
    let arrived = recorded(req, incoming, state.clock.now_ms(), 0, None);
    lock(&state.stalled).push(arrived);
    // An error means the simulator is stopping: the call is answered all the same.
    let _ = stall
        .wait_for(|stalled| stalled.as_deref() != Some(action.as_str()))
        .await;
    Some(answer_rpc(req, body, state, |_, _, _| {
        Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ))
    }))
}
