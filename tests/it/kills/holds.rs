//! Killed while the daily quota holds the jobs: with the hold's probe in flight (hanging at VOD,
//! or carried out and its answer late), and between probes. Events that arrive during the hold
//! wait behind it and must go out too.

use super::*;

use vod_purge::domain::Ts;

on_each_backend! {
    /// The quota is used up, the jobs are held, and the one probe of the hold hangs at VOD when
    /// the process is killed. The quota comes back: the probe's IDs, the other held jobs and the
    /// events that waited behind the hold must all go out, and the hold must end.
    async fn killed_with_a_quota_probe_in_flight(backing: &Backing) {
        let sim = simulator().await;
        set_refresh_quota(&sim, 0);
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        first.post(&ids("probe", 40), &mut acked).await;
        wait_for_job(&first, "held", "a job held on the quota", |_| true).await;
        first.post(&ids("behind", 20), &mut acked).await;

        sim.set_faults(stall("RefreshMediaPlayUrls"));
        let probe = wait_for("the hold's probe to reach VOD", || async {
            let stalled = sim.stalled();
            first.jobs("in_flight").await.into_iter().find(|job| {
                let carried: Vec<String> = job_ids(job).into_iter().collect();
                job["held_since"].is_string()
                    && stalled.iter().any(|call| carries_all(call, &carried))
            })
        })
        .await;
        kill_in_flight(&mut first, &probe);
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
    }
}

on_each_backend! {
    /// As above, but VOD has carried out the probe (the quota is back) and its answer is late
    /// when the process is killed: the service cannot know, so the probe is sent again, and the
    /// other held jobs and the events behind the hold go out.
    async fn killed_after_vod_carried_out_a_probe_before_its_answer(backing: &Backing) {
        let sim = simulator().await;
        set_refresh_quota(&sim, 0);
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        first.post(&ids("accepted", 40), &mut acked).await;
        wait_for_job(&first, "held", "a job held on the quota", |_| true).await;
        first.post(&ids("behind", 20), &mut acked).await;

        set_refresh_quota(&sim, 10_000_000);
        sim.set_faults(answer_late());
        let probe = wait_for("VOD to carry out the probe", || async {
            let purged = purges(&sim);
            first.jobs("in_flight").await.into_iter().find(|job| {
                let carried: Vec<String> = job_ids(job).into_iter().collect();
                job["held_since"].is_string() && purged.iter().any(|c| carries_all(c, &carried))
            })
        })
        .await;
        kill_in_flight(&mut first, &probe);
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
    }
}

/// Waits until jobs are held and none is in flight; returns the IDs of the held jobs and when
/// the first probe is due.
pub async fn held_and_quiet(service: &Service) -> (BTreeSet<String>, i64) {
    wait_until(
        Duration::from_secs(20),
        "jobs held, no call in flight",
        || async {
            !service.jobs("held").await.is_empty() && service.jobs("in_flight").await.is_empty()
        },
    )
    .await;
    let held = service.jobs("held").await;
    let ids = held.iter().flat_map(job_ids).collect();
    let next_probe = held
        .iter()
        .map(|job| {
            let at = job["next_attempt_at"]
                .as_str()
                .expect("a held job's next probe");
            Ts::parse(at).expect("an RFC 3339 time").0
        })
        .min()
        .unwrap();
    (ids, next_probe)
}

/// A probe interval long enough that the kill lands before the first probe.
pub fn slow_probes() -> Knobs {
    Knobs {
        probe_interval: "4s",
        ..Knobs::default()
    }
}

on_each_backend! {
    /// The jobs are held and no call is in flight (the kill lands before the first probe is
    /// due). The restarted process probes, and once the quota is back everything goes out.
    async fn killed_while_jobs_are_held_between_probes(backing: &Backing) {
        let sim = simulator().await;
        set_refresh_quota(&sim, 0);
        let knobs = slow_probes();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        first.post(&ids("held", 40), &mut acked).await;
        let (_, next_probe) = held_and_quiet(&first).await;
        first.post(&ids("behind", 20), &mut acked).await;
        first.kill();
        let killed_at = now_ms();
        assert!(
            killed_at < next_probe,
            "the kill must land before the first probe ({} ms late)",
            killed_at - next_probe
        );
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
    }
}
