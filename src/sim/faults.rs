//! Fault injection: errors at a rate, the next N calls failing, added latency, outage windows,
//! CDN tasks that end `Failed`.
//!
//! Faults are checked after the signature (so a faulty answer is still an authenticated,
//! recorded call) and can be changed while the simulator runs (`PUT /_sim/faults`).

/// The fault settings, as set by flags at start and by `GET`/`PUT /_sim/faults` at runtime.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0 to 1) that a call fails with `error_code`.
    pub error_rate: f64,
    /// The code of injected failures, optionally with a status: `InternalError`, `Throttling`,
    /// `ServiceUnavailable/502`. Without a status the usual one for the code is used.
    pub error_code: String,
    /// Added before every answer. The call is processed first, so a client that times out may
    /// still have caused a job, as with the real service.
    pub latency_ms: u64,
    /// When set, `latency_ms` delays the calls of this action only (e.g. `DescribeVodRefreshQuota`:
    /// a reading that arrives well after the quota it read).
    pub latency_action: Option<String>,
    /// The next N authenticated calls fail with `error_code`.
    pub fail_next: u32,
    /// Shorthand for an outage from now: sets `outage_start_ms`/`outage_end_ms` when applied.
    pub outage_for_ms: Option<u64>,
    /// Outage window in epoch milliseconds (either bound may be open). Calls inside it get
    /// `ServiceUnavailable` (503).
    pub outage_start_ms: Option<i64>,
    pub outage_end_ms: Option<i64>,
    /// While set, every STS call is refused with this code (`Code` or `Code/Status`), e.g.
    /// `AuthenticationFail.OIDCToken.Expired` or `ServiceUnavailable/503`.
    pub sts_error_code: Option<String>,
    /// While set, the metadata service answers credential reads with this `Code` instead of
    /// `Success`.
    pub metadata_code: Option<String>,
    /// When set, `error_rate` and `fail_next` apply to calls of this action only (e.g.
    /// `GetMediaRefreshJobs`); other calls pass.
    pub fail_action: Option<String>,
    /// While set, the calls per second per AccessKey and action allowed before `Throttling`, in
    /// place of `--qps`: another client taking a share of the account's limit.
    pub qps: Option<u32>,
    /// With `qps`: count the calls in fixed one-second windows of the simulator's clock (at most
    /// `qps` in each) instead of a token bucket that holds `qps` calls, so a client that sends
    /// faster than the share left to it is throttled within the second, as an API gateway's
    /// per-second counter does.
    pub qps_window: bool,
    /// With `qps`: count the calls as they arrive, at most `qps` in any sliding second (any
    /// 1,000 ms) of the simulator's clock, as an account's limit counts arrivals: two calls that
    /// left 20 ms apart and arrive closer together can put one too many into a second. Takes
    /// precedence over `qps_window`.
    pub qps_sliding: bool,
    /// While set, authenticated calls of this action (`RefreshMediaPlayUrls`, say) hang: each
    /// is listed as it arrives (`GET /_sim/stalled`) and gets no answer until the fault is
    /// cleared or names another action; it is then answered `ServiceUnavailable` (503) with
    /// nothing done, and recorded. A caller killed meanwhile was killed with its call in flight,
    /// and the call never counts as a purge.
    pub stall_action: Option<String>,
    /// Media IDs whose submission fails, as `--failing` ones do, in the calls made while they are
    /// listed: the call accepts them and `GetMediaRefreshJobs` reports them `fail`.
    pub failing_submissions: Vec<String>,
    /// CDN tasks that end `Failed` instead of `Complete`: the next `times` tasks created whose
    /// `ObjectPath` contains `pattern` (the first entry that matches, and has some left, counts
    /// one down; an entry is dropped once used up). Tasks of URL calls and the play-URL tasks of
    /// media jobs alike.
    pub fail_tasks: Vec<TaskFailure>,
}

/// One `fail_tasks` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFailure {
    /// A substring of the `ObjectPath` of the tasks to fail (empty: any task).
    pub pattern: String,
    /// How many tasks still to fail.
    pub times: u32,
    /// The `Description` the failed tasks report; `Origin Timeout` when absent.
    #[serde(default)]
    pub description: Option<String>,
}

/// The failure reason of a failed task when the fault names none (one of the documented ones,
/// `vod-api.md` §2.2).
pub const DEFAULT_TASK_FAILURE: &str = "Origin Timeout";

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_code: "InternalError".to_owned(),
            latency_ms: 0,
            latency_action: None,
            fail_next: 0,
            outage_for_ms: None,
            outage_start_ms: None,
            outage_end_ms: None,
            sts_error_code: None,
            metadata_code: None,
            fail_action: None,
            qps: None,
            qps_window: false,
            qps_sliding: false,
            stall_action: None,
            failing_submissions: Vec::new(),
            fail_tasks: Vec::new(),
        }
    }
}

/// The HTTP status VOD uses for an error code (`vod-api.md` §6.2); 400 for anything unlisted.
pub fn status_for_code(code: &str) -> u16 {
    match code {
        "Throttling" | "ServiceUnavailable" => 503,
        "InternalError" | "UnknownError" => 500,
        "InvalidAccessKeyId.NotFound" | "InvalidAction.NotFound" => 404,
        // The CDN's documented status for a full prefetch queue (`vod-api.md` §2.4, §6.2).
        "PreloadQueueFull" => 403,
        c if c.starts_with("Forbidden") || c.starts_with("OperationDenied") => 403,
        _ => 400,
    }
}

/// Splits `Code` or `Code/Status` into the code and its status.
pub fn parse_error_code(spec: &str) -> Result<(String, u16), String> {
    match spec.split_once('/') {
        None if !spec.is_empty() => Ok((spec.to_owned(), status_for_code(spec))),
        Some((code, status)) if !code.is_empty() => match status.parse::<u16>() {
            Ok(s) if (400..=599).contains(&s) => Ok((code.to_owned(), s)),
            _ => Err(format!(
                "error code {spec:?}: the status must be 400 to 599"
            )),
        },
        _ => Err(format!("error code {spec:?}: expected Code or Code/Status")),
    }
}

/// An injected failure: code, status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub code: String,
    pub status: u16,
    pub message: String,
}

impl Faults {
    /// Checks the settings and turns `outage_for_ms` into an absolute window.
    pub fn normalised(mut self, now_ms: i64) -> Result<Faults, String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate {} is not between 0 and 1",
                self.error_rate
            ));
        }
        parse_error_code(&self.error_code)?;
        if self.qps == Some(0) {
            return Err("qps must be at least 1".to_owned());
        }
        if self.stall_action.as_deref() == Some("") {
            return Err("stall_action names no action".to_owned());
        }
        if let Some(code) = &self.sts_error_code {
            parse_error_code(code)?;
        }
        if let Some(ms) = self.outage_for_ms.take() {
            self.outage_start_ms = Some(now_ms);
            self.outage_end_ms = Some(now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
        }
        Ok(self)
    }

    fn in_outage(&self, now_ms: i64) -> bool {
        if self.outage_start_ms.is_none() && self.outage_end_ms.is_none() {
            return false;
        }
        self.outage_start_ms.is_none_or(|s| now_ms >= s)
            && self.outage_end_ms.is_none_or(|e| now_ms < e)
    }

    /// Decides whether this call of `action` fails, consuming one of `fail_next`. `roll` is a
    /// uniform random number in [0, 1), passed in so the rule stays testable.
    pub fn inject(&mut self, action: &str, now_ms: i64, roll: f64) -> Option<Injected> {
        if self.in_outage(now_ms) {
            return Some(Injected {
                code: "ServiceUnavailable".to_owned(),
                status: 503,
                message: "The request has failed due to a temporary failure of the server."
                    .to_owned(),
            });
        }
        if self
            .fail_action
            .as_deref()
            .is_some_and(|only| only != action)
        {
            return None;
        }
        let fail = if self.fail_next > 0 {
            self.fail_next -= 1;
            true
        } else {
            roll < self.error_rate
        };
        if !fail {
            return None;
        }
        // `normalised` checked the code; fall back to InternalError if it was bypassed.
        let (code, status) =
            parse_error_code(&self.error_code).unwrap_or(("InternalError".to_owned(), 500));
        let message = match code.as_str() {
            "Throttling" => "Request was denied due to request throttling.".to_owned(),
            "ServiceUnavailable" => {
                "The request has failed due to a temporary failure of the server.".to_owned()
            }
            "InternalError" => {
                "The request processing has failed due to some unknown error.".to_owned()
            }
            // The CDN's messages for its refresh and prefetch limits (`vod-api.md` §2.4, §6.2).
            "QuotaPerMinuteExceeded.Refresh" => {
                "Refresh too frequently, please try again later.".to_owned()
            }
            "TooMany.Refresh" => "The refresh queue is full.".to_owned(),
            "PreloadQueueFull" => "Preload queue is full, please try again later!".to_owned(),
            other => format!("Injected fault {other}."),
        };
        Some(Injected {
            code,
            status,
            message,
        })
    }

    /// Whether a task about to be created for `path` is to fail, and with what description:
    /// counts one down of the first `fail_tasks` entry that matches.
    pub fn task_failure(&mut self, path: &str) -> Option<String> {
        let at = self
            .fail_tasks
            .iter()
            .position(|f| f.times > 0 && path.contains(&f.pattern))?;
        let entry = &mut self.fail_tasks[at];
        entry.times -= 1;
        let description = entry
            .description
            .clone()
            .unwrap_or_else(|| DEFAULT_TASK_FAILURE.to_owned());
        if entry.times == 0 {
            self.fail_tasks.remove(at);
        }
        Some(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(
            parse_error_code("Throttling"),
            Ok(("Throttling".to_owned(), 503))
        );
        assert_eq!(
            parse_error_code("InternalError"),
            Ok(("InternalError".to_owned(), 500))
        );
        assert_eq!(
            parse_error_code("Forbidden.RAM"),
            Ok(("Forbidden.RAM".to_owned(), 403))
        );
        assert_eq!(
            parse_error_code("InvalidParameter"),
            Ok(("InvalidParameter".to_owned(), 400))
        );
        assert_eq!(
            parse_error_code("PreloadQueueFull"),
            Ok(("PreloadQueueFull".to_owned(), 403))
        );
        assert_eq!(
            parse_error_code("TooMany.Refresh"),
            Ok(("TooMany.Refresh".to_owned(), 400))
        );
        assert_eq!(
            parse_error_code("BadGateway/502"),
            Ok(("BadGateway".to_owned(), 502))
        );
        for bad in ["", "/500", "X/200", "X/abc"] {
            assert!(parse_error_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fail_next_counts_down() {
        let mut f = Faults {
            fail_next: 2,
            error_code: "Throttling".to_owned(),
            ..Faults::default()
        };
        assert_eq!(
            f.inject("RefreshMediaPlayUrls", 0, 0.9).map(|i| i.status),
            Some(503)
        );
        assert!(f.inject("RefreshMediaPlayUrls", 0, 0.9).is_some());
        assert!(f.inject("RefreshMediaPlayUrls", 0, 0.9).is_none());
    }

    #[test]
    fn error_rate_uses_the_roll() {
        let mut f = Faults {
            error_rate: 0.5,
            ..Faults::default()
        };
        assert_eq!(
            f.inject("RefreshMediaPlayUrls", 0, 0.1).map(|i| i.code),
            Some("InternalError".to_owned())
        );
        assert!(f.inject("RefreshMediaPlayUrls", 0, 0.6).is_none());
    }

    #[test]
    fn outage_window() {
        let f = Faults {
            outage_for_ms: Some(1000),
            ..Faults::default()
        }
        .normalised(5000)
        .unwrap();
        assert_eq!(
            (f.outage_start_ms, f.outage_end_ms, f.outage_for_ms),
            (Some(5000), Some(6000), None)
        );
        let mut f = f;
        assert!(f.inject("RefreshMediaPlayUrls", 4999, 0.9).is_none());
        assert_eq!(
            f.inject("RefreshMediaPlayUrls", 5000, 0.9).map(|i| i.code),
            Some("ServiceUnavailable".to_owned())
        );
        assert!(f.inject("RefreshMediaPlayUrls", 6000, 0.9).is_none());
        assert!(
            Faults {
                error_rate: 1.5,
                ..Faults::default()
            }
            .normalised(0)
            .is_err()
        );
    }

    #[test]
    fn failures_can_target_one_action() {
        let mut f = Faults {
            fail_next: 1,
            fail_action: Some("GetMediaRefreshJobs".into()),
            ..Faults::default()
        };
        assert!(f.inject("RefreshMediaPlayUrls", 0, 0.0).is_none());
        assert!(f.inject("DescribeVodRefreshQuota", 0, 0.0).is_none());
        assert!(f.inject("GetMediaRefreshJobs", 0, 0.9).is_some());
        assert!(f.inject("GetMediaRefreshJobs", 0, 0.9).is_none());
    }

    #[test]
    fn task_failures_count_down_per_pattern() {
        let mut f = Faults {
            fail_tasks: vec![
                TaskFailure {
                    pattern: "/a/".to_owned(),
                    times: 2,
                    description: None,
                },
                TaskFailure {
                    pattern: ".m3u8".to_owned(),
                    times: 1,
                    description: Some("Origin Return StatusCode 5XX".to_owned()),
                },
            ],
            ..Faults::default()
        };
        assert_eq!(f.task_failure("http://h/b/1.mp4"), None);
        assert_eq!(
            f.task_failure("http://h/a/1.m3u8").as_deref(),
            Some("Origin Timeout")
        );
        assert_eq!(
            f.task_failure("http://h/b/1.m3u8").as_deref(),
            Some("Origin Return StatusCode 5XX")
        );
        assert_eq!(f.task_failure("http://h/b/2.m3u8"), None);
        assert!(f.task_failure("http://h/a/2").is_some());
        assert_eq!(f.task_failure("http://h/a/3"), None);
        assert!(f.fail_tasks.is_empty());
    }
}
