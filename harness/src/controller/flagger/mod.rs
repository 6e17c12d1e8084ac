//! The Flagger v1.44.0 canary scheduler, emulated on a [`Platform`].
//!
//! Flagger acts only on ticks: `advanceCanary` runs once per `analysis.interval` (a Go ticker
//! started with the Canary's job), and each tick takes at most one step (`pkg/controller/scheduler.go`): the
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
//! Measurements come from a [`Provider`], webhooks go through a [`Transport`] (real HTTP by
//! default), so the scheduling rules can be tested under a paused clock with scripted answers.
//!
//! Here: the tick (`advanceCanary`) and the status writes. Beside it: `workloads` (the two
//! Deployments on the platform), [`deployment`] (their status as Kubernetes keeps it and
//! Flagger reads it), `hooks` (the webhooks and checks of a tick), [`checks`] (judging a
//! value), [`provider`] (reading Prometheus' answer), [`webhooks`] (one POST with its retries),
//! [`loadtester`] (the gates and tasks).

pub mod checks;
pub mod deployment;
pub mod from_spec;
mod hooks;
pub mod loadtester;
pub mod policy;
pub mod provider;
pub mod status;
pub mod target;
pub mod webhooks;
mod workloads;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::deployment::DeploymentStatus;
pub use self::from_spec::{Emulated, from_spec};
use self::loadtester::GateServer;
pub use self::loadtester::{GateHandle, Loadtester};
pub use self::policy::{Check, CheckKind, FlaggerPolicy, HookTarget, HookType, Webhook, fastest};
pub use self::provider::{Provider, QUERY_TIMEOUT, Reading, read_answer};
pub use self::status::{CanaryStatus, Condition, Phase};
pub use self::webhooks::{HttpTransport, Payload, Reply, Transport};
use crate::cluster::{InfraError, Platform, PodTemplate, RevisionHash, Services};
use crate::controller::argo::Decision;
use crate::timeline::{Source, Timeline};

/// The emulated controller of one Canary.
pub struct FlaggerController<P, M> {
    policy: FlaggerPolicy,
    platform: P,
    metrics: M,
    timeline: Timeline,
    status: CanaryStatus,
    /// The last event's message, for the status line.
    message: String,
    /// `handleFailedPromotion`'s event, which the status line keeps showing: later events
    /// (post-rollout hooks) would hide why a Failed canary serves everyone.
    promotion_failure: String,
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
    target_status: DeploymentStatus,
    primary_status: DeploymentStatus,
    last_phase: Option<Phase>,
    init_reported: bool,
    last_init_warning: String,
}

/// What needs neither the platform nor the metrics: construction and read access, so that
/// callers holding any `M` (a scenario's actions) can reach the gates.
impl<P, M> FlaggerController<P, M> {
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
            promotion_failure: String::new(),
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
            target_status: DeploymentStatus::default(),
            primary_status: DeploymentStatus::default(),
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
}

impl<P: Platform, M: Provider + Clone> FlaggerController<P, M> {
    /// `recordEventInfof` / `recordEventWarningf`: a Kubernetes event of the Canary, then
    /// `sendEventToWebhook`, which calls every `event` webhook in turn and waits for each
    /// (timeouts and retries included) before the tick goes on; a failure is only logged.
    async fn event(&mut self, warning: bool, message: impl Into<String>) {
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
        self.message = message.clone();
        for hook in self.hooks_of(HookType::Event) {
            // `CallEventWebhook`: the event's fields first; the hook's metadata cannot
            // override them.
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
            let sent =
                webhooks::call(&*self.transport, &url, &payload, hook.timeout, hook.retries).await;
            if let Err(e) = sent {
                self.timeline.emit(
                    Source::Analysis,
                    "webhook",
                    format!("{} (Event): error sending event to webhook: {e}", hook.name),
                    serde_json::json!({
                        "webhook": hook.name,
                        "type": hook.kind,
                        "url": url,
                        "ok": false,
                        "error": e,
                    }),
                );
            }
        }
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

    // ---- Templates --------------------------------------------------------------------------

    /// A new pod template for the target Deployment. The first is the Canary's bootstrap: the
    /// primary is created from it (unless the Canary is suspended: `advanceCanary` returns
    /// before `Initialize`) and the job starts ticking. Later ones are noticed by the next tick;
    /// a target that is scaled up rolls its pods to the new template at once, as its Deployment
    /// would. Either way the Deployment gets a new ReplicaSet, which starts a rollout of its
    /// status (`getNewReplicaSet`); at 0 replicas that rollout completes at once.
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
            // The baseline's target pods are never started: Flagger scales them away.
            self.target_status.new_replica_set(Instant::now());
            self.sync_target(Instant::now());
            self.status_written();
            if !self.policy.suspend {
                self.promote_template().await?;
                self.set_weight(0).await?;
            }
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
        self.target_status.new_replica_set(Instant::now());
        if self.target_replicas > 0 {
            if let Some(old) = old {
                self.scale(&old, 0).await?;
                self.target_old.push(old);
            }
            self.scale(&hash, self.target_replicas).await?;
            self.apply_services().await?;
        }
        self.sync_target(Instant::now());
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
        if self.policy.suspend {
            // `advanceCanary` returns first thing, before `Initialize`.
            if let Some(due) = self.next_tick
                && now >= due
            {
                self.event(false, "skipping canary run as object is suspended")
                    .await;
                self.next_tick = Some(self.after(due, Instant::now()));
            }
            return Ok(());
        }
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

    /// The bootstrap tick's work (`advanceCanary` up to the first weight).
    async fn initialize(&mut self, now: Instant) -> Result<(), InfraError> {
        if !self.init_reported && !self.policy.skip_analysis {
            self.init_reported = true;
            self.event(false, "all the metrics providers are available!")
                .await;
        }
        if let Err((_, e)) = self.primary_ready(now) {
            if e != self.last_init_warning {
                self.last_init_warning = e.clone();
                self.event(true, e).await;
            }
            return Ok(());
        }
        self.scale_to_zero().await?;
        self.set_weight(0).await?;
        self.sync_status(Phase::Initialized, 0);
        let who = self.who();
        self.event(false, format!("Initialization done! {who}"))
            .await;
        Ok(())
    }

    /// One `advanceCanary` from the first weight on.
    async fn tick(&mut self, now: Instant) -> Result<(), InfraError> {
        let (who, target) = (self.who(), self.target_who());
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
            self.event(true, e.clone()).await;
            if !retriable {
                if matches!(phase, Phase::Promoting | Phase::Finalising) {
                    self.failed_promotion(&e).await?;
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
            self.event(false, format!("New revision detected! Scaling up {target}"))
                .await;
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
            )
            .await;
            return Ok(());
        }

        let canary_ready = self.canary_ready(now);
        if let Err((retriable, e)) = canary_ready {
            self.event(true, e).await;
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
            )
            .await;
            self.promote_template().await?;
            self.scale_to_zero().await?;
            self.set_phase(Phase::Succeeded);
            self.event(
                false,
                format!("Promotion completed! Canary analysis was skipped for {target}"),
            )
            .await;
            self.post_rollout(Phase::Succeeded).await;
            return Ok(());
        }

        if matches!(
            phase,
            Phase::Progressing | Phase::Waiting | Phase::WaitingPromotion
        ) && self.rollback_hooks(phase).await
        {
            self.event(true, format!("Rolling back {who} manual webhook invoked"))
                .await;
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
            self.event(false, format!("Promotion completed! Scaling down {target}"))
                .await;
            return Ok(());
        }

        if matches!(phase, Phase::Progressing | Phase::WaitingPromotion)
            && self.status.failed_checks >= self.policy.threshold
        {
            self.rollback().await?;
            return Ok(());
        }

        if weight == 0 && self.status.iterations == 0 {
            self.event(false, format!("Starting canary analysis for {target}"))
                .await;
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
            self.event(false, format!("Advance {who} canary weight {w}"))
                .await;
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
        )
        .await;
        self.promote_template().await?;
        self.set_phase(Phase::Promoting);
        Ok(())
    }

    /// `runPromotionTrafficShift`.
    async fn promotion_shift(&mut self, weight: u32) -> Result<(), InfraError> {
        let step = self.policy.step_weight_promotion;
        if step == 0 {
            self.event(false, "Routing all traffic to primary").await;
            self.set_weight(0).await?;
            self.set_phase(Phase::Finalising);
            return Ok(());
        }
        if weight > 0 {
            let primary = (100 - weight + step).min(100);
            let canary = weight.saturating_sub(step);
            self.set_weight(canary).await?;
            let who = self.who();
            self.event(false, format!("Advance {who} primary weight {primary}"))
                .await;
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
            )
            .await;
        }
        self.set_weight(0).await?;
        self.event(true, format!("Canary failed! Scaling down {who}"))
            .await;
        self.scale_to_zero().await?;
        self.sync_status(Phase::Failed, 0);
        self.post_rollout(Phase::Failed).await;
        Ok(())
    }

    /// `handleFailedPromotion`: the primary cannot become ready during the promotion, so all
    /// traffic goes to the canary, the only healthy copy of the new revision, which is not
    /// scaled down; `SyncStatus(Failed, 100)` records the weight that matches the routing
    /// (and, as every `SyncStatus`, zeroes the failed checks and iterations and syncs
    /// `lastAppliedSpec`).
    async fn failed_promotion(&mut self, not_ready: &str) -> Result<(), InfraError> {
        let target = self.target_who();
        let failure = format!("Promotion of {target} failed, primary not ready: {not_ready}");
        self.promotion_failure = failure.clone();
        self.event(true, failure).await;
        self.set_weight(100).await?;
        self.sync_status(Phase::Failed, 100);
        self.post_rollout(Phase::Failed).await;
        Ok(())
    }

    // ---- For drivers and scenarios ----------------------------------------------------------

    /// The decision a scenario waits for: promoted (Succeeded, or the bootstrap's Initialized),
    /// rolled back (Failed), paused (WaitingPromotion). None while a new revision waits to be
    /// noticed. A failed promotion is Failed with all traffic on the canary (`canaryWeight`
    /// 100, as `handleFailedPromotion` writes it): the new version serves every user, so the
    /// outcome is not a rollback; it reads as promoted, and the status line says it failed.
    pub fn decision(&self) -> Option<Decision> {
        let pending = self.changed();
        match self.status.phase {
            Phase::Initialized | Phase::Succeeded if !pending => Some(Decision::Promoted),
            Phase::Failed if !pending && self.status.canary_weight == 100 => {
                Some(Decision::Promoted)
            }
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

    /// `Phase: last event`; after a failed promotion, its reason and where the traffic went.
    pub fn status_line(&self) -> String {
        if self.status.phase == Phase::Failed && self.status.canary_weight == 100 {
            return format!(
                "Failed, all traffic on the canary: {}",
                self.promotion_failure
            );
        }
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

impl<P: Platform, M: Provider + Clone> crate::controller::Controller for FlaggerController<P, M> {
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
