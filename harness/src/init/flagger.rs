//! Reading a Flagger Canary, with its Deployment and MetricTemplates, into [`PolicyFacts`].
//!
//! Through the code the emulated controller and `gauntlet validate` use: the Canary becomes
//! the emulated policy ([`load_flagger`]), whose timing formulas give the fastest decisions
//! ([`fastest`]), and each check's threshold is read by judging values as Flagger does
//! ([`judge`]).

use std::path::Path;
use std::time::Duration;

use super::classify::{Class, classify, empty_when_healthy};
use super::error::InitError;
use super::facts::{
    Controller, MetricFacts, PolicyFacts, Sourced, Threshold, file_name, memory_limit,
};
use super::threshold::{self, Verdict};
use crate::controller::flagger::checks::judge;
use crate::controller::flagger::target::load_flagger;
use crate::controller::flagger::{
    Check, CheckKind, FlaggerPolicy, HookTarget, HookType, Reading, fastest,
};
use crate::controller::timescale::TimeScale;
use crate::scenario::budget::Fastest;
use crate::spec::Manifests;

/// Reads the target's Canary at time scale `scale`.
///
/// # Errors
/// The target is not a Flagger one the local backend can run.
pub fn read(dir: &Path, scale: TimeScale) -> Result<PolicyFacts, InitError> {
    let (workload, emulated) = load_flagger(dir, scale)?;
    let p = &emulated.policy;
    let file = emulated.canary.origin.file.clone();
    let (promoted, rolled_back, paused) = fastest(p);
    let analysis = emulated.canary.object.analysis();
    let weights_from = match analysis {
        Some(a) if !a.step_weights().is_empty() => "spec.analysis.stepWeights".to_string(),
        _ => format!(
            "spec.analysis.stepWeight {} up to maxWeight {}",
            p.step_weight, p.max_weight
        ),
    };
    let walk = p.weight_sequence();
    let weights = walk
        .iter()
        .map(|w| Sourced::new(f64::from(*w.min(&100)) / 100.0, weights_from.clone()))
        .collect();
    let interval_from = match analysis.and_then(|a| a.interval.as_deref()) {
        Some(i) => format!("spec.analysis.interval {i}"),
        None => "spec.analysis.interval (unset: 1m)".to_string(),
    };
    let mut waits_for_a_person = None;
    let mut loadtester_gates = Vec::new();
    for h in &p.webhooks {
        let confirm = matches!(
            h.kind,
            HookType::ConfirmRollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        );
        match (&h.target, confirm) {
            (HookTarget::Loadtester(_), true) => loadtester_gates.push(h.name.clone()),
            (HookTarget::Url(url), true) if waits_for_a_person.is_none() => {
                waits_for_a_person = Some(format!(
                    "webhook {} ({}) asks {url}, which gauntlet cannot answer for you: a \
                     healthy release waits there",
                    h.name,
                    hook_type(h.kind)
                ));
            }
            _ => {}
        }
    }
    let metrics = p
        .builtin_checks
        .iter()
        .chain(&p.template_checks)
        .map(|c| one_check(&workload.manifests, p, c, &file))
        .collect();
    Ok(PolicyFacts {
        controller: Controller::Flagger,
        name: p.name.clone(),
        file: file.clone(),
        scale: scale.factor(),
        fastest: Fastest {
            promoted,
            rolled_back,
            paused,
        },
        clock: vec![Sourced::new(p.interval, interval_from)],
        weights,
        weight_walk: (!p.skip_analysis).then_some(walk),
        metrics,
        deadline: deadline(
            p,
            &emulated.canary.object.spec.progress_deadline_seconds,
            &file,
        ),
        memory_limit: memory_limit(&workload),
        waits_for_a_person,
        loadtester_gates,
        metrics_off: p.skip_analysis.then(|| {
            format!(
                "spec.skipAnalysis is true in {}: Flagger promotes without running a check",
                file_name(&file)
            )
        }),
    })
}

fn one_check(m: &Manifests, p: &FlaggerPolicy, check: &Check, file: &Path) -> MetricFacts {
    let (class, canary_only) = match &check.kind {
        CheckKind::SuccessRate => (
            Class::ErrorShare {
                success: true,
                percent: true,
            },
            true,
        ),
        CheckKind::RequestDuration => (Class::Latency { millis: true }, true),
        CheckKind::Inline => (
            classify(&check.query),
            check.query.to_lowercase().contains("canary"),
        ),
        CheckKind::Template(key) => (classify(&check.query), template_on_canary(m, key)),
    };
    let verdict = |v: f64| match judge(check, &Reading::Value(v), &p.name, &p.namespace, &p.target)
    {
        Ok(()) => Verdict::Pass,
        Err(_) => Verdict::Fail,
    };
    let stops_healthy = (empty_when_healthy(class, &check.query)
        && verdict_no_data(p, check) == Verdict::Fail)
        .then(|| {
            format!(
                "metric {} selects only 5xx answers, so a release without errors gives it no \
                 data, which Flagger counts as a failed check (\"no values found\"): a healthy \
                 release is rolled back. Give the numerator a default (`... or vector(0)`)",
                check.metric
            )
        });
    let reading = threshold::read(class, verdict).map(|t| match (&check.kind, t) {
        // Flagger truncates the measured milliseconds, so 500.9 ms passes a max of 500: the
        // judged bound is a hair above what the user wrote; say what they wrote.
        (CheckKind::RequestDuration, Threshold::Latency(_)) if check.has_range => {
            check.max.map_or(t, |ms| {
                Threshold::Latency(Duration::from_millis(ms.max(1.0) as u64))
            })
        }
        _ => t,
    });
    let source = match &check.kind {
        CheckKind::Template(key) => format!(
            "Canary metric {} (MetricTemplate {}) in {}",
            check.metric,
            key.split('.').next().unwrap_or(key),
            file_name(file)
        ),
        _ => format!("Canary metric {} in {}", check.metric, file_name(file)),
    };
    let fastest_failure = if p.skip_analysis {
        None
    } else {
        // This check alone: no other check, no hook that fails ticks or rolls back, no deadline.
        let mut alone = p.clone();
        alone.builtin_checks.retain(|c| c == check);
        alone.template_checks.retain(|c| c == check);
        alone
            .webhooks
            .retain(|h| !matches!(h.kind, HookType::Rollout | HookType::Rollback));
        alone.max_unavailable = alone.replicas.max(1);
        fastest(&alone).1
    };
    MetricFacts {
        name: check.metric.clone(),
        source,
        reading,
        canary_only,
        fastest_failure,
        failures_needed: p.threshold.max(1),
        interval: p.interval,
        stops_healthy,
    }
}

fn verdict_no_data(p: &FlaggerPolicy, check: &Check) -> Verdict {
    match judge(check, &Reading::NoValues, &p.name, &p.namespace, &p.target) {
        Ok(()) => Verdict::Pass,
        Err(_) => Verdict::Fail,
    }
}

/// Whether a MetricTemplate (`name.namespace`) selects the canary: its query names the canary
/// or the target Deployment's pods (`{{ target }}`).
fn template_on_canary(m: &Manifests, key: &str) -> bool {
    let (name, namespace) = key.split_once('.').unwrap_or((key, "default"));
    let (objects, _) = crate::spec::flagger::decode(m);
    objects.metric_template(namespace, name).is_some_and(|t| {
        let q: String = t.object.spec.query.split_whitespace().collect();
        q.contains("{{target}}") || q.to_lowercase().contains("canary")
    })
}

/// The rollback of a release that never becomes available: the Canary's progress deadline,
/// no check or hook failing.
fn deadline(
    p: &FlaggerPolicy,
    written: &Option<i32>,
    file: &Path,
) -> Result<Sourced<Duration>, String> {
    let written = match written {
        Some(s) => format!("progressDeadlineSeconds {s}"),
        None => "progressDeadlineSeconds (unset: 600)".into(),
    };
    let mut quiet = p.clone();
    quiet.builtin_checks.clear();
    quiet.template_checks.clear();
    quiet.webhooks.retain(|h| {
        !matches!(
            h.kind,
            HookType::Rollout | HookType::PreRollout | HookType::Rollback
        )
    });
    match fastest(&quiet).1 {
        Some(d) => Ok(Sourced::new(
            d,
            format!(
                "the Canary's {written} ({}), checked at each analysis tick",
                file_name(file)
            ),
        )),
        None if p.suspend => Err("the Canary is suspended (spec.suspend: true)".into()),
        None => Err(format!(
            "a release whose pods never become available is never rolled back: the \
             Deployment's maxUnavailable ({}) lets it stay Available with all {} new pods down, \
             so the Canary's {written} never passes; set maxUnavailable below replicas",
            p.max_unavailable, p.replicas
        )),
    }
}

/// The CRD's spelling of a webhook type.
fn hook_type(kind: HookType) -> &'static str {
    match kind {
        HookType::ConfirmRollout => "confirm-rollout",
        HookType::PreRollout => "pre-rollout",
        HookType::Rollout => "rollout",
        HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
        HookType::ConfirmPromotion => "confirm-promotion",
        HookType::PostRollout => "post-rollout",
        HookType::Rollback => "rollback",
        HookType::Event => "event",
    }
}
