//! A hold survives the process that made it: after a restart, and after a leader change on
//! PostgreSQL, no batch of the held task type goes out before the hold's probe has succeeded.
//!
//! The simulator answers every call [`LATENCY_MS`] after it arrives once the quota is back, so
//! the probe's answer leaves at least that long after its arrival: a call that arrives sooner
//! was sent before the probe succeeded.

use super::holds::{held_and_quiet, slow_probes};
use super::*;

const LATENCY_MS: u64 = 500;

/// The quota back, and every answer late by [`LATENCY_MS`].
fn back_and_slow(sim: &SimHandle) {
    set_refresh_quota(sim, 10_000_000);
    sim.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    });
}

/// The first `RefreshMediaPlayUrls` call after `killed_at` is one probe (IDs of held jobs only,
/// answered with success), and every other call arrives after its answer.
fn probe_went_first(sim: &SimHandle, killed_at: i64, held: &BTreeSet<String>) {
    let mut after: Vec<RecordedCall> = sim
        .calls()
        .into_iter()
        .filter(|c| c.action == "RefreshMediaPlayUrls" && c.at_ms > killed_at)
        .collect();
    after.sort_by_key(|c| c.at_ms);
    let summary: Vec<(i64, u16, usize)> = after
        .iter()
        .map(|c| (c.at_ms - killed_at, c.status, c.media_ids.len()))
        .collect();
    let probe = after.first().expect("calls after the kill");
    assert_eq!(probe.status, 200, "the probe went through: {summary:?}");
    assert!(
        !probe.media_ids.is_empty() && probe.media_ids.iter().all(|id| held.contains(id)),
        "the first call is a held job's probe, not a new batch: {:?} (calls after the kill, \
         as ms after it, status, IDs: {summary:?})",
        probe.media_ids
    );
    let answered = probe.at_ms + LATENCY_MS as i64;
    let early: Vec<&(i64, u16, usize)> = summary[1..]
        .iter()
        .zip(&after[1..])
        .filter(|(_, c)| c.at_ms < answered)
        .map(|(s, _)| s)
        .collect();
    assert!(
        early.is_empty(),
        "calls went out before the probe's answer ({} ms after the kill): {early:?}",
        probe.at_ms - killed_at
    );
}

on_each_backend! {
    /// Jobs held, events waiting behind the hold, the process killed before the first probe;
    /// the quota is back when it restarts. Its first call is the probe.
    async fn a_hold_survives_a_restart(backing: &Backing) {
        let sim = simulator().await;
        set_refresh_quota(&sim, 0);
        let knobs = slow_probes();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        first.post(&ids("survive", 40), &mut acked).await;
        let (held, next_probe) = held_and_quiet(&first).await;
        first.post(&ids("behind", 40), &mut acked).await;
        first.kill();
        let killed_at = now_ms();
        assert!(killed_at < next_probe, "the kill must land before the first probe");
        back_and_slow(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
        probe_went_first(&sim, killed_at, &held);
    }
}

/// Two replicas on one database: the leader holds the jobs and is killed; the other takes over
/// with the quota back, and its first call is the probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_survives_a_leader_change() {
    let Some(backing) = Backing::postgres("kills::handover::a_hold_survives_a_leader_change").await
    else {
        return;
    };
    let sim = simulator().await;
    set_refresh_quota(&sim, 0);
    let knobs = slow_probes();
    let mut replicas = vec![
        Service::start(&backing, 0, &sim.base_url(), &knobs).await,
        Service::start(&backing, 1, &sim.base_url(), &knobs).await,
    ];
    let leader = leader_of(&replicas, None).await;
    let follower = 1 - leader;

    // Events reach both replicas; the leader holds the jobs.
    let mut acked = Acked::default();
    replicas[follower]
        .post(&ids("leader", 40), &mut acked)
        .await;
    let (held, next_probe) = held_and_quiet(&replicas[leader]).await;
    replicas[follower]
        .post(&ids("behind", 40), &mut acked)
        .await;
    replicas[leader].kill();
    let killed_at = now_ms();
    assert!(
        killed_at < next_probe,
        "the kill must land before the first probe"
    );
    back_and_slow(&sim);

    assert_eq!(leader_of(&replicas, Some(leader)).await, follower);
    settle(&sim, &replicas[follower], &acked).await;
    probe_went_first(&sim, killed_at, &held);
}

/// Waits (at most 20 s) until exactly one replica other than `dead` leads; returns its index.
async fn leader_of(replicas: &[Service], dead: Option<usize>) -> usize {
    wait_for("one leader", || async {
        let mut leaders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if Some(i) != dead && replica.is_leader().await {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}
