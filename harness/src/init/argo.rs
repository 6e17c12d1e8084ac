//! Reading an Argo Rollout, with its AnalysisTemplates, into [`PolicyFacts`].
//!
//! Everything goes through the code the emulated controller and `gauntlet validate` use: the
//! Rollout becomes the emulated policy ([`from_spec`]), each analysis an AnalysisRun policy
//! ([`run_policy`]) whose bounds give the fastest decisions ([`budget::fastest`]), and each
//! metric's threshold is read by judging values with Argo's own rules ([`judge`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::classify::{classify, empty_when_healthy};
use super::error::InitError;
use super::facts::{Controller, MetricFacts, PolicyFacts, Sourced, file_name, memory_limit};
use super::threshold::{self, Verdict};
use crate::cluster::RevisionHash;
use crate::controller::analysis::{
    AnalysisPhase, DecisionBounds, ERROR_RETRY_INTERVAL, MetricPolicy, RunPolicy, decision_bounds,
    judge,
};
use crate::controller::argo::from_spec::{Emulated, from_spec};
use crate::controller::argo::runs::run_policy;
use crate::controller::argo::{Hashes, Step};
use crate::controller::expr::MetricValue;
use crate::controller::timescale::TimeScale;
use crate::scenario::budget;
use crate::spec::Manifests;

/// The hash the canary's ReplicaSet gets in the runs read here: a query that contains it
/// selects the canary's pods (`{{args.canary-hash}}` from `podTemplateHashValue: Latest`).
const CANARY_HASH: &str = "gauntletinitcanary";
const STABLE_HASH: &str = "gauntletinitstable";

/// Reads the target's Rollout at time scale `scale`.
///
/// # Errors
/// The Rollout cannot be emulated, or an analysis does not resolve (validation normally
/// refuses both first).
pub fn read(dir: &Path, manifests: Manifests, scale: TimeScale) -> Result<PolicyFacts, InitError> {
    let workload = crate::target::argo_workload(dir, manifests)?;
    let m = &workload.manifests;
    let Some(rollout) = m.rollouts.first() else {
        return Err(InitError::Unusable {
            file: dir.to_path_buf(),
            field: "kind".into(),
            reason: "no Rollout in the target".into(),
        });
    };
    let file = rollout.origin.file.clone();
    let unusable = |field: &str, reason: String| InitError::Unusable {
        file: file.clone(),
        field: field.into(),
        reason,
    };
    let emulated = from_spec(m, rollout, scale).map_err(|e| unusable("spec.strategy", e))?;
    let hashes = Hashes {
        stable: RevisionHash(STABLE_HASH.into()),
        latest: RevisionHash(CANARY_HASH.into()),
    };
    let mut runs = Vec::new();
    for (i, a) in emulated.analyses.iter().enumerate() {
        let run = run_policy(rollout, a, scale, &format!("analysis-{i}"), &hashes)
            .map_err(|e| unusable("spec.strategy.canary", format!("analysis {i}: {e}")))?;
        runs.push(run);
    }
    let bounds: Vec<DecisionBounds> = runs.iter().map(decision_bounds).collect();
    let fastest = budget::fastest(&emulated, &bounds);

    let policy = &emulated.policy;
    let total = policy.route.weight_total.max(1);
    let mut clock = Vec::new();
    let mut weights = Vec::new();
    let mut waits_for_a_person = None;
    for (i, step) in policy.steps.iter().enumerate() {
        match step {
            Step::SetWeight(w) if *w > 0 => weights.push(Sourced::new(
                (f64::from(*w) / f64::from(total)).min(1.0),
                format!("steps[{i}].setWeight {w}"),
            )),
            Step::Pause(Some(d)) => clock.push(Sourced::new(*d, format!("the steps[{i}] pause"))),
            Step::Pause(None) if waits_for_a_person.is_none() => {
                waits_for_a_person = Some(format!(
                    "steps[{i}] is a pause without a duration: the Rollout waits there until \
                     someone promotes it (`kubectl argo rollouts promote {}`)",
                    policy.name
                ));
            }
            _ => {}
        }
    }
    let metrics = metric_facts(m, &emulated, &runs, &bounds, &mut clock);
    let deadline = deadline(rollout, &emulated, &bounds);
    Ok(PolicyFacts {
        controller: Controller::Argo,
        name: policy.name.clone(),
        file: rollout.origin.file.clone(),
        scale: scale.factor(),
        fastest,
        clock,
        weights,
        weight_walk: None,
        metrics,
        deadline,
        memory_limit: memory_limit(&workload),
        waits_for_a_person,
        loadtester_gates: Vec::new(),
        metrics_off: None,
    })
}

/// One entry per template metric (a template used by two analyses counts once, at its earliest).
fn metric_facts(
    m: &Manifests,
    emulated: &Emulated,
    runs: &[RunPolicy],
    bounds: &[DecisionBounds],
    clock: &mut Vec<Sourced<Duration>>,
) -> Vec<MetricFacts> {
    let mut by_key: BTreeMap<(String, String), MetricFacts> = BTreeMap::new();
    let mut order = Vec::new();
    for (i, (run, analysis)) in runs.iter().zip(&emulated.analyses).enumerate() {
        for (metric, origin) in run.metrics.iter().zip(&analysis.metric_origins) {
            let source = source(m, &emulated.policy.namespace, origin);
            let facts = one_metric(emulated, bounds, i, run, metric, source);
            if let Some(interval) = metric.interval
                && !metric.dry_run
            {
                clock.push(Sourced::new(
                    interval,
                    format!("the interval of metric {}", metric.name),
                ));
            }
            let key = (origin.clone(), metric.name.clone());
            match by_key.get_mut(&key) {
                Some(seen) => {
                    seen.fastest_failure = match (seen.fastest_failure, facts.fastest_failure) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => {
                    order.push(key.clone());
                    by_key.insert(key, facts);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect()
}

fn one_metric(
    emulated: &Emulated,
    bounds: &[DecisionBounds],
    analysis: usize,
    run: &RunPolicy,
    metric: &MetricPolicy,
    source: String,
) -> MetricFacts {
    let failures_needed = u32::try_from(metric.failure_limit).map_or(1, |l| l.saturating_add(1));
    let interval = metric.interval.unwrap_or(ERROR_RETRY_INTERVAL);
    let canary_only =
        metric.query.contains(CANARY_HASH) || metric.query.to_lowercase().contains("canary");
    if metric.dry_run {
        return MetricFacts {
            name: metric.name.clone(),
            source,
            reading: Err("it is a dryRun metric: measured, never deciding".into()),
            canary_only,
            fastest_failure: None,
            failures_needed,
            interval,
            stops_healthy: None,
        };
    }
    let verdict = |v: f64| match judge(metric, Ok(MetricValue::Vector(vec![v]))).phase {
        AnalysisPhase::Successful => Verdict::Pass,
        AnalysisPhase::Failed => Verdict::Fail,
        AnalysisPhase::Error => Verdict::Error,
        _ => Verdict::Other,
    };
    let class = classify(&metric.query);
    let reading = threshold::read(class, verdict);
    let stops_healthy = empty_when_healthy(class, &metric.query)
        .then(|| judge(metric, Ok(MetricValue::Vector(Vec::new()))).phase)
        .filter(|p| *p != AnalysisPhase::Successful)
        .map(|p| {
            format!(
                "metric {} ({}) selects only 5xx answers, so a release without errors gives it \
                 no data, which it judges {}: {}. Give the numerator a default (`... or \
                 vector(0)`) or judge no data as a pass (`len(result) == 0 || ...`)",
                metric.name,
                source,
                p.as_str(),
                if p == AnalysisPhase::Inconclusive {
                    "the rollout pauses for a person"
                } else {
                    "the rollout is aborted"
                }
            )
        });
    // The rollback this metric alone can cause: every other metric and the deadline left out,
    // each analysis keeping its place (and its time to succeed) in the steps.
    let alone = RunPolicy {
        name: run.name.clone(),
        metrics: vec![metric.clone()],
    };
    let mut only: Vec<DecisionBounds> = bounds
        .iter()
        .map(|b| DecisionBounds {
            successful: b.successful,
            ..DecisionBounds::default()
        })
        .collect();
    if let Some(b) = only.get_mut(analysis) {
        b.failed = decision_bounds(&alone).failed;
    }
    let mut without_deadline = emulated.clone();
    without_deadline.policy.progress_deadline_abort = false;
    MetricFacts {
        name: metric.name.clone(),
        source,
        reading,
        canary_only,
        fastest_failure: budget::fastest(&without_deadline, &only).rolled_back,
        failures_needed,
        interval,
        stops_healthy,
    }
}

/// `AnalysisTemplate success-rate in analysis-templates.yaml`.
fn source(m: &Manifests, namespace: &str, origin: &str) -> String {
    let (kind, name) = origin.split_once('/').unwrap_or(("", origin));
    let file = match kind {
        "AnalysisTemplate" => m.analysis_template(namespace, name).map(|t| &t.origin.file),
        "ClusterAnalysisTemplate" => m.cluster_analysis_template(name).map(|t| &t.origin.file),
        _ => None,
    };
    match file {
        Some(f) => format!("{kind} {name} in {}", file_name(f)),
        None => origin.replace('/', " "),
    }
}

/// The rollback of a release that never becomes available: `progressDeadlineAbort` at the
/// deadline, no metric failing.
fn deadline(
    rollout: &crate::spec::Manifest<crate::spec::argo::Rollout>,
    emulated: &Emulated,
    bounds: &[DecisionBounds],
) -> Result<Sourced<Duration>, String> {
    let spec = &rollout.object.spec;
    let seconds = spec.progress_deadline_seconds.unwrap_or(600);
    let written = if spec.progress_deadline_seconds.is_some() {
        format!("progressDeadlineSeconds {seconds}")
    } else {
        "progressDeadlineSeconds (unset: 600)".to_string()
    };
    if !emulated.policy.progress_deadline_abort {
        return Err(format!(
            "a release whose pods never become available is not rolled back: without \
             progressDeadlineAbort the Rollout is only marked Degraded after {written}; set \
             spec.progressDeadlineAbort: true in {}",
            file_name(&rollout.origin.file)
        ));
    }
    let quiet: Vec<DecisionBounds> = bounds
        .iter()
        .map(|b| DecisionBounds {
            successful: b.successful,
            ..DecisionBounds::default()
        })
        .collect();
    budget::fastest(emulated, &quiet)
        .rolled_back
        .map(|d| {
            Sourced::new(
                d,
                format!(
                    "{written} with progressDeadlineAbort ({})",
                    file_name(&rollout.origin.file)
                ),
            )
        })
        .ok_or_else(|| format!("the progress deadline ({written}) never rolls back"))
}
