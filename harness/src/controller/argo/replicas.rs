//! ReplicaSet counts: how many canary pods a step wants (`utils/replicaset/canary.go`), when a
//! step's counts are met (`AtDesiredReplicaCountsForCanary`), and the scaling of a pass
//! (`rollout/replicaset.go`, `reconcileCanaryReplicaSets`).
//!
//! Without `dynamicStableScale` (refused by validation) the stable side always wants
//! `spec.replicas`; only the canary's count follows the steps.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::pause::PauseContext;
use super::policy::{CanaryScale, RolloutPolicy, Step};
use super::status::{PauseReason, RolloutStatus};
use super::{ArgoController, RunFactory};
use crate::cluster::{InfraError, Platform, ReplicaCounts, RevisionHash};

/// Every ReplicaSet's counts as the pass found them (the informer's copy): rules judge these,
/// not what the pass itself scales.
#[derive(Debug, Clone, Default)]
pub(super) struct Observed(pub(super) BTreeMap<RevisionHash, ReplicaCounts>);

impl Observed {
    pub(super) fn of(&self, hash: &str) -> ReplicaCounts {
        self.0
            .iter()
            .find(|(h, _)| h.0 == hash)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    /// Sums over every ReplicaSet of the rollout (`Get*ReplicaCountForReplicaSets(allRSs)`).
    pub(super) fn total(&self) -> ReplicaCounts {
        self.0
            .values()
            .fold(ReplicaCounts::default(), |a, c| ReplicaCounts {
                desired: a.desired + c.desired,
                current: a.current + c.current,
                ready: a.ready + c.ready,
                available: a.available + c.available,
            })
    }
}

/// `GetCurrentSetWeight`: 0 once aborted, the traffic maximum past the last step, else the
/// last `setWeight` at or before the current step (0 when none).
pub(super) fn current_set_weight(policy: &RolloutPolicy, status: &RolloutStatus) -> u32 {
    if status.abort {
        return 0;
    }
    let idx = status.current_step_index.unwrap_or(0) as usize;
    if idx >= policy.steps.len() {
        return policy.max_weight();
    }
    last_set_weight(&policy.steps[..=idx])
}

/// The last `setWeight` among `steps`, 0 when there is none.
pub(super) fn last_set_weight(steps: &[Step]) -> u32 {
    steps
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::SetWeight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(0)
}

/// `UseSetCanaryScale`: the latest `setCanaryScale` at or before the current step, unless a
/// `matchTrafficWeight` came later; ignored after an abort unless `abortScaleDownDelaySeconds`
/// is 0 (the user asked to keep the canary up). After an abort the current step is 0, so only
/// a first step that sets the scale still counts.
fn use_set_canary_scale(policy: &RolloutPolicy, status: &RolloutStatus) -> Option<CanaryScale> {
    if status.abort && policy.abort_scale_down_delay.is_some() {
        return None;
    }
    let idx = status.current_step_index.unwrap_or(0) as usize;
    if idx >= policy.steps.len() {
        return None;
    }
    policy.steps[..=idx].iter().rev().find_map(|s| match s {
        Step::SetCanaryScale(CanaryScale::MatchTrafficWeight) => Some(None),
        Step::SetCanaryScale(c) => Some(Some(*c)),
        _ => None,
    })?
}

/// `trafficWeightToReplicas`: rounded up.
fn weight_to_replicas(replicas: u32, weight: u32, max_weight: u32) -> u32 {
    (u64::from(replicas) * u64::from(weight)).div_ceil(u64::from(max_weight.max(1))) as u32
}

/// The canary's desired count (`CalculateReplicaCountsForTrafficRoutedCanary` with
/// `GetCanaryReplicasOrWeight`): all of `spec.replicas` on a full promotion or once promoted,
/// else the step's `setCanaryScale`, else the current `setWeight`'s share.
pub(super) fn desired_canary_replicas(policy: &RolloutPolicy, status: &RolloutStatus) -> u32 {
    let max = policy.max_weight();
    let weight = if status.promote_full || status.stable_rs.is_empty() || status.fully_promoted() {
        max
    } else {
        match use_set_canary_scale(policy, status) {
            Some(CanaryScale::Replicas(r)) => return r,
            Some(CanaryScale::Weight(w)) => w,
            _ => current_set_weight(policy, status),
        }
    };
    weight_to_replicas(policy.replicas, weight, max)
}

/// `AtDesiredReplicaCountsForCanary`: the canary has exactly its desired count, all available
/// (`allDesiredAreAvailable`; no `replicaProgressThreshold`), and the stable side has all its
/// pods created (`allDesiredAreCreated`), ready or not.
pub(super) fn at_desired_replica_counts(
    policy: &RolloutPolicy,
    status: &RolloutStatus,
    observed: &Observed,
) -> bool {
    let desired = desired_canary_replicas(policy, status);
    let canary = observed.of(&status.current_pod_hash);
    let stable = observed.of(&status.stable_rs);
    canary.desired == desired
        && canary.available == desired
        && stable.desired == policy.replicas
        && stable.current == policy.replicas
}

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    /// `shouldDelayScaleDownOnAbort`: aborted, with an `abortScaleDownDelaySeconds` other than 0.
    pub(super) fn should_delay_scale_down_on_abort(&self, pc: &PauseContext) -> bool {
        pc.is_aborted() && self.policy.abort_scale_down_delay.is_some()
    }

    /// `reconcileCanaryReplicaSets`: nothing while an inconclusive analysis halts progress;
    /// otherwise the stable side, then the canary, then the other ReplicaSets, stopping at
    /// the first that scales. Returns whether something scaled.
    pub(super) async fn reconcile_canary_replica_sets(
        &mut self,
        old: &RolloutStatus,
        pc: &PauseContext,
        observed: &Observed,
        now: Instant,
    ) -> Result<bool, InfraError> {
        // `haltProgress`.
        if old.has_pause(PauseReason::InconclusiveAnalysisRun) {
            return Ok(false);
        }
        let current = self.current();
        let stable = self.stable();
        // `removeScaleDownDeadlines`: back to a ReplicaSet still in its delay, or retried.
        if !self.should_delay_scale_down_on_abort(pc) {
            self.scale_down_at.remove(&current);
        }
        self.scale_down_at.remove(&stable);

        if stable != current
            && self
                .scale_to(&stable, observed, self.policy.replicas)
                .await?
        {
            return Ok(true);
        }
        if self
            .reconcile_new_replica_set(old, pc, observed, now)
            .await?
        {
            return Ok(true);
        }
        self.reconcile_other_replica_sets(old, observed, now).await
    }

    /// `reconcileNewReplicaSet`: the canary at its desired count; after an abort with a delay,
    /// kept up until the deadline, which is set once the stable side is fully available.
    async fn reconcile_new_replica_set(
        &mut self,
        old: &RolloutStatus,
        pc: &PauseContext,
        observed: &Observed,
        now: Instant,
    ) -> Result<bool, InfraError> {
        let current = self.current();
        let mut count = desired_canary_replicas(&self.policy, old);
        if self.should_delay_scale_down_on_abort(pc) {
            match self.scale_down_at.get(&current) {
                Some(at) if *at > now => return Ok(false),
                Some(_) => count = 0,
                None => {
                    if let Some(delay) = self.policy.abort_scale_down_delay
                        && observed.of(&old.stable_rs).available == self.policy.replicas
                    {
                        self.scale_down_at.insert(current, now + delay);
                    }
                    return Ok(false);
                }
            }
        }
        self.scale_to(&current, observed, count).await
    }

    /// `scaleDownOldReplicaSetsForCanary` for the ReplicaSets that are neither stable nor
    /// canary: once fully promoted (or already given a deadline) an old one keeps its pods for
    /// `scaleDownDelaySeconds`, then goes to 0; an intermediate canary (a release replaced
    /// mid-update) goes to 0 at once.
    async fn reconcile_other_replica_sets(
        &mut self,
        old: &RolloutStatus,
        observed: &Observed,
        now: Instant,
    ) -> Result<bool, InfraError> {
        let others: Vec<RevisionHash> = observed
            .0
            .iter()
            .filter(|(h, c)| h.0 != old.stable_rs && h.0 != old.current_pod_hash && c.desired > 0)
            .map(|(h, _)| h.clone())
            .collect();
        let mut scaled = false;
        for hash in others {
            let keep = observed.of(&hash.0).desired;
            let target = if old.fully_promoted() || self.scale_down_at.contains_key(&hash) {
                match self.scale_down_at.get(&hash) {
                    None => {
                        self.scale_down_at
                            .insert(hash.clone(), now + self.policy.scale_down_delay);
                        keep
                    }
                    Some(at) if *at > now => keep,
                    Some(_) => 0,
                }
            } else {
                0
            };
            if target == 0 {
                self.scale_down_at.remove(&hash);
            }
            scaled |= self.scale_to(&hash, observed, target).await?;
        }
        Ok(scaled)
    }

    /// Scales a ReplicaSet whose spec differs from `count`, with upstream's event; returns
    /// whether it scaled.
    async fn scale_to(
        &mut self,
        hash: &RevisionHash,
        observed: &Observed,
        count: u32,
    ) -> Result<bool, InfraError> {
        let from = observed.of(&hash.0).desired;
        if from == count {
            return Ok(false);
        }
        self.platform.scale(hash, count).await?;
        self.event(
            "ScalingReplicaSet",
            format!(
                "Scaled {} ReplicaSet {} (revision {}) from {from} to {count}",
                if count > from { "up" } else { "down" },
                self.rs_name(hash),
                self.revision_of(&hash.0),
            ),
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_step(index: u32) -> RolloutStatus {
        RolloutStatus {
            stable_rs: "v1".into(),
            current_pod_hash: "v2".into(),
            current_step_index: Some(index),
            ..Default::default()
        }
    }

    #[test]
    fn get_current_set_weight_follows_the_steps_and_is_zero_after_abort() {
        let p = RolloutPolicy::new(
            "app",
            5,
            vec![Step::SetWeight(20), Step::Pause(None), Step::SetWeight(50)],
        );
        assert_eq!(current_set_weight(&p, &at_step(1)), 20);
        assert_eq!(current_set_weight(&p, &at_step(2)), 50);
        assert_eq!(current_set_weight(&p, &at_step(3)), 100);
        let aborted = RolloutStatus {
            abort: true,
            ..at_step(2)
        };
        assert_eq!(current_set_weight(&p, &aborted), 0);
        assert_eq!(desired_canary_replicas(&p, &at_step(1)), 1);
        assert_eq!(desired_canary_replicas(&p, &at_step(2)), 3);
        assert_eq!(desired_canary_replicas(&p, &at_step(3)), 5);
    }

    #[test]
    fn use_set_canary_scale_until_match_traffic_weight() {
        let p = RolloutPolicy::new(
            "app",
            10,
            vec![
                Step::SetCanaryScale(CanaryScale::Replicas(3)),
                Step::SetWeight(50),
                Step::SetCanaryScale(CanaryScale::Weight(20)),
                Step::SetCanaryScale(CanaryScale::MatchTrafficWeight),
            ],
        );
        assert_eq!(desired_canary_replicas(&p, &at_step(1)), 3);
        assert_eq!(desired_canary_replicas(&p, &at_step(2)), 2);
        assert_eq!(desired_canary_replicas(&p, &at_step(3)), 5);
        let full = RolloutStatus {
            promote_full: true,
            ..at_step(1)
        };
        assert_eq!(desired_canary_replicas(&p, &full), 10);
    }
}
