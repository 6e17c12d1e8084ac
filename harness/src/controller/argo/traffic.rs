//! Services and the canary weight (`rollout/trafficrouting.go`, `reconcileTrafficRouting`),
//! decided before the analyses and the step of the pass, on the status the pass began with.

use super::pause::PauseContext;
use super::replicas::{Observed, at_desired_replica_counts, current_set_weight, last_set_weight};
use super::status::{RolloutStatus, TrafficWeights, WeightDestination};
use super::{ArgoController, RunFactory};
use crate::cluster::{CanaryRoute, InfraError, Platform, Services};

/// The weight `reconcileTrafficRouting` asks for:
/// - 0 once promoted (the managed routes are removed), after an abort, or while the canary has
///   no available pod;
/// - on a full promotion, the weight the status already holds, until the promotion itself;
/// - while the canary is short of the step's counts, the last `setWeight` before the step;
/// - past the last step (and only once the canary has all its pods), the traffic maximum;
/// - otherwise the current `setWeight`.
fn desired_weight(
    policy: &super::RolloutPolicy,
    old: &RolloutStatus,
    aborted: bool,
    observed: &Observed,
) -> u32 {
    if old.fully_promoted() || aborted {
        return 0;
    }
    if observed.of(&old.current_pod_hash).available == 0 {
        return 0;
    }
    if old.promote_full {
        return old.canary.weights.as_ref().map_or(0, |w| w.canary.weight);
    }
    let idx = (old.current_step_index.unwrap_or(0) as usize).min(policy.steps.len());
    if !at_desired_replica_counts(policy, old, observed) {
        last_set_weight(&policy.steps[..idx])
    } else if idx != policy.steps.len() {
        current_set_weight(policy, old)
    } else {
        policy.max_weight()
    }
}

/// `checkReplicasAvailable`: the stable side has the available pods for the rest of the
/// traffic (rounded down); without them the pass changes no weight at all.
fn stable_can_take(policy: &super::RolloutPolicy, stable_available: u32, weight: u32) -> bool {
    let max = policy.max_weight();
    let needed = u64::from(max - weight.min(max)) * u64::from(policy.replicas) / u64::from(max);
    u64::from(stable_available) >= needed
}

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    /// `reconcileStableAndCanaryService` and the abort branch's `ensureSVCTargets`: the stable
    /// Service selects the stable ReplicaSet; the canary Service the new one, or the stable one
    /// once aborted.
    pub(super) async fn reconcile_services(&mut self, aborted: bool) -> Result<(), InfraError> {
        let stable = self.stable();
        let services = Services {
            stable: stable.clone(),
            canary: Some(if aborted { stable } else { self.current() }),
        };
        if self.applied_services.as_ref() != Some(&services) {
            self.platform.set_services(services.clone()).await?;
            self.applied_services = Some(services);
        }
        Ok(())
    }

    /// `reconcileTrafficRouting`: sets the weight on the canary Ingress and records it in the
    /// new status (which otherwise keeps the old weights).
    pub(super) async fn reconcile_traffic_routing(
        &mut self,
        old: &RolloutStatus,
        pc: &PauseContext,
        observed: &Observed,
        new: &mut RolloutStatus,
    ) -> Result<(), InfraError> {
        new.canary.weights = old.canary.weights.clone();
        let weight = desired_weight(&self.policy, old, pc.is_aborted(), observed);
        if !stable_can_take(&self.policy, observed.of(&old.stable_rs).available, weight) {
            return Ok(());
        }
        let max = self.policy.max_weight();
        let route = CanaryRoute {
            weight,
            weight_total: max,
            ..self.policy.route.clone()
        };
        if self.applied_route.as_ref() != Some(&route) {
            self.platform.set_canary_route(route.clone()).await?;
            self.applied_route = Some(route);
        }
        let weights = TrafficWeights {
            canary: WeightDestination {
                weight,
                pod_template_hash: old.current_pod_hash.clone(),
                service_name: self.policy.canary_service.clone(),
            },
            stable: WeightDestination {
                weight: max - weight.min(max),
                pod_template_hash: old.stable_rs.clone(),
                service_name: self.policy.stable_service.clone(),
            },
        };
        if old.canary.weights.as_ref() != Some(&weights) {
            // `trafficWeightUpdatedMessage`.
            let detail = match &old.canary.weights {
                None => format!("to {weight}"),
                Some(w) if w.canary.weight != weight => {
                    format!("from {} to {weight}", w.canary.weight)
                }
                Some(_) => String::new(),
            };
            self.event(
                "TrafficWeightUpdated",
                format!("Traffic weight updated {detail}")
                    .trim_end()
                    .to_string(),
            );
        }
        new.canary.weights = Some(weights);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ReplicaCounts, RevisionHash};
    use crate::controller::argo::{RolloutPolicy, Step};

    #[test]
    fn check_replicas_available_rounds_the_stable_share_down() {
        let p = RolloutPolicy::new("app", 2, vec![Step::SetWeight(20)]);
        // 80 % of 2 pods is 1.6: one available stable pod is enough.
        assert!(stable_can_take(&p, 1, 20));
        assert!(!stable_can_take(&p, 0, 20));
        assert!(!stable_can_take(&p, 1, 0), "all traffic back needs both");
    }

    #[test]
    fn past_the_last_step_the_weight_waits_for_the_whole_canary() {
        let p = RolloutPolicy::new("app", 4, vec![Step::SetWeight(25)]);
        let old = RolloutStatus {
            stable_rs: "v1".into(),
            current_pod_hash: "v2".into(),
            current_step_index: Some(1),
            ..Default::default()
        };
        let counts = |d, a| ReplicaCounts {
            desired: d,
            current: d,
            ready: a,
            available: a,
        };
        let mut observed = Observed::default();
        observed.0.insert(RevisionHash("v1".into()), counts(4, 4));
        observed.0.insert(RevisionHash("v2".into()), counts(4, 3));
        assert_eq!(desired_weight(&p, &old, false, &observed), 25);
        observed.0.insert(RevisionHash("v2".into()), counts(4, 4));
        assert_eq!(desired_weight(&p, &old, false, &observed), 100);
        assert_eq!(desired_weight(&p, &old, true, &observed), 0);
    }
}
