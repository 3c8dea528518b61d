//! The account's limits: per-second throttling, the daily quota, a rate shared at runtime.

use super::*;
#[allow(unused_imports)]
use crate::support::SendJson;

#[tokio::test]
async fn fifty_one_calls_of_one_action_within_one_second_are_throttled() {
    // The clock is fixed, so all 51 calls fall into the same instant whatever the machine's speed.
    let sim = fixed_sim(SimConfig::default()).await;
    let mut statuses = Vec::new();
    for _ in 0..51 {
        let answer = send(&sim, "POST", &refresh_params(&["a1"], T0)).await;
        statuses.push((answer.status, answer.code().to_owned()));
    }
    assert!(
        statuses[..50].iter().all(|(s, _)| *s == 200),
        "{statuses:?}"
    );
    assert_eq!(statuses[50], (503, "Throttling".to_owned()));
    // VOD limits each operation on its own: polling a job in the same instant is not throttled.
    let mut jobs = common("GetMediaRefreshJobs", T0);
    jobs.insert("MediaRefreshJobId".to_owned(), "x".to_owned());
    let poll = send(&sim, "GET", &jobs).await;
    assert_eq!(poll.status, 200, "{}", poll.body);
    let throttled = sim
        .calls()
        .into_iter()
        .filter(|c| c.code.as_deref() == Some("Throttling"))
        .count();
    assert_eq!(throttled, 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_token_bucket_runs_on_real_time_too() {
    // Burst 2, one token per 500 ms: three back-to-back calls on loopback cannot all pass.
    let sim = sim::start(SimConfig {
        qps: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            send(&sim, "POST", &refresh_params(&["a1"], now_secs()))
                .await
                .code()
                .to_owned(),
        );
    }
    assert_eq!(codes, ["", "", "Throttling"]);
    sim.stop().await;
}

#[tokio::test]
async fn quota_is_counted_per_media_id_and_refused_when_used_up() {
    let sim = fixed_sim(SimConfig {
        quota_refresh: 3,
        quota_preload: 1,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a1", "a2"], T0))
            .await
            .status,
        200
    );
    let over = send(&sim, "POST", &refresh_params(&["a3", "a4"], T0)).await;
    assert_eq!((over.status, over.code()), (400, "QuotaExceeded.Refresh"));
    let mut preload = refresh_params(&["a1", "a2"], T0);
    preload.insert("TaskType".to_owned(), "Preload".to_owned());
    assert_eq!(
        send(&sim, "POST", &preload).await.code(),
        "QuotaExceeded.Preload"
    );
    let quota = send(&sim, "POST", &common("DescribeVodRefreshQuota", T0)).await;
    assert_eq!(quota.status, 200, "{}", quota.body);
    assert_eq!(quota.body["UrlQuota"], "3");
    assert_eq!(quota.body["UrlRemain"], "1");
    assert_eq!(quota.body["PreloadRemain"], "1");
    assert_eq!(quota.body["blockRemain"], "500");
    sim.stop().await;
}

/// Another client's share of the account: the `qps` fault lowers the per-second limit at
/// runtime, and lifting it restores the configured one.
#[tokio::test]
async fn the_rate_limit_can_be_lowered_at_runtime() {
    // The fixed clock stops the limiter's time: what passes depends on the count alone.
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        qps: Some(2),
        ..Faults::default()
    });
    let mut codes = Vec::new();
    for _ in 0..3 {
        let answer = send(&sim, "POST", &refresh_params(&["a"], T0)).await;
        codes.push(answer.code().to_owned());
    }
    assert_eq!(codes, ["", "", "Throttling"]);
    sim.set_faults(Faults::default());
    assert_eq!(
        send(&sim, "POST", &refresh_params(&["a"], T0)).await.status,
        200
    );
    let refused = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"qps": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_per_second_window_counts_each_second_apart() {
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        qps: Some(2),
        qps_window: true,
        ..Faults::default()
    });
    let mut codes = Vec::new();
    // Two seconds of the fixed clock, three calls each: the third of each second is refused.
    for second in [T0, T0 + 1] {
        sim.set_clock(Some(second));
        for _ in 0..3 {
            let answer = send(&sim, "POST", &refresh_params(&["a"], second)).await;
            codes.push(answer.code().to_owned());
        }
    }
    assert_eq!(codes, ["", "", "Throttling", "", "", "Throttling"]);
}

#[tokio::test]
async fn a_sliding_second_counts_arrivals_in_any_1000_ms() {
    let sim = fixed_sim(SimConfig::default()).await;
    sim.set_faults(Faults {
        qps: Some(2),
        qps_sliding: true,
        ..Faults::default()
    });
    // (milliseconds after T0, answer): fixed windows would let the call at 1,100 ms through
    // (the second from 1,000 ms holds one call); the last 1,000 ms hold two.
    let table = [
        (900, ""),
        (1_000, ""),
        (1_100, "Throttling"),
        (1_899, "Throttling"),
        (1_900, ""),
        (1_950, "Throttling"),
    ];
    let mut codes = Vec::new();
    for (ms, _) in table {
        sim.set_clock_ms(Some(T0 * 1000 + ms));
        let answer = send(&sim, "POST", &refresh_params(&["a"], T0 + ms / 1000)).await;
        codes.push(answer.code().to_owned());
    }
    let want: Vec<String> = table.iter().map(|(_, code)| code.to_string()).collect();
    assert_eq!(codes, want);
}

#[tokio::test]
async fn the_quota_left_can_be_read_and_set() {
    let sim = fixed_sim(SimConfig {
        quota_refresh: 40,
        ..SimConfig::default()
    })
    .await;
    let quota: serde_json::Value = http()
        .put(format!("{}/_sim/quota", sim.base_url()))
        .json(&serde_json::json!({"refresh_remaining": 1}))
        .send_json()
        .await;
    assert_eq!(quota["refresh_remaining"], 1);
    assert_eq!(quota["refresh_quota"], 40);
    let two = send(&sim, "POST", &refresh_params(&["a", "b"], T0)).await;
    assert_eq!(two.code(), "QuotaExceeded.Refresh");
    let one = send(&sim, "POST", &refresh_params(&["a"], T0)).await;
    assert_eq!(one.status, 200);
    assert_eq!(sim.quota().refresh_remaining, 0);
    let refused = http()
        .put(format!("{}/_sim/quota", sim.base_url()))
        .json(&serde_json::json!({"refresh_left": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
