//! Watches VOD's daily purge and prefetch quota.
//!
//! Each reading also goes to [`crate::flusher::hold::QuotaBook`]: the flusher ends a quota hold
//! when a reading shows quota left, and bounds its batches by what is left.
//!
//! Every purged playback URL and file probably counts against a small daily quota (2,000 refresh
//! and 500 preload URLs, 100 directories by default), and a call that exceeds it fails. The active flusher asks
//! `DescribeVodRefreshQuota` every `vod.quota_poll_interval` and publishes the figures as
//! metrics, so that an alert can fire before the quota runs out rather than after. Only the
//! active flusher polls, so a cluster spends one call per interval. The API is documented for
//! the Shanghai region only; elsewhere the failures are logged at debug level and the gauges stay
//! unset.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{Quota, Ts};
use crate::flusher::FlusherStatus;
use crate::flusher::hold::Polled;
use crate::metrics::Metrics;
use crate::vod;

/// Below this share of the daily quota left, a warning is logged at each poll.
const LOW_SHARE: f64 = 0.1;

pub async fn watch(
    account: crate::domain::AccountName,
    client: vod::Client,
    status: Arc<FlusherStatus>,
    metrics: Arc<Metrics>,
    every: Duration,
    token: CancellationToken,
) {
    loop {
        if status.is_active() {
            // A reading is as old as its request: stamped when the answer came, a reading taken
            // before a hold began could end it.
            let at = Ts::now();
            let marks = Quota::ALL.map(|quota| status.quota.mark(quota));
            match client.describe_vod_refresh_quota().await {
                Ok(quota) => {
                    for ((task, kind, total, remain), mark) in [
                        (Quota::Refresh, "refresh", quota.url_quota, quota.url_remain),
                        (
                            Quota::Preload,
                            "preload",
                            quota.preload_quota,
                            quota.preload_remain,
                        ),
                        (
                            Quota::Directory,
                            "directory",
                            quota.dir_quota,
                            quota.dir_remain,
                        ),
                    ]
                    .into_iter()
                    .zip(marks)
                    {
                        status.quota.polled(
                            task,
                            Polled {
                                at,
                                total,
                                remaining: remain,
                            },
                            mark,
                        );
                        metrics
                            .vod_quota_daily
                            .with_label_values(&[account.as_str(), kind])
                            .set(total as i64);
                        metrics
                            .vod_quota_remaining
                            .with_label_values(&[account.as_str(), kind])
                            .set(remain as i64);
                        if total > 0 && (remain as f64) < total as f64 * LOW_SHARE {
                            tracing::warn!(
                                kind,
                                remain,
                                total,
                                "VOD daily quota is nearly used up"
                            );
                        }
                    }
                }
                Err(error) => tracing::debug!(error = %error, "cannot read the VOD refresh quota"),
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
