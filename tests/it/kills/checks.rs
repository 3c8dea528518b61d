//! Killed while a successful job waits for its submission check, and while a resubmission of
//! IDs whose submission failed waits to be sent.

use super::*;

use vod_purge::sim::Faults;

/// Waits until every item of job `id` is `submitted`.
async fn wait_submitted(service: &Service, id: &str) {
    let started = Instant::now();
    loop {
        let last = service.get(&format!("/jobs/{id}")).await;
        let items = last["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() && items.iter().all(|i| i["outcome"] == "submitted") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "job {id} never fully submitted: {last}\n{}",
            service.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_each_backend! {
    /// The call succeeded and its `GetMediaRefreshJobs` check hangs at VOD when the process is
    /// killed: the restarted process checks the job, and its items reach `submitted`.
    async fn killed_with_a_submission_check_pending(backing: &Backing) {
        let sim = simulator().await;
        sim.set_faults(stall("GetMediaRefreshJobs"));
        let knobs = Knobs::default();
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        let batch = ids("checked", 20);
        first.post(&batch, &mut acked).await;
        let job = wait_for_job(&first, "succeeded", "the job sent, its check due", |job| {
            job_carries(job, &batch) && job["next_check_at"].is_string()
        })
        .await;
        let vod_job_id = job["vod_job_id"].as_str().expect("VOD's job ID").to_owned();
        wait_until(Duration::from_secs(20), "the check to reach VOD", || async {
            sim.stalled()
                .iter()
                .any(|c| c.params.get("MediaRefreshJobId") == Some(&vod_job_id))
        })
        .await;
        let checked = job["id"].as_str().expect("a job ID").to_owned();
        let before = first.get(&format!("/jobs/{checked}")).await;
        assert!(
            before["items"].as_array().unwrap().iter().all(|i| i["outcome"] == "sent"),
            "unchecked at the kill: {before}"
        );
        first.kill();
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
        wait_submitted(&second, &checked).await;
    }
}

on_each_backend! {
    /// A check reported one ID's submission failed for a passing reason (`TooMany.Refresh`), and
    /// its resubmission waits (`retrying`, `resubmission_of` set) when the process is killed.
    /// VOD submits it normally afterwards: the restarted process sends and checks it.
    async fn killed_with_a_resubmission_waiting(backing: &Backing) {
        let sim = simulator().await;
        let stuck = "resubstuck".to_owned();
        sim.set_faults(Faults {
            failing_submissions: vec![stuck.clone()],
            ..Faults::default()
        });
        let knobs = Knobs {
            retry_max: "3s",
            ..Knobs::default()
        };
        let mut first = Service::start(backing, 0, &sim.base_url(), &knobs).await;
        let mut acked = Acked::default();
        let mut batch = ids("resub", 19);
        batch.push(stuck.clone());
        first.post(&batch, &mut acked).await;
        let waiting = wait_for_job(&first, "retrying", "the resubmission waiting", |job| {
            job["resubmission_of"].is_string() && job_ids(job) == BTreeSet::from([stuck.clone()])
        })
        .await;
        first.kill();
        let killed_at = now_ms();
        let sent = |sim: &SimHandle| {
            purges(sim)
                .into_iter()
                .filter(|c| c.media_ids.contains(&stuck))
                .collect::<Vec<_>>()
        };
        assert_eq!(sent(&sim).len(), 1, "the resubmission had not gone out at the kill");
        back_to_normal(&sim);

        let second = Service::start(backing, 1, &sim.base_url(), &knobs).await;
        settle(&sim, &second, &acked).await;
        let resubmission = waiting["id"].as_str().expect("a job ID").to_owned();
        wait_submitted(&second, &resubmission).await;
        assert!(
            sent(&sim).iter().any(|c| c.at_ms > killed_at),
            "the resubmission went out after the restart"
        );
        let original = second
            .get(&format!("/jobs/{}", waiting["resubmission_of"].as_str().unwrap()))
            .await;
        let failed: Vec<&Value> = original["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["outcome"] == "submit_failed")
            .collect();
        assert_eq!(failed.len(), 1, "{original}");
        assert_eq!(failed[0]["media_id"], stuck.as_str());
    }
}
