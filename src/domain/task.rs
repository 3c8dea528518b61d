//! What VOD is asked to do with a media ID.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::target::TargetKind;

/// `as_str`, `Display` and `FromStr` for an enum whose variants each have one name; an unknown
/// name is refused with `$unknown(name)`.
macro_rules! named_enum {
    ($ty:ident, $unknown:ident { $($variant:path => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($variant),)+
                    other => Err($unknown(other.to_owned())),
                }
            }
        }
    };
}

/// What a pending item or a job asks of VOD: the kind of target and VOD's `TaskType`
/// (`Refresh` or `Preload`). It picks the call, the batch size and the daily quota; items of
/// different kinds never share a job. Media IDs keep the names `Refresh` and `Preload`, which
/// is how rows written before files and directories existed read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum TaskType {
    /// Purge the cached playback URLs of media IDs (`RefreshMediaPlayUrls`).
    Refresh,
    /// Warm the CDN cache with the playback URLs of media IDs.
    Preload,
    /// Purge files by URL (`RefreshVodObjectCaches`, `ObjectType=File`).
    FileRefresh,
    /// Warm the CDN cache with files (`PreloadVodObjectCaches`).
    FilePreload,
    /// Purge everything under directories (`RefreshVodObjectCaches`, `ObjectType=Directory`).
    DirectoryRefresh,
    /// Find the cover and snapshot URLs of media IDs (`GetVideoInfo`) and queue them as
    /// `FileRefresh` items (`"include": ["cover"]`).
    ResolveCovers,
}

/// A daily quota of the account, as `DescribeVodRefreshQuota` reports them: a used-up quota
/// holds the tasks that spend it, and only those.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Quota {
    /// URL purges (`UrlRemain`): files, and the play URLs of media IDs.
    Refresh,
    /// URL prefetches (`PreloadRemain`).
    Preload,
    /// Directory purges (`DirRemain`).
    Directory,
}

impl Quota {
    pub const ALL: [Quota; 3] = [Quota::Refresh, Quota::Preload, Quota::Directory];

    /// The error code VOD answers when this quota is used up.
    pub fn exceeded_code(self) -> &'static str {
        match self {
            Quota::Refresh | Quota::Directory => "QuotaExceeded.Refresh",
            Quota::Preload => "QuotaExceeded.Preload",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quota {0:?}: expected Refresh, Preload or Directory")]
pub struct UnknownQuota(pub String);

named_enum!(Quota, UnknownQuota {
    Quota::Refresh => "Refresh",
    Quota::Preload => "Preload",
    Quota::Directory => "Directory",
});

impl TaskType {
    /// Every task, as items and jobs store them.
    pub const ALL: [TaskType; 6] = [
        TaskType::Refresh,
        TaskType::Preload,
        TaskType::FileRefresh,
        TaskType::FilePreload,
        TaskType::DirectoryRefresh,
        TaskType::ResolveCovers,
    ];

    /// The task of `task` (a media task as a caller names it) for a target of `kind`; `None`
    /// for a directory prefetch, which VOD does not have.
    pub fn for_kind(task: TaskType, kind: TargetKind) -> Option<TaskType> {
        let refresh = matches!(task.vod_task_type(), "Refresh");
        Some(match (kind, refresh) {
            (TargetKind::Media, true) => TaskType::Refresh,
            (TargetKind::Media, false) => TaskType::Preload,
            (TargetKind::File, true) => TaskType::FileRefresh,
            (TargetKind::File, false) => TaskType::FilePreload,
            (TargetKind::Directory, true) => TaskType::DirectoryRefresh,
            (TargetKind::Directory, false) => return None,
        })
    }

    pub fn kind(self) -> TargetKind {
        match self {
            TaskType::Refresh | TaskType::Preload | TaskType::ResolveCovers => TargetKind::Media,
            TaskType::FileRefresh | TaskType::FilePreload => TargetKind::File,
            TaskType::DirectoryRefresh => TargetKind::Directory,
        }
    }

    /// VOD's `TaskType` (`Refresh` or `Preload`), what `/jobs` shows as the task.
    pub fn vod_task_type(self) -> &'static str {
        match self {
            TaskType::Refresh
            | TaskType::FileRefresh
            | TaskType::DirectoryRefresh
            | TaskType::ResolveCovers => "Refresh",
            TaskType::Preload | TaskType::FilePreload => "Preload",
        }
    }

    /// The daily quota it spends (a cover lookup, the URL purges it leads to).
    pub fn quota(self) -> Quota {
        match self {
            TaskType::Refresh | TaskType::FileRefresh | TaskType::ResolveCovers => Quota::Refresh,
            TaskType::Preload | TaskType::FilePreload => Quota::Preload,
            TaskType::DirectoryRefresh => Quota::Directory,
        }
    }

    /// The VOD action that carries it.
    pub fn action(self) -> &'static str {
        match self {
            TaskType::Refresh | TaskType::Preload => "RefreshMediaPlayUrls",
            TaskType::FileRefresh | TaskType::DirectoryRefresh => "RefreshVodObjectCaches",
            TaskType::FilePreload => "PreloadVodObjectCaches",
            TaskType::ResolveCovers => "GetVideoInfo",
        }
    }
}

/// What a caller may ask for: one task, or a purge followed by a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
pub enum RequestedTask {
    #[default]
    Refresh,
    Preload,
    /// A `Refresh` and then, once it has been sent, a `Preload` of the same IDs.
    RefreshThenPreload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task {0:?}: expected Refresh, Preload or RefreshThenPreload")]
pub struct UnknownTask(pub String);

named_enum!(TaskType, UnknownTask {
    TaskType::Refresh => "Refresh",
    TaskType::Preload => "Preload",
    TaskType::FileRefresh => "FileRefresh",
    TaskType::FilePreload => "FilePreload",
    TaskType::DirectoryRefresh => "DirectoryRefresh",
    TaskType::ResolveCovers => "ResolveCovers",
});

named_enum!(RequestedTask, UnknownTask {
    RequestedTask::Refresh => "Refresh",
    RequestedTask::Preload => "Preload",
    RequestedTask::RefreshThenPreload => "RefreshThenPreload",
});

impl RequestedTask {
    /// The tasks to enqueue, in the order VOD must see them.
    pub fn tasks(self) -> &'static [TaskType] {
        match self {
            RequestedTask::Refresh => &[TaskType::Refresh],
            RequestedTask::Preload => &[TaskType::Preload],
            RequestedTask::RefreshThenPreload => &[TaskType::Refresh, TaskType::Preload],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migrations compute a job's quota from its task in SQL (so that every writer files it
    /// rightly): the same mapping as [`TaskType::quota`].
    #[test]
    fn the_migrations_file_each_task_under_its_quota() {
        for migration in [
            include_str!("../../migrations/sqlite/0007_targets.sql"),
            include_str!("../../migrations/postgres/0005_targets.sql"),
        ] {
            for task in TaskType::ALL {
                let rule = format!("WHEN '{task}' THEN '{}'", task.quota());
                let named = migration.contains(&format!("WHEN '{task}' THEN"));
                assert_eq!(
                    named,
                    task.quota() != Quota::Refresh,
                    "{task}: only tasks outside the Refresh quota are named"
                );
                assert!(!named || migration.contains(&rule), "{rule}");
            }
            assert!(migration.contains("ELSE 'Refresh' END"));
        }
    }

    #[test]
    fn parse_table() {
        for (raw, want) in [
            ("Refresh", Some(RequestedTask::Refresh)),
            ("Preload", Some(RequestedTask::Preload)),
            (
                "RefreshThenPreload",
                Some(RequestedTask::RefreshThenPreload),
            ),
            ("refresh", None),
            ("", None),
        ] {
            assert_eq!(raw.parse::<RequestedTask>().ok(), want, "{raw:?}");
        }
        assert_eq!(
            RequestedTask::RefreshThenPreload.tasks(),
            &[TaskType::Refresh, TaskType::Preload]
        );
    }
}

/// How soon an item must go out. An urgent item (a takedown) skips the quiet period, is claimed
/// before normal items, and may use the part of the daily quota kept back for urgent work.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Normal,
    Urgent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?}: expected \"normal\" or \"urgent\"")]
pub struct UnknownPriority(pub String);

named_enum!(Priority, UnknownPriority {
    Priority::Normal => "normal",
    Priority::Urgent => "urgent",
});

impl Priority {
    /// The value of the `priority` column.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Normal => 0,
            Priority::Urgent => 1,
        }
    }

    pub fn from_rank(rank: i64) -> Priority {
        if rank > 0 {
            Priority::Urgent
        } else {
            Priority::Normal
        }
    }
}
