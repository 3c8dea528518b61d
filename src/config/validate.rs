//! The range and cross-field checks of the settings, run once at load. Each failure names its
//! key.

use std::time::Duration;

use super::{ConfigError, Settings, VOD_MAX_QPS};
use crate::webhook::Source;

impl Settings {
    /// Cross-field and range checks, and each source compiled as `serve` compiles it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError::invalid(key, why));
        let vod = &self.vod;
        self.default_account().validate()?;
        let checks = vod.checks_per_second;
        if checks == 0 || checks > VOD_MAX_QPS {
            return fail(
                "vod.checks_per_second",
                format!(
                    "{checks} is outside 1 to {VOD_MAX_QPS}; VOD allows {VOD_MAX_QPS} GetMediaRefreshJobs calls per second per account"
                ),
            );
        }
        if vod.burst == 0 || vod.burst > vod.max_requests_per_second {
            return fail(
                "vod.burst",
                format!(
                    "{} must be between 1 and max_requests_per_second",
                    vod.burst
                ),
            );
        }
        if !(1..=1000).contains(&vod.urls_per_call) {
            return fail(
                "vod.urls_per_call",
                format!(
                    "{} is outside 1 to 1000 (VOD takes at most 1,000 URLs a call)",
                    vod.urls_per_call
                ),
            );
        }
        if !(1..=VOD_MAX_QPS).contains(&vod.url_requests_per_second) {
            return fail(
                "vod.url_requests_per_second",
                format!(
                    "{} is outside 1 to {VOD_MAX_QPS}",
                    vod.url_requests_per_second
                ),
            );
        }
        if !vod.follow_for.is_zero() && vod.follow_interval.is_zero() {
            return fail("vod.follow_interval", "must be more than zero".into());
        }
        if vod.follow_for > Duration::from_secs(3 * 24 * 3600) {
            return fail(
                "vod.follow_for",
                "at most 3 days: DescribeVodRefreshTasks reads only the last 3 days".into(),
            );
        }
        if vod.max_in_flight == 0 {
            return fail("vod.max_in_flight", "must be at least 1".into());
        }
        if vod.max_attempts == 0 {
            return fail("vod.max_attempts", "must be at least 1".into());
        }
        if vod.timeout.is_zero() {
            return fail("vod.timeout", "must be more than zero".into());
        }
        if vod.retry_base.is_zero() || vod.retry_base > vod.retry_max {
            return fail(
                "vod.retry_base",
                "must be more than zero and at most vod.retry_max".into(),
            );
        }
        let queue = &self.queue;
        if queue.max_wait.is_zero() {
            return fail("queue.max_wait", "must be more than zero".into());
        }
        if queue.quiet > queue.max_wait {
            return fail(
                "queue.quiet",
                format!(
                    "{:?} is longer than queue.max_wait {:?}",
                    queue.quiet, queue.max_wait
                ),
            );
        }
        if queue.lease < vod.timeout.saturating_mul(2) {
            return fail(
                "queue.lease",
                "must be at least twice vod.timeout, or a slow call would be sent twice".into(),
            );
        }
        if queue.poll_interval.is_zero() {
            return fail("queue.poll_interval", "must be more than zero".into());
        }
        if queue.max_ids_per_request == 0 {
            return fail("queue.max_ids_per_request", "must be at least 1".into());
        }
        let server = &self.server;
        if server.max_body_bytes < 64 {
            return fail("server.max_body_bytes", "must be at least 64".into());
        }
        if server.body_timeout.is_zero() {
            return fail("server.body_timeout", "must be more than zero".into());
        }
        for (key, value) in [
            (
                "server.unauthenticated_reads",
                server.unauthenticated_reads as u64,
            ),
            (
                "server.peer_failures_per_second",
                u64::from(server.peer_failures_per_second),
            ),
            (
                "server.peer_failure_burst",
                u64::from(server.peer_failure_burst),
            ),
        ] {
            if value == 0 {
                return fail(key, "must be at least 1".into());
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            if !names.insert(source.name.as_str()) {
                return fail(
                    &format!("sources[{i}].name"),
                    format!("{:?} is used by two sources", source.name),
                );
            }
            if self.account(source.account.as_str()).is_none() {
                return fail(
                    &format!("sources[{i}].account"),
                    format!(
                        "source {:?} names the account {:?}, which is neither \"default\" nor an [[accounts]] table",
                        source.name,
                        source.account.as_str()
                    ),
                );
            }
            Source::new(source).map_err(|why| {
                ConfigError::invalid(format!("sources[{i}] ({})", source.name), why)
            })?;
        }
        Ok(())
    }
}
