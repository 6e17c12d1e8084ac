//! AnalysisRun semantics of Argo Rollouts v1.9.1 (`analysis/analysis.go`,
//! `utils/analysis/helpers.go`, `utils/evaluate/evaluate.go`), as a state machine driven by time
//! and measurement results.
//!
//! # Brief overview
//!
//! - [`RunPolicy`] / [`MetricPolicy`]: what the AnalysisRun asks for, already resolved (args
//!   substituted with [`render_args`], conditions parsed, `count` made effective). The controller
//!   builds them from the spec; this module never sees YAML.
//! - [`AnalysisRun`]: the status. [`AnalysisRun::due`] and [`AnalysisRun::next_due`] say when to
//!   measure, [`AnalysisRun::record`] takes a result and reassesses metric and run phase,
//!   [`AnalysisRun::terminate`] is what promotion, a skipped step or an abort do to a run.
//! - [`MetricSource`]: the only I/O, kept apart so tests script it under a paused clock;
//!   [`PromClient`] implements it as Argo's Prometheus provider does.
//! - [`decision_bounds`]: how early a policy can possibly decide, for budget checks.
//!
//! Failed, Inconclusive and Error measurements are data in the status, never Rust errors: they are
//! the outcomes the harness exists to observe.
//!
//! Time is [`tokio::time::Instant`] passed in by the caller, so the machine is deterministic and
//! runs under `#[tokio::test(start_paused = true)]`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::controller::expr::{Condition, MetricValue};
use crate::prom::{PromClient, PromError, QueryValue};

/// Argo's `DefaultConsecutiveErrorLimit`: a metric errors at the 5th consecutive error.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Argo's `DefaultErrorRetryInterval`: after an Error measurement the next one comes this soon,
/// whatever the metric's interval, so a flaky provider does not stall a slow metric.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Argo's `DefaultMeasurementHistoryLimit`: older measurements are dropped from the status.
pub const MEASUREMENT_HISTORY_LIMIT: usize = 10;
/// The Prometheus provider's query timeout when the metric sets none.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Phase of a measurement, a metric or a run; Argo uses one enum for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnalysisPhase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether the phase is final: a completed metric is never measured or reassessed again.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            AnalysisPhase::Successful
                | AnalysisPhase::Failed
                | AnalysisPhase::Error
                | AnalysisPhase::Inconclusive
        )
    }

    /// Argo's spelling, as it appears in `status.phase` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisPhase::Pending => "Pending",
            AnalysisPhase::Running => "Running",
            AnalysisPhase::Successful => "Successful",
            AnalysisPhase::Failed => "Failed",
            AnalysisPhase::Error => "Error",
            AnalysisPhase::Inconclusive => "Inconclusive",
        }
    }

    /// Position in `analysisStatusOrder` (helpers.go), best first; the run takes the worst.
    fn badness(self) -> u8 {
        match self {
            AnalysisPhase::Successful => 0,
            AnalysisPhase::Running => 1,
            AnalysisPhase::Pending => 2,
            AnalysisPhase::Inconclusive => 3,
            AnalysisPhase::Error => 4,
            AnalysisPhase::Failed => 5,
        }
    }

    /// Whether `other` is a worse outcome than `self` (Argo's `IsWorse(self, other)`).
    pub fn is_worse(self, other: AnalysisPhase) -> bool {
        other.badness() > self.badness()
    }
}

impl fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        }
    }

    /// Whether the failure limit takes part at all (`failureLimit: -1` switches it off).
    fn failure_limit_active(&self) -> bool {
        self.failure_limit >= 0
    }

    fn count_reached(&self, count: u32) -> bool {
        self.count.is_some_and(|c| count >= c)
    }

    /// The wait after a measurement of this phase; errors are retried sooner so that a provider
    /// outage is decided in `consecutiveErrorLimit` × 10 s, not × interval.
    fn wait_after(&self, last: AnalysisPhase) -> Duration {
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

/// One measurement as kept in the status.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub phase: AnalysisPhase,
    /// The result as Argo prints it (`[0.99]`, `[NaN]`, `[]`, `0.99`); `None` on an Error,
    /// because Argo drops the value when judging fails.
    pub value: Option<String>,
    /// Provider or evaluation error text; empty when there is none.
    pub message: String,
    pub started_at: Instant,
    pub finished_at: Instant,
}

/// Status of one metric (`status.metricResults[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    pub name: String,
    /// `Pending` until the first measurement, `Running` while it may still be measured.
    pub phase: AnalysisPhase,
    pub dry_run: bool,
    /// Measurements that were not errors: what `count` is compared against.
    pub count: u32,
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub error: u32,
    pub consecutive_error: u32,
    pub consecutive_success: u32,
    /// The last measurement's message as of the last phase change (for a dry-run metric, the
    /// limit it broke); empty when there is none.
    pub message: String,
    /// The last [`MEASUREMENT_HISTORY_LIMIT`] measurements, oldest first.
    pub measurements: VecDeque<Measurement>,
}

impl MetricResult {
    fn new(policy: &MetricPolicy) -> MetricResult {
        MetricResult {
            name: policy.name.clone(),
            phase: AnalysisPhase::Pending,
            dry_run: policy.dry_run,
            count: 0,
            successful: 0,
            failed: 0,
            inconclusive: 0,
            error: 0,
            consecutive_error: 0,
            consecutive_success: 0,
            message: String::new(),
            measurements: VecDeque::new(),
        }
    }

    pub fn last_measurement(&self) -> Option<&Measurement> {
        self.measurements.back()
    }

    fn count_measurement(&mut self, phase: AnalysisPhase) {
        match phase {
            AnalysisPhase::Successful => {
                self.successful = self.successful.saturating_add(1);
                self.count = self.count.saturating_add(1);
                self.consecutive_error = 0;
                self.consecutive_success = self.consecutive_success.saturating_add(1);
            }
            AnalysisPhase::Failed | AnalysisPhase::Inconclusive => {
                if phase == AnalysisPhase::Failed {
                    self.failed = self.failed.saturating_add(1);
                } else {
                    self.inconclusive = self.inconclusive.saturating_add(1);
                }
                self.count = self.count.saturating_add(1);
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            // An error leaves `count` alone so that a provider outage cannot use up the
            // measurements that were meant to judge the release.
            AnalysisPhase::Error => {
                self.error = self.error.saturating_add(1);
                self.consecutive_error = self.consecutive_error.saturating_add(1);
                self.consecutive_success = 0;
            }
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
    }
}

/// Counts of metrics by outcome (`status.runSummary` / `status.dryRunSummary`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub count: u32,
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub error: u32,
}

/// What the analysis controller would record as Kubernetes events, in Argo's order: metrics in
/// spec order, then the run.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisEvent {
    MetricCompleted {
        metric: String,
        phase: AnalysisPhase,
    },
    RunCompleted {
        phase: AnalysisPhase,
        /// The run's `status.message` (may be empty).
        message: String,
    },
}

impl AnalysisEvent {
    /// The event reason Argo uses (`MetricFailed`, `AnalysisRunSuccessful`, ...).
    pub fn reason(&self) -> String {
        match self {
            AnalysisEvent::MetricCompleted { phase, .. } => format!("Metric{phase}"),
            AnalysisEvent::RunCompleted { phase, .. } => format!("AnalysisRun{phase}"),
        }
    }

    /// The event message Argo uses.
    pub fn message(&self) -> String {
        match self {
            AnalysisEvent::MetricCompleted { metric, phase } => {
                format!("Metric '{metric}' Completed. Result: {phase}")
            }
            AnalysisEvent::RunCompleted { phase, .. } => {
                format!("Analysis Completed. Result: {phase}")
            }
        }
    }

    /// Argo records Failed and Error as Warning events, everything else as Normal.
    pub fn is_warning(&self) -> bool {
        let phase = match self {
            AnalysisEvent::MetricCompleted { phase, .. }
            | AnalysisEvent::RunCompleted { phase, .. } => *phase,
        };
        matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error)
    }
}

/// A measurement taken by the driver, before it is judged.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Index of the metric in [`RunPolicy::metrics`].
    pub metric: usize,
    /// The provider's answer, or its error text (which becomes an Error measurement).
    pub outcome: Result<MetricValue, String>,
    pub started_at: Instant,
    pub finished_at: Instant,
}

/// The judgement of one provider answer (`EvaluateResult`, evaluate.go).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub phase: AnalysisPhase,
    pub value: Option<String>,
    pub message: String,
}

/// Judges one provider answer against the metric's conditions.
///
/// A missing condition is the negation of the other one; with neither, every answer that
/// evaluates is Successful (the code, not the docs, which say Inconclusive). The success
/// condition is evaluated first and its error wins; an evaluation error is an Error measurement
/// without a value, as is a provider error.
pub fn judge(policy: &MetricPolicy, outcome: Result<MetricValue, String>) -> Judgement {
    let value = match outcome {
        Ok(v) => v,
        Err(message) => return error_judgement(message),
    };
    let succ = match &policy.success {
        Some(c) => match c.evaluate(&value) {
            Ok(b) => Some(b),
            Err(e) => return error_judgement(e.to_string()),
        },
        None => None,
    };
    let fail = match &policy.failure {
        Some(c) => match c.evaluate(&value) {
            Ok(b) => Some(b),
            Err(e) => return error_judgement(e.to_string()),
        },
        None => None,
    };
    let phase = match (succ, fail) {
        (None, None) => AnalysisPhase::Successful,
        (Some(true), None) | (None, Some(false)) => AnalysisPhase::Successful,
        (Some(false), None) | (None, Some(true)) => AnalysisPhase::Failed,
        (Some(_), Some(true)) => AnalysisPhase::Failed,
        (Some(true), Some(false)) => AnalysisPhase::Successful,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
    };
    Judgement {
        phase,
        value: Some(format_value(&value)),
        message: String::new(),
    }
}

fn error_judgement(message: String) -> Judgement {
    Judgement {
        phase: AnalysisPhase::Error,
        value: None,
        message,
    }
}

/// Prints a result as Argo stores it in `measurement.value`: Go's shortest `'f'` formatting per
/// sample, vectors in brackets without spaces.
pub fn format_value(value: &MetricValue) -> String {
    match value {
        MetricValue::Scalar(v) => format_float(*v),
        MetricValue::Vector(vs) => {
            let parts: Vec<String> = vs.iter().map(|v| format_float(*v)).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display, like Go's FormatFloat(v, 'f', -1, 64), prints the shortest digits
        // that round-trip and never switches to exponent notation.
        format!("{v}")
    }
}

/// The limit a metric has broken, checked failed → inconclusive → consecutive errors with a later
/// match overriding an earlier one (`assessMetricFailureInconclusiveOrError`), and the reason as
/// Argo words it.
fn limit_breach(policy: &MetricPolicy, result: &MetricResult) -> Option<(AnalysisPhase, String)> {
    let mut breach = None;
    if policy.failure_limit_active() && i64::from(result.failed) > i64::from(policy.failure_limit) {
        breach = Some((
            AnalysisPhase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                result.failed, policy.failure_limit
            ),
        ));
    }
    if result.inconclusive > policy.inconclusive_limit {
        breach = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                result.inconclusive, policy.inconclusive_limit
            ),
        ));
    }
    if result.consecutive_error > policy.consecutive_error_limit {
        breach = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                result.consecutive_error, policy.consecutive_error_limit
            ),
        ));
    }
    breach
}

/// `assessMetricStatus` for a metric that has at least one measurement.
fn assess_metric(policy: &MetricPolicy, result: &MetricResult, terminating: bool) -> AnalysisPhase {
    if result.phase.is_completed() {
        return result.phase;
    }
    if result.measurements.is_empty() {
        return if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
    }
    if let Some((phase, _)) = limit_breach(policy, result) {
        return phase;
    }
    let csl = policy.consecutive_success_limit;
    if csl > 0 && result.consecutive_success >= csl {
        return AnalysisPhase::Successful;
    }
    if policy.count_reached(result.count) {
        // With a consecutive-success limit, running out of measurements without reaching it is
        // not a success: Inconclusive while the failure limit still guards, Failed otherwise.
        return match (policy.failure_limit_active(), csl > 0) {
            (true, true) => AnalysisPhase::Inconclusive,
            (false, true) => AnalysisPhase::Failed,
            _ => AnalysisPhase::Successful,
        };
    }
    if terminating {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    }
}

/// An AnalysisRun's status and the policy it follows.
#[derive(Debug, Clone)]
pub struct AnalysisRun {
    policy: RunPolicy,
    started_at: Instant,
    completed_at: Option<Instant>,
    terminate: bool,
    phase: AnalysisPhase,
    message: String,
    results: Vec<MetricResult>,
}

impl AnalysisRun {
    /// A run started at `now` (its first reconcile), `Running` with every metric `Pending`, or
    /// `Error` at once with Argo's `Analysis spec invalid: ...` when [`validate`] rejects it.
    pub fn new(policy: RunPolicy, now: Instant) -> AnalysisRun {
        let invalid = validate(&policy).err();
        let mut run = AnalysisRun {
            results: policy.metrics.iter().map(MetricResult::new).collect(),
            policy,
            started_at: now,
            completed_at: None,
            terminate: false,
            phase: AnalysisPhase::Running,
            message: String::new(),
        };
        if let Some(e) = invalid {
            run.phase = AnalysisPhase::Error;
            run.message = format!("Analysis spec invalid: {e}");
            run.completed_at = Some(now);
        }
        run
    }

    /// A run that ends in `Error` before measuring anything, for what the controller finds
    /// wrong while building it, e.g. `Unable to resolve metric arguments: failed to resolve
    /// {{args.x}}`.
    pub fn errored(policy: RunPolicy, message: impl Into<String>, now: Instant) -> AnalysisRun {
        let mut run = AnalysisRun::new(policy, now);
        run.phase = AnalysisPhase::Error;
        run.message = message.into();
        run.completed_at = Some(now);
        run
    }

    pub fn policy(&self) -> &RunPolicy {
        &self.policy
    }

    pub fn phase(&self) -> AnalysisPhase {
        self.phase
    }

    /// `status.message`: empty while running; on completion the worst metric's reason, e.g.
    /// `Metric "success-rate" assessed Failed due to failed (2) > failureLimit (1)`, or
    /// `Run Terminated`.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at
    }

    pub fn is_completed(&self) -> bool {
        self.phase.is_completed()
    }

    /// Whether termination was requested with [`AnalysisRun::terminate`] (`spec.terminate`).
    pub fn terminate_requested(&self) -> bool {
        self.terminate
    }

    /// Metric results in spec order.
    pub fn results(&self) -> &[MetricResult] {
        &self.results
    }

    pub fn result(&self, metric: usize) -> Option<&MetricResult> {
        self.results.get(metric)
    }

    /// `IsTerminating`: terminate was requested, or a metric that is not a dry run already ended
    /// Failed, Error or Inconclusive; no new measurement starts after that.
    pub fn is_terminating(&self) -> bool {
        self.terminate
            || self.results.iter().any(|r| {
                !r.dry_run
                    && matches!(
                        r.phase,
                        AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                    )
            })
    }

    /// `status.runSummary`, over the metrics that are not dry runs.
    pub fn run_summary(&self) -> RunSummary {
        self.summary(false)
    }

    /// `status.dryRunSummary`, over the dry-run metrics.
    pub fn dry_run_summary(&self) -> RunSummary {
        self.summary(true)
    }

    /// Like Argo, a completed metric is counted by the limit it broke, and as successful when it
    /// broke none (even one that failed for missing its consecutive-success limit).
    fn summary(&self, dry_run: bool) -> RunSummary {
        let mut s = RunSummary::default();
        for (p, r) in self.policy.metrics.iter().zip(&self.results) {
            if p.dry_run != dry_run {
                continue;
            }
            s.count += 1;
            if r.measurements.is_empty() || !r.phase.is_completed() {
                continue;
            }
            match limit_breach(p, r).map(|b| b.0) {
                Some(AnalysisPhase::Failed) => s.failed += 1,
                Some(AnalysisPhase::Error) => s.error += 1,
                Some(AnalysisPhase::Inconclusive) => s.inconclusive += 1,
                _ => s.successful += 1,
            }
        }
        s
    }

    /// When metric `i` should next be measured, if ever: after `initial_delay` for the first,
    /// then `interval` after the last one finished, or [`ERROR_RETRY_INTERVAL`] after an Error.
    fn next_measurement_at(&self, i: usize) -> Option<Instant> {
        if self.is_completed() || self.is_terminating() {
            return None;
        }
        let (policy, result) = (self.policy.metrics.get(i)?, self.results.get(i)?);
        if result.phase.is_completed() {
            return None;
        }
        match result.measurements.back() {
            None => self.started_at.checked_add(policy.initial_delay),
            Some(_) if policy.count_reached(result.count) => None,
            Some(last) => last.finished_at.checked_add(policy.wait_after(last.phase)),
        }
    }

    /// Metrics to measure at `now`, in spec order.
    ///
    /// A measurement is due at exactly `finishedAt + interval` (Argo waits until strictly after,
    /// but it requeues for that instant and its clock has moved on by the time it looks).
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.results.len())
            .filter(|&i| self.next_measurement_at(i).is_some_and(|at| at <= now))
            .collect()
    }

    /// The earliest moment a measurement becomes due, so a driver can sleep until then; `None`
    /// once the run is completed or terminating.
    pub fn next_due(&self) -> Option<Instant> {
        (0..self.results.len())
            .filter_map(|i| self.next_measurement_at(i))
            .min()
    }

    /// Records one measurement of metric `metric` and reassesses metric and run phase, as one
    /// reconcile of Argo's analysis controller would.
    ///
    /// Ignored (no events) when the run is completed, the metric is completed or the index is
    /// out of range, because Argo never measures those.
    pub fn record(
        &mut self,
        metric: usize,
        outcome: Result<MetricValue, String>,
        started_at: Instant,
        finished_at: Instant,
    ) -> Vec<AnalysisEvent> {
        self.record_all([Reading {
            metric,
            outcome,
            started_at,
            finished_at,
        }])
    }

    /// Records the measurements taken together (Argo takes every due measurement in one
    /// reconcile, in parallel) and reassesses once, so that one metric failing does not keep a
    /// sibling's simultaneous measurement from counting.
    pub fn record_all(
        &mut self,
        readings: impl IntoIterator<Item = Reading>,
    ) -> Vec<AnalysisEvent> {
        if self.is_completed() {
            return Vec::new();
        }
        let mut latest: Option<Instant> = None;
        for reading in readings {
            let (Some(policy), Some(result)) = (
                self.policy.metrics.get(reading.metric),
                self.results.get_mut(reading.metric),
            ) else {
                continue;
            };
            if result.phase.is_completed() {
                continue;
            }
            let judgement = judge(policy, reading.outcome);
            result.count_measurement(judgement.phase);
            if result.phase == AnalysisPhase::Pending {
                // Argo creates the metric result with its first measurement, as Running and
                // without a message; the message follows the next phase change.
                result.phase = AnalysisPhase::Running;
            }
            result.measurements.push_back(Measurement {
                phase: judgement.phase,
                value: judgement.value,
                message: judgement.message,
                started_at: reading.started_at,
                finished_at: reading.finished_at,
            });
            while result.measurements.len() > MEASUREMENT_HISTORY_LIMIT {
                result.measurements.pop_front();
            }
            latest = Some(latest.map_or(reading.finished_at, |l| l.max(reading.finished_at)));
        }
        match latest {
            Some(now) => self.reconcile(now),
            None => Vec::new(),
        }
    }

    /// Requests termination (`spec.terminate: true`), as promotion, a skipped step or an abort
    /// do. Metrics still running end Successful, so the run ends Successful with `Run
    /// Terminated` unless a metric already completed worse. No effect on a completed run.
    pub fn terminate(&mut self, now: Instant) -> Vec<AnalysisEvent> {
        if self.is_completed() {
            return Vec::new();
        }
        self.terminate = true;
        self.reconcile(now)
    }

    /// Reassesses metrics and run at `now`.
    ///
    /// Argo computes "terminating" before reassessing, so a metric that just failed leaves its
    /// siblings Running for one more reconcile, which its own status update triggers well under
    /// a second later. That follow-up is folded in here: the assessment is repeated once the
    /// run has become terminating.
    fn reconcile(&mut self, now: Instant) -> Vec<AnalysisEvent> {
        let mut events = Vec::new();
        let mut terminating = self.is_terminating();
        loop {
            self.assess_metrics(terminating, &mut events);
            let after = self.is_terminating();
            if after == terminating {
                break;
            }
            terminating = after;
        }
        let (phase, message) = self.assess_run(terminating);
        if phase != self.phase {
            self.phase = phase;
            self.message = message;
            if phase.is_completed() {
                self.completed_at = Some(now);
                events.push(AnalysisEvent::RunCompleted {
                    phase,
                    message: self.message.clone(),
                });
            }
        }
        events
    }

    fn assess_metrics(&mut self, terminating: bool, events: &mut Vec<AnalysisEvent>) {
        for (policy, result) in self.policy.metrics.iter().zip(self.results.iter_mut()) {
            // A metric never measured has no result in Argo, so nothing assesses it.
            if result.measurements.is_empty() {
                continue;
            }
            let phase = assess_metric(policy, result, terminating);
            if phase == result.phase {
                continue;
            }
            if phase.is_completed() {
                events.push(AnalysisEvent::MetricCompleted {
                    metric: policy.name.clone(),
                    phase,
                });
            }
            if let Some(last) = result.measurements.back() {
                result.message = last.message.clone();
            }
            result.phase = phase;
        }
    }

    /// `assessRunStatus`: the worst completed phase of the metrics that are not dry runs, once
    /// every metric is complete or the run is terminating.
    fn assess_run(&mut self, terminating: bool) -> (AnalysisPhase, String) {
        let mut worst: Option<AnalysisPhase> = None;
        let mut message = if self.terminate {
            "Run Terminated".to_string()
        } else {
            String::new()
        };
        let mut everything_completed = true;
        for (policy, result) in self.policy.metrics.iter().zip(self.results.iter_mut()) {
            if result.measurements.is_empty() || !result.phase.is_completed() {
                everything_completed = false;
                continue;
            }
            let breach = limit_breach(policy, result);
            if policy.dry_run {
                // A dry-run metric still has to finish before the run can, but it decides
                // nothing: it only keeps its reason in its own message.
                worst.get_or_insert(AnalysisPhase::Successful);
                if let Some((_, why)) = breach {
                    result.message = format!("Metric assessed {} due to {why}", result.phase);
                }
                continue;
            }
            if worst.is_none_or(|w| w.is_worse(result.phase)) {
                worst = Some(result.phase);
                if let Some((_, why)) = breach {
                    message = format!(
                        "Metric \"{}\" assessed {} due to {why}",
                        policy.name, result.phase
                    );
                    if !result.message.is_empty() {
                        message.push_str(&format!(": \"Error Message: {}\"", result.message));
                    }
                }
            }
        }
        let message = message.trim().to_string();
        if terminating {
            return (worst.unwrap_or(AnalysisPhase::Successful), message);
        }
        match worst {
            Some(w) if everything_completed => (w, message),
            _ => (AnalysisPhase::Running, String::new()),
        }
    }

    /// Takes every measurement due now from `source`, one after the other, and records them
    /// together.
    pub async fn tick<S: MetricSource>(&mut self, source: &S) -> Vec<AnalysisEvent> {
        let due = self.due(Instant::now());
        let mut readings = Vec::with_capacity(due.len());
        for i in due {
            let Some(policy) = self.policy.metrics.get(i) else {
                continue;
            };
            let started_at = Instant::now();
            let outcome = source.measure(&policy.query, policy.timeout).await;
            readings.push(Reading {
                metric: i,
                outcome,
                started_at,
                finished_at: Instant::now(),
            });
        }
        self.record_all(readings)
    }

    /// Measures whenever something is due, sleeping in between, until the run completes; returns
    /// every event in order.
    ///
    /// # Caveats
    /// A run with an unbounded metric only completes by a limit, so this may never return; drive
    /// such runs with [`AnalysisRun::tick`] and [`AnalysisRun::next_due`] and call
    /// [`AnalysisRun::terminate`] from the controller.
    pub async fn run_until_complete<S: MetricSource>(&mut self, source: &S) -> Vec<AnalysisEvent> {
        let mut events = Vec::new();
        loop {
            events.extend(self.tick(source).await);
            match self.next_due() {
                Some(at) if !self.is_completed() => tokio::time::sleep_until(at).await,
                _ => return events,
            }
        }
    }
}

/// Where measurements come from. The one seam with I/O, so the state machine can be driven by a
/// script under a paused clock.
pub trait MetricSource {
    /// Runs `query` and returns its value, or the text of an Error measurement (provider error,
    /// timeout, unsupported result type).
    fn measure(
        &self,
        query: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<MetricValue, String>> + Send;
}

impl MetricSource for PromClient {
    async fn measure(&self, query: &str, timeout: Duration) -> Result<MetricValue, String> {
        measure_prometheus(self, query, timeout).await
    }
}

/// Argo's Prometheus provider: an instant query under the metric's timeout, its answer turned
/// into the value the conditions see.
///
/// # Errors
/// The measurement's Error message: a timeout reads like client_golang's
/// `context deadline exceeded`, a refused query as `<errorType>: <error>`.
pub async fn measure_prometheus(
    client: &PromClient,
    query: &str,
    timeout: Duration,
) -> Result<MetricValue, String> {
    match tokio::time::timeout(timeout, client.query(query)).await {
        Err(_) => Err(format!(
            "Post \"{}/api/v1/query\": context deadline exceeded",
            client.base()
        )),
        Ok(Err(PromError::Query { error_type, error })) => Err(format!("{error_type}: {error}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(value)) => metric_value_from_query(value),
    }
}

/// The value a condition sees for a Prometheus answer: a vector is a list of its sample values
/// (possibly empty, possibly NaN), a scalar a number, a matrix every sample of every series in
/// order.
///
/// # Errors
/// `Prometheus metric type not supported` for a string result, as Argo says.
pub fn metric_value_from_query(value: QueryValue) -> Result<MetricValue, String> {
    match value {
        QueryValue::Scalar(v) => Ok(MetricValue::Scalar(v)),
        QueryValue::Vector(samples) => Ok(MetricValue::Vector(
            samples.into_iter().map(|s| s.value).collect(),
        )),
        QueryValue::Matrix(series) => Ok(MetricValue::Vector(
            series
                .into_iter()
                .flat_map(|s| s.values.into_iter().map(|(_, v)| v))
                .collect(),
        )),
        QueryValue::String(_) => Err("Prometheus metric type not supported".into()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn cond(src: &str) -> Option<Condition> {
        Some(Condition::parse(src).expect("test condition parses"))
    }

    /// A metric whose query is its name, so the script answers per metric.
    fn metric(name: &str) -> MetricPolicy {
        MetricPolicy::new(name, name)
    }

    fn success_rate(name: &str) -> MetricPolicy {
        MetricPolicy {
            success: cond("result[0] >= 0.95"),
            ..metric(name)
        }
    }

    fn two_sided(name: &str) -> MetricPolicy {
        MetricPolicy {
            success: cond("result[0] >= 0.95"),
            failure: cond("result[0] < 0.95"),
            ..metric(name)
        }
    }

    fn start(metrics: Vec<MetricPolicy>) -> AnalysisRun {
        AnalysisRun::new(
            RunPolicy {
                name: "ar".into(),
                metrics,
            },
            Instant::now(),
        )
    }

    fn vec1(x: f64) -> Result<MetricValue, String> {
        Ok(MetricValue::Vector(vec![x]))
    }

    fn no_series() -> Result<MetricValue, String> {
        Ok(MetricValue::Vector(vec![]))
    }

    /// Answers each query from its list in order, repeating the last answer, and remembers when
    /// (since its creation) it was asked.
    struct Script {
        start: Instant,
        latency: Duration,
        answers: Mutex<HashMap<String, VecDeque<Result<MetricValue, String>>>>,
        calls: Mutex<Vec<(String, Duration)>>,
    }

    impl Script {
        fn new() -> Script {
            Script {
                start: Instant::now(),
                latency: Duration::ZERO,
                answers: Mutex::new(HashMap::new()),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn answer(self, query: &str, answers: Vec<Result<MetricValue, String>>) -> Script {
            self.answers
                .lock()
                .expect("script lock")
                .insert(query.to_string(), answers.into());
            self
        }

        /// Offsets of the calls for `query`.
        fn calls(&self, query: &str) -> Vec<Duration> {
            self.calls
                .lock()
                .expect("script lock")
                .iter()
                .filter(|(q, _)| q == query)
                .map(|(_, t)| *t)
                .collect()
        }
    }

    impl MetricSource for Script {
        async fn measure(&self, query: &str, _timeout: Duration) -> Result<MetricValue, String> {
            let asked = Instant::now() - self.start;
            self.calls
                .lock()
                .expect("script lock")
                .push((query.to_string(), asked));
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            let mut answers = self.answers.lock().expect("script lock");
            match answers.get_mut(query) {
                Some(q) if q.len() > 1 => q.pop_front().expect("non-empty"),
                Some(q) => q
                    .front()
                    .cloned()
                    .unwrap_or_else(|| Err("nothing scripted".into())),
                None => Err(format!("nothing scripted for {query}")),
            }
        }
    }

    fn took(run: &AnalysisRun) -> Duration {
        run.completed_at().expect("run completed") - run.started_at()
    }

    fn reasons(events: &[AnalysisEvent]) -> Vec<String> {
        events.iter().map(AnalysisEvent::reason).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn without_conditions_every_answer_is_successful() {
        let mut run = start(vec![metric("m")]);
        let script = Script::new().answer("m", vec![vec1(0.5)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(run.message(), "");
        assert_eq!(
            reasons(&events),
            ["MetricSuccessful", "AnalysisRunSuccessful"]
        );
        let m = &run.results()[0];
        assert_eq!(m.measurements[0].value.as_deref(), Some("[0.5]"));
        assert_eq!((m.count, m.successful), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn with_only_a_success_condition_a_false_success_is_a_failure() {
        let mut run = start(vec![success_rate("m")]);
        let script = Script::new().answer("m", vec![vec1(0.5)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        assert_eq!(
            run.message(),
            r#"Metric "m" assessed Failed due to failed (1) > failureLimit (0)"#
        );
        assert_eq!(reasons(&events), ["MetricFailed", "AnalysisRunFailed"]);
        assert_eq!(events[0].message(), "Metric 'm' Completed. Result: Failed");
        assert_eq!(events[1].message(), "Analysis Completed. Result: Failed");
        assert!(events.iter().all(AnalysisEvent::is_warning));
    }

    #[tokio::test(start_paused = true)]
    async fn with_only_a_failure_condition_a_false_failure_is_a_success() {
        let failing = |name: &str| MetricPolicy {
            failure: cond("result[0] >= 10"),
            ..metric(name)
        };
        let mut run = start(vec![failing("low"), failing("high")]);
        let script = Script::new()
            .answer("low", vec![vec1(1.0)])
            .answer("high", vec![vec1(20.0)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
        assert_eq!(run.results()[1].phase, AnalysisPhase::Failed);
        assert_eq!(run.phase(), AnalysisPhase::Failed);
    }

    #[tokio::test(start_paused = true)]
    async fn nan_with_only_a_success_condition_fails() {
        let mut run = start(vec![success_rate("m")]);
        let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        let last = run.results()[0].last_measurement().expect("measured");
        assert_eq!(last.phase, AnalysisPhase::Failed);
        assert_eq!(last.value.as_deref(), Some("[NaN]"));
    }

    #[tokio::test(start_paused = true)]
    async fn nan_with_both_conditions_is_inconclusive() {
        let mut run = start(vec![two_sided("m")]);
        let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
        assert_eq!(
            run.message(),
            r#"Metric "m" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0)"#
        );
        assert_eq!(
            reasons(&events),
            ["MetricInconclusive", "AnalysisRunInconclusive"]
        );
        assert!(!events[1].is_warning());
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_vector_errors_and_the_metric_errors_at_the_fifth_error_ten_seconds_apart() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(3),
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![no_series()]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(
            script.calls("m"),
            [secs(0), secs(10), secs(20), secs(30), secs(40)]
        );
        assert_eq!(run.phase(), AnalysisPhase::Error);
        assert_eq!(took(&run), secs(40));
        assert_eq!(reasons(&events), ["MetricError", "AnalysisRunError"]);
        let m = &run.results()[0];
        assert_eq!((m.count, m.error, m.consecutive_error), (0, 5, 5));
        let last = m.last_measurement().expect("measured");
        assert_eq!(last.phase, AnalysisPhase::Error);
        assert_eq!(last.value, None);
        assert!(!last.message.is_empty());
        assert_eq!(m.message, last.message);
        assert_eq!(
            run.message(),
            format!(
                r#"Metric "m" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): "Error Message: {}""#,
                last.message
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_retried_after_ten_seconds_and_do_not_use_up_the_count() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(2),
            ..success_rate("m")
        }]);
        let script = Script::new().answer(
            "m",
            vec![no_series(), Err("connection refused".into()), vec1(0.99)],
        );
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("m"), [secs(0), secs(10), secs(20), secs(80)]);
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        let m = &run.results()[0];
        assert_eq!((m.count, m.successful, m.error), (2, 2, 2));
        assert_eq!(m.measurements[1].message, "connection refused");
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_shot_error_is_retried_too() {
        let mut run = start(vec![success_rate("m")]);
        let script = Script::new().answer("m", vec![no_series(), vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("m"), [secs(0), secs(10)]);
        assert_eq!(run.phase(), AnalysisPhase::Successful);
    }

    #[tokio::test(start_paused = true)]
    async fn the_failure_limit_fails_the_run_at_the_second_failure_without_waiting_for_count() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(5),
            failure_limit: 1,
            ..success_rate("success-rate")
        }]);
        let script = Script::new().answer("success-rate", vec![vec1(0.5)]);
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("success-rate"), [secs(0), secs(60)]);
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        assert_eq!(took(&run), secs(60));
        assert_eq!(
            run.message(),
            r#"Metric "success-rate" assessed Failed due to failed (2) > failureLimit (1)"#
        );
        assert_eq!(run.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn reaching_the_count_within_the_failure_limit_is_successful() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(5),
            failure_limit: 1,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.5), vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(took(&run), secs(240));
        let m = &run.results()[0];
        assert_eq!((m.count, m.successful, m.failed), (5, 4, 1));
        assert_eq!(run.run_summary().successful, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_limit_of_minus_one_never_fails_by_failures() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(6),
            failure_limit: -1,
            consecutive_success_limit: 2,
            ..success_rate("m")
        }]);
        let script = Script::new().answer(
            "m",
            vec![vec1(0.1), vec1(0.1), vec1(0.1), vec1(0.99), vec1(0.99)],
        );
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(took(&run), secs(40));
        assert_eq!(run.results()[0].failed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_the_consecutive_success_limit_at_count_fails_without_a_failure_limit() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(4),
            failure_limit: -1,
            consecutive_success_limit: 3,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.1), vec1(0.1), vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        assert_eq!(took(&run), secs(30));
        // No limit was broken, so Argo gives no reason (and counts it as successful).
        assert_eq!(run.message(), "");
        assert_eq!(run.run_summary().successful, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_the_consecutive_success_limit_at_count_is_inconclusive_with_a_failure_limit() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(4),
            failure_limit: 2,
            consecutive_success_limit: 3,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.99), vec1(0.1), vec1(0.99), vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
        assert_eq!(took(&run), secs(30));
        assert_eq!(run.results()[0].consecutive_success, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_consecutive_success_limit_succeeds_before_the_count() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(10),
            consecutive_success_limit: 2,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(took(&run), secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_inconclusive_limit_allows_that_many_inconclusive_measurements() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(5),
            inconclusive_limit: 1,
            ..two_sided("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
        run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
        assert_eq!(took(&run), secs(10));
        assert_eq!(
            run.message(),
            r#"Metric "m" assessed Inconclusive due to inconclusive (2) > inconclusiveLimit (1)"#
        );
    }

    #[test]
    fn a_later_limit_overrides_an_earlier_one() {
        let policy = metric("m");
        let mut result = MetricResult::new(&policy);
        result.failed = 1;
        result.inconclusive = 1;
        assert_eq!(
            limit_breach(&policy, &result),
            Some((
                AnalysisPhase::Inconclusive,
                "inconclusive (1) > inconclusiveLimit (0)".to_string()
            ))
        );
        result.consecutive_error = 5;
        assert_eq!(
            limit_breach(&policy, &result).map(|b| b.0),
            Some(AnalysisPhase::Error)
        );
        result.inconclusive = 0;
        result.consecutive_error = 0;
        assert_eq!(
            limit_breach(&policy, &result).map(|b| b.0),
            Some(AnalysisPhase::Failed)
        );
    }

    #[test]
    fn phases_order_from_best_to_worst() {
        use AnalysisPhase::*;
        let order = [Successful, Running, Pending, Inconclusive, Error, Failed];
        for w in order.windows(2) {
            assert!(w[0].is_worse(w[1]), "{} < {}", w[0], w[1]);
            assert!(!w[1].is_worse(w[0]));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_run_takes_the_worst_phase_of_metrics_completing_together() {
        let mut run = start(vec![two_sided("a"), success_rate("b")]);
        let script = Script::new()
            .answer("a", vec![vec1(f64::NAN)])
            .answer("b", vec![vec1(0.5)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        assert_eq!(
            run.message(),
            r#"Metric "b" assessed Failed due to failed (1) > failureLimit (0)"#
        );
        assert_eq!(
            reasons(&events),
            ["MetricInconclusive", "MetricFailed", "AnalysisRunFailed"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_metrics_never_decide_the_run() {
        let mut run = start(vec![
            MetricPolicy {
                dry_run: true,
                ..success_rate("dry")
            },
            MetricPolicy {
                interval: Some(secs(10)),
                count: Some(2),
                ..success_rate("real")
            },
        ]);
        let script = Script::new()
            .answer("dry", vec![vec1(0.1)])
            .answer("real", vec![vec1(0.99)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(took(&run), secs(10));
        assert_eq!(
            reasons(&events),
            ["MetricFailed", "MetricSuccessful", "AnalysisRunSuccessful"]
        );
        let dry = &run.results()[0];
        assert_eq!(dry.phase, AnalysisPhase::Failed);
        assert_eq!(
            dry.message,
            "Metric assessed Failed due to failed (1) > failureLimit (0)"
        );
        assert_eq!(
            run.dry_run_summary(),
            RunSummary {
                count: 1,
                failed: 1,
                ..RunSummary::default()
            }
        );
        assert_eq!(
            run.run_summary(),
            RunSummary {
                count: 1,
                successful: 1,
                ..RunSummary::default()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_dry_run_metric_keeps_the_run_running() {
        let mut run = start(vec![
            MetricPolicy {
                dry_run: true,
                interval: Some(secs(10)),
                count: None,
                ..success_rate("dry")
            },
            success_rate("real"),
        ]);
        let script = Script::new()
            .answer("dry", vec![vec1(0.99)])
            .answer("real", vec![vec1(0.99)]);
        run.tick(&script).await;
        assert_eq!(run.results()[1].phase, AnalysisPhase::Successful);
        assert_eq!(run.phase(), AnalysisPhase::Running);
        tokio::time::advance(secs(10)).await;
        run.tick(&script).await;
        assert_eq!(run.phase(), AnalysisPhase::Running);
        run.terminate(Instant::now());
        assert_eq!(run.phase(), AnalysisPhase::Successful);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_failing_metric_terminates_the_run_and_its_siblings() {
        let mut run = start(vec![
            MetricPolicy {
                interval: Some(secs(10)),
                count: None,
                ..success_rate("background")
            },
            MetricPolicy {
                initial_delay: secs(20),
                ..success_rate("late")
            },
        ]);
        let script = Script::new()
            .answer("background", vec![vec1(0.99)])
            .answer("late", vec![vec1(0.5)]);
        let events = run.run_until_complete(&script).await;
        assert_eq!(script.calls("background"), [secs(0), secs(10), secs(20)]);
        assert_eq!(script.calls("late"), [secs(20)]);
        assert_eq!(run.phase(), AnalysisPhase::Failed);
        assert_eq!(took(&run), secs(20));
        assert_eq!(
            reasons(&events),
            ["MetricFailed", "MetricSuccessful", "AnalysisRunFailed"]
        );
        assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
        assert!(run.is_terminating());
        assert_eq!(run.due(Instant::now() + secs(600)), Vec::<usize>::new());
        assert_eq!(run.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn termination_ends_the_run_successful_with_run_terminated() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: None,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.99)]);
        run.tick(&script).await;
        tokio::time::advance(secs(30)).await;
        let events = run.terminate(Instant::now());
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(run.message(), "Run Terminated");
        assert_eq!(took(&run), secs(30));
        assert_eq!(
            reasons(&events),
            ["MetricSuccessful", "AnalysisRunSuccessful"]
        );
        assert!(run.terminate_requested());
    }

    #[tokio::test(start_paused = true)]
    async fn termination_before_any_measurement_is_successful() {
        let mut run = start(vec![MetricPolicy {
            initial_delay: secs(60),
            ..success_rate("m")
        }]);
        let events = run.terminate(Instant::now());
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert_eq!(reasons(&events), ["AnalysisRunSuccessful"]);
        assert_eq!(run.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn termination_keeps_a_failure_and_ignores_a_failed_dry_run() {
        let mut failed = start(vec![success_rate("m")]);
        let script = Script::new()
            .answer("m", vec![vec1(0.1)])
            .answer("dry", vec![vec1(0.1)]);
        failed.tick(&script).await;
        assert_eq!(failed.phase(), AnalysisPhase::Failed);
        assert!(failed.terminate(Instant::now()).is_empty());
        assert_eq!(failed.phase(), AnalysisPhase::Failed);
        assert!(!failed.terminate_requested());

        let mut dry = start(vec![
            MetricPolicy {
                dry_run: true,
                ..success_rate("dry")
            },
            MetricPolicy {
                interval: Some(secs(60)),
                count: None,
                ..metric("m")
            },
        ]);
        dry.tick(&script).await;
        assert_eq!(dry.phase(), AnalysisPhase::Running);
        dry.terminate(Instant::now());
        assert_eq!(dry.phase(), AnalysisPhase::Successful);
        assert_eq!(dry.message(), "Run Terminated");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_metric_stays_running_and_keeps_the_last_ten_measurements() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: None,
            ..success_rate("m")
        }]);
        let script = Script::new().answer("m", vec![vec1(0.99)]);
        for _ in 0..12 {
            run.tick(&script).await;
            let next = run
                .next_due()
                .expect("an unbounded metric is always due again");
            tokio::time::sleep_until(next).await;
        }
        assert_eq!(run.phase(), AnalysisPhase::Running);
        let m = &run.results()[0];
        assert_eq!(m.phase, AnalysisPhase::Running);
        assert_eq!(m.count, 12);
        assert_eq!(m.measurements.len(), MEASUREMENT_HISTORY_LIMIT);
        assert_eq!(m.measurements[0].started_at - run.started_at(), secs(120));
        assert_eq!(script.calls("m").len(), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn the_initial_delay_is_respected() {
        let mut run = start(vec![MetricPolicy {
            initial_delay: secs(30),
            ..success_rate("m")
        }]);
        let t0 = run.started_at();
        assert_eq!(run.due(t0), Vec::<usize>::new());
        assert_eq!(run.next_due(), Some(t0 + secs(30)));
        assert_eq!(run.due(t0 + secs(29)), Vec::<usize>::new());
        assert_eq!(run.due(t0 + secs(30)), [0]);
        let script = Script::new().answer("m", vec![vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("m"), [secs(30)]);
        assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_shot_metric_measures_once() {
        let mut run = start(vec![success_rate("m")]);
        let script = Script::new().answer("m", vec![vec1(0.99)]);
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("m"), [secs(0)]);
        assert_eq!(run.next_due(), None);
        tokio::time::advance(secs(3600)).await;
        assert!(run.tick(&script).await.is_empty());
        assert_eq!(script.calls("m").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_interval_counts_from_the_end_of_the_previous_measurement() {
        let mut run = start(vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(3),
            ..success_rate("m")
        }]);
        let mut script = Script::new().answer("m", vec![vec1(0.99)]);
        script.latency = secs(2);
        run.run_until_complete(&script).await;
        assert_eq!(script.calls("m"), [secs(0), secs(62), secs(124)]);
        assert_eq!(took(&run), secs(126));
        let first = &run.results()[0].measurements[0];
        assert_eq!(first.finished_at - first.started_at, secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn measurements_of_completed_metrics_and_runs_are_ignored() {
        let mut run = start(vec![success_rate("m")]);
        let now = Instant::now();
        run.record(0, vec1(0.99), now, now);
        assert_eq!(run.phase(), AnalysisPhase::Successful);
        assert!(run.record(0, vec1(0.1), now, now).is_empty());
        assert!(run.record(7, vec1(0.1), now, now).is_empty());
        assert_eq!(run.results()[0].count, 1);
        assert_eq!(run.phase(), AnalysisPhase::Successful);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_policy_errors_at_once() {
        let run = start(vec![]);
        assert_eq!(run.phase(), AnalysisPhase::Error);
        assert_eq!(run.message(), "Analysis spec invalid: no metrics specified");
        assert_eq!(run.next_due(), None);
        let run = start(vec![metric("a"), metric("a")]);
        assert_eq!(
            run.message(),
            "Analysis spec invalid: metrics[1]: duplicate name 'a'"
        );
        let run = start(vec![MetricPolicy {
            count: Some(3),
            ..metric("a")
        }]);
        assert_eq!(
            run.message(),
            "Analysis spec invalid: metrics[0]: interval must be specified when count > 1"
        );
        let run = AnalysisRun::errored(
            RunPolicy {
                name: "ar".into(),
                metrics: vec![metric("a")],
            },
            "Unable to resolve metric arguments: failed to resolve {{args.x}}",
            Instant::now(),
        );
        assert_eq!(run.phase(), AnalysisPhase::Error);
        assert_eq!(run.due(Instant::now()), Vec::<usize>::new());
    }

    #[test]
    fn effective_count_follows_argo() {
        assert_eq!(effective_count(None, None), Some(1));
        assert_eq!(effective_count(Some(0), None), Some(1));
        assert_eq!(effective_count(None, Some(secs(60))), None);
        assert_eq!(effective_count(Some(0), Some(secs(60))), None);
        assert_eq!(effective_count(Some(5), Some(secs(60))), Some(5));
    }

    #[test]
    fn args_are_substituted_with_or_without_spaces() {
        let args = BTreeMap::from([
            ("service".to_string(), "web".to_string()),
            ("hash".to_string(), "abc123".to_string()),
        ]);
        assert_eq!(
            render_args(
                r#"sum(rate(x{svc="{{args.service}}",h="{{ args.hash }}"}[1m]))"#,
                &args
            )
            .as_deref(),
            Ok(r#"sum(rate(x{svc="web",h="abc123"}[1m]))"#)
        );
        assert_eq!(render_args("no tags", &args).as_deref(), Ok("no tags"));
    }

    #[test]
    fn unresolved_args_name_the_last_tag_as_written() {
        let args = BTreeMap::from([("service".to_string(), "web".to_string())]);
        assert_eq!(
            render_args("{{args.x}}", &args),
            Err("failed to resolve {{args.x}}".to_string())
        );
        assert_eq!(
            render_args("{{args.x}} {{ args.y }} {{args.service}}", &args),
            Err("failed to resolve {{ args.y }}".to_string())
        );
        assert_eq!(
            render_args("{{service}}", &args),
            Err("failed to resolve {{service}}".to_string())
        );
        assert!(render_args("{{args.service", &args).is_err());
    }

    #[test]
    fn prometheus_answers_become_condition_values() {
        use crate::prom::{Sample, Series};
        let sample = |v: f64| Sample {
            metric: BTreeMap::new(),
            value: v,
        };
        assert_eq!(
            metric_value_from_query(QueryValue::Vector(vec![sample(0.99), sample(1.0)])),
            Ok(MetricValue::Vector(vec![0.99, 1.0]))
        );
        assert_eq!(
            metric_value_from_query(QueryValue::Vector(vec![])),
            Ok(MetricValue::Vector(vec![]))
        );
        assert_eq!(
            metric_value_from_query(QueryValue::Scalar(0.5)),
            Ok(MetricValue::Scalar(0.5))
        );
        let series = |vs: &[f64]| Series {
            metric: BTreeMap::new(),
            values: vs.iter().enumerate().map(|(t, v)| (t as f64, *v)).collect(),
        };
        assert_eq!(
            metric_value_from_query(QueryValue::Matrix(vec![
                series(&[1.0, 2.0]),
                series(&[3.0])
            ])),
            Ok(MetricValue::Vector(vec![1.0, 2.0, 3.0]))
        );
        assert_eq!(
            metric_value_from_query(QueryValue::String("x".into())),
            Err("Prometheus metric type not supported".to_string())
        );
    }

    #[test]
    fn values_are_printed_as_argo_stores_them() {
        let v = |xs: &[f64]| format_value(&MetricValue::Vector(xs.to_vec()));
        assert_eq!(v(&[0.99]), "[0.99]");
        assert_eq!(v(&[f64::NAN]), "[NaN]");
        assert_eq!(v(&[]), "[]");
        assert_eq!(
            v(&[1.0, 2.5, f64::INFINITY, f64::NEG_INFINITY]),
            "[1,2.5,+Inf,-Inf]"
        );
        assert_eq!(format_value(&MetricValue::Scalar(0.99)), "0.99");
        assert_eq!(format_value(&MetricValue::Scalar(1e-7)), "0.0000001");
        assert_eq!(
            format_value(&MetricValue::Scalar(0.1 + 0.2)),
            "0.30000000000000004"
        );
    }

    #[test]
    fn decision_bounds_of_the_canonical_template() {
        let policy = RunPolicy {
            name: "ar".into(),
            metrics: vec![MetricPolicy {
                interval: Some(secs(60)),
                count: Some(5),
                failure_limit: 1,
                ..success_rate("success-rate")
            }],
        };
        let b = decision_bounds(&policy);
        assert_eq!(b.failed, Some(secs(60)));
        assert_eq!(b.errored, Some(secs(40)));
        assert_eq!(b.inconclusive, None);
        assert_eq!(b.successful, Some(secs(240)));
        assert_eq!(b.earliest_abort(), Some(secs(40)));
    }

    #[test]
    fn decision_bounds_add_the_initial_delay_and_wait_for_the_slowest_metric() {
        let policy = RunPolicy {
            name: "ar".into(),
            metrics: vec![
                MetricPolicy {
                    initial_delay: secs(30),
                    interval: Some(secs(10)),
                    count: Some(3),
                    failure_limit: 5,
                    inconclusive_limit: 1,
                    ..two_sided("a")
                },
                MetricPolicy {
                    interval: Some(secs(20)),
                    count: Some(4),
                    consecutive_error_limit: 0,
                    ..success_rate("b")
                },
            ],
        };
        let b = decision_bounds(&policy);
        // a: 6 failures do not fit in 3 measurements; b fails at its first.
        assert_eq!(b.failed, Some(secs(0)));
        assert_eq!(b.errored, Some(secs(0)));
        assert_eq!(b.inconclusive, Some(secs(40)));
        assert_eq!(b.successful, Some(secs(60)));
    }

    #[test]
    fn decision_bounds_of_unbounded_and_consecutive_success_metrics() {
        let unbounded = RunPolicy {
            name: "ar".into(),
            metrics: vec![MetricPolicy {
                interval: Some(secs(60)),
                count: None,
                ..success_rate("m")
            }],
        };
        assert_eq!(decision_bounds(&unbounded).successful, None);
        assert_eq!(decision_bounds(&unbounded).failed, Some(secs(0)));

        let csl = RunPolicy {
            name: "ar".into(),
            metrics: vec![MetricPolicy {
                interval: Some(secs(10)),
                count: Some(6),
                failure_limit: -1,
                consecutive_success_limit: 3,
                ..success_rate("m")
            }],
        };
        let b = decision_bounds(&csl);
        assert_eq!(b.successful, Some(secs(20)));
        assert_eq!(b.failed, Some(secs(50)));
        assert_eq!(b.inconclusive, None);

        let no_conditions = RunPolicy {
            name: "ar".into(),
            metrics: vec![metric("m")],
        };
        assert_eq!(decision_bounds(&no_conditions).failed, None);
        assert_eq!(decision_bounds(&no_conditions).successful, Some(secs(0)));
        let empty = RunPolicy {
            name: "ar".into(),
            metrics: vec![],
        };
        assert_eq!(decision_bounds(&empty), DecisionBounds::default());
    }
}
