//! What the status keeps of each measurement and each metric: the counters Argo compares with
//! the limits, and a bounded history of measurements.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::phase::AnalysisPhase;
use super::policy::MetricPolicy;
use crate::controller::expr::MetricValue;

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
    /// The last [`MetricPolicy::measurement_limit`] measurements, oldest first.
    pub measurements: VecDeque<Measurement>,
}

impl MetricResult {
    pub(super) fn new(policy: &MetricPolicy) -> MetricResult {
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

    pub(super) fn count_measurement(&mut self, phase: AnalysisPhase) {
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
