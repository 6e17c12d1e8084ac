//! The Flagger v1.44.0 canary scheduler, emulated on a [`Platform`].
//!
//! Flagger acts only on ticks: `advanceCanary` runs once per `analysis.interval` (a Go ticker
//! started with the Canary's job), and each tick takes at most one step (reference §2.2): the
//! tick that notices a new revision only scales the canary up; the next sets the first weight
//! without a metric check; each later tick runs rollout hooks, builtin metrics and template
//! metrics (the first failure ends the tick and counts one failed check) and moves the weight;
//! the threshold is checked at the start of a tick; promotion takes three ticks (Promoting,
//! Finalising, Succeeded). [`FlaggerController::reconcile`] runs the tick when it is due;
//! between ticks it only plays the Kubernetes Deployment controller (a primary's rolling
//! update, readiness and progress deadlines).
//!
//! Locally the two Deployments Flagger works with are two revisions on the platform: the
//! target (`<target>-<hash>` pods, behind `<service>-canary`) and the primary, a copy of a
//! template with `-primary` appended to its name and selector label (`<target>-primary-<hash>`
//! pods, behind the apex Service the Ingress routes to). "Copying the template spec to the
//! primary" starts a new primary revision; the stable side switches to it once it is available.
//!
//! Measurements come from a [`MetricSource`], webhooks go through a [`Transport`] (real HTTP by
//! default), so the scheduling rules can be tested under a paused clock with scripted answers.

pub mod checks;
pub mod from_spec;
pub mod policy;
pub mod status;
pub mod target;
pub mod webhooks;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::checks::{QUERY_TIMEOUT, Reading, judge};
pub use self::from_spec::{Emulated, from_spec};
pub use self::policy::{Check, CheckKind, FlaggerPolicy, HookTarget, HookType, Webhook, fastest};
pub use self::status::{CanaryStatus, Condition, Phase};
use self::webhooks::GateServer;
pub use self::webhooks::{GateHandle, HttpTransport, Payload, Transport};
use crate::cluster::{
    CanaryRoute, InfraError, Platform, PodTemplate, ReplicaCounts, RevisionHash, Services,
};
use crate::controller::analysis::MetricSource;
use crate::controller::argo::Decision;
use crate::timeline::{Source, Timeline};

/// What a Deployment's status says, for `isDeploymentReady`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// `spec.replicas`.
    replicas: u32,
    /// Pods of the current template.
    updated: u32,
    /// With the old template's pods not yet scaled away.
    total: u32,
    available: u32,
}

/// A Deployment's `Available` and `Progressing` conditions, followed between ticks.
#[derive(Debug, Clone, Default)]
struct Conditions {
    /// Since when `Available` is False (`MinimumReplicasUnavailable`).
    unavailable_since: Option<Instant>,
    /// When `Progressing` last saw progress.
    last_progress: Option<Instant>,
    last: Counts,
    /// `ProgressDeadlineExceeded`.
    exceeded: bool,
}

impl Conditions {
    fn observe(&mut self, c: Counts, max_unavailable: u32, deadline: Duration, now: Instant) {
        let available = c.available + max_unavailable >= c.replicas;
        if available {
            self.unavailable_since = None;
        } else if self.unavailable_since.is_none() {
            self.unavailable_since = Some(now);
        }
        let progressed = c.replicas != self.last.replicas
            || c.updated > self.last.updated
            || c.available > self.last.available;
        let complete = c.updated >= c.replicas && c.available >= c.replicas && c.total == c.updated;
        if progressed || complete || self.last_progress.is_none() {
            self.last_progress = Some(now);
            self.exceeded = false;
        } else if let Some(at) = self.last_progress
            && now > at + deadline
        {
            self.exceeded = true;
        }
        self.last = c;
    }

    /// `isDeploymentReady`: `Err((retriable, reason))` while not ready.
    fn ready(
        &self,
        name: &str,
        c: Counts,
        deadline: Duration,
        threshold: u32,
        now: Instant,
    ) -> Result<(), (bool, String)> {
        let retriable = self
            .unavailable_since
            .is_none_or(|since| since + deadline >= now);
        let needed = (c.updated as f32 * (threshold as f32 / 100.0)) as u32;
        if self.exceeded {
            return Err((
                false,
                format!("deployment {name:?} exceeded its progress deadline"),
            ));
        }
        if c.updated < c.replicas {
            return Err((
                retriable,
                format!(
                    "waiting for rollout to finish: {} out of {} new replicas have been updated",
                    c.updated, c.replicas
                ),
            ));
        }
        if c.total > c.updated {
            return Err((
                retriable,
                format!(
                    "waiting for rollout to finish: {} old replicas are pending termination",
                    c.total - c.updated
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

/// The emulated controller of one Canary.
pub struct FlaggerController<P, M> {
    policy: FlaggerPolicy,
    platform: P,
    metrics: M,
    timeline: Timeline,
    status: CanaryStatus,
    /// The last event's message, for the status line.
    message: String,
    gates: GateServer,
    transport: Arc<dyn Transport>,
    /// The target's templates by hash.
    templates: BTreeMap<RevisionHash, PodTemplate>,
    created: BTreeSet<RevisionHash>,
    desired: BTreeMap<RevisionHash, u32>,
    /// The target Deployment's current template.
    target: Option<RevisionHash>,
    /// The target Deployment's `spec.replicas` (0 between runs).
    target_replicas: u32,
    /// Target revisions replaced while scaled up, still draining.
    target_old: Vec<RevisionHash>,
    /// The primary's revision (a copy of a target template).
    primary: Option<RevisionHash>,
    /// The previous primary revision, serving until the new one is available.
    primary_rolling_from: Option<RevisionHash>,
    primary_old: Vec<RevisionHash>,
    applied_services: Option<Services>,
    /// The canary Ingress' `canary-weight`: the router is the truth (`GetRoutes`).
    weight: u32,
    route_applied: bool,
    anchor: Instant,
    next_tick: Option<Instant>,
    target_conditions: Conditions,
    primary_conditions: Conditions,
    last_phase: Option<Phase>,
    init_reported: bool,
    last_init_warning: String,
}

impl<P: Platform, M: MetricSource + Clone> FlaggerController<P, M> {
    /// The controller of `policy`, with its loadtester listening on 127.0.0.1. Needs a tokio
    /// runtime.
    ///
    /// # Errors
    /// The loadtester's port cannot be bound.
    pub fn new(
        policy: FlaggerPolicy,
        platform: P,
        metrics: M,
        timeline: Timeline,
    ) -> Result<Self, InfraError> {
        let gates = GateServer::start(timeline.clone())?;
        Ok(FlaggerController {
            policy,
            platform,
            metrics,
            timeline,
            status: CanaryStatus::default(),
            message: String::new(),
            gates,
            transport: Arc::new(HttpTransport::default()),
            templates: BTreeMap::new(),
            created: BTreeSet::new(),
            desired: BTreeMap::new(),
            target: None,
            target_replicas: 0,
            target_old: Vec::new(),
            primary: None,
            primary_rolling_from: None,
            primary_old: Vec::new(),
            applied_services: None,
            weight: 0,
            route_applied: false,
            anchor: Instant::now(),
            next_tick: None,
            target_conditions: Conditions::default(),
            primary_conditions: Conditions::default(),
            last_phase: None,
            init_reported: false,
            last_init_warning: String::new(),
        })
    }

    /// Replaces how webhooks are sent (real HTTP by default), e.g. with a script in tests.
    pub fn set_transport(&mut self, transport: Arc<dyn Transport>) {
        self.transport = transport;
    }

    pub fn status(&self) -> &CanaryStatus {
        &self.status
    }

    pub fn policy(&self) -> &FlaggerPolicy {
        &self.policy
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Consumes the controller (its loadtester stops), handing back the platform.
    pub fn into_platform(self) -> P {
        let FlaggerController { platform, .. } = self;
        platform
    }

    /// The loadtester's gates: a scenario opens `gate_key()` to let a confirm hook pass, or
    /// `rollback_key()` to make a rollback hook fire.
    pub fn gates(&self) -> &GateHandle {
        self.gates.handle()
    }

    /// The loadtester key of this Canary's `/gate/*` gate: `<canary>.<namespace>`.
    pub fn gate_key(&self) -> String {
        format!("{}.{}", self.policy.name, self.policy.namespace)
    }

    /// The loadtester key of this Canary's `/rollback/*` gate: `rollback.<canary>.<namespace>`.
    pub fn rollback_key(&self) -> String {
        format!("rollback.{}", self.gate_key())
    }

    /// The revision the primary's pods run (the stable side once its rollout is done).
    pub fn primary_revision(&self) -> Option<&RevisionHash> {
        self.primary.as_ref()
    }

    /// The router's canary weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    fn now_s(&self) -> f64 {
        let now = Instant::now();
        match self.timeline.release() {
            Some(r) if now >= r => (now - r).as_secs_f64(),
            Some(r) => -(r - now).as_secs_f64(),
            None => 0.0,
        }
    }

    fn who(&self) -> String {
        format!("{}.{}", self.policy.name, self.policy.namespace)
    }

    fn target_who(&self) -> String {
        format!("{}.{}", self.policy.target, self.policy.namespace)
    }

    /// Records a Kubernetes event of the Canary (and sends it to `event` webhooks).
    fn event(&mut self, warning: bool, message: impl Into<String>) {
        let message = message.into();
        let kind = if warning { "Warning" } else { "Normal" };
        self.timeline.emit(
            Source::Controller,
            kind,
            message.clone(),
            serde_json::json!({
                "canary": self.policy.name,
                "namespace": self.policy.namespace,
                "type": kind,
                "reason": "Synced",
                "phase": self.status.phase,
            }),
        );
        let event_hooks: Vec<Webhook> = self.policy.hooks(HookType::Event).cloned().collect();
        for hook in event_hooks {
            let mut payload = self.payload(self.status.phase);
            let mut metadata = BTreeMap::from([
                ("eventMessage".to_string(), message.clone()),
                ("eventType".to_string(), kind.to_string()),
                (
                    "timestamp".to_string(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis().to_string())
                        .unwrap_or_default(),
                ),
            ]);
            for (k, v) in &hook.metadata {
                metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
            payload.metadata = metadata;
            let url = self.hook_url(&hook);
            let transport = self.transport.clone();
            tokio::spawn(async move {
                let _ =
                    webhooks::call(&*transport, &url, &payload, hook.timeout, hook.retries).await;
            });
        }
        self.message = message;
    }

    fn payload(&self, phase: Phase) -> Payload {
        Payload {
            name: self.policy.name.clone(),
            namespace: self.policy.namespace.clone(),
            phase: phase.to_string(),
            checksum: checksum(&self.status.last_applied_spec),
            metadata: BTreeMap::new(),
        }
    }

    fn hook_url(&self, hook: &Webhook) -> String {
        match &hook.target {
            HookTarget::Loadtester(path) => format!("{}{path}", self.gates.handle().base_url()),
            HookTarget::Url(u) => u.clone(),
        }
    }

    /// `CallWebhook` with `phase` in the payload.
    async fn call_hook(&self, hook: &Webhook, phase: Phase) -> Result<(), String> {
        let mut payload = self.payload(phase);
        payload.metadata = hook.metadata.clone();
        let url = self.hook_url(hook);
        let result =
            webhooks::call(&*self.transport, &url, &payload, hook.timeout, hook.retries).await;
        self.timeline.emit(
            Source::Analysis,
            "webhook",
            format!(
                "{} ({:?}): {}",
                hook.name,
                hook.kind,
                match &result {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("failed: {e}"),
                }
            ),
            serde_json::json!({
                "webhook": hook.name,
                "type": hook.kind,
                "url": url,
                "ok": result.is_ok(),
                "error": result.as_ref().err(),
            }),
        );
        result
    }

    /// Whether the target's template differs from the run's and from the primary's
    /// (`hasSpecChanged`: a revert to the primary's template starts nothing).
    fn changed(&self) -> bool {
        let Some(target) = &self.target else {
            return false;
        };
        self.status.last_applied_spec.is_empty()
            || (target.0 != self.status.last_promoted_spec
                && target.0 != self.status.last_applied_spec)
    }

    // ---- Status writes --------------------------------------------------------------------

    /// `SyncStatus`: phase, weight, failed checks and iterations as given; the run is about the
    /// target's current template.
    fn sync_status(&mut self, phase: Phase, weight: u32) {
        let target = self
            .target
            .as_ref()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        self.status.phase = phase;
        self.status.canary_weight = weight;
        self.status.failed_checks = 0;
        self.status.iterations = 0;
        self.status.last_applied_spec = target.clone();
        if phase == Phase::Initialized {
            self.status.last_promoted_spec = target;
        }
        self.status_written();
    }

    /// `SetStatusPhase`.
    fn set_phase(&mut self, phase: Phase) {
        self.status.phase = phase;
        if !matches!(
            phase,
            Phase::Progressing | Phase::Waiting | Phase::Promoting
        ) {
            self.status.canary_weight = 0;
            self.status.iterations = if phase == Phase::WaitingPromotion {
                // `analysis.iterations - 1`; the canary strategy has no iterations.
                -1
            } else {
                0
            };
        }
        if matches!(phase, Phase::Initialized | Phase::Succeeded) {
            self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        }
        self.status_written();
    }

    fn status_written(&mut self) {
        let now_s = self.now_s();
        self.status.last_transition_time = now_s;
        self.status
            .set_condition(self.status.phase, "Deployment", now_s);
        if self.last_phase != Some(self.status.phase) {
            self.last_phase = Some(self.status.phase);
            self.timeline.emit(
                Source::Controller,
                "phase",
                self.status.phase.to_string(),
                serde_json::json!({
                    "phase": self.status.phase,
                    "canaryWeight": self.status.canary_weight,
                    "failedChecks": self.status.failed_checks,
                    "lastAppliedSpec": self.status.last_applied_spec,
                    "lastPromotedSpec": self.status.last_promoted_spec,
                }),
            );
        }
    }

    // ---- The platform ---------------------------------------------------------------------

    async fn scale(&mut self, hash: &RevisionHash, replicas: u32) -> Result<(), InfraError> {
        if self.desired.get(hash) != Some(&replicas) {
            self.platform.scale(hash, replicas).await?;
            self.desired.insert(hash.clone(), replicas);
        }
        Ok(())
    }

    async fn ensure_revision(
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
    async fn set_weight(&mut self, weight: u32) -> Result<(), InfraError> {
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
    async fn apply_services(&mut self) -> Result<(), InfraError> {
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

    /// `ScaleFromZero` of the target: `spec.replicas` as written in the Deployment.
    async fn scale_from_zero(&mut self) -> Result<(), InfraError> {
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        self.target_replicas = self.policy.replicas.max(1);
        let now = Instant::now();
        self.target_conditions = Conditions::default();
        self.scale(&target, self.target_replicas).await?;
        let counts = self.target_counts();
        self.target_conditions.observe(
            counts,
            self.policy.max_unavailable,
            self.policy.deployment_progress_deadline,
            now,
        );
        self.apply_services().await
    }

    /// `ScaleToZero` of the target.
    async fn scale_to_zero(&mut self) -> Result<(), InfraError> {
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
    async fn promote_template(&mut self) -> Result<(), InfraError> {
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
        self.primary_conditions = Conditions::default();
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

    fn counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        self.platform.replica_counts(hash)
    }

    /// Pods of an old revision that still count in the Deployment's `status.replicas`: those
    /// not yet asked to terminate.
    fn active(&self, hash: &RevisionHash) -> u32 {
        let c = self.counts(hash);
        c.desired.min(c.current)
    }

    fn target_counts(&self) -> Counts {
        let Some(target) = &self.target else {
            return Counts::default();
        };
        let c = self.counts(target);
        let old: u32 = self.target_old.iter().map(|h| self.active(h)).sum();
        Counts {
            replicas: self.target_replicas,
            updated: c.current,
            total: c.current + old,
            available: c.available,
        }
    }

    fn primary_counts(&self) -> Counts {
        let Some(primary) = &self.primary else {
            return Counts::default();
        };
        let c = self.counts(primary);
        let old: u32 = self
            .primary_rolling_from
            .iter()
            .chain(self.primary_old.iter())
            .map(|h| self.active(h))
            .sum();
        Counts {
            replicas: self.policy.replicas.max(1),
            updated: c.current,
            total: c.current + old,
            available: c.available,
        }
    }

    /// The Deployment controller's part, between ticks: a primary rolling update finishes once
    /// the new primary is available; old pods drain; conditions follow the pods.
    async fn sync_deployments(&mut self, now: Instant) -> Result<(), InfraError> {
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
        let (t, p) = (self.target_counts(), self.primary_counts());
        let (mu, dl) = (
            self.policy.max_unavailable,
            self.policy.deployment_progress_deadline,
        );
        self.target_conditions.observe(t, mu, dl, now);
        self.primary_conditions.observe(p, mu, dl, now);
        Ok(())
    }

    /// `IsPrimaryReady`.
    fn primary_ready(&self, now: Instant) -> Result<(), (bool, String)> {
        let name = format!("{}-primary", self.policy.target);
        self.primary_conditions
            .ready(
                &name,
                self.primary_counts(),
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
    fn canary_ready(&self, now: Instant) -> Result<(), (bool, String)> {
        self.target_conditions
            .ready(
                &self.policy.target,
                self.target_counts(),
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

    // ---- Templates --------------------------------------------------------------------------

    /// A new pod template for the target Deployment. The first is the Canary's bootstrap: the
    /// primary is created from it and the job starts ticking. Later ones are noticed by the next
    /// tick; a target that is scaled up rolls its pods to the new template at once, as its
    /// Deployment would.
    ///
    /// # Errors
    /// The platform failed.
    pub async fn apply_template(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        self.templates.insert(hash.clone(), template.clone());
        if self.target.is_none() {
            self.ensure_revision(&hash, template).await?;
            self.target = Some(hash);
            self.status_written();
            self.promote_template().await?;
            self.set_weight(0).await?;
            let now = Instant::now();
            self.anchor = now;
            self.next_tick = Some(now);
            return Ok(());
        }
        if self.target.as_ref() == Some(&hash) {
            return Ok(());
        }
        // A tick that fell due while no pass ran (a driver busy elsewhere) ran on time in the
        // real controller, before this change: run it now, on the old template.
        self.reconcile().await?;
        self.ensure_revision(&hash, template).await?;
        let old = self.target.replace(hash.clone());
        if self.target_replicas > 0 {
            if let Some(old) = old {
                self.scale(&old, 0).await?;
                self.target_old.push(old);
            }
            self.scale(&hash, self.target_replicas).await?;
            self.target_conditions.last_progress = Some(Instant::now());
            self.apply_services().await?;
        }
        Ok(())
    }

    // ---- The scheduler ----------------------------------------------------------------------

    /// One pass: the Deployment controller's part, then the tick if one is due.
    ///
    /// # Errors
    /// The platform failed.
    pub async fn reconcile(&mut self) -> Result<(), InfraError> {
        if self.target.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        self.sync_deployments(now).await?;
        if self.status.phase == Phase::Initializing {
            // Checked at every pass rather than every tick (docs/fidelity.md): the bootstrap
            // is not what a scenario measures.
            self.initialize(now).await?;
            if self.status.phase == Phase::Initialized {
                self.anchor = now;
                self.next_tick = Some(now + self.policy.interval);
            }
            return Ok(());
        }
        let Some(due) = self.next_tick else {
            return Ok(());
        };
        if now < due {
            return Ok(());
        }
        self.tick(now).await?;
        self.next_tick = Some(self.after(due, Instant::now()));
        Ok(())
    }

    /// The next tick of a Go ticker after the one due at `due` ran until `end`: ticks missed
    /// while it ran are dropped, one waits in the channel.
    fn after(&self, due: Instant, end: Instant) -> Instant {
        let i = self.policy.interval.max(Duration::from_millis(1));
        let next = due + i;
        if next > end {
            return next;
        }
        let k = ((end - self.anchor).as_nanos() / i.as_nanos()) as u32;
        self.anchor + i * k
    }

    /// The bootstrap tick's work (reference §2.2 steps 2–5).
    async fn initialize(&mut self, now: Instant) -> Result<(), InfraError> {
        if !self.init_reported && !self.policy.skip_analysis {
            self.init_reported = true;
            self.event(false, "all the metrics providers are available!");
        }
        if let Err((_, e)) = self.primary_ready(now) {
            if e != self.last_init_warning {
                self.last_init_warning = e.clone();
                self.event(true, e);
            }
            return Ok(());
        }
        self.scale_to_zero().await?;
        self.set_weight(0).await?;
        self.sync_status(Phase::Initialized, 0);
        let who = self.who();
        self.event(false, format!("Initialization done! {who}"));
        Ok(())
    }

    /// One `advanceCanary` (reference §2.2 steps 6–18).
    async fn tick(&mut self, now: Instant) -> Result<(), InfraError> {
        let (who, target) = (self.who(), self.target_who());
        if self.policy.suspend {
            self.event(false, "skipping canary run as object is suspended");
            return Ok(());
        }
        let phase = self.status.phase;
        let active = matches!(
            phase,
            Phase::Progressing
                | Phase::Waiting
                | Phase::WaitingPromotion
                | Phase::Promoting
                | Phase::Finalising
        );
        let changed = self.changed();
        if phase == Phase::Failed
            && let Some(t) = &self.target
        {
            // "Make sure to sync lastAppliedSpec even if the canary is in a failed state."
            self.status.last_applied_spec = t.0.clone();
        }
        if !(active || changed) {
            return Ok(());
        }
        if !self.policy.skip_analysis
            && let Err((retriable, e)) = self.primary_ready(now)
        {
            self.event(true, e);
            if !retriable {
                if matches!(phase, Phase::Promoting | Phase::Finalising) {
                    self.failed_promotion().await?;
                } else {
                    self.rollback().await?;
                }
            }
            return Ok(());
        }
        let weight = self.weight;

        // checkCanaryStatus: a run starts.
        if !matches!(
            phase,
            Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising
        ) {
            if !self.confirm_rollout().await {
                return Ok(());
            }
            self.event(false, format!("New revision detected! Scaling up {target}"));
            self.scale_from_zero().await?;
            self.sync_status(Phase::Progressing, 0);
            return Ok(());
        }

        // A new revision during the analysis restarts it.
        if matches!(phase, Phase::Progressing | Phase::WaitingPromotion) && changed {
            self.set_weight(0).await?;
            self.sync_status(Phase::Progressing, 0);
            self.event(
                false,
                format!("New revision detected! Restarting analysis for {target}"),
            );
            return Ok(());
        }

        let canary_ready = self.canary_ready(now);
        if let Err((retriable, e)) = canary_ready {
            self.event(true, e);
            if !retriable {
                self.rollback().await?;
            }
            return Ok(());
        }

        if self.policy.skip_analysis {
            self.set_weight(0).await?;
            self.event(
                false,
                format!(
                    "Copying {target} template spec to {}-primary.{}",
                    self.policy.target, self.policy.namespace
                ),
            );
            self.promote_template().await?;
            self.scale_to_zero().await?;
            self.set_phase(Phase::Succeeded);
            self.event(
                false,
                format!("Promotion completed! Canary analysis was skipped for {target}"),
            );
            self.post_rollout(Phase::Succeeded).await;
            return Ok(());
        }

        if matches!(
            phase,
            Phase::Progressing | Phase::Waiting | Phase::WaitingPromotion
        ) && self.rollback_hooks(phase).await
        {
            self.event(true, format!("Rolling back {who} manual webhook invoked"));
            self.rollback().await?;
            return Ok(());
        }

        if phase == Phase::Promoting {
            return self.promotion_shift(weight).await;
        }

        if phase == Phase::Finalising {
            self.scale_to_zero().await?;
            self.set_phase(Phase::Succeeded);
            self.post_rollout(Phase::Succeeded).await;
            self.event(false, format!("Promotion completed! Scaling down {target}"));
            return Ok(());
        }

        if matches!(phase, Phase::Progressing | Phase::WaitingPromotion)
            && self.status.failed_checks >= self.policy.threshold
        {
            self.rollback().await?;
            return Ok(());
        }

        if weight == 0 && self.status.iterations == 0 {
            self.event(false, format!("Starting canary analysis for {target}"));
            if !self.pre_rollout().await {
                self.failed_check();
                return Ok(());
            }
        } else if !self.run_analysis().await {
            self.failed_check();
            return Ok(());
        }

        let next = self.policy.next_step_weight(weight);
        if next > 0 {
            if !matches!(
                phase,
                Phase::Promoting | Phase::WaitingPromotion | Phase::Finalising
            ) && !self.confirm_traffic_increase().await
            {
                return Ok(());
            }
            self.run_canary(weight, next).await?;
        }
        Ok(())
    }

    fn failed_check(&mut self) {
        self.status.failed_checks += 1;
        self.status_written();
    }

    /// `runCanary`: the next weight, or the promotion once the weight reached `maxWeight`.
    async fn run_canary(&mut self, weight: u32, next: u32) -> Result<(), InfraError> {
        let who = self.who();
        if weight < self.policy.max_weight {
            let w = (weight + next).min(100);
            self.set_weight(w).await?;
            self.status.canary_weight = w;
            self.status_written();
            self.event(false, format!("Advance {who} canary weight {w}"));
            return Ok(());
        }
        if !self.confirm_promotion().await {
            return Ok(());
        }
        let target = self.target_who();
        self.event(
            false,
            format!(
                "Copying {target} template spec to {}-primary.{}",
                self.policy.target, self.policy.namespace
            ),
        );
        self.promote_template().await?;
        self.set_phase(Phase::Promoting);
        Ok(())
    }

    /// `runPromotionTrafficShift`.
    async fn promotion_shift(&mut self, weight: u32) -> Result<(), InfraError> {
        let step = self.policy.step_weight_promotion;
        if step == 0 {
            self.event(false, "Routing all traffic to primary");
            self.set_weight(0).await?;
            self.set_phase(Phase::Finalising);
            return Ok(());
        }
        if weight > 0 {
            let primary = (100 - weight + step).min(100);
            let canary = weight.saturating_sub(step);
            self.set_weight(canary).await?;
            let who = self.who();
            self.event(false, format!("Advance {who} primary weight {primary}"));
            if primary == 100 {
                self.set_phase(Phase::Finalising);
            } else {
                self.status.canary_weight = canary;
                self.status_written();
            }
        }
        Ok(())
    }

    /// `rollback`: traffic back to the primary, the target scaled to 0, phase Failed.
    async fn rollback(&mut self) -> Result<(), InfraError> {
        let who = self.who();
        if self.status.failed_checks >= self.policy.threshold {
            let n = self.status.failed_checks;
            self.event(
                true,
                format!("Rolling back {who} failed checks threshold reached {n}"),
            );
        }
        self.set_weight(0).await?;
        self.event(true, format!("Canary failed! Scaling down {who}"));
        self.scale_to_zero().await?;
        self.sync_status(Phase::Failed, 0);
        self.post_rollout(Phase::Failed).await;
        Ok(())
    }

    /// A primary that cannot become ready during the promotion (PR #1931): all traffic to the
    /// canary, which still runs the new version, and phase Failed.
    async fn failed_promotion(&mut self) -> Result<(), InfraError> {
        let target = self.target_who();
        self.set_weight(100).await?;
        self.event(
            true,
            format!("Promotion failed! Routing all traffic to canary {target}"),
        );
        self.status.phase = Phase::Failed;
        self.status.canary_weight = 100;
        self.status_written();
        self.post_rollout(Phase::Failed).await;
        Ok(())
    }

    // ---- Hooks and checks -------------------------------------------------------------------

    fn hooks_of(&self, kind: HookType) -> Vec<Webhook> {
        self.policy.hooks(kind).cloned().collect()
    }

    async fn confirm_rollout(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmRollout) {
            if self.call_hook(&hook, self.status.phase).await.is_err() {
                if self.status.phase != Phase::Waiting {
                    self.set_phase(Phase::Waiting);
                    self.event(
                        true,
                        format!("Halt {who} advancement waiting for approval {}", hook.name),
                    );
                }
                return false;
            }
            self.event(false, format!("Confirm-rollout check {} passed", hook.name));
        }
        true
    }

    async fn pre_rollout(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::PreRollout) {
            match self.call_hook(&hook, Phase::Progressing).await {
                Err(e) => {
                    self.event(
                        true,
                        format!(
                            "Halt {who} advancement pre-rollout check {} failed {e}",
                            hook.name
                        ),
                    );
                    return false;
                }
                Ok(()) => self.event(false, format!("Pre-rollout check {} passed", hook.name)),
            }
        }
        true
    }

    async fn post_rollout(&mut self, phase: Phase) {
        for hook in self.hooks_of(HookType::PostRollout) {
            match self.call_hook(&hook, phase).await {
                Err(e) => {
                    self.event(true, format!("Post-rollout hook {} failed {e}", hook.name));
                    return;
                }
                Ok(()) => self.event(false, format!("Post-rollout check {} passed", hook.name)),
            }
        }
    }

    async fn confirm_traffic_increase(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmTrafficIncrease) {
            if self.call_hook(&hook, Phase::Progressing).await.is_err() {
                self.event(
                    true,
                    format!(
                        "Halt {who} advancement waiting for traffic increase approval {}",
                        hook.name
                    ),
                );
                return false;
            }
            self.event(
                false,
                format!("Confirm-traffic-increase check {} passed", hook.name),
            );
        }
        true
    }

    async fn confirm_promotion(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmPromotion) {
            if self.call_hook(&hook, Phase::Progressing).await.is_err() {
                if self.status.phase != Phase::WaitingPromotion {
                    self.set_phase(Phase::WaitingPromotion);
                    self.event(
                        true,
                        format!(
                            "Halt {who} advancement waiting for promotion approval {}",
                            hook.name
                        ),
                    );
                } else {
                    self.status.iterations = -1;
                    self.status_written();
                }
                return false;
            }
            self.event(
                false,
                format!("Confirm-promotion check {} passed", hook.name),
            );
        }
        true
    }

    async fn rollback_hooks(&mut self, phase: Phase) -> bool {
        for hook in self.hooks_of(HookType::Rollback) {
            if self.call_hook(&hook, phase).await.is_err() {
                self.event(
                    false,
                    format!("Rollback hook {} not signaling a rollback", hook.name),
                );
            } else {
                self.event(true, format!("Rollback check {} passed", hook.name));
                return true;
            }
        }
        false
    }

    /// `runAnalysis`: rollout hooks, builtin metrics, template metrics; the first failure ends
    /// the tick.
    async fn run_analysis(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::Rollout) {
            if let Err(e) = self.call_hook(&hook, Phase::Progressing).await {
                self.event(
                    true,
                    format!(
                        "Halt {who} advancement external check {} failed {e}",
                        hook.name
                    ),
                );
                return false;
            }
        }
        let checks: Vec<Check> = self
            .policy
            .builtin_checks
            .iter()
            .chain(self.policy.template_checks.iter())
            .cloned()
            .collect();
        for check in &checks {
            if !self.run_check(check).await {
                return false;
            }
        }
        true
    }

    async fn run_check(&mut self, check: &Check) -> bool {
        let measured = self.metrics.measure(&check.query, QUERY_TIMEOUT).await;
        let reading = Reading::from_measurement(measured);
        let verdict = judge(
            check,
            &reading,
            &self.policy.name,
            &self.policy.namespace,
            &self.policy.target,
        );
        let (value, shown) = match &reading {
            Reading::Value(v) => (Some(*v), format!("{v}")),
            Reading::NoValues => (None, checks::NO_VALUES.to_string()),
            Reading::Error(e) => (None, format!("error: {e}")),
        };
        self.timeline.emit(
            Source::Analysis,
            "measurement",
            format!(
                "{}: {shown} ({})",
                check.metric,
                if verdict.is_ok() { "pass" } else { "fail" }
            ),
            serde_json::json!({
                "metric": check.metric,
                "query": check.query,
                "value": value,
                "reading": shown,
                "passed": verdict.is_ok(),
            }),
        );
        match verdict {
            Ok(()) => true,
            Err(msg) => {
                self.event(true, msg);
                false
            }
        }
    }

    // ---- For drivers and scenarios ----------------------------------------------------------

    /// The decision a scenario waits for: promoted (Succeeded, or the bootstrap's Initialized),
    /// rolled back (Failed), paused (WaitingPromotion). None while a new revision waits to be
    /// noticed.
    pub fn decision(&self) -> Option<Decision> {
        let pending = self.changed();
        match self.status.phase {
            Phase::Initialized | Phase::Succeeded if !pending => Some(Decision::Promoted),
            Phase::Failed if !pending => Some(Decision::RolledBack),
            Phase::WaitingPromotion => Some(Decision::Paused),
            _ => None,
        }
    }

    /// How long a driver may sleep before the next pass, at most `cap`: until the next tick,
    /// or `cap` while the bootstrap or a primary rollout needs watching.
    pub fn wait_hint(&self, cap: Duration) -> Duration {
        if self.status.phase == Phase::Initializing || self.primary_rolling_from.is_some() {
            return cap;
        }
        let now = Instant::now();
        self.next_tick
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(cap)
            .min(cap)
    }

    /// When the next tick is due.
    pub fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// `Phase: last event`.
    pub fn status_line(&self) -> String {
        if self.message.is_empty() {
            self.status.phase.to_string()
        } else {
            format!("{}: {}", self.status.phase, self.message)
        }
    }

    /// Phase, the weight step (`"2/4"`), the router's canary weight.
    pub fn live(&self) -> (String, Option<String>, Option<u32>) {
        let steps = self.policy.weight_sequence();
        let step = steps
            .iter()
            .position(|w| *w == self.weight)
            .map(|i| format!("{}/{}", i + 1, steps.len()));
        (self.status.phase.to_string(), step, Some(self.weight))
    }
}

impl<P: Platform, M: MetricSource + Clone> crate::controller::Controller
    for FlaggerController<P, M>
{
    type Platform = P;

    async fn apply_template(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        FlaggerController::apply_template(self, hash, template).await
    }

    async fn reconcile(&mut self) -> Result<(), InfraError> {
        FlaggerController::reconcile(self).await
    }

    fn decision(&self) -> Option<Decision> {
        FlaggerController::decision(self)
    }

    fn wait_hint(&self, cap: Duration) -> Duration {
        FlaggerController::wait_hint(self, cap)
    }

    fn status_line(&self) -> String {
        FlaggerController::status_line(self)
    }

    fn live(&self) -> (String, Option<String>, Option<u32>) {
        FlaggerController::live(self)
    }

    fn platform(&self) -> &P {
        &self.platform
    }

    fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    fn into_platform(self) -> P {
        FlaggerController::into_platform(self)
    }
}

/// The local revision of the primary's copy of a target template: the primary's pod template
/// differs (name, selector label), so its hash does too.
pub fn primary_hash(source: &RevisionHash) -> RevisionHash {
    RevisionHash(encode(fnv(format!("primary/{}", source.0).as_bytes())))
}

/// `canaryChecksum`: a hash of the applied spec, as the payload carries it.
fn checksum(last_applied: &str) -> String {
    encode(fnv(last_applied.as_bytes()))
}

fn fnv(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' `SafeEncodeString` of the decimal digits, as `pod_template_hash` does.
fn encode(h: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[(d as usize) % ALPHABET.len()] as char)
        .collect()
}
