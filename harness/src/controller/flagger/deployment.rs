//! The status the Kubernetes Deployment controller (v1.34) writes on the two Deployments Flagger
//! works with, and how Flagger reads it (`pkg/canary/deployment_ready.go` `isDeploymentReady`).
//!
//! Flagger decides "not ready, give up" from two conditions, so both are followed here as the
//! Deployment controller sets them:
//! - `Available` (`calculateStatus`): False (`MinimumReplicasUnavailable`) while the available
//!   pods of *all* ReplicaSets are fewer than `spec.replicas - maxUnavailable`; Flagger gives up
//!   once it has been False for longer than the Canary's `progressDeadlineSeconds`.
//! - `Progressing` (`syncRolloutStatus`): `ProgressDeadlineExceeded` once no progress was seen
//!   for the Deployment's own `progressDeadlineSeconds`, which Flagger takes as final. Kubernetes
//!   estimates progress only during a rollout: when every pod belongs to the newest ReplicaSet
//!   and the last rollout completed, it leaves the condition alone. A canary scaled up from zero
//!   is such a Deployment, so it never times out this way, however long its pods stay unready.

use std::time::Duration;

use tokio::time::Instant;

/// A Deployment's `spec.replicas` and the `status` counts `calculateStatus` sums over all its
/// ReplicaSets (pods being deleted are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `spec.replicas`.
    pub spec: u32,
    /// `status.replicas`: pods of every ReplicaSet.
    pub replicas: u32,
    /// `status.updatedReplicas`: pods of the newest ReplicaSet.
    pub updated: u32,
    pub ready: u32,
    /// `status.availableReplicas`, of every ReplicaSet.
    pub available: u32,
}

/// The `Progressing` condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// `NewReplicaSetCreated` or `ReplicaSetUpdated`: a rollout under way.
    Rolling,
    /// `NewReplicaSetAvailable`: the last rollout completed.
    Complete,
    /// `ProgressDeadlineExceeded`.
    TimedOut,
}

/// One Deployment's status as the Deployment controller keeps it.
#[derive(Debug, Clone, Default)]
pub struct DeploymentStatus {
    /// The counts of the last sync (`deployment.Status`).
    last: Counts,
    /// The `Progressing` condition and its `lastUpdateTime`.
    progressing: Option<(Progress, Instant)>,
    /// The `lastUpdateTime` of `Available` while it is False.
    unavailable_since: Option<Instant>,
}

impl DeploymentStatus {
    /// `getNewReplicaSet`: a new pod template gets a new ReplicaSet, and `Progressing` becomes
    /// `NewReplicaSetCreated` now.
    pub fn new_replica_set(&mut self, now: Instant) {
        self.progressing = Some((Progress::Rolling, now));
    }

    /// One sync of the Deployment controller: `calculateStatus`, then `syncRolloutStatus`'s
    /// progress estimate against `deadline` (the Deployment's `progressDeadlineSeconds`).
    /// `max_unavailable` is `MaxUnavailable` at the Deployment's replicas; it counts for
    /// nothing at 0 replicas.
    pub fn sync(&mut self, c: Counts, max_unavailable: u32, deadline: Duration, now: Instant) {
        let max_unavailable = if c.spec == 0 { 0 } else { max_unavailable };
        if c.available >= c.spec.saturating_sub(max_unavailable) {
            self.unavailable_since = None;
        } else if self.unavailable_since.is_none() {
            self.unavailable_since = Some(now);
        }
        let reason = self.progressing.map(|(r, _)| r);
        let complete_already = c.replicas == c.updated && reason == Some(Progress::Complete);
        if !complete_already {
            if deployment_complete(c) {
                if reason != Some(Progress::Complete) {
                    self.progressing = Some((Progress::Complete, now));
                }
            } else if deployment_progressing(self.last, c) {
                self.progressing = Some((Progress::Rolling, now));
            } else if let Some((Progress::Rolling, since)) = self.progressing
                && since + deadline < now
            {
                self.progressing = Some((Progress::TimedOut, now));
            }
        }
        self.last = c;
    }

    /// `isDeploymentReady` on the last synced status: `Err((retriable, reason))` while not
    /// ready. `deadline` is the Canary's `progressDeadlineSeconds`, `threshold` its ready
    /// threshold in percent.
    pub fn ready(
        &self,
        name: &str,
        deadline: Duration,
        threshold: u32,
        now: Instant,
    ) -> Result<(), (bool, String)> {
        let c = self.last;
        let retriable = self.progressing.is_none()
            || self
                .unavailable_since
                .is_none_or(|since| since + deadline >= now);
        // `int32(float32(UpdatedReplicas) * ratio)`: truncated, in single precision.
        let needed = (c.updated as f32 * (threshold as f32 / 100.0)) as u32;
        if matches!(self.progressing, Some((Progress::TimedOut, _))) {
            return Err((
                false,
                format!("deployment {name:?} exceeded its progress deadline"),
            ));
        }
        if c.updated < c.spec {
            return Err((
                retriable,
                format!(
                    "waiting for rollout to finish: {} out of {} new replicas have been updated",
                    c.updated, c.spec
                ),
            ));
        }
        if c.replicas > c.updated {
            return Err((
                retriable,
                format!(
                    "waiting for rollout to finish: {} old replicas are pending termination",
                    c.replicas - c.updated
                ),
            ));
        }
        if c.available < needed {
            return Err((
                retriable,
                format!(
                    "waiting for rollout to finish: {} of {needed} (readyThreshold {threshold}%) \
                     updated replicas are available",
                    c.available
                ),
            ));
        }
        Ok(())
    }
}

/// `DeploymentComplete`.
fn deployment_complete(c: Counts) -> bool {
    c.updated == c.spec && c.replicas == c.spec && c.available == c.spec
}

/// `DeploymentProgressing`: new pods created, old ones gone, more ready or available.
fn deployment_progressing(old: Counts, new: Counts) -> bool {
    let old_pods = |c: Counts| c.replicas.saturating_sub(c.updated);
    new.updated > old.updated
        || old_pods(new) < old_pods(old)
        || new.ready > old.ready
        || new.available > old.available
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn counts(spec: u32, replicas: u32, updated: u32, available: u32) -> Counts {
        Counts {
            spec,
            replicas,
            updated,
            ready: available,
            available,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sync_rollout_status_never_times_out_a_deployment_scaled_up_from_zero() {
        let deadline = secs(60);
        let mut d = DeploymentStatus::default();
        // The release changes the template while the Deployment is at 0: the new ReplicaSet
        // completes at once.
        d.new_replica_set(Instant::now());
        d.sync(counts(0, 0, 0, 0), 0, deadline, Instant::now());
        // Flagger scales it up; its pods never become ready.
        d.sync(counts(2, 2, 2, 0), 0, deadline, Instant::now());
        tokio::time::sleep(secs(3600)).await;
        d.sync(counts(2, 2, 2, 0), 0, deadline, Instant::now());
        assert!(
            !matches!(d.progressing, Some((Progress::TimedOut, _))),
            "no estimate while all pods are the newest ReplicaSet's and the rollout completed"
        );
        // Only the Canary's deadline on `Available` makes it final.
        let canary_deadline = secs(600);
        let (retriable, e) = d
            .ready("app", canary_deadline, 100, Instant::now())
            .unwrap_err();
        assert!(!retriable);
        assert_eq!(
            e,
            "waiting for rollout to finish: 0 of 2 (readyThreshold 100%) updated replicas are \
             available"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sync_rollout_status_times_out_a_rollout_without_progress() {
        let deadline = secs(60);
        let mut d = DeploymentStatus::default();
        d.sync(counts(2, 2, 2, 2), 0, deadline, Instant::now());
        // A new template while the old pods serve: a rollout, estimated.
        d.new_replica_set(Instant::now());
        d.sync(counts(2, 4, 2, 2), 0, deadline, Instant::now());
        tokio::time::sleep(secs(60)).await;
        d.sync(counts(2, 4, 2, 2), 0, deadline, Instant::now());
        assert!(
            d.ready("app", secs(600), 100, Instant::now())
                .unwrap_err()
                .0
        );
        tokio::time::sleep(secs(1)).await;
        d.sync(counts(2, 4, 2, 2), 0, deadline, Instant::now());
        assert_eq!(
            d.ready("app", secs(600), 100, Instant::now()),
            Err((
                false,
                "deployment \"app\" exceeded its progress deadline".to_string()
            ))
        );
        // Progress after the deadline clears it (the Complete case comes first).
        d.sync(counts(2, 2, 2, 2), 0, deadline, Instant::now());
        assert_eq!(d.ready("app", secs(600), 100, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn calculate_status_counts_the_available_pods_of_every_replica_set() {
        let mut d = DeploymentStatus::default();
        d.sync(counts(2, 2, 2, 2), 0, secs(600), Instant::now());
        d.new_replica_set(Instant::now());
        // The old ReplicaSet's two pods still serve; the new ones are not ready.
        d.sync(counts(2, 4, 2, 2), 0, secs(600), Instant::now());
        assert_eq!(d.unavailable_since, None, "Available stays True");
        tokio::time::sleep(secs(120)).await;
        let (retriable, e) = d.ready("app", secs(60), 100, Instant::now()).unwrap_err();
        assert!(
            retriable,
            "past the Canary's deadline, but Available is True"
        );
        assert_eq!(
            e,
            "waiting for rollout to finish: 2 old replicas are pending termination"
        );
    }
}
