//! What VOD is asked to do with a media ID.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// The `TaskType` of one `RefreshMediaPlayUrls` call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum TaskType {
    /// Purge the cached playback URLs.
    Refresh,
    /// Warm the CDN cache with the playback URLs.
    Preload,
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
