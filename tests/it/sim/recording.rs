//! What the simulator records, and the faults it is told to inject.

use super::*;
#[allow(unused_imports)]
use crate::support::SendJson;

#[tokio::test]
async fn calls_and_faults_over_http() {
    let sim = fixed_sim(SimConfig::default()).await;
    let answer = send(&sim, "POST", &refresh_params(&["a1", " b2"], T0)).await;
    assert_eq!(answer.status, 200);
    let calls: Vec<RecordedCall> = http()
        .get(format!("{}/_sim/calls", sim.base_url()))
        .send_json()
        .await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (
            call.action.as_str(),
            call.access_key_id.as_str(),
            call.status
        ),
        ("RefreshMediaPlayUrls", "testid", 200)
    );
    assert_eq!(call.media_ids, ["a1", "b2"]);
    assert_eq!(call.task_type.as_deref(), Some("Refresh"));
    assert_eq!(call.at_ms, T0 * 1000);
    assert!(!call.params.contains_key("Signature") && call.params.contains_key("SignatureNonce"));

    let faults = Faults {
        fail_next: 1,
        error_code: "ServiceUnavailable".to_owned(),
        ..Faults::default()
    };
    let put = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let failed = send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
    assert_eq!((failed.status, failed.code()), (503, "ServiceUnavailable"));
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1"], T0))
            .await
            .status,
        200
    );
    let bad = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&Faults {
            error_rate: 2.0,
            ..Faults::default()
        });
    assert_eq!(bad.send().await.unwrap().status().as_u16(), 400);

    let outage = Faults {
        outage_for_ms: Some(60_000),
        ..Faults::default()
    };
    sim.set_faults(outage);
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1"], T0))
            .await
            .code(),
        "ServiceUnavailable"
    );
    sim.set_faults(Faults::default());
    // A fault answer is still recorded.
    let codes: Vec<Option<String>> = sim.calls().into_iter().map(|c| c.code).collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.as_deref() == Some("ServiceUnavailable"))
            .count(),
        2
    );

    let deleted = http()
        .delete(format!("{}/_sim/calls", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(sim.calls().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn calls_log_file_gets_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let sim = fixed_sim(SimConfig {
        calls_log: Some(path.clone()),
        ..SimConfig::default()
    })
    .await;
    send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
    send(&sim, "POST", &refresh_params(&["a1"], T0 - 3600)).await;
    sim.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let calls: Vec<RecordedCall> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].code.as_deref(), Some("InvalidTimeStamp.Expired"));
}
