//! The AnalysisRun state machine (`analysis/analysis.go` `reconcileAnalysisRun`): when each
//! metric is due, how measurements taken together are recorded and reassessed, termination,
//! and the events Argo records.

use tokio::time::Instant;

use super::judgement::{assess_metric, judge, limit_breach};
use super::measurement::{Measurement, MetricResult, Reading};
use super::phase::AnalysisPhase;
use super::policy::{RunPolicy, validate};
use super::provider::MetricSource;
use crate::controller::expr::MetricValue;

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
            latest = Some(latest.map_or(reading.finished_at, |l| l.max(reading.finished_at)));
        }
        let events = match latest {
            Some(now) => self.reconcile(now),
            None => Vec::new(),
        };
        self.garbage_collect_measurements();
        events
    }

    /// `garbageCollectMeasurements`: after each reconcile, every metric keeps only its last
    /// `measurement_limit` measurements (at least one, which the assessment looks at).
    fn garbage_collect_measurements(&mut self) {
        for (policy, result) in self.policy.metrics.iter().zip(self.results.iter_mut()) {
            let keep = policy.measurement_limit.max(1);
            while result.measurements.len() > keep {
                result.measurements.pop_front();
            }
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
