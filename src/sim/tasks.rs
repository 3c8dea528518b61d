//! CDN tasks: what a purge or a prefetch becomes once VOD hands it to its CDN (`vod-api.md` §2.2,
//! §2.4). Every URL of a `RefreshVodObjectCaches` / `PreloadVodObjectCaches` call, every
//! directory, and every play URL a `RefreshMediaPlayUrls` job submitted is one task, which
//! `DescribeVodRefreshTasks` reads back.
//!
//! A task's progress is not stored: it is computed from its creation time and the simulator's
//! clock when it is read (`Pending`, then `Refreshing`, then `Complete`, or `Failed` when a
//! `fail_tasks` fault picked it), so nothing runs in the background and a test that fixes the
//! clock decides exactly what a reader sees.

use std::collections::{HashMap, VecDeque};

/// What a task does, as `ObjectType` names it in `DescribeVodRefreshTasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    File,
    Directory,
    Preload,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::File => "file",
            TaskKind::Directory => "directory",
            TaskKind::Preload => "preload",
        }
    }

    /// The `ObjectType` filter of `DescribeVodRefreshTasks`: the documented lower-case names
    /// only.
    pub fn parse(raw: &str) -> Option<TaskKind> {
        match raw {
            "file" => Some(TaskKind::File),
            "directory" => Some(TaskKind::Directory),
            "preload" => Some(TaskKind::Preload),
            _ => None,
        }
    }
}

/// When tasks move on, in milliseconds after their creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// `Pending` before this, `Refreshing` from it.
    pub refreshing_after_ms: i64,
    /// `Complete` (or `Failed`) from this.
    pub complete_after_ms: i64,
}

/// The `Status` values `DescribeVodRefreshTasks` answers and filters by.
pub const STATUSES: [&str; 4] = ["Complete", "Refreshing", "Failed", "Pending"];

/// A task's `Status` and `Process` `elapsed_ms` after it was created. A failed task looks like
/// any other until it ends, and it ends `Failed` at `0%`: nothing was refreshed.
pub fn phase(elapsed_ms: i64, life: Lifecycle, failed: bool) -> (&'static str, &'static str) {
    if elapsed_ms < life.refreshing_after_ms {
        ("Pending", "0%")
    } else if elapsed_ms < life.complete_after_ms {
        ("Refreshing", "50%")
    } else if failed {
        ("Failed", "0%")
    } else {
        ("Complete", "100%")
    }
}

/// A task as it is read: its state at the time of reading. `GET /_sim/tasks` lists these
/// (snake_case JSON); `DescribeVodRefreshTasks` shows the same fields PascalCase, without
/// `owner` and `created_ms`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CdnTask {
    pub task_id: String,
    pub object_path: String,
    /// `file`, `directory` or `preload`.
    pub object_type: String,
    /// `Pending`, `Refreshing`, `Complete` or `Failed`.
    pub status: String,
    /// `0%`, `50%` or `100%`.
    pub process: String,
    /// UTC `yyyy-MM-ddTHH:mm:ssZ`.
    pub creation_time: String,
    /// The failure reason of a `Failed` task; empty otherwise.
    pub description: String,
    /// The account the task belongs to (the caller's AccessKeyId, or the role's account for an
    /// STS key the simulator handed out).
    pub owner: String,
    /// Epoch milliseconds by the simulator's clock.
    pub created_ms: i64,
}

impl CdnTask {
    /// The item of `Tasks.Task` in a `DescribeVodRefreshTasks` answer.
    pub fn api_json(&self) -> serde_json::Value {
        serde_json::json!({
            "TaskId": self.task_id,
            "ObjectPath": self.object_path,
            "ObjectType": self.object_type,
            "Status": self.status,
            "Process": self.process,
            "CreationTime": self.creation_time,
            "Description": self.description,
        })
    }
}

/// A task to create: its path, the host it belongs to (lower case, no port) and, when a
/// `fail_tasks` fault picked it, the description it fails with.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub path: String,
    pub host: String,
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
struct Task {
    task_id: u64,
    path: String,
    host: String,
    kind: TaskKind,
    created_ms: i64,
    owner: String,
    failure: Option<String>,
    /// Creation order, the last tie-breaker of the listing.
    seq: u64,
}

/// What `DescribeVodRefreshTasks` asks for, already checked.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub task_id: Option<u64>,
    pub object_path: Option<String>,
    pub kind: Option<TaskKind>,
    /// Lower case.
    pub domain: Option<String>,
    pub status: Option<String>,
    /// Inclusive bounds on the creation time, in epoch seconds.
    pub from_secs: i64,
    pub to_secs: Option<i64>,
}

/// How many tasks share one ID at most: the CDN starts a new ID every 2,000 URLs.
pub const TASKS_PER_ID: usize = 2000;

/// The tasks of every account, the oldest dropped beyond `max`.
#[derive(Debug)]
pub struct TaskStore {
    tasks: VecDeque<Task>,
    max: usize,
    next_id: u64,
    next_seq: u64,
}

impl TaskStore {
    /// A store whose first task ID is `first_id` (IDs then count up, so they never repeat).
    pub(super) fn new(max: usize, first_id: u64) -> TaskStore {
        TaskStore {
            tasks: VecDeque::new(),
            max: max.max(1),
            next_id: first_id,
            next_seq: 0,
        }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Creates one task per entry and returns their IDs, in order. With `share`, the entries of
    /// one host share an ID (a new one every [`TASKS_PER_ID`]), as the URLs of one domain in one
    /// call do; without it every entry gets its own, as the play URLs of a media job do.
    pub fn create(
        &mut self,
        owner: &str,
        kind: TaskKind,
        created_ms: i64,
        entries: Vec<NewTask>,
        share: bool,
    ) -> Vec<u64> {
        let ids = if share {
            let hosts: Vec<&str> = entries.iter().map(|e| e.host.as_str()).collect();
            shared_ids(&hosts, TASKS_PER_ID, || self.new_id())
        } else {
            entries.iter().map(|_| self.new_id()).collect()
        };
        for (entry, &task_id) in entries.into_iter().zip(&ids) {
            if self.tasks.len() >= self.max {
                self.tasks.pop_front();
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.tasks.push_back(Task {
                task_id,
                path: entry.path,
                host: entry.host,
                kind,
                created_ms,
                owner: owner.to_owned(),
                failure: entry.failure,
                seq,
            });
        }
        ids
    }

    /// The tasks of `owner` that `filter` selects as of `now_ms`, newest first (ties by task
    /// ID, then path, then creation order): the total and the page asked for (1-based).
    pub fn query(
        &self,
        owner: &str,
        filter: &TaskFilter,
        page: (u64, u64),
        now_ms: i64,
        life: Lifecycle,
    ) -> (u64, Vec<CdnTask>) {
        // Each task's answer is built for the page only: building it for every task kept (its
        // creation time formatted, its strings copied) made a call cost milliseconds once tens of
        // thousands were kept, and every call behind it on the simulator's worker arrived late.
        let mut matching: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| t.owner == owner)
            .filter(|t| filter.task_id.is_none_or(|id| t.task_id == id))
            .filter(|t| filter.object_path.as_ref().is_none_or(|p| *p == t.path))
            .filter(|t| filter.kind.is_none_or(|k| t.kind == k))
            .filter(|t| filter.domain.as_ref().is_none_or(|d| *d == t.host))
            .filter(|t| {
                let secs = t.created_ms.div_euclid(1000);
                secs >= filter.from_secs && filter.to_secs.is_none_or(|to| secs <= to)
            })
            .filter(|t| {
                filter
                    .status
                    .as_ref()
                    .is_none_or(|s| *s == status(t, now_ms, life))
            })
            .collect();
        matching.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then(a.task_id.cmp(&b.task_id))
                .then(a.path.cmp(&b.path))
                .then(a.seq.cmp(&b.seq))
        });
        let total = u64::try_from(matching.len()).unwrap_or(u64::MAX);
        let (number, size) = page;
        let skip = number.saturating_sub(1).saturating_mul(size);
        let page = matching
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .map(|t| view(t, now_ms, life))
            .collect();
        (total, page)
    }

    /// Every task kept, oldest first, as of `now_ms` (`GET /_sim/tasks`).
    pub fn all(&self, now_ms: i64, life: Lifecycle) -> Vec<CdnTask> {
        self.tasks.iter().map(|t| view(t, now_ms, life)).collect()
    }
}

/// A task's status as of `now_ms`.
fn status(task: &Task, now_ms: i64, life: Lifecycle) -> &'static str {
    phase(
        now_ms.saturating_sub(task.created_ms),
        life,
        task.failure.is_some(),
    )
    .0
}

fn view(task: &Task, now_ms: i64, life: Lifecycle) -> CdnTask {
    let (status, process) = phase(
        now_ms.saturating_sub(task.created_ms),
        life,
        task.failure.is_some(),
    );
    CdnTask {
        task_id: task.task_id.to_string(),
        object_path: task.path.clone(),
        object_type: task.kind.as_str().to_owned(),
        status: status.to_owned(),
        process: process.to_owned(),
        creation_time: super::actions::gmt(task.created_ms.div_euclid(1000)),
        description: if status == "Failed" {
            task.failure.clone().unwrap_or_default()
        } else {
            String::new()
        },
        owner: task.owner.clone(),
        created_ms: task.created_ms,
    }
}

/// One task ID per entry of `hosts`: the entries of one host share an ID until `per_id` of them
/// have it, then the next ones get a new one. IDs come from `new_id` in the order they are
/// first needed.
pub fn shared_ids(hosts: &[&str], per_id: usize, mut new_id: impl FnMut() -> u64) -> Vec<u64> {
    let mut current: HashMap<&str, (u64, usize)> = HashMap::new();
    hosts
        .iter()
        .map(|host| {
            let slot = current.entry(host).or_insert_with(|| (new_id(), 0));
            if slot.1 >= per_id.max(1) {
                *slot = (new_id(), 0);
            }
            slot.1 += 1;
            slot.0
        })
        .collect()
}

/// The distinct IDs of `ids`, in order of first appearance, comma-separated: the
/// `RefreshTaskId` / `PreloadTaskId` of a call.
pub fn id_list(ids: &[u64]) -> String {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(**id))
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Lifecycle = Lifecycle {
        refreshing_after_ms: 100,
        complete_after_ms: 300,
    };

    #[test]
    fn phases_over_time() {
        assert_eq!(phase(0, LIFE, false), ("Pending", "0%"));
        assert_eq!(phase(99, LIFE, true), ("Pending", "0%"));
        assert_eq!(phase(100, LIFE, true), ("Refreshing", "50%"));
        assert_eq!(phase(299, LIFE, false), ("Refreshing", "50%"));
        assert_eq!(phase(300, LIFE, false), ("Complete", "100%"));
        assert_eq!(phase(300, LIFE, true), ("Failed", "0%"));
        // A clock set back before the creation shows the task as just created.
        assert_eq!(phase(-5, LIFE, false), ("Pending", "0%"));
    }

    #[test]
    fn ids_are_shared_per_host_and_renewed_every_n() {
        let mut next = 10;
        let ids = shared_ids(&["a", "b", "a", "a", "b", "a"], 2, || {
            next += 1;
            next
        });
        assert_eq!(ids, [11, 12, 11, 13, 12, 13]);
        assert_eq!(id_list(&ids), "11,12,13");
    }

    fn entry(path: &str, host: &str) -> NewTask {
        NewTask {
            path: path.to_owned(),
            host: host.to_owned(),
            failure: None,
        }
    }

    #[test]
    fn query_filters_orders_and_pages() {
        let mut store = TaskStore::new(10, 100);
        let first = store.create(
            "ak",
            TaskKind::File,
            1_000,
            vec![entry("http://b/2", "b"), entry("http://a/1", "a")],
            true,
        );
        assert_eq!(first, [100, 101]);
        let second = store.create(
            "ak",
            TaskKind::Directory,
            2_000,
            vec![entry("http://a/d/", "a")],
            true,
        );
        store.create("other", TaskKind::File, 3_000, vec![entry("x", "x")], true);
        let all = TaskFilter::default();
        let (total, page) = store.query("ak", &all, (1, 20), 10_000, LIFE);
        assert_eq!(total, 3);
        let ids: Vec<&str> = page.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["102", "100", "101"]);
        let (_, page2) = store.query("ak", &all, (2, 2), 10_000, LIFE);
        assert_eq!(page2.len(), 1);
        assert_eq!(page2[0].object_path, "http://a/1");
        let by_id = TaskFilter {
            task_id: Some(second[0]),
            ..TaskFilter::default()
        };
        assert_eq!(
            store.query("ak", &by_id, (1, 20), 10_000, LIFE).1[0].object_type,
            "directory"
        );
        assert_eq!(store.query("other", &by_id, (1, 20), 10_000, LIFE).0, 0);
        let window = TaskFilter {
            from_secs: 2,
            to_secs: Some(2),
            ..TaskFilter::default()
        };
        assert_eq!(store.query("ak", &window, (1, 20), 10_000, LIFE).0, 1);
        let pending = TaskFilter {
            status: Some("Pending".to_owned()),
            ..TaskFilter::default()
        };
        assert_eq!(store.query("ak", &pending, (1, 20), 2_050, LIFE).0, 1);
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = TaskStore::new(2, 1);
        for n in 0..3 {
            store.create(
                "ak",
                TaskKind::File,
                n,
                vec![entry(&n.to_string(), "h")],
                true,
            );
        }
        let paths: Vec<String> = store
            .all(0, LIFE)
            .into_iter()
            .map(|t| t.object_path)
            .collect();
        assert_eq!(paths, ["1", "2"]);
    }
}
