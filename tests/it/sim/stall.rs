//! The faults the kill drills catch their moments with: a stalled action (a call that reached VOD
//! and gets no answer until the test says so) and submissions that fail while an ID is listed.

use std::time::Duration;

use super::*;
#[allow(unused_imports)]
use crate::support::{SendJson, wait_until};

fn stall(action: &str) -> Faults {
    Faults {
        stall_action: Some(action.to_owned()),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_stalled_call_is_listed_hangs_until_the_stall_ends_and_purges_nothing() {
    let sim = fixed_sim(SimConfig::default()).await;
    let before = sim.quota().refresh_remaining;
    let put = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&stall("RefreshMediaPlayUrls"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);

    let url = signed_url(
        &sim,
        "POST",
        &refresh_params(&["a1", "b2"], T0),
        Some("testsecret"),
    );
    let call = tokio::spawn(async move { send_url("POST", &url).await });
    wait_until(
        Duration::from_secs(10),
        "the call listed as stalled",
        || async { !sim.stalled().is_empty() },
    )
    .await;
    let listed: Vec<RecordedCall> = http()
        .get(format!("{}/_sim/stalled", sim.base_url()))
        .send_json()
        .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].action.as_str(), listed[0].status),
        ("RefreshMediaPlayUrls", 0)
    );
    assert_eq!(listed[0].media_ids, ["a1", "b2"]);
    assert!(!listed[0].params.contains_key("Signature"));

    // Other actions, and a call that does not authenticate, are answered meanwhile.
    let quota = send(&sim, "POST", &common("DescribeVodRefreshQuota", T0)).await;
    assert_eq!(quota.status, 200, "{}", quota.body);
    let forged = signed_url(&sim, "POST", &refresh_params(&["c3"], T0), Some("wrong"));
    assert_eq!(
        send_url("POST", &forged).await.code(),
        "SignatureDoesNotMatch"
    );
    assert!(!call.is_finished(), "the stalled call is still unanswered");
    assert_eq!(sim.stalled().len(), 1);
    assert!(
        sim.calls()
            .iter()
            .all(|c| c.action != "RefreshMediaPlayUrls" || c.code.is_some()),
        "no purge recorded while the call hangs"
    );

    // A stall of another action releases it: answered 503, recorded, and nothing purged.
    sim.set_faults(stall("GetMediaRefreshJobs"));
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("released")
        .unwrap();
    assert_eq!(
        (answer.status, answer.code()),
        (503, "ServiceUnavailable"),
        "{}",
        answer.body
    );
    let recorded: Vec<RecordedCall> = sim
        .calls()
        .into_iter()
        .filter(|c| c.media_ids == ["a1", "b2"])
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].code.as_deref(), Some("ServiceUnavailable"));
    assert_eq!(sim.quota().refresh_remaining, before, "nothing was purged");

    // Cleared, the action is answered at once again.
    sim.set_faults(Faults::default());
    let after = send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(sim.quota().refresh_remaining, before - 1);
    assert_eq!(
        sim.stalled().len(),
        1,
        "the list keeps every stalled arrival"
    );

    let empty = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({ "stall_action": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 400, "an empty action is refused");
    sim.stop().await;
}

#[tokio::test]
async fn submissions_fail_while_their_id_is_listed() {
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        failing_submissions: vec!["b2".to_owned()],
        ..Faults::default()
    });
    let statuses = |job: &str| {
        let mut params = common("GetMediaRefreshJobs", T0);
        params.insert("MediaRefreshJobId".to_owned(), job.to_owned());
        params
    };
    let first = send(&sim, "POST", &refresh_params(&["a1", "b2"], T0)).await;
    let job = first.body["MediaRefreshJobId"].as_str().unwrap().to_owned();
    let answer = send(&sim, "GET", &statuses(&job)).await;
    let mut seen: Vec<(String, String, String)> = answer.body["MediaRefreshJobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["MediaId"].as_str().unwrap_or_default().to_owned(),
                j["Status"].as_str().unwrap_or_default().to_owned(),
                j["ErrorCode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("a1".to_owned(), "success".to_owned(), String::new()),
            (
                "b2".to_owned(),
                "fail".to_owned(),
                "TooMany.Refresh".to_owned()
            ),
        ]
    );

    // Once the ID is no longer listed, its next submission goes through.
    sim.set_faults(Faults::default());
    let again = send(&sim, "POST", &refresh_params(&["b2"], T0)).await;
    let job = again.body["MediaRefreshJobId"].as_str().unwrap().to_owned();
    let answer = send(&sim, "GET", &statuses(&job)).await;
    assert_eq!(
        answer.body["MediaRefreshJobs"][0]["Status"], "success",
        "{}",
        answer.body
    );
    sim.stop().await;
}
