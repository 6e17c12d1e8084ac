//! From the user's Rollout (already validated by `spec::argo`) to the policy the engine runs:
//! defaults applied as Argo applies them, every duration through `--time-scale`, each analysis
//! (inline steps and the background one) merged with its templates and numbered for the
//! [`RunFactory`](super::RunFactory).

use crate::cluster::CanaryRoute;
use crate::controller::timescale::TimeScale;
use crate::spec::argo::{
    MergedAnalysis, Rollout, RolloutAnalysis, SetCanaryScale, StepKind, merge_analysis,
};
use crate::spec::{Manifest, Manifests};

use super::policy::{Background, CanaryScale, RolloutPolicy, Step};

/// The engine's view of one Rollout.
#[derive(Debug, Clone)]
pub struct Emulated {
    pub policy: RolloutPolicy,
    /// Indexed by `Step::Analysis(i)` and `Background::analysis`.
    pub analyses: Vec<MergedAnalysis>,
}

/// Builds the policy of `rollout`.
///
/// # Errors
/// A text naming the step or analysis when something the validation lets through cannot be
/// emulated (validation normally refuses it first, with file and path).
pub fn from_spec(
    manifests: &Manifests,
    rollout: &Manifest<Rollout>,
    scale: TimeScale,
) -> Result<Emulated, String> {
    let r = &rollout.object;
    let canary = r
        .canary()
        .ok_or("spec.strategy.canary: only the canary strategy is emulated")?;
    let namespace = r.namespace();
    let mut analyses = Vec::new();
    let mut merge = |path: String, a: &RolloutAnalysis| -> Result<usize, String> {
        let merged = merge_analysis(manifests, namespace, a).map_err(|problems| {
            let reasons: Vec<String> = problems
                .iter()
                .map(|p| format!("{path}.{}: {}", p.path, p.reason))
                .collect();
            if reasons.is_empty() {
                format!("{path}: a template does not decode")
            } else {
                reasons.join("; ")
            }
        })?;
        analyses.push(merged);
        Ok(analyses.len() - 1)
    };

    let mut steps = Vec::new();
    for (i, s) in canary.steps.iter().enumerate() {
        let path = format!("spec.strategy.canary.steps[{i}]");
        let step = match s.kind() {
            Some(StepKind::SetWeight(w)) => Step::SetWeight(w.max(0).unsigned_abs()),
            Some(StepKind::Pause(p)) => Step::Pause(p.duration().map(|d| scale.duration(d))),
            Some(StepKind::Analysis(a)) => Step::Analysis(merge(format!("{path}.analysis"), a)?),
            Some(StepKind::SetCanaryScale(c)) => Step::SetCanaryScale(canary_scale(c)),
            None => return Err(format!("{path}: a step sets exactly one field")),
        };
        steps.push(step);
    }
    let background = match &canary.analysis {
        Some(a) => Some(Background {
            analysis: merge("spec.strategy.canary.analysis".into(), a)?,
            starting_step: a.starting_step.unwrap_or(0).max(0).unsigned_abs(),
        }),
        None => None,
    };

    let mut policy = RolloutPolicy::new(r.name(), r.replicas(), steps);
    policy.namespace = namespace.to_string();
    policy.background = background;
    policy.progress_deadline = scale.duration(r.progress_deadline());
    policy.progress_deadline_abort = r.spec.progress_deadline_abort;
    policy.min_ready = scale.duration(r.min_ready());
    policy.abort_scale_down_delay = canary.abort_scale_down_delay().map(|d| scale.duration(d));
    policy.scale_down_delay = scale.duration(canary.scale_down_delay());
    policy.canary_service = canary.canary_service.clone();
    policy.stable_service = canary.stable_service.clone();
    policy.route = route(canary);
    Ok(Emulated { policy, analyses })
}

fn canary_scale(c: &SetCanaryScale) -> CanaryScale {
    match (c.replicas, c.weight) {
        (Some(r), _) => CanaryScale::Replicas(r.max(0).unsigned_abs()),
        (None, Some(w)) => CanaryScale::Weight(w.max(0).unsigned_abs()),
        (None, None) => CanaryScale::MatchTrafficWeight,
    }
}

/// The canary Ingress' static routes: header and cookie from the annotations the Rollout adds,
/// the weight total from `maxTrafficWeight`; the controller sets the weight.
fn route(canary: &crate::spec::argo::CanaryStrategy) -> CanaryRoute {
    let mut route = CanaryRoute::weight(0);
    route.weight_total = canary.max_traffic_weight();
    if let Some(nginx) = canary.nginx() {
        let prefix = nginx.annotation_prefix();
        let annotations = nginx.static_canary_annotations();
        let get = |key: &str| annotations.get(&format!("{prefix}/{key}")).cloned();
        route.by_header = get("canary-by-header");
        route.by_header_value = get("canary-by-header-value");
        route.by_cookie = get("canary-by-cookie");
    }
    route
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn fixture() -> Manifests {
        crate::spec::load_target(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo"),
        )
        .unwrap()
    }

    #[test]
    fn the_fixture_becomes_its_steps_with_scaled_durations() {
        let m = fixture();
        let e = from_spec(&m, &m.rollouts[0], TimeScale::new(0.1).unwrap()).unwrap();
        let p = &e.policy;
        assert_eq!(
            p.steps,
            vec![
                Step::SetWeight(20),
                Step::Pause(Some(Duration::from_secs(3))),
                Step::SetWeight(50),
                Step::Pause(Some(Duration::from_secs(3))),
            ]
        );
        assert_eq!(p.replicas, 2);
        assert_eq!(p.progress_deadline, Duration::from_secs(6));
        assert!(p.progress_deadline_abort);
        assert_eq!(p.abort_scale_down_delay, Some(Duration::from_secs(3)));
        assert_eq!(p.scale_down_delay, Duration::from_secs(3));
        assert_eq!(
            p.background,
            Some(Background {
                analysis: 0,
                starting_step: 1
            })
        );
        assert_eq!(e.analyses.len(), 1);
        let names: Vec<&str> = e.analyses[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["success-rate", "p95-latency", "memory", "restarts"]);
        assert_eq!(p.max_weight(), 100);
    }

    #[test]
    fn header_and_cookie_routes_come_from_the_annotations() {
        let m = fixture();
        let mut rollout = m.rollouts[0].clone();
        let nginx = rollout
            .object
            .spec
            .strategy
            .canary
            .as_mut()
            .unwrap()
            .traffic_routing
            .as_mut()
            .unwrap()
            .nginx
            .as_mut()
            .unwrap();
        nginx
            .additional_ingress_annotations
            .insert("canary-by-header".into(), "X-Canary".into());
        nginx
            .additional_ingress_annotations
            .insert("canary-by-cookie".into(), "canary".into());
        let e = from_spec(&m, &rollout, TimeScale::default()).unwrap();
        assert_eq!(e.policy.route.by_header.as_deref(), Some("X-Canary"));
        assert_eq!(e.policy.route.by_cookie.as_deref(), Some("canary"));
        assert_eq!(e.policy.route.by_header_value, None);
    }
}
