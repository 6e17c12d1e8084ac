//! The statistical judge: was the controller's decision right?
//!
//! From the per-version, per-second windows the load generator writes to the timeline, the
//! judge compares the canary with the stable version over the canary's exposure (its first
//! answered window to the decision, see [`Exposure`]) on two metrics of what users saw:
//!
//! - **error rate** (5xx answers and requests without an answer): Fisher's exact test, with
//!   the difference in percentage points and its Newcombe interval ([`proportions`]);
//! - **latency** of answered requests: the Mann-Whitney U test on per-request latencies (to
//!   the histogram's bucket), stratified by one-second window so that machine load cannot
//!   pass for a slow canary, with the Hodges-Lehmann ratio of canary to stable latency and its
//!   interval ([`mann_whitney`]);
//!
//! and, from release to decision, on **pod health**: whether the release's containers ended on
//! their own (a crash, an OOM kill) while the stable's did not ([`pods`]; a rule, not a test:
//! one crash is a defect, not noise).
//!
//! Each metric is [`Class`]ified at a [`Confidence`] (default 98 %, as Kayenta):
//!
//! | class | error rate | latency |
//! | --- | --- | --- |
//! | `worse` | Fisher p < 1 − confidence, canary rate ≥ stable + 5 points | Mann-Whitney p < 1 − confidence, ratio ≥ 1.25 and shift ≥ 1 ms |
//! | `better` | the same the other way | the same the other way |
//! | `no-difference` | otherwise, if the requests sufficed to see +5 points with 80 % power | otherwise, if the answers sufficed to see 1.25x (and +1 ms) with 80 % power |
//! | `not-enough-data` | otherwise, with the requests (and seconds) that would | the same |
//!
//! The margins are [`Settings`]: significance alone is not enough, as in Kayenta, whose
//! Mann-Whitney classifier also needs the effect to clear a tolerance. There is no fixed
//! minimum sample: an exact test is valid on a handful of requests (six canary requests 800 ms
//! slower are `worse` beyond doubt), and a test that finds nothing is `no-difference` only if
//! it had the power to find the margin (Fleiss' formula for error rates, Noether's for the
//! rank test), so too little data shows as `not-enough-data` with the amount that would do.
//! Power is reckoned for a regression only: the judge exists to catch worse canaries.
//!
//! Beside the decision the judge puts a [`Finding`]: `justified`, `false-rollback`,
//! `missed-regression` or `inconclusive` (rules in [`verdict::finding`]; a pause or no
//! decision is `inconclusive`, with the call the data supports).
//!
//! Two metrics are each tested at the confidence level, without a multiple-comparison
//! correction (Kayenta has none either): the chance that a healthy canary comes out `worse` on
//! one of them is below 2 × (1 − confidence), 4 % at the default, and lower still with the
//! margins.
//!
//! ```no_run
//! # use gauntlet::judge::{self, Settings, Versions};
//! # fn demo(report: &gauntlet::report::model::ScenarioReport) -> Result<(), judge::JudgeError> {
//! let versions = Versions::new("1.0.0", "2.0.0")?; // baseline.version, release.version
//! let j = judge::judge_report(report, &versions, &Settings::default())?;
//! println!("{}: {}", j.finding, j.reason);
//! for line in j.lines() {
//!     println!("  {line}");
//! }
//! # Ok(()) }
//! ```

pub mod data;
pub mod mann_whitney;
pub mod pods;
pub mod proportions;
pub mod settings;
pub mod verdict;

use serde::{Deserialize, Serialize};

pub use data::{Exposure, Versions};
pub use mann_whitney::Latency;
pub use pods::PodHealth;
pub use proportions::{ErrorRate, Rate};
pub use settings::{Confidence, Power, Settings};
pub use verdict::{Class, Decision, Finding, Shortfall};

use crate::report::model::ScenarioReport;
use crate::timeline::Event;

/// A judge input that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    #[error("confidence {0} is not strictly between 0 and 1")]
    Confidence(f64),
    #[error("power {0} is not strictly between 0 and 1")]
    Power(f64),
    #[error("error-rate margin {0} is not strictly between 0 and 1")]
    ErrorMargin(f64),
    #[error("latency margin {0} is not a ratio above 1")]
    LatencyMargin(f64),
    #[error("latency floor {0} ms is not a finite, non-negative duration")]
    LatencyFloor(f64),
    #[error("the stable and the canary version need names")]
    EmptyVersion,
    #[error("the stable and the canary version are both {0}: nothing to compare")]
    SameVersion(String),
    #[error("unknown outcome {0:?} (promoted, rolled-back or paused)")]
    Outcome(String),
    #[error("unknown finding {0:?} (justified, false-rollback, missed-regression or inconclusive)")]
    Finding(String),
}

/// Everything the judge found about one scenario: the report's `judge` object, read back with
/// the report (a page drawn later shows it as the run did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub settings: Settings,
    pub versions: Versions,
    pub exposure: Exposure,
    pub error_rate: ErrorRate,
    pub latency: Latency,
    pub pods: PodHealth,
    pub decision: Option<Decision>,
    pub finding: Finding,
    /// One line: the decision and what the metrics say about it.
    pub reason: String,
}

impl Judgement {
    /// The metrics by name, in report order.
    pub fn metrics(&self) -> [(&'static str, &Class); 3] {
        [
            ("error rate", &self.error_rate.class),
            ("latency", &self.latency.class),
            ("pod health", &self.pods.class),
        ]
    }

    /// For `expect.judge`: the broken expectation as a failure line (in the style of
    /// `crate::verdict::judge`), `None` when the finding is the expected one.
    pub fn failure(&self, expected: Finding) -> Option<String> {
        (self.finding != expected).then(|| {
            format!(
                "the judge found {} ({}), expected {expected}",
                self.finding, self.reason
            )
        })
    }

    /// The finding and its reason, then one line per metric and the exposure: for the terminal
    /// report.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("judge: {} ({})", self.finding, self.reason),
            self.error_rate.summary.clone(),
            self.latency.summary.clone(),
            self.pods.summary.clone(),
            self.exposure_line(),
        ]
    }

    /// What was compared: the exposure's span and each side's requests.
    pub fn exposure_line(&self) -> String {
        let x = &self.exposure;
        match (x.from_s, x.to_s) {
            (Some(from), Some(to)) => format!(
                "exposure {from:.1}s-{to:.1}s after the release: canary {} requests, stable {}",
                x.canary.requests, x.stable.requests
            ),
            _ => format!("the canary {} answered no request", self.versions.canary()),
        }
    }
}

/// Judges one run from its timeline.
///
/// `decision` is the controller's decision, `None` when none came; `end_s` ends the exposure in
/// seconds after the release: the decision's time, or `None` for the end of the run. Nothing
/// here fails or panics on odd input: an empty timeline gives `not-enough-data` everywhere
/// and an `inconclusive` finding.
pub fn judge(
    timeline: &[Event],
    versions: &Versions,
    decision: Option<Decision>,
    end_s: Option<f64>,
    settings: &Settings,
) -> Judgement {
    let exposure = Exposure::from_timeline(timeline, versions, end_s);
    let error_rate = proportions::compare(
        Rate::new(exposure.canary.errors, exposure.canary.requests),
        Rate::new(exposure.stable.errors, exposure.stable.requests),
        exposure.canary_rate(),
        settings,
    );
    let latency = mann_whitney::compare(
        &exposure.canary.latencies,
        &exposure.stable.latencies,
        &exposure.strata,
        exposure.canary_answer_rate(),
        settings,
    );
    let pods = pods::compare(
        timeline,
        pods::release_hash(timeline),
        0.0,
        end_s.filter(|e| !e.is_nan()).unwrap_or(f64::INFINITY),
    );
    let mut j = Judgement {
        settings: *settings,
        versions: versions.clone(),
        exposure,
        error_rate,
        latency,
        pods,
        decision,
        finding: Finding::Inconclusive,
        reason: String::new(),
    };
    (j.finding, j.reason) = verdict::finding(decision, &j.metrics());
    j
}

/// Judges a finished scenario: its outcome, decision time and timeline. `versions` are the
/// scenario's `baseline.version` and `release.version`. Fails only on an outcome the report
/// contract does not know.
pub fn judge_report(
    report: &ScenarioReport,
    versions: &Versions,
    settings: &Settings,
) -> Result<Judgement, JudgeError> {
    let decision = report
        .outcome
        .as_deref()
        .map(str::parse::<Decision>)
        .transpose()?;
    let end_s = decision.and(report.decision_s);
    Ok(judge(&report.timeline, versions, decision, end_s, settings))
}

#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;
