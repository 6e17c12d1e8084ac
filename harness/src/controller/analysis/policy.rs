//! What an AnalysisRun asks for, resolved from the spec: metrics with their limits and
//! conditions, and the checks and substitutions Argo applies before the first measurement.

use std::collections::BTreeMap;
use std::time::Duration;

use super::phase::AnalysisPhase;
use crate::controller::expr::Condition;

/// Argo's `DefaultConsecutiveErrorLimit`: a metric errors at the 5th consecutive error.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Argo's `DefaultErrorRetryInterval`: after an Error measurement the next one comes this soon,
/// whatever the metric's interval, so a flaky provider does not stall a slow metric.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Argo's `DefaultMeasurementHistoryLimit`: older measurements are dropped from the status,
/// unless a `measurementRetention` rule gives the metric a limit of its own.
pub const MEASUREMENT_HISTORY_LIMIT: usize = 10;
/// The Prometheus provider's query timeout when the metric sets none.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// One metric of a run, resolved: args substituted, conditions parsed, durations parsed.
#[derive(Debug, Clone)]
pub struct MetricPolicy {
    /// Unique within the run; shows up in messages as `Metric "<name>" ...`.
    pub name: String,
    /// Time between the end of one measurement and the start of the next. `None` for a
    /// single-shot metric; should a retry still be needed, [`ERROR_RETRY_INTERVAL`] is used.
    pub interval: Option<Duration>,
    /// Wait after the run started before the first measurement.
    pub initial_delay: Duration,
    /// Argo's `EffectiveCount()`: `None` = unbounded (an interval and no count), which only ends
    /// by termination or a limit. Use [`effective_count`] to derive it from the spec.
    pub count: Option<u32>,
    /// The metric fails when `failed > failure_limit`; any negative value disables the check.
    pub failure_limit: i32,
    /// The metric is Inconclusive when `inconclusive > inconclusive_limit`.
    pub inconclusive_limit: u32,
    /// The metric errors when `consecutive_error > consecutive_error_limit`.
    pub consecutive_error_limit: u32,
    /// Success as soon as this many consecutive successes are seen; 0 disables it.
    pub consecutive_success_limit: u32,
    /// `successCondition`; `None` when the spec leaves it empty.
    pub success: Option<Condition>,
    /// `failureCondition`; `None` when the spec leaves it empty.
    pub failure: Option<Condition>,
    /// The provider query with args already substituted (Argo's `ResolvedPrometheusQuery`).
    pub query: String,
    /// How long one query may take before the measurement is an Error.
    pub timeout: Duration,
    /// Measured and judged, but never allowed to decide the run.
    pub dry_run: bool,
    /// How many measurements the status keeps: `measurementRetention`'s limit for this metric,
    /// else [`MEASUREMENT_HISTORY_LIMIT`]. Only the history shrinks; the counters the limits are
    /// judged on keep counting.
    pub measurement_limit: usize,
}

impl MetricPolicy {
    /// A single-shot metric with Argo's defaults and no conditions (every answer succeeds).
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> MetricPolicy {
        MetricPolicy {
            name: name.into(),
            interval: None,
            initial_delay: Duration::ZERO,
            count: Some(1),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            consecutive_success_limit: 0,
            success: None,
            failure: None,
            query: query.into(),
            timeout: DEFAULT_PROMETHEUS_TIMEOUT,
            dry_run: false,
            measurement_limit: MEASUREMENT_HISTORY_LIMIT,
        }
    }

    /// Whether the failure limit takes part at all (`failureLimit: -1` switches it off).
    pub(super) fn failure_limit_active(&self) -> bool {
        self.failure_limit >= 0
    }

    pub(super) fn count_reached(&self, count: u32) -> bool {
        self.count.is_some_and(|c| count >= c)
    }

    /// The wait after a measurement of this phase; errors are retried sooner so that a provider
    /// outage is decided in `consecutiveErrorLimit` × 10 s, not × interval.
    pub(super) fn wait_after(&self, last: AnalysisPhase) -> Duration {
        if last == AnalysisPhase::Error {
            ERROR_RETRY_INTERVAL
        } else {
            self.interval.unwrap_or(ERROR_RETRY_INTERVAL)
        }
    }
}

/// Argo's `Metric.EffectiveCount()`: an unset or zero count means one measurement without an
/// interval, and no bound with one (a background metric that runs until terminated).
pub fn effective_count(count: Option<u32>, interval: Option<Duration>) -> Option<u32> {
    match (count, interval) {
        (None | Some(0), None) => Some(1),
        (None | Some(0), Some(_)) => None,
        (Some(c), _) => Some(c),
    }
}

/// Everything an AnalysisRun measures, in spec order (results are reported in the same order).
#[derive(Debug, Clone)]
pub struct RunPolicy {
    /// The AnalysisRun's name, for logs and events only.
    pub name: String,
    pub metrics: Vec<MetricPolicy>,
}

/// Checks what Argo's `ValidateMetrics` rejects and this machine depends on. The rest of
/// `ValidateMetric` belongs to the spec validation, which sees the raw fields.
///
/// # Errors
/// The text Argo puts after `Analysis spec invalid: `.
pub fn validate(policy: &RunPolicy) -> Result<(), String> {
    if policy.metrics.is_empty() {
        return Err("no metrics specified".into());
    }
    for (i, m) in policy.metrics.iter().enumerate() {
        if policy.metrics[..i].iter().any(|o| o.name == m.name) {
            return Err(format!("metrics[{i}]: duplicate name '{}'", m.name));
        }
        if m.count.is_some_and(|c| c > 1) && m.interval.is_none() {
            return Err(format!(
                "metrics[{i}]: interval must be specified when count > 1"
            ));
        }
    }
    Ok(())
}

/// Substitutes `{{args.NAME}}` (spaces allowed inside the braces) as Argo's template resolution
/// does; any other `{{...}}` tag cannot be resolved either.
///
/// # Errors
/// `failed to resolve {{<tag>}}` with the tag as written, for the last unresolved tag (Argo
/// keeps overwriting its error), or a message about a `{{` that is never closed.
pub fn render_args(template: &str, args: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut unresolved = None;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!(
                "cannot find end tag=\"}}}}\" in the template={template:?} starting from {:?}",
                &rest[open + 2..]
            ));
        };
        let tag = &after[..close];
        match tag
            .trim()
            .strip_prefix("args.")
            .and_then(|name| args.get(name))
        {
            Some(value) => out.push_str(value),
            None => unresolved = Some(format!("failed to resolve {{{{{tag}}}}}")),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    match unresolved {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
