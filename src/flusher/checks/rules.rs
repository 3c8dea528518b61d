//! The rules of the submission checks, pure (the time is an argument): which of VOD's answers
//! mean what ([`submissions`]), when to ask again ([`again_at`]), and which IDs to send again
//! ([`resubmission`]).

use std::time::Duration;

use super::CheckConfig;
use crate::domain::Ts;
use crate::store::Submission;
use crate::vod::{self, ErrorClass, GetMediaRefreshJobsResponse};

/// Checks per job at most: with the default `check_after` of 10 s, the last one is about five
/// minutes after the call.
pub const MAX_CHECKS: u32 = 5;

/// The submissions VOD reports in an answer about `vod_job_id`. Items of other jobs, and items
/// whose status is neither `success` nor `fail`, are left out: those IDs are asked about again.
pub fn submissions(vod_job_id: &str, answer: &GetMediaRefreshJobsResponse) -> Vec<Submission> {
    answer
        .media_refresh_jobs
        .iter()
        .filter(|item| {
            item.media_refresh_job_id.is_empty() || item.media_refresh_job_id == vod_job_id
        })
        .filter_map(|item| {
            let result = match item.status.to_ascii_lowercase().as_str() {
                "success" => Ok(()),
                "fail" => Err((
                    item.error_code
                        .clone()
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(|| "SubmitFailed".to_owned()),
                    item.error_message.clone().unwrap_or_default(),
                )),
                _ => return None,
            };
            // One task per play URL, in the order of SuccessPlayUrls; a task whose URL is not
            // named is known by its ID.
            let tasks = match result {
                Ok(()) => item
                    .task_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        let url = item.success_play_urls.get(i).unwrap_or(id);
                        (id.clone(), url.clone())
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            Some(Submission {
                media_id: item.media_id.clone(),
                result,
                tasks,
            })
        })
        .collect()
}

/// When to ask again about IDs still unreported after check number `done` (counting from 1):
/// `check_after` doubled once per check made, and never after the last allowed check.
pub fn again_at(now: Ts, check_after: Duration, done: u32) -> Option<Ts> {
    (done < MAX_CHECKS).then(|| now + check_after.saturating_mul(1 << done.min(16)))
}

/// The IDs to send again, when, and whether the new job starts held on the quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    pub media_ids: Vec<String>,
    pub send_at: Ts,
    /// A used-up quota's code, when VOD reported one for an ID: the new job starts held and is
    /// sent as the quota comes back (see [`crate::flusher::hold`]).
    pub held: Option<String>,
}

/// The IDs to send again, and when: those whose submission failed with a code that passes
/// (`PreloadQueueFull`, `TooMany.Refresh`, throttling, server errors), while the job's retry
/// budget (`max_age` from `budget_from`) lasts at the time they would be sent. A resubmitted job
/// is checked in its turn, so an ID is sent again until it goes through or the budget runs out.
/// A used-up quota (`QuotaExceeded.*`) passes too, at the quota's pace: the new job is held, its
/// first probe is due as a hold's would be, and `max_age` does not run while it is held.
pub fn resubmission(
    submissions: &[Submission],
    now: Ts,
    budget_from: Ts,
    config: &CheckConfig,
) -> Option<Resend> {
    let class = |s: &Submission| match &s.result {
        Err((code, _)) => vod::class_of_code(code),
        Ok(()) => None,
    };
    let media_ids: Vec<String> = submissions
        .iter()
        .filter(|s| {
            matches!(
                class(s),
                Some(ErrorClass::Retryable | ErrorClass::Throttled | ErrorClass::QuotaExhausted)
            )
        })
        .map(|s| s.media_id.clone())
        .collect();
    if media_ids.is_empty() {
        return None;
    }
    let held = submissions
        .iter()
        .filter(|s| class(s) == Some(ErrorClass::QuotaExhausted))
        .find_map(|s| s.result.as_ref().err().map(|(code, _)| code.clone()));
    let send_at = match held {
        Some(_) => config.hold.next_probe(now, now),
        None => now + config.resubmit_after,
    };
    if held.is_none() && send_at > budget_from + config.max_age {
        return None;
    }
    Some(Resend {
        media_ids,
        send_at,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vod::MediaRefreshJob;

    fn item(job: &str, media: &str, status: &str, code: Option<&str>) -> MediaRefreshJob {
        MediaRefreshJob {
            media_refresh_job_id: job.to_owned(),
            media_id: media.to_owned(),
            status: status.to_owned(),
            error_code: code.map(str::to_owned),
            error_message: code.map(|c| format!("{c} happened")),
            ..MediaRefreshJob::default()
        }
    }

    #[test]
    fn answers_become_submissions() {
        let answer = GetMediaRefreshJobsResponse {
            request_id: "R".into(),
            media_refresh_jobs: vec![
                item("J", "a", "success", None),
                item("J", "b", "fail", Some("PreloadQueueFull")),
                item("J", "c", "fail", None),
                item("J", "d", "Success", None),
                item("J", "e", "processing", None),
                item("OTHER", "f", "success", None),
                item("", "g", "success", None),
            ],
        };
        let submitted = |media_id: &str| Submission {
            media_id: media_id.to_owned(),
            result: Ok(()),
            tasks: Vec::new(),
        };
        let failed = |media_id: &str, code: &str, message: &str| Submission {
            media_id: media_id.to_owned(),
            result: Err((code.to_owned(), message.to_owned())),
            tasks: Vec::new(),
        };
        assert_eq!(
            submissions("J", &answer),
            vec![
                submitted("a"),
                failed("b", "PreloadQueueFull", "PreloadQueueFull happened"),
                failed("c", "SubmitFailed", ""),
                submitted("d"),
                submitted("g"),
            ]
        );
    }

    #[test]
    fn passing_failures_are_resubmitted_within_the_budget() {
        let config = CheckConfig {
            account: crate::domain::AccountName::default(),
            check_after: Duration::from_secs(10),
            per_second: 10,
            max_age: Duration::from_secs(3600),
            resubmit_after: Duration::from_secs(60),
            hold: crate::flusher::hold::HoldPolicy {
                probe_interval: Duration::from_secs(300),
                reset: crate::domain::quota_terms::QuotaReset::CHINA_MIDNIGHT,
                max_hold: Duration::from_secs(48 * 3600),
                reserve: crate::domain::quota_terms::Reserve::Percent(10.0),
            },
            follow_for: None,
        };
        let failed = |media_id: &str, code: &str| Submission {
            media_id: media_id.to_owned(),
            result: Err((code.to_owned(), String::new())),
            tasks: Vec::new(),
        };
        let reported = vec![
            Submission {
                media_id: "ok".into(),
                result: Ok(()),
                tasks: Vec::new(),
            },
            failed("full", "PreloadQueueFull"),
            failed("busy", "TooMany.Refresh"),
            failed("slow", "Throttling"),
            failed("denied", "Forbidden.RAM"),
            failed("odd", "SubmitFailed"),
        ];
        let now = Ts(10_000_000);
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let resend = |media_ids: &[&str], send_at| Resend {
            media_ids: ids(media_ids),
            send_at,
            held: None,
        };
        let table = [
            // (checked job's budget start, expected)
            (
                now,
                Some(resend(&["full", "busy", "slow"], Ts(now.0 + 60_000))),
            ),
            (
                Ts(now.0 - 3_540_000),
                Some(resend(&["full", "busy", "slow"], Ts(now.0 + 60_000))),
            ),
            // Sent after the budget has run out: not at all.
            (Ts(now.0 - 3_540_001), None),
        ];
        for (budget_from, expected) in table {
            assert_eq!(
                resubmission(&reported, now, budget_from, &config),
                expected,
                "budget from {budget_from:?}"
            );
        }
        assert_eq!(
            resubmission(&reported[..1], now, now, &config),
            None,
            "nothing failed"
        );
        assert_eq!(
            resubmission(&reported[4..], now, now, &config),
            None,
            "only failures that do not pass"
        );
        // A used-up quota: the new job starts held, probed a probe interval later, even past
        // the budget (max_age does not run while held).
        let mut with_quota = reported.clone();
        with_quota.push(failed("spent", "QuotaExceeded.Refresh"));
        let expected = Resend {
            media_ids: ids(&["full", "busy", "slow", "spent"]),
            send_at: Ts(now.0 + 300_000),
            held: Some("QuotaExceeded.Refresh".into()),
        };
        for budget_from in [now, Ts(now.0 - 3_600_000)] {
            assert_eq!(
                resubmission(&with_quota, now, budget_from, &config),
                Some(expected.clone())
            );
        }
    }

    #[test]
    fn checks_back_off_and_stop() {
        let now = Ts(1_000_000);
        let after = Duration::from_secs(10);
        let table = [
            (1, Some(20_000)),
            (2, Some(40_000)),
            (3, Some(80_000)),
            (4, Some(160_000)),
            (MAX_CHECKS, None),
            (MAX_CHECKS + 1, None),
        ];
        for (done, wait_ms) in table {
            assert_eq!(
                again_at(now, after, done),
                wait_ms.map(|ms| Ts(now.0 + ms)),
                "after check {done}"
            );
        }
    }
}
