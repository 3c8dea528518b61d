//! Killed with a batch claimed: before its call reached VOD, while VOD has it, and after VOD
//! carried it out but before its answer arrived.

use super::*;

on_each_backend! {
    /// The job is `in_flight` and its request went to an endpoint that never reads it: the call
    /// has not reached VOD. The restarted process (pointed at VOD) sends it once the lease ends.
    async fn killed_with_a_batch_claimed_before_its_call_reached_vod(backing: &Backing) {
        let sim = simulator().await;
        let hole = BlackHole::open().await;
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &hole.url(), &knobs).await;
        let mut acked = Acked::default();
        let batch = ids("claimed", 20);
        first.post(&batch, &mut acked).await;
        let claimed = wait_for_job(&first, "in_flight", "the batch claimed", |job| {
            job_carries(job, &batch)
        })
        .await;
        wait_until(Duration::from_secs(10), "the request to leave", || async {
            hole.accepted() >= 1
        })
        .await;
        kill_in_flight(&mut first, &claimed);
        assert!(sim.calls().is_empty(), "VOD saw nothing before the kill");

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
    }
}

on_each_backend! {
    /// The call reached VOD and hangs there when the process is killed; VOD never answers it.
    async fn killed_with_a_call_in_flight(backing: &Backing) {
        let sim = simulator().await;
        sim.set_faults(stall("RefreshMediaPlayUrls"));
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        let batch = ids("inflight", 20);
        first.post(&batch, &mut acked).await;
        wait_until(Duration::from_secs(10), "the call to reach VOD", || async {
            sim.stalled().iter().any(|c| carries_all(c, &batch))
        })
        .await;
        let in_flight = wait_for_job(&first, "in_flight", "the job in flight", |job| {
            job_carries(job, &batch)
        })
        .await;
        kill_in_flight(&mut first, &in_flight);
        back_to_normal(&sim);
        assert!(purges(&sim).is_empty(), "nothing was purged before the kill");

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
    }
}

on_each_backend! {
    /// VOD carried out the call (the purge is done) but its answer is late, and the process is
    /// killed before it arrives: the restarted process sends the job again (at least once).
    async fn killed_after_vod_carried_out_a_call_before_its_answer(backing: &Backing) {
        let sim = simulator().await;
        sim.set_faults(answer_late());
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        let batch = ids("accepted", 20);
        first.post(&batch, &mut acked).await;
        wait_until(Duration::from_secs(10), "VOD to carry out the call", || async {
            purges(&sim).iter().any(|c| carries_all(c, &batch))
        })
        .await;
        let in_flight = wait_for_job(&first, "in_flight", "the job awaiting its answer", |job| {
            job_carries(job, &batch)
        })
        .await;
        kill_in_flight(&mut first, &in_flight);
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
        let sent = purges(&sim).iter().filter(|c| carries_all(c, &batch)).count();
        assert!(sent >= 2, "the job is sent again after the restart ({sent} calls)");
    }
}
