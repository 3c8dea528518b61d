//! Value types of the product, free of I/O.
//!
//! Everything that crosses a boundary (webhook bodies, configuration, database rows) is parsed
//! into these types once, at the edge, so that the rest of the code never sees an invalid media
//! ID, an unknown task or an option set that is spelled two ways.

pub mod account;
pub mod media_id;
pub mod options;
pub mod quota_terms;
pub mod target;
pub mod task;
pub mod time;

pub use account::{AccountName, InvalidAccountName};
pub use media_id::{InvalidMediaId, MediaId, MediaIdRules};
pub use options::{OptionsError, PurgeOptions, RawOptions};
pub use target::{CdnDomains, MAX_URL_BYTES, TargetKind, UrlError};
pub use task::{
    Priority, Quota, RequestedTask, TaskType, UnknownPriority, UnknownQuota, UnknownTask,
};
pub use time::Ts;
