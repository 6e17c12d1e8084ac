//! How early a policy can possibly decide, from the policy alone: the lower bounds scenario
//! budgets are checked against.

use std::time::Duration;

use super::policy::{ERROR_RETRY_INTERVAL, MetricPolicy, RunPolicy};

/// The earliest moments, counted from the run's start, at which a policy can possibly reach each
/// outcome; `None` where it never can. Lower bounds: measurements are taken to last no time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionBounds {
    /// The run ends Failed (a metric breaks `failureLimit`, or misses its consecutive-success
    /// limit when the failure limit is off).
    pub failed: Option<Duration>,
    /// The run ends Error (`consecutiveErrorLimit + 1` errors, 10 s apart, from the first
    /// measurement on).
    pub errored: Option<Duration>,
    /// The run ends Inconclusive (the rollout pauses rather than aborts).
    pub inconclusive: Option<Duration>,
    /// The run ends Successful without being terminated: every metric is bounded and done.
    pub successful: Option<Duration>,
}

impl DecisionBounds {
    /// The earliest moment the run can abort the rollout: Failed and Error both do.
    pub fn earliest_abort(&self) -> Option<Duration> {
        min_opt(self.failed, self.errored)
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Bounds for one metric, with `successful` meaning the metric completes Successful.
fn metric_bounds(p: &MetricPolicy) -> DecisionBounds {
    // The n-th measurement that is not an error (1-based), when none before it errored.
    let nth = |n: u32| -> Option<Duration> {
        if p.count.is_some_and(|c| c.max(1) < n) {
            return None;
        }
        let step = p.interval.unwrap_or(ERROR_RETRY_INTERVAL);
        Some(
            p.initial_delay
                .saturating_add(step.saturating_mul(n.saturating_sub(1))),
        )
    };
    let can_fail = p.success.is_some() || p.failure.is_some();
    let can_be_inconclusive = p.success.is_some() && p.failure.is_some();
    let csl = p.consecutive_success_limit;
    let at_count = p.count.and_then(|c| nth(c.max(1)));

    let by_failures = if p.failure_limit_active() && can_fail {
        nth(u32::try_from(p.failure_limit)
            .unwrap_or(u32::MAX)
            .saturating_add(1))
    } else {
        None
    };
    // Errors reset the consecutive successes without using up the count, so missing the
    // consecutive-success limit at the count is always possible.
    let csl_missed = if csl > 0 { at_count } else { None };
    let (failed_by_csl, inconclusive_by_csl) = if p.failure_limit_active() {
        (None, csl_missed)
    } else {
        (csl_missed, None)
    };
    let by_inconclusives = if can_be_inconclusive {
        nth(p.inconclusive_limit.saturating_add(1))
    } else {
        None
    };
    let successful = if csl > 0 { nth(csl) } else { at_count };
    DecisionBounds {
        failed: min_opt(by_failures, failed_by_csl),
        errored: Some(
            p.initial_delay
                .saturating_add(ERROR_RETRY_INTERVAL.saturating_mul(p.consecutive_error_limit)),
        ),
        inconclusive: min_opt(by_inconclusives, inconclusive_by_csl),
        successful,
    }
}

/// How early the run can possibly be decided each way, from the policy alone, for checking a
/// scenario's time budget against what the policy allows.
///
/// Failed, Error and Inconclusive come from the fastest metric that is not a dry run. Success
/// needs every metric done, dry runs included (Argo waits for them too), so it is the slowest
/// metric's completion, and never with an unbounded metric.
pub fn decision_bounds(policy: &RunPolicy) -> DecisionBounds {
    let mut out = DecisionBounds::default();
    let mut successful = Some(Duration::ZERO);
    for p in &policy.metrics {
        let b = metric_bounds(p);
        let done = if p.dry_run {
            [b.failed, b.errored, b.inconclusive, b.successful]
                .into_iter()
                .fold(None, min_opt)
        } else {
            out.failed = min_opt(out.failed, b.failed);
            out.errored = min_opt(out.errored, b.errored);
            out.inconclusive = min_opt(out.inconclusive, b.inconclusive);
            b.successful
        };
        successful = match (successful, done) {
            (Some(s), Some(d)) => Some(s.max(d)),
            _ => None,
        };
    }
    out.successful = if policy.metrics.is_empty() {
        None
    } else {
        successful
    };
    out
}
