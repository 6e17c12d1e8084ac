//! The Kubernetes side of the emulated Canary: the two Deployments Flagger works with, as
//! revisions on the [`Platform`], and what the Deployment controller and the router do to them
//! between ticks. The target Deployment (`<target>-<hash>` pods, behind `<service>-canary`) is
//! the canary; the primary (`<target>-primary-<hash>` pods, behind the apex Service) is a copy
//! of a target template with `-primary` appended to its name and selector label. A rolling
//! update of either is all at once: the new revision is scaled up in full and the old one
//! keeps serving until the new one is available (docs/fidelity.md). Their `status` is kept by
//! [`DeploymentStatus`], so readiness is decided as Flagger's `isDeploymentReady` reads it.

use tokio::time::Instant;

use super::deployment::Counts;
use super::provider::Provider;
use super::{FlaggerController, primary_hash};
use crate::cluster::{
    CanaryRoute, InfraError, Platform, PodTemplate, ReplicaCounts, RevisionHash, Services,
};

impl<P: Platform, M: Provider + Clone> FlaggerController<P, M> {
    pub(super) async fn scale(
        &mut self,
        hash: &RevisionHash,
        replicas: u32,
    ) -> Result<(), InfraError> {
        if self.desired.get(hash) != Some(&replicas) {
            self.platform.scale(hash, replicas).await?;
            self.desired.insert(hash.clone(), replicas);
        }
        Ok(())
    }

    pub(super) async fn ensure_revision(
        &mut self,
        hash: &RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        if self.created.insert(hash.clone()) {
            self.platform
                .create_revision(hash.clone(), template)
                .await?;
            self.desired.insert(hash.clone(), 0);
        }
        Ok(())
    }

    /// `SetRoutes`: the canary Ingress' weight.
    pub(super) async fn set_weight(&mut self, weight: u32) -> Result<(), InfraError> {
        if !self.route_applied || self.weight != weight {
            self.platform
                .set_canary_route(CanaryRoute::weight(weight))
                .await?;
            self.route_applied = true;
            self.weight = weight;
        }
        Ok(())
    }

    /// The Services: the apex (stable) one selects the serving primary, `-canary` the target's
    /// pods while it is scaled up.
    pub(super) async fn apply_services(&mut self) -> Result<(), InfraError> {
        let Some(stable) = self
            .primary_rolling_from
            .clone()
            .or_else(|| self.primary.clone())
        else {
            return Ok(());
        };
        let canary = self.target.clone().filter(|_| self.target_replicas > 0);
        let services = Services { stable, canary };
        if self.applied_services.as_ref() != Some(&services) {
            self.platform.set_services(services.clone()).await?;
            self.applied_services = Some(services);
        }
        Ok(())
    }

    /// `ScaleFromZero` of the target: `spec.replicas` as written in the Deployment. Its status
    /// carries on: a scale is no new rollout.
    pub(super) async fn scale_from_zero(&mut self) -> Result<(), InfraError> {
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        self.target_replicas = self.policy.replicas.max(1);
        self.scale(&target, self.target_replicas).await?;
        self.sync_target(Instant::now());
        self.apply_services().await
    }

    /// `ScaleToZero` of the target.
    pub(super) async fn scale_to_zero(&mut self) -> Result<(), InfraError> {
        self.target_replicas = 0;
        if let Some(target) = self.target.clone() {
            self.scale(&target, 0).await?;
        }
        for old in self.target_old.clone() {
            self.scale(&old, 0).await?;
        }
        self.apply_services().await
    }

    /// `Promote`: the primary gets the target's template (a new primary revision, which takes
    /// over from the old one once available).
    pub(super) async fn promote_template(&mut self) -> Result<(), InfraError> {
        let Some(source) = self.target.clone() else {
            return Ok(());
        };
        let rev = primary_hash(&source);
        if let Some(template) = self.templates.get(&source) {
            let t = self.primary_template(template);
            self.ensure_revision(&rev, t).await?;
        }
        let previous = self.primary.replace(rev.clone());
        self.scale(&rev, self.policy.replicas.max(1)).await?;
        match previous {
            Some(p) if p != rev => {
                if let Some(mid) = self.primary_rolling_from.replace(p.clone()) {
                    // A second promotion while the first still rolls: the first never serves.
                    self.primary_rolling_from = Some(mid);
                    self.scale(&p, 0).await?;
                    self.primary_old.push(p);
                }
            }
            _ => {}
        }
        self.primary_status.new_replica_set(Instant::now());
        self.sync_primary(Instant::now());
        self.apply_services().await
    }

    fn primary_template(&self, t: &PodTemplate) -> PodTemplate {
        let mut p = t.clone();
        p.workload = format!("{}-primary", self.policy.target);
        if let Some((key, value)) = &self.policy.selector_label {
            p.labels.insert(key.clone(), format!("{value}-primary"));
        }
        p
    }

    pub(super) fn counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        self.platform.replica_counts(hash)
    }

    /// Pods of an old revision that still count in the Deployment's `status.replicas`: those
    /// not yet asked to terminate.
    fn active(&self, hash: &RevisionHash) -> u32 {
        let c = self.counts(hash);
        c.desired.min(c.current)
    }

    /// `calculateStatus`'s sums for a Deployment at `spec` replicas whose newest ReplicaSet is
    /// `current`: pods, ready and available pods of every ReplicaSet; old pods already asked
    /// to terminate do not count.
    fn deployment_counts<'a>(
        &self,
        spec: u32,
        current: &RevisionHash,
        old: impl Iterator<Item = &'a RevisionHash>,
    ) -> Counts {
        let c = self.counts(current);
        let mut counts = Counts {
            spec,
            replicas: c.current,
            updated: c.current,
            ready: c.ready,
            available: c.available,
        };
        for h in old {
            let o = self.counts(h);
            counts.replicas += self.active(h);
            counts.ready += o.ready.min(o.desired);
            counts.available += o.available.min(o.desired);
        }
        counts
    }

    fn target_counts(&self) -> Counts {
        match &self.target {
            Some(t) => self.deployment_counts(self.target_replicas, t, self.target_old.iter()),
            None => Counts::default(),
        }
    }

    fn primary_counts(&self) -> Counts {
        match &self.primary {
            Some(p) => self.deployment_counts(
                self.policy.replicas.max(1),
                p,
                self.primary_rolling_from
                    .iter()
                    .chain(self.primary_old.iter()),
            ),
            None => Counts::default(),
        }
    }

    /// One sync of the target Deployment's status.
    pub(super) fn sync_target(&mut self, now: Instant) {
        let c = self.target_counts();
        let (mu, dl) = (
            self.policy.max_unavailable,
            self.policy.deployment_progress_deadline,
        );
        self.target_status.sync(c, mu, dl, now);
    }

    /// One sync of the primary Deployment's status (Flagger copies the target's strategy and
    /// deadline into it).
    fn sync_primary(&mut self, now: Instant) {
        let c = self.primary_counts();
        let (mu, dl) = (
            self.policy.max_unavailable,
            self.policy.deployment_progress_deadline,
        );
        self.primary_status.sync(c, mu, dl, now);
    }

    /// The Deployment controller's part, between ticks: a primary rolling update finishes once
    /// the new primary is available; old pods drain; conditions follow the pods.
    pub(super) async fn sync_deployments(&mut self, now: Instant) -> Result<(), InfraError> {
        if let (Some(old), Some(primary)) =
            (self.primary_rolling_from.clone(), self.primary.clone())
            && self.counts(&primary).available >= self.policy.replicas.max(1)
        {
            self.primary_rolling_from = None;
            self.apply_services().await?;
            self.scale(&old, 0).await?;
            self.primary_old.push(old);
        }
        let primary = self.primary.clone();
        let old: Vec<RevisionHash> = std::mem::take(&mut self.primary_old);
        self.primary_old = old
            .into_iter()
            .filter(|h| Some(h) != primary.as_ref() && self.counts(h).current > 0)
            .collect();
        let target = self.target.clone();
        let old: Vec<RevisionHash> = std::mem::take(&mut self.target_old);
        self.target_old = old
            .into_iter()
            .filter(|h| Some(h) != target.as_ref() && self.counts(h).current > 0)
            .collect();
        self.sync_target(now);
        self.sync_primary(now);
        Ok(())
    }

    /// `IsPrimaryReady`.
    pub(super) fn primary_ready(&self, now: Instant) -> Result<(), (bool, String)> {
        let name = format!("{}-primary", self.policy.target);
        self.primary_status
            .ready(
                &name,
                self.policy.progress_deadline,
                self.policy.primary_ready_threshold,
                now,
            )
            .map_err(|(r, e)| {
                (
                    r,
                    format!("{name}.{} not ready: {e}", self.policy.namespace),
                )
            })
    }

    /// `IsCanaryReady`.
    pub(super) fn canary_ready(&self, now: Instant) -> Result<(), (bool, String)> {
        self.target_status
            .ready(
                &self.policy.target,
                self.policy.progress_deadline,
                self.policy.canary_ready_threshold,
                now,
            )
            .map_err(|(r, e)| {
                (
                    r,
                    format!("canary deployment {} not ready: {e}", self.target_who()),
                )
            })
    }
}
