//! What init knows about a policy, the same for Argo and Flagger: the facts sizing works from,
//! each with the words that say where in the user's manifests it came from.
//!
//! Durations are at the time scale the policy was read at ([`PolicyFacts::scale`]); readers
//! ([`super::argo`], [`super::flagger`]) are run once at scale 1 to choose the suite's time scale
//! and once more at that scale for the numbers written.

use std::path::PathBuf;
use std::time::Duration;

use crate::scenario::budget::Fastest;

/// Which controller the policy is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Argo,
    Flagger,
}

impl Controller {
    /// The object kind, as written in manifests.
    pub fn kind(self) -> &'static str {
        match self {
            Controller::Argo => "Rollout",
            Controller::Flagger => "Canary",
        }
    }
}

/// A value and where it came from, in words for a comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub why: String,
}

impl<T> Sourced<T> {
    pub fn new(value: T, why: impl Into<String>) -> Sourced<T> {
        Sourced {
            value,
            why: why.into(),
        }
    }
}

/// The policy, read.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    pub controller: Controller,
    /// `metadata.name` of the Rollout or Canary.
    pub name: String,
    /// The manifest that holds it, as found in the target folder.
    pub file: PathBuf,
    /// The time scale the durations below are at.
    pub scale: f64,
    /// The earliest each outcome can come, all metrics and deadlines together (what `gauntlet
    /// validate` checks budgets against).
    pub fastest: Fastest,
    /// The policy's own durations that a time scale must not shrink too far (pauses, analysis
    /// intervals), at `scale`.
    pub clock: Vec<Sourced<Duration>>,
    /// The canary's traffic shares (0..=1) before promotion, in order, each with its source.
    pub weights: Vec<Sourced<f64>>,
    /// Flagger: the weights a healthy release walks through, for `expect.weights`.
    pub weight_walk: Option<Vec<u32>>,
    pub metrics: Vec<MetricFacts>,
    /// The earliest rollback of a release whose pods never become available, from the progress
    /// deadline alone; `Err` says why there is none.
    pub deadline: Result<Sourced<Duration>, String>,
    /// The container's memory limit, bytes.
    pub memory_limit: Option<Sourced<u64>>,
    /// Why a healthy release cannot be promoted without a person (an indefinite pause, a gate
    /// gauntlet cannot open); `None` when it can.
    pub waits_for_a_person: Option<String>,
    /// Flagger: the confirm-* webhooks on the loadtester, which the scenario opens.
    pub loadtester_gates: Vec<String>,
    /// Why no metric can decide at all (Flagger's `skipAnalysis`), if so.
    pub metrics_off: Option<String>,
}

/// One metric (an Argo template metric, a Flagger check), read.
#[derive(Debug, Clone)]
pub struct MetricFacts {
    pub name: String,
    /// `AnalysisTemplate success-rate (analysis-templates.yaml)`, `Canary sample-app
    /// spec.analysis.metrics[0]`.
    pub source: String,
    /// What it measures and where it fails, or why that could not be read.
    pub reading: Result<Threshold, String>,
    /// Whether the query looks at the canary alone (a `canary` label or the canary's pods):
    /// else the canary's share of traffic dilutes what a fault shows.
    pub canary_only: bool,
    /// The earliest rollback this metric alone can cause, all its failures counted from the
    /// first moment it can measure; `None` when it never can.
    pub fastest_failure: Option<Duration>,
    /// Measurements (Argo) or checks (Flagger) that must fail before the rollback.
    pub failures_needed: u32,
    /// Time between two measurements or checks.
    pub interval: Duration,
    /// Why a healthy release does not pass this metric (it judges the no data of a release
    /// without errors as a failure or inconclusive); `None` when it passes.
    pub stops_healthy: Option<String>,
}

/// What a metric measures and the value past which it fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Fails when more than this share (0..=1) of the canary's answers are 5xx.
    ErrorShare(f64),
    /// Fails above this response time.
    Latency(Duration),
    /// Fails above this many bytes.
    Memory(u64),
    /// Counts restarts: fails once the canary restarted.
    Restarts,
}

impl Threshold {
    /// The name of the class, for comments.
    pub fn class(&self) -> &'static str {
        match self {
            Threshold::ErrorShare(_) => "error share",
            Threshold::Latency(_) => "latency",
            Threshold::Memory(_) => "memory",
            Threshold::Restarts => "restarts",
        }
    }
}

/// The first container's memory limit in the workload's pod template: what OOM-kills a leaking
/// canary, locally as on a cluster.
pub fn memory_limit(workload: &crate::target::Workload) -> Option<Sourced<u64>> {
    let container = workload.spec.spec.as_ref()?.containers.first()?;
    let limit = container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?;
    let bytes = crate::cluster::local::memlimit::parse_quantity(&limit.0).ok()?;
    Some(Sourced::new(
        bytes,
        format!(
            "container {}'s limit in {}",
            container.name,
            file_name(&workload.file)
        ),
    ))
}

/// A manifest's file name, for comments: the target folder is named once, at the top.
pub fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
