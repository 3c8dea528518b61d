//! An event racing the claim of its item, from two replicas at once (on SQLite, two handles of
//! one process): the in-flight rule under concurrency. Whichever wins, no event is lost and none
//! is counted twice: the event merges into the pending item (which it delays, so the claim finds
//! nothing due), or the claim takes the item first and the event starts a new one.

use super::*;

async fn an_event_racing_the_claim_of_its_item_is_never_lost(ingester: Store, claimer: Store) {
    const ROUNDS: i64 = 40;
    let mut joined = 0;
    for round in 0..ROUNDS {
        let id = format!("race{round}");
        let t = 1_000_000 * (round + 1);
        // Pending and due (quiet 2 s) by `t`.
        ingester
            .ingest(ingest(&[&id], TaskType::Refresh, t - 10_000, None))
            .await
            .unwrap();
        let batch = claim(t, TaskType::Refresh);
        let (receipt, job) = tokio::join!(
            ingester.ingest(ingest(&[&id], TaskType::Refresh, t, None)),
            claimer.claim_batch(&batch),
        );
        let receipt = receipt.unwrap();
        let job = job.unwrap();
        let in_job: u64 = job.iter().flat_map(|j| &j.items).map(|i| i.events).sum();
        let pending: u64 = ingester
            .pending_for_media(&id)
            .await
            .unwrap()
            .iter()
            .map(|p| p.events)
            .sum();
        assert_eq!(in_job + pending, 2, "round {round}: {receipt:?} {job:?}");
        match receipt.merged.is_empty() {
            // Merged before the claim: the item waits a quiet period more, with both events.
            false => assert_eq!((in_job, pending), (0, 2), "round {round}"),
            // A new item after the claim: the job took the first event, the item the second.
            true => assert_eq!((in_job, pending), (1, 1), "round {round}"),
        }
        joined += u64::from(pending == 2);
        // Clear the way for the next round. On PostgreSQL a claim passes over a row another
        // transaction still holds (`SKIP LOCKED`), as the flusher's next poll would: claim until
        // the item is gone.
        for _ in 0..100 {
            if ingester.pending_for_media(&id).await.unwrap().is_empty() {
                break;
            }
            claimer
                .claim_batch(&claim(t + 100_000, TaskType::Refresh))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            ingester.pending_for_media(&id).await.unwrap().is_empty(),
            "round {round}: cleared"
        );
    }
    println!("{joined} of {ROUNDS} events merged before the claim; the others started a new item");
}

#[tokio::test]
async fn sqlite() {
    let (store, _backing) = sqlite_store().await;
    an_event_racing_the_claim_of_its_item_is_never_lost(store.clone(), store).await;
}

#[tokio::test]
async fn postgres() {
    if let Some(db) = fresh_database("store::race::postgres").await {
        let location = StoreLocation::Postgres(db.url.clone());
        let one = Store::open(&location).await.unwrap();
        let two = Store::open(&location).await.unwrap();
        an_event_racing_the_claim_of_its_item_is_never_lost(one.clone(), two.clone()).await;
        one.close().await;
        two.close().await;
    }
}
