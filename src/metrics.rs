//! Prometheus metrics, in an explicit registry per application.
//!
//! Each application owns its [`Metrics`] (no process-wide recorder), so two applications in one
//! test process never mix their figures. Counters and histograms are updated where things
//! happen; the queue gauges are read from the store when `/metrics` is scraped, so they are
//! right on every replica, not only on the leader.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Deliveries by source and outcome (`accepted`, `redelivery`, `ignored`, or the error code).
    pub deliveries: IntCounterVec,
    /// `media_ids_total` by result: `accepted` (new item), `merged` (into a pending item),
    /// `rejected`; the three series are looked up once rather than on every request.
    pub ids_accepted: IntCounter,
    pub ids_merged: IntCounter,
    pub ids_rejected: IntCounter,
    /// VOD calls by outcome (`success`, `throttled`, `retryable`, `permanent`) and error code.
    pub vod_calls: IntCounterVec,
    pub vod_call_duration: Histogram,
    pub batch_size: Histogram,
    /// Seconds the flusher spent waiting for the rate limiter.
    pub limiter_wait: prometheus::Counter,
    /// Attempts scheduled again after a retryable failure.
    pub retries: IntCounter,
    /// Jobs that reached a final status, by status.
    pub jobs_finished: IntCounterVec,
    /// 1 while this process is the active flusher.
    pub flusher_active: IntGauge,
    /// 1 while the last VOD answer was a credential error, by account.
    pub vod_credential_error: prometheus::IntGaugeVec,
    /// Pending items and those due, by account.
    pub queue_pending: prometheus::IntGaugeVec,
    pub queue_due: prometheus::IntGaugeVec,
    pub queue_oldest_age: prometheus::GaugeVec,
    pub jobs_in_flight: IntGauge,
    pub jobs_retrying: IntGauge,
    /// VOD's daily quota and what is left of it, by kind (`refresh`, `preload`).
    pub vod_quota_daily: prometheus::IntGaugeVec,
    pub vod_quota_remaining: prometheus::IntGaugeVec,
    /// Calls answered "quota used up" that held their job, by task type.
    pub quota_holds: IntCounterVec,
    pub quota_hold_ends: IntCounterVec,
    /// Jobs held on the daily quota, by task type; set at each scrape.
    pub quota_held_jobs: prometheus::IntGaugeVec,
    /// When the next probe of a held task type goes out (Unix seconds; 0: not held).
    pub quota_held_until: prometheus::IntGaugeVec,
    /// Media IDs whose submission VOD reported, by `submitted` / `submit_failed` and code.
    pub submissions: IntCounterVec,
    /// GetMediaRefreshJobs calls that failed, by error code.
    pub check_errors: IntCounterVec,
    /// Media IDs sent again in a new job after their submission failed for a passing reason.
    pub resubmitted: IntCounter,
    /// Seconds left on the credential VOD calls are signed with, by provider; set at each
    /// scrape, and absent for keys that do not expire (and in dry-run mode).
    pub credential_expiry: prometheus::GaugeVec,
    /// Credential renewals by provider and result (`success`, `failure`).
    pub credential_renewals: IntCounterVec,
    /// From an item's first acknowledged event to every one of its CDN tasks done, by kind
    /// (`media`, `file`, `directory`): the time a purge takes to reach the edge.
    pub time_to_complete: prometheus::HistogramVec,
    /// Followed items by result: `complete`, `failed` (a CDN task failed or was not done
    /// within `vod.follow_for`).
    pub followed: IntCounterVec,
    /// DescribeVodRefreshTasks calls that failed, by error code.
    pub follow_errors: IntCounterVec,
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::IntGaugeVec {
    let metric = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn float_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    let metric = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> prometheus::HistogramVec {
    let metric =
        prometheus::HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new_custom(Some("vod_purge".to_owned()), None).expect("valid registry");
        let limiter_wait = prometheus::Counter::new(
            "rate_limiter_wait_seconds_total",
            "Time spent waiting for the VOD rate limiter",
        )
        .expect("valid metric");
        r.register(Box::new(limiter_wait.clone()))
            .expect("metric registered once");
        let queue_oldest_age = float_gauge_vec(
            &r,
            "queue_oldest_pending_age_seconds",
            "Age of the oldest pending item, by account",
            &["account"],
        );
        let retries = counter(
            &r,
            "vod_retries_total",
            "Attempts scheduled again after a retryable failure",
        );
        let media_ids = counter_vec(
            &r,
            "media_ids_total",
            "Media IDs received, by result",
            &["result"],
        );
        let resubmitted = counter(
            &r,
            "media_resubmitted_total",
            "Media IDs sent again in a new job after VOD reported their submission failed for a passing reason (PreloadQueueFull, TooMany.Refresh)",
        );
        Metrics {
            resubmitted,
            submissions: counter_vec(
                &r,
                "media_submissions_total",
                "Media IDs of sent jobs whose CDN task submission VOD reported (GetMediaRefreshJobs), by result and error code",
                &["account", "result", "code"],
            ),
            check_errors: counter_vec(
                &r,
                "submission_check_errors_total",
                "GetMediaRefreshJobs calls that failed, by error code",
                &["account", "code"],
            ),
            deliveries: counter_vec(
                &r,
                "deliveries_total",
                "Ingest requests by source and outcome",
                &["source", "outcome"],
            ),
            ids_accepted: media_ids.with_label_values(&["accepted"]),
            ids_merged: media_ids.with_label_values(&["merged"]),
            ids_rejected: media_ids.with_label_values(&["rejected"]),
            vod_calls: counter_vec(
                &r,
                "vod_calls_total",
                "RefreshMediaPlayUrls calls by outcome and error code",
                &["account", "outcome", "code"],
            ),
            time_to_complete: histogram_vec(
                &r,
                "time_to_complete_seconds",
                "From an item's first acknowledged event to all of its CDN tasks done, by kind",
                &["account", "kind"],
                vec![
                    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
                ],
            ),
            followed: counter_vec(
                &r,
                "followed_items_total",
                "Items followed to the edge, by result (complete, failed, unconfirmed)",
                &["account", "result"],
            ),
            follow_errors: counter_vec(
                &r,
                "follow_errors_total",
                "DescribeVodRefreshTasks calls that failed, by error code",
                &["account", "code"],
            ),
            vod_call_duration: histogram(
                &r,
                "vod_call_duration_seconds",
                "Duration of RefreshMediaPlayUrls calls",
                prometheus::exponential_buckets(0.005, 2.0, 12).expect("valid buckets"),
            ),
            batch_size: histogram(
                &r,
                "batch_size",
                "Media IDs per RefreshMediaPlayUrls call",
                vec![1.0, 2.0, 5.0, 10.0, 15.0, 19.0, 20.0],
            ),
            limiter_wait,
            retries,
            jobs_finished: counter_vec(
                &r,
                "jobs_finished_total",
                "Jobs that reached a final status",
                &["account", "status"],
            ),
            flusher_active: gauge(
                &r,
                "flusher_active",
                "1 while this process is the active flusher",
            ),
            vod_credential_error: gauge_vec(
                &r,
                "vod_credential_error",
                "1 while VOD rejects the credentials",
                &["account"],
            ),
            queue_pending: gauge_vec(&r, "queue_pending_items", "Pending items", &["account"]),
            queue_due: gauge_vec(
                &r,
                "queue_due_items",
                "Pending items that are due",
                &["account"],
            ),
            queue_oldest_age,
            jobs_in_flight: gauge(&r, "jobs_in_flight", "Jobs whose call is in flight"),
            jobs_retrying: gauge(&r, "jobs_retrying", "Jobs waiting for their next attempt"),
            vod_quota_daily: gauge_vec(
                &r,
                "vod_quota_daily",
                "VOD daily quota (DescribeVodRefreshQuota)",
                &["account", "kind"],
            ),
            vod_quota_remaining: gauge_vec(
                &r,
                "vod_quota_remaining",
                "VOD daily quota left today",
                &["account", "kind"],
            ),
            quota_holds: counter_vec(
                &r,
                "quota_holds_total",
                "Calls answered with a used-up daily quota, holding their job",
                &["account", "task"],
            ),
            quota_hold_ends: counter_vec(
                &r,
                "quota_hold_ends_total",
                "Quota holds ended, by what ended them: a probe's answer or the quota poll",
                &["account", "task", "by"],
            ),
            quota_held_jobs: gauge_vec(
                &r,
                "quota_held_jobs",
                "Jobs held on the daily quota",
                &["account", "task"],
            ),
            quota_held_until: gauge_vec(
                &r,
                "quota_held_until_seconds",
                "When the next probe of a task type held on the daily quota goes out (Unix time; 0: not held)",
                &["account", "task"],
            ),
            credential_expiry: float_gauge_vec(
                &r,
                "credential_expiry_seconds",
                "Seconds left on the STS credential VOD calls are signed with",
                &["account", "provider"],
            ),
            credential_renewals: counter_vec(
                &r,
                "credential_renewals_total",
                "Credential renewals by provider and result",
                &["account", "provider", "result"],
            ),
            registry: r,
        }
        .with_zero_series()
    }

    /// Starts the series that alert rules compute increases of at zero, so that their first
    /// increment shows as an increase rather than as a new series.
    fn with_zero_series(self) -> Metrics {
        self.start_account(crate::domain::AccountName::DEFAULT);
        self
    }

    /// Starts an account's series that alert rules compute increases of (see
    /// [`Metrics::with_zero_series`]).
    pub fn start_account(&self, account: &str) {
        for status in ["succeeded", "failed"] {
            self.jobs_finished.with_label_values(&[account, status]);
        }
        self.vod_calls.with_label_values(&[account, "success", ""]);
        self.vod_credential_error.with_label_values(&[account]);
    }

    /// The counters of one source's stored deliveries.
    pub fn stored_counters(&self, source: &str) -> StoredCounters {
        StoredCounters {
            accepted: self.deliveries.with_label_values(&[source, "accepted"]),
            redelivery: self.deliveries.with_label_values(&[source, "redelivery"]),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A source's `deliveries_total` series for stored deliveries, looked up once when the
/// application starts rather than on every request.
pub struct StoredCounters {
    pub accepted: IntCounter,
    pub redelivery: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
