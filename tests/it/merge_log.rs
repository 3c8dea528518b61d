//! The embedded store's merge log: events for pending items are appended and folded later, and
//! nothing about the queue's answers may show it (the conformance suite in `store.rs` checks the
//! answers on every backend; these check what only the log can get wrong).

use vod_purge::config::StoreLocation;
use vod_purge::domain::{Priority, TaskType, Ts};
use vod_purge::store::*;

use crate::store::{claim, ingest};

async fn open(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("store.db");
    Store::open(&StoreLocation::Sqlite(path.to_string_lossy().into_owned()))
        .await
        .unwrap()
}

/// A store with two normal items, `a` and `b`, first seen at 0 (due at 2 s).
async fn with_a_and_b(dir: &tempfile::TempDir) -> Store {
    let store = open(dir).await;
    let request = ingest(&["a", "b"], TaskType::Refresh, 0, None);
    store.ingest(request).await.unwrap();
    store
}

/// Rows in the merge log table, read with a connection of its own.
fn logged_rows(dir: &tempfile::TempDir) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM merges", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn logged_merges_survive_a_restart_and_still_delay_the_item() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir).await;
        store
            .ingest(ingest(&["a"], TaskType::Refresh, 0, None))
            .await
            .unwrap();
        for t in [1_000, 1_500] {
            let receipt = store
                .ingest(ingest(&["a"], TaskType::Refresh, t, None))
                .await
                .unwrap();
            assert_eq!(receipt.merged, vec!["a"]);
        }
        assert_eq!(logged_rows(&dir), 2, "the merges are appended, not folded");
        store.close().await;
    }
    let store = open(&dir).await;
    // Stored due time 2 s (the first event's); the logged events move it to 3.5 s.
    assert!(
        store
            .claim_batch(&claim(2_000, TaskType::Refresh))
            .await
            .unwrap()
            .is_none(),
        "the logged merges read back after the restart delay the item"
    );
    assert_eq!(logged_rows(&dir), 0, "the claim folded them into the item");
    let a = store.pending_for_media("a").await.unwrap();
    assert_eq!((a[0].due_at, a[0].events), (Ts(3_500), 3));
    let job = store
        .claim_batch(&claim(3_500, TaskType::Refresh))
        .await
        .unwrap()
        .expect("due at 3.5 s");
    assert_eq!(job.items[0].events, 3, "every event counted");
}

#[tokio::test]
async fn reads_show_items_with_their_logged_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_a_and_b(&dir).await;
    store
        .ingest(ingest(&["a"], TaskType::Refresh, 1_000, None))
        .await
        .unwrap();
    assert_eq!(logged_rows(&dir), 1);
    let a = store.pending_for_media("a").await.unwrap();
    assert_eq!(
        (a[0].last_seen, a[0].due_at, a[0].events),
        (Ts(1_000), Ts(3_000), 2)
    );
    // At 2.5 s only b is due (a's stored due time, 2 s, is not its real one); next due is a's 3 s.
    assert_eq!(figures(&store, Ts(2_500)).await, (2, 1, Some(Ts(3_000))));
}

#[tokio::test]
async fn an_event_that_brings_the_due_time_forward_is_folded_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_a_and_b(&dir).await;
    // An urgent event, and one from a source with a shorter quiet period.
    let mut urgent = ingest(&["a"], TaskType::Refresh, 500, None);
    urgent.items[0].priority = Priority::Urgent;
    urgent.items[0].debounce = urgent.items[0].debounce.for_priority(Priority::Urgent);
    store.ingest(urgent).await.unwrap();
    let mut short = ingest(&["b"], TaskType::Refresh, 500, None);
    short.items[0].debounce.quiet = std::time::Duration::from_millis(100);
    store.ingest(short).await.unwrap();
    assert_eq!(logged_rows(&dir), 0, "neither is logged");
    let job = store
        .claim_batch(&claim(600, TaskType::Refresh))
        .await
        .unwrap()
        .expect("both due by 0.6 s");
    let mut ids: Vec<_> = job.items.iter().map(|i| i.media_id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test]
async fn a_claim_looks_past_candidates_that_their_merges_delay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    // 30 items first seen at 0, 25 of them merged again at 1 s: at 2.5 s only 5 are due, and they
    // come after the 25 in claim order.
    let all = thirty_items_and_twenty_five_merged(&store).await;
    let job = store
        .claim_batch(&claim(2_500, TaskType::Refresh))
        .await
        .unwrap()
        .expect("five due items");
    let claimed: Vec<_> = job.items.iter().map(|i| i.media_id.to_string()).collect();
    assert_eq!(claimed, all[25..]);
    assert_eq!(logged_rows(&dir), 0);
    assert_eq!(figures(&store, Ts(2_500)).await, (25, 0, Some(Ts(3_000))));
}

#[tokio::test]
async fn a_long_log_is_folded_in_bulk_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let ids: Vec<String> = (0..1_000).map(|i| format!("id{i:04}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    store
        .ingest(ingest(&all, TaskType::Refresh, 0, None))
        .await
        .unwrap();
    // 33 more events for each: the 33,000th logged event passes the length (32,768) at which the
    // writer folds the log in the same commit.
    for round in 1..=33 {
        store
            .ingest(ingest(&all, TaskType::Refresh, round * 10, None))
            .await
            .unwrap();
    }
    assert_eq!(logged_rows(&dir), 0, "the writer folded the log");
    let a = store.pending_for_media("id0000").await.unwrap();
    assert_eq!(
        (a[0].events, a[0].last_seen, a[0].due_at),
        (34, Ts(330), Ts(2_330))
    );
    // The fold moved no index entry: the stored due time is still the first event's, and the
    // claim, which finds the item by it, goes by the real one.
    assert_eq!(stored_due(&dir, "id0000"), 2_000);
    assert!(
        store
            .claim_batch(&claim(2_300, TaskType::Refresh))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        stored_due(&dir, "id0000"),
        2_330,
        "written once the claim looked"
    );
    let job = store
        .claim_batch(&claim(2_330, TaskType::Refresh))
        .await
        .unwrap()
        .expect("due at 2.33 s");
    assert_eq!((job.items.len(), job.items[0].events), (20, 34));
}

fn stored_due(dir: &tempfile::TempDir, media_id: &str) -> i64 {
    item_column(dir, "due_at", media_id)
}

/// A column of a pending item's row, read with a connection of its own.
fn item_column(dir: &tempfile::TempDir, column: &str, media_id: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    conn.query_row(
        &format!("SELECT {column} FROM items WHERE media_id = ?1"),
        [media_id],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn the_flusher_decides_on_what_is_really_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    thirty_items_and_twenty_five_merged(&store).await;
    // By their stored due times all 30 are due at 2.5 s; really only the 5 not merged again, so a
    // group that lingers for a full batch keeps lingering.
    let groups = store
        .due_groups(&vod_purge::domain::AccountName::default(), Ts(2_500))
        .await
        .unwrap();
    assert_eq!(
        (groups.len(), groups[0].due_count, groups[0].oldest_due_at),
        (1, 5, Ts(2_000))
    );
    assert_eq!(logged_rows(&dir), 0, "their merges were folded");
    let groups = store
        .due_groups(&vod_purge::domain::AccountName::default(), Ts(3_000))
        .await
        .unwrap();
    assert_eq!(groups[0].due_count, 30);
}

/// Items `id00`..`id29` first seen at 0, and `id00`..`id24` merged again at 1 s (quiet 2 s): at
/// 2.5 s only the last five are due. Returns their IDs in order.
async fn thirty_items_and_twenty_five_merged(store: &Store) -> Vec<String> {
    let ids: Vec<String> = (0..30).map(|i| format!("id{i:02}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    store
        .ingest(ingest(&all, TaskType::Refresh, 0, None))
        .await
        .unwrap();
    store
        .ingest(ingest(&all[..25], TaskType::Refresh, 1_000, None))
        .await
        .unwrap();
    ids
}

/// The queue's figures at `now`: pending, due, and the next due time.
async fn figures(store: &Store, now: Ts) -> (u64, u64, Option<Ts>) {
    let stats = store.queue_stats(now).await.unwrap();
    (stats.pending, stats.due, stats.next_due_at)
}

/// A bulk fold of items already due by their stored time makes them due later without moving
/// their stored due time: the settle step no longer reads the whole due range at each poll, so
/// it must still find them (marked stale by the fold), and the queue's figures must not count
/// them due meanwhile. With `extra` more items due than folded, the fold marks them by their own
/// rows (a backlog); otherwise by the due range it reads first.
async fn a_bulk_fold_of_due_items(extra: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let account = vod_purge::domain::AccountName::default();
    let ids: Vec<String> = (0..1_000 + extra).map(|i| format!("id{i:04}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    store
        .ingest(ingest(&all, TaskType::Refresh, 0, None))
        .await
        .unwrap();
    // Due at 2 s; the flusher's poll at 2.1 s settles them (due, with nothing logged).
    let groups = store.due_groups(&account, Ts(2_100)).await.unwrap();
    assert_eq!(groups[0].due_count as usize, 1_000 + extra);
    // 33 events for each of the first 1,000 from 2.1 s on: the writer folds the log in bulk,
    // each of them now due 2 s after its last event (4.43 s), its stored due time still 2 s.
    for round in 0..33 {
        store
            .ingest(ingest(
                &all[..1_000],
                TaskType::Refresh,
                2_110 + round * 10,
                None,
            ))
            .await
            .unwrap();
    }
    assert_eq!(logged_rows(&dir), 0, "the writer folded the log");
    assert_eq!(stored_due(&dir, "id0000"), 2_000);
    let at = Ts(2_500);
    let pending = 1_000 + extra as u64;
    assert_eq!(
        figures(&store, at).await,
        (pending, extra as u64, Some(Ts(4_430)))
    );
    assert_eq!(
        store.queue_by_account(at).await.unwrap(),
        store.recount_queue(at).await.unwrap()
    );
    let groups = store.due_groups(&account, at).await.unwrap();
    assert_eq!(
        groups.iter().map(|g| g.due_count as usize).sum::<usize>(),
        extra
    );
    assert_eq!(stored_due(&dir, "id0000"), 4_430, "the poll wrote it");
    assert_eq!(figures(&store, Ts(4_430)).await, (pending, pending, None));
}

#[tokio::test]
async fn items_a_bulk_fold_makes_due_later_are_not_counted_due() {
    a_bulk_fold_of_due_items(0).await;
}

#[tokio::test]
async fn items_a_bulk_fold_makes_due_later_behind_a_backlog_are_not_counted_due() {
    a_bulk_fold_of_due_items(500).await;
}

/// The counts the queue's figures read follow every change of an item: inserts, merges that
/// move or keep its second, urgent events, claims, and a restart (they are stored, not kept in
/// memory).
#[tokio::test]
async fn the_kept_counts_equal_a_count_of_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let ids: Vec<String> = (0..60).map(|i| format!("c{i:02}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let check = |store: Store, now: i64| async move {
        let at = Ts(now);
        let kept = store.queue_by_account(at).await.unwrap();
        assert_eq!(kept, store.recount_queue(at).await.unwrap(), "at {now}");
        kept
    };
    store
        .ingest(ingest(&all, TaskType::Refresh, 0, None))
        .await
        .unwrap();
    check(store.clone(), 1_000).await;
    store
        .ingest(ingest(&all[..30], TaskType::Refresh, 500, None))
        .await
        .unwrap();
    let mut urgent = ingest(&all[50..], TaskType::Refresh, 700, None);
    for item in &mut urgent.items {
        item.priority = Priority::Urgent;
    }
    store.ingest(urgent).await.unwrap();
    let kept = check(store.clone(), 2_000).await;
    assert_eq!((kept[0].pending, kept[0].urgent, kept[0].due), (60, 10, 30));
    store
        .claim_batch(&claim(2_000, TaskType::Refresh))
        .await
        .unwrap()
        .expect("due");
    check(store.clone(), 2_000).await;
    check(store.clone(), 2_999).await;
    store.close().await;
    let store = open(&dir).await;
    let kept = check(store.clone(), 3_000).await;
    assert_eq!(kept[0].pending, 40);
}

/// A read of the queue's figures that finds items due later than stored (a bulk fold before they
/// fell due) marks them, so the next read does not read the same range again, and the flusher's
/// settle step still writes their real due times.
#[tokio::test]
async fn a_read_of_the_figures_marks_what_it_finds_for_the_settle_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let account = vod_purge::domain::AccountName::default();
    let ids: Vec<String> = (0..1_000).map(|i| format!("id{i:04}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    for round in 0..=33 {
        store
            .ingest(ingest(&all, TaskType::Refresh, round * 10, None))
            .await
            .unwrap();
    }
    assert_eq!(logged_rows(&dir), 0, "the writer folded the log at 0.33 s");
    assert_eq!(stored_due(&dir, "id0000"), 2_000);
    for at in [2_300, 2_310, 2_320] {
        assert_eq!(
            figures(&store, Ts(at)).await,
            (1_000, 0, Some(Ts(2_330))),
            "at {at}"
        );
    }
    assert!(
        store
            .due_groups(&account, Ts(2_320))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stored_due(&dir, "id0000"),
        2_330,
        "the settle step wrote it"
    );
    assert_eq!(figures(&store, Ts(2_330)).await, (1_000, 1_000, None));
}

/// Rows of `merge_folds`: where a fold in chunks stands.
fn fold_progress(dir: &tempfile::TempDir) -> Option<(i64, i64)> {
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT watermark, next_item FROM merge_folds")
        .unwrap();
    let rows: Vec<(i64, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rows.len() <= 1, "at most one fold under way: {rows:?}");
    rows.into_iter().next()
}

/// Items `id0000`, `id0001`, … first seen at 0, then `rounds` events for each, at 100 ms, 200 ms, …
/// (each round one group commit).
async fn items_merged(store: &Store, items: usize, rounds: i64) {
    let ids: Vec<String> = (0..items).map(|i| format!("id{i:04}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    for round in 0..=rounds {
        store
            .ingest(ingest(&all, TaskType::Refresh, round * 100, None))
            .await
            .unwrap();
    }
}

/// A log of more items than one chunk is folded over several group commits; a process stopped
/// between two of them (the first chunk committed, its rows still in the table) neither counts
/// the folded events twice nor loses the others, and the next group commit finishes the fold.
#[tokio::test]
async fn a_fold_cut_off_between_its_chunks_goes_on_after_a_restart_and_counts_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir).await;
        // 11 events for each: 33,000 logged, over the threshold in the last group, which folds
        // the first chunk of items.
        items_merged(&store, 3_000, 11).await;
        let (watermark, next_item) = fold_progress(&dir).expect("a fold under way");
        assert_eq!(
            logged_rows(&dir),
            33_000,
            "folded rows stay until the last chunk"
        );
        // The first chunk folded the first 2,048 items (in the order stored).
        assert_eq!(
            (watermark, next_item),
            (33_000, item_column(&dir, "id", "id2048"))
        );
        drop(store); // no close: as a process killed between two group commits
    }
    let store = open(&dir).await;
    for id in ["id0000", "id2047", "id2048", "id2049", "id2999"] {
        let item = store.pending_for_media(id).await.unwrap();
        assert_eq!(
            (item[0].events, item[0].due_at),
            (12, Ts(3_100)),
            "{id}: every event once, folded or still logged"
        );
    }
    // The next group commit folds the rest and deletes every folded row.
    store
        .ingest(ingest(&["z"], TaskType::Refresh, 1_200, None))
        .await
        .unwrap();
    assert_eq!((logged_rows(&dir), fold_progress(&dir)), (0, None));
    assert_eq!(
        store.pending_for_media("id2999").await.unwrap()[0].events,
        12
    );
    let job = store
        .claim_batch(&claim(3_100, TaskType::Refresh))
        .await
        .unwrap()
        .expect("all due at 3.1 s");
    assert!(job.items.iter().all(|item| item.events == 12), "{job:?}");
}

/// The event logged last when a fold begins marks its watermark. When its item's events are
/// folded at once and their rows deleted (an urgent event here; a claim does the same), the next
/// event logged must not get the deleted row's number: at or under the watermark, it would read
/// as folded after a restart, and the fold's last chunk would delete it.
#[tokio::test]
async fn an_event_logged_during_a_fold_is_not_taken_for_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir).await;
        // 35,000 events: a fold of three chunks begins with the last group.
        items_merged(&store, 5_000, 7).await;
        assert_eq!(fold_progress(&dir).map(|p| p.0), Some(35_000));
        // id4999's events, the watermark's among them, are folded at once and deleted (and the
        // group folds the second chunk).
        let mut urgent = ingest(&["id4999"], TaskType::Refresh, 1_150, None);
        urgent.items[0].priority = Priority::Urgent;
        store.ingest(urgent).await.unwrap();
        assert_eq!(logged_rows(&dir), 35_000 - 7);
        assert!(fold_progress(&dir).is_some());
        // One more event, for an item already folded, in the group of the last chunk: logged
        // after the watermark, the chunk's delete leaves it.
        store
            .ingest(ingest(&["id0000"], TaskType::Refresh, 1_200, None))
            .await
            .unwrap();
        assert_eq!((logged_rows(&dir), fold_progress(&dir)), (1, None));
        drop(store);
    }
    let store = open(&dir).await;
    let item = store.pending_for_media("id0000").await.unwrap();
    assert_eq!(
        (item[0].events, item[0].due_at),
        (9, Ts(3_200)),
        "every event, the one after the watermark too"
    );
}
