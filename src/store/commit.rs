//! The group committer: ingest requests wait on a channel, and the committer applies everything
//! waiting in one transaction before answering each request. Under load that turns N disk syncs
//! into one, without ever answering before the data is durable. On SQLite it is a thread with
//! its own synchronous connection ([`IngestWriter`]); on PostgreSQL a task on the runtime.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::postgres::{self, PgStore};
use super::sqlite::IngestWriter;
use super::types::*;
use super::wake::{self, Wake};

/// Most requests folded into one transaction.
pub(crate) const MAX_GROUP: usize = 256;

pub(super) type Reply = oneshot::Sender<Result<Receipt, StoreError>>;
pub(super) type Waiting = (Ingest, Reply);

/// The requests of one group commit: the first one to arrive and every one waiting behind it,
/// up to [`MAX_GROUP`].
struct Group {
    ingests: Vec<Ingest>,
    replies: Vec<Reply>,
}

impl Group {
    fn gather(first: Waiting, rx: &mut mpsc::Receiver<Waiting>) -> Group {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (ingests, replies) = group.into_iter().unzip();
        Group { ingests, replies }
    }

    /// Answers every request with the group's receipts. When the group failed and holds more
    /// than one request, nobody is answered and the group comes back: one bad request must not
    /// fail the others, so the caller commits them one by one.
    fn answer(self, result: Result<Vec<Receipt>, StoreError>) -> Option<Group> {
        match result {
            Ok(receipts) => {
                for (reply, receipt) in self.replies.into_iter().zip(receipts) {
                    let _ = reply.send(Ok(receipt));
                }
                None
            }
            Err(error) if self.ingests.len() > 1 => {
                tracing::warn!(error = %error, size = self.ingests.len(), "group commit failed; committing one by one");
                Some(self)
            }
            Err(error) => {
                if let Some(reply) = self.replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
                None
            }
        }
    }

    /// The requests one by one, each with its reply.
    fn singles(self) -> impl Iterator<Item = (Ingest, Reply)> {
        self.ingests.into_iter().zip(self.replies)
    }
}

fn first_receipt(result: Result<Vec<Receipt>, StoreError>) -> Result<Receipt, StoreError> {
    result.and_then(|receipts| receipts.into_iter().next().ok_or(StoreError::Closed))
}

/// The SQLite group committer: runs until every [`Store`] handle is gone.
pub(super) fn sqlite_committer(
    mut writer: IngestWriter,
    mut rx: mpsc::Receiver<Waiting>,
    wake: &Wake,
) {
    while let Some(first) = rx.blocking_recv() {
        let group = Group::gather(first, &mut rx);
        let result = writer.ingest_group(&group.ingests);
        if let (Ok(_), Some(due)) = (&result, wake::soonest_due(&group.ingests)) {
            wake.announce(due);
        }
        if let Some(group) = group.answer(result) {
            for (ingest, reply) in group.singles() {
                let _ = reply.send(first_receipt(writer.ingest_group(&[ingest])));
            }
        }
    }
}

/// The PostgreSQL group committer: runs until every [`Store`] handle is gone. After answering a
/// group it announces the group's soonest due time, here and to the other replicas.
pub(super) async fn postgres_committer(
    store: PgStore,
    mut rx: mpsc::Receiver<Waiting>,
    wake: Arc<Wake>,
) {
    let mut announced = postgres::Announced::default();
    while let Some(first) = rx.recv().await {
        let group = Group::gather(first, &mut rx);
        let due = wake::soonest_due(&group.ingests);
        let result = store.ingest_group(&group.ingests).await;
        let stored = result.is_ok();
        if let Some(group) = group.answer(result) {
            for (ingest, reply) in group.singles() {
                let _ = reply.send(first_receipt(store.ingest_group(&[ingest]).await));
            }
        }
        if let (true, Some(due)) = (stored, due) {
            wake.announce(due);
            store.announce_due(&mut announced, due).await;
        }
    }
}
