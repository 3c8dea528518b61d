//! Waking the idle flusher when ingest adds something due sooner than it planned to wake.
//!
//! Each lane's flusher has a [`Sleeper`] ([`Wake::sleeper`]): it says when it plans to wake
//! ([`Sleeper::sleeping_until`]) and waits on [`Sleeper::notified`]; the group committer announces the soonest due time of every group it
//! commits ([`Wake::announce`]), which wakes the flusher only when that is earlier. On
//! PostgreSQL a replica also announces to the others with `NOTIFY` (see
//! [`crate::store::postgres`]), so the leader wakes for events that another replica stored; the
//! flusher's poll stays as the fallback.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use crate::domain::Ts;
use crate::store::Ingest;

/// The channel replicas announce due times on.
pub const CHANNEL: &str = "vod_purge_due";

/// What the idle flusher of one lane waits on.
#[derive(Debug)]
pub struct Sleeper {
    /// Epoch milliseconds the flusher plans to wake at; `i64::MAX` while it is deciding (so any
    /// announcement wakes it), `i64::MIN` while it works (nothing to wake).
    planned: AtomicI64,
    notify: Notify,
}

impl Default for Sleeper {
    fn default() -> Sleeper {
        Sleeper {
            planned: AtomicI64::new(i64::MIN),
            notify: Notify::new(),
        }
    }
}

impl Sleeper {
    /// The flusher is working: announcements need not wake it (its next decision reads the
    /// store).
    pub fn working(&self) {
        self.planned.store(i64::MIN, Ordering::SeqCst);
    }

    /// The flusher is about to read when work is next due: from now on every announcement
    /// wakes it, until it says how long it sleeps.
    pub fn deciding(&self) {
        self.planned.store(i64::MAX, Ordering::SeqCst);
    }

    /// The flusher sleeps until `at` unless woken.
    pub fn sleeping_until(&self, at: Ts) {
        // An announcement made while deciding stays as a stored wake-up (see `notified`).
        let _ = self
            .planned
            .compare_exchange(i64::MAX, at.0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Something is due at `due`: wakes the flusher if it planned to wake later.
    pub fn announce(&self, due: Ts) {
        let planned = self.planned.load(Ordering::SeqCst);
        if due.0 < planned {
            // Nothing more to wake for until the flusher has decided again.
            self.planned.store(i64::MIN, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Resolves when an announcement wakes the flusher (at once if one came while it decided).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// The announcements of due times, to every lane's flusher: each has a [`Sleeper`] of its own,
/// so that one lane at work does not keep another asleep. (An announcement says when, not for
/// which account: a lane woken for another's items reads the store once and sleeps again.)
#[derive(Debug)]
pub struct Wake {
    sleepers: Mutex<Vec<Arc<Sleeper>>>,
    /// Whether the relay listens for the other replicas' announcements (PostgreSQL's `LISTEN`
    /// has returned): until then a replica's `NOTIFY` is lost on this one, and whoever must
    /// not miss one (a test, say) waits on [`Wake::listening`].
    listening: watch::Sender<bool>,
}

impl Default for Wake {
    fn default() -> Wake {
        Wake {
            sleepers: Mutex::new(Vec::new()),
            listening: watch::Sender::new(false),
        }
    }
}

impl Wake {
    /// A sleeper of its own for a lane's flusher, woken by every announcement from now on.
    pub fn sleeper(&self) -> Arc<Sleeper> {
        let sleeper = Arc::new(Sleeper::default());
        self.sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sleeper.clone());
        sleeper
    }

    /// Something is due at `due`: wakes every sleeper that planned to wake later.
    pub fn announce(&self, due: Ts) {
        for sleeper in self
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            sleeper.announce(due);
        }
    }

    /// The relay started (`true`, once `LISTEN` has returned) or stopped listening.
    pub fn set_listening(&self, listening: bool) {
        self.listening.send_replace(listening);
    }

    /// Resolves once the relay listens for other replicas' announcements (at once if it does).
    pub async fn listening(&self) {
        let mut listening = self.listening.subscribe();
        // The sender lives as long as `self`: the wait ends only when the relay listens.
        let _ = listening.wait_for(|on| *on).await;
    }
}

/// The soonest time at which an item of `group` can be due.
pub fn soonest_due(group: &[Ingest]) -> Option<Ts> {
    group
        .iter()
        .flat_map(|ingest| {
            ingest.items.iter().map(|item| {
                let deadline = item.debounce.deadline(ingest.now);
                item.debounce.due_at(ingest.now, deadline)
            })
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_earlier_due_time_wakes_a_later_plan_only() {
        let wake = Wake::default();
        let sleeper = wake.sleeper();
        sleeper.deciding();
        sleeper.sleeping_until(Ts(1_000));
        wake.announce(Ts(2_000));
        wake.announce(Ts(1_000));
        let woken =
            tokio::time::timeout(std::time::Duration::from_millis(20), sleeper.notified()).await;
        assert!(
            woken.is_err(),
            "not woken for work due at or after its plan"
        );
        wake.announce(Ts(999));
        tokio::time::timeout(std::time::Duration::from_secs(1), sleeper.notified())
            .await
            .expect("woken for work due earlier");
    }

    #[tokio::test]
    async fn an_announcement_while_deciding_is_kept_and_one_while_working_is_not() {
        let wake = Wake::default();
        let sleeper = wake.sleeper();
        sleeper.deciding();
        wake.announce(Ts(5_000));
        sleeper.sleeping_until(Ts(1_000));
        tokio::time::timeout(std::time::Duration::from_secs(1), sleeper.notified())
            .await
            .expect("the announcement made while deciding wakes the sleep that follows");
        sleeper.working();
        wake.announce(Ts(0));
        let woken =
            tokio::time::timeout(std::time::Duration::from_millis(20), sleeper.notified()).await;
        assert!(woken.is_err(), "a working flusher reads the store itself");
    }
}
