//! The Argo Rollouts v1.9.1 canary engine, emulated on a [`Platform`].
//!
//! One [`ArgoController::reconcile`] is one pass of the real controller's `rolloutCanary`
//! (reference §2.2): services → traffic weight → analysis runs → replica sets → pause → status
//! sync (promotion, abort, step completion) → progress deadline → phase. The real controller is
//! driven by informer events and requeues; here [`ArgoController::next_wake`] says when the next
//! pass is due (a pause expiring, a measurement due, a scale-down deadline) and the driver also
//! runs a pass whenever the platform reports a pod change or an operation arrives.
//!
//! Analysis runs come from a [`RunFactory`], so the rollout rules can be tested with scripted
//! runs under a paused clock, apart from the measurement rules of `analysis.rs`.

pub mod from_spec;
pub mod policy;
pub mod runs;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

pub use self::policy::{Background, CanaryScale, RolloutPolicy, Step};
pub use self::status::{PauseCondition, PauseReason, Phase, RolloutStatus};
use self::status::{RunStatus, TrafficWeights, WeightDestination};
use crate::cluster::{
    CanaryRoute, InfraError, Platform, PodTemplate, ReplicaCounts, RevisionHash, Services,
};
use crate::timeline::{Source, Timeline};

/// The phase of an AnalysisRun, ordered from best to worst as Argo ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum RunPhase {
    Successful,
    Running,
    Pending,
    Inconclusive,
    Error,
    Failed,
}

impl RunPhase {
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            RunPhase::Successful | RunPhase::Inconclusive | RunPhase::Error | RunPhase::Failed
        )
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One AnalysisRun as the rollout sees it.
#[allow(async_fn_in_trait)]
pub trait Run {
    /// Takes every measurement that is due now.
    async fn advance(&mut self);
    fn phase(&self) -> RunPhase;
    /// The run's `status.message`, e.g. `Metric "x" assessed Failed due to failed (1) > failureLimit (0)`.
    fn message(&self) -> String;
    /// `spec.terminate`: the run ends Successful unless a metric already failed.
    fn terminate(&mut self);
    /// When the next measurement is due, if any.
    fn next_due(&self) -> Option<Instant>;
}

/// The pod template hashes a run's `podTemplateHashValue` arguments resolve to.
#[derive(Debug, Clone)]
pub struct Hashes {
    pub stable: RevisionHash,
    pub latest: RevisionHash,
}

/// Creates the AnalysisRuns of a rollout's analyses.
pub trait RunFactory {
    type Run: Run;
    /// Creates a run of analysis number `analysis` (as numbered in the policy).
    fn create(&self, analysis: usize, name: &str, hashes: &Hashes) -> Result<Self::Run, String>;
}

/// An operation a user (or a scenario) applies, as the kubectl plugin does with status patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Promote,
    PromoteFull,
    Abort,
    Retry,
}

struct ActiveRun<R> {
    name: String,
    run: R,
    /// The step index a step run belongs to.
    step: Option<u32>,
    reported: Option<RunPhase>,
}

/// What the progress deadline compares between passes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ProgressSnapshot {
    updated: u32,
    ready: u32,
    available: u32,
    stable: String,
    step: Option<u32>,
}

/// The emulated controller of one Rollout.
pub struct ArgoController<P, F: RunFactory> {
    policy: RolloutPolicy,
    platform: P,
    runs: F,
    timeline: Timeline,
    status: RolloutStatus,
    revisions: BTreeMap<RevisionHash, u32>,
    step_run: Option<ActiveRun<F::Run>>,
    background_run: Option<ActiveRun<F::Run>>,
    /// Collision counters for run names, as `CreateWithCollisionCounter` appends `.1`, `.2`.
    run_names: BTreeMap<String, u32>,
    pause_started: Option<Instant>,
    abort_scale_down_at: Option<Instant>,
    /// Previous stable revisions waiting for their scale-down deadline.
    old_stables: Vec<(RevisionHash, Instant)>,
    progress: (ProgressSnapshot, Instant),
    applied_route: Option<CanaryRoute>,
    applied_services: Option<Services>,
    generation: u64,
    last_phase: Option<(Phase, String)>,
    /// The last pass changed the status: run the next one at once, as the real controller's
    /// own status update requeues the rollout (e.g. the weight goes to 0 right after promotion).
    requeue: bool,
}

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    pub fn new(policy: RolloutPolicy, platform: P, runs: F, timeline: Timeline) -> Self {
        ArgoController {
            policy,
            platform,
            runs,
            timeline,
            status: RolloutStatus::default(),
            revisions: BTreeMap::new(),
            step_run: None,
            background_run: None,
            run_names: BTreeMap::new(),
            pause_started: None,
            abort_scale_down_at: None,
            old_stables: Vec::new(),
            progress: (ProgressSnapshot::default(), Instant::now()),
            applied_route: None,
            applied_services: None,
            generation: 0,
            last_phase: None,
            requeue: false,
        }
    }

    pub fn status(&self) -> &RolloutStatus {
        &self.status
    }

    pub fn policy(&self) -> &RolloutPolicy {
        &self.policy
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Consumes the controller, handing back the platform (to shut it down).
    pub fn into_platform(self) -> P {
        self.platform
    }

    fn event(&self, reason: &str, message: String) {
        self.timeline.emit(
            Source::Controller,
            reason,
            message,
            serde_json::json!({"rollout": self.policy.name}),
        );
    }

    fn rs_name(&self, hash: &RevisionHash) -> String {
        format!("{}-{}", self.policy.name, hash)
    }

    fn revision_of(&self, hash: &str) -> u32 {
        self.revisions
            .get(&RevisionHash(hash.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Applies a new pod template: the first one is the initial deploy (promoted at once, no
    /// steps, no analysis); later ones start an update from step 0. Returns the revision number.
    pub async fn apply_template(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<u32, InfraError> {
        self.generation += 1;
        self.status.observed_generation = self.generation.to_string();
        if self.status.current_pod_hash == hash.0 {
            return Ok(self.revision_of(&hash.0));
        }
        let revision = match self.revisions.get(&hash) {
            Some(r) => *r,
            None => {
                let r = self.revisions.values().max().copied().unwrap_or(0) + 1;
                self.platform
                    .create_revision(hash.clone(), template)
                    .await?;
                self.revisions.insert(hash.clone(), r);
                self.event(
                    "NewReplicaSetCreated",
                    format!("Created ReplicaSet {} (revision {r})", self.rs_name(&hash)),
                );
                r
            }
        };
        let steps = self.policy.steps.len() as u32;
        if self.status.stable_rs.is_empty() {
            // Initial deploy: promoted at once, with no steps and no analysis.
            self.status.stable_rs = hash.0.clone();
            self.status.current_pod_hash = hash.0.clone();
            self.status.current_step_index = Some(steps);
            self.event(
                "RolloutCompleted",
                format!("Rollout completed update to revision {revision} ({hash}): Initial deploy"),
            );
        } else if self.status.stable_rs == hash.0 {
            // A revert to the stable template skips the steps.
            self.reset_for_update(&hash);
            self.status.current_step_index = Some(steps);
            self.event("SkipSteps", "Rollback to stable ReplicaSets".into());
        } else {
            self.reset_for_update(&hash);
            self.event(
                "RolloutUpdated",
                format!("Rollout updated to revision {revision}"),
            );
        }
        self.touch_progress();
        Ok(revision)
    }

    /// `resetRolloutStatus`: a new update starts from step 0.
    fn reset_for_update(&mut self, hash: &RevisionHash) {
        self.terminate_runs();
        self.step_run = None;
        self.background_run = None;
        self.status.current_pod_hash = hash.0.clone();
        self.status.current_step_index = Some(0);
        self.status.pause_conditions.clear();
        self.status.controller_pause = false;
        self.status.abort = false;
        self.status.aborted_at = None;
        self.status.promote_full = false;
        self.status.canary.current_step_analysis_run_status = None;
        self.status.canary.current_background_analysis_run_status = None;
        self.status.conditions.retain(|c| c.kind != "Progressing");
        self.pause_started = None;
        self.abort_scale_down_at = None;
    }

    /// Applies a user operation, with the exact effect of the kubectl plugin's status patch
    /// (reference §3.5).
    pub fn operate(&mut self, op: Operation) {
        match op {
            Operation::Promote => {
                let idx = self.status.current_step_index.unwrap_or(0);
                let inconclusive_step = self
                    .status
                    .pause_conditions
                    .iter()
                    .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
                    && self.step_run.is_some();
                if self.status.pause_conditions.is_empty() || inconclusive_step {
                    // Not paused (or an inconclusive step run): skip the current step.
                    if (idx as usize) < self.policy.steps.len() {
                        self.status.current_step_index = Some(idx + 1);
                    }
                    if inconclusive_step {
                        self.status.controller_pause = false;
                    }
                }
                self.status.pause_conditions.clear();
                self.event("RolloutResumed", "Rollout is resumed".into());
            }
            Operation::PromoteFull => {
                if !self.status.fully_promoted() {
                    self.status.promote_full = true;
                    self.status.pause_conditions.clear();
                    self.status.controller_pause = false;
                }
            }
            Operation::Abort => {
                if !self.status.abort {
                    self.add_abort(String::new());
                }
            }
            Operation::Retry => {
                if self.status.abort {
                    self.status.abort = false;
                    self.status.aborted_at = None;
                    self.abort_scale_down_at = None;
                    self.status.current_step_index = Some(0);
                    self.step_run = None;
                    self.background_run = None;
                    self.status.canary.current_step_analysis_run_status = None;
                    self.status.canary.current_background_analysis_run_status = None;
                    self.status.set_condition(
                        "Progressing",
                        "Unknown",
                        "RolloutRetry",
                        "Retrying Rollout",
                    );
                    self.touch_progress();
                    self.event("RolloutRetry", "Retrying Rollout".into());
                }
            }
        }
    }

    /// `AddAbort`: phase Degraded from this pass on, the weight goes to 0 on the next.
    fn add_abort(&mut self, reason: String) {
        let revision = self.revision_of(&self.status.current_pod_hash.clone());
        let mut message = format!("Rollout aborted update to revision {revision}");
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(&reason);
        }
        self.status.abort = true;
        self.status.aborted_at = Some(self.now_s());
        self.status.current_step_index = Some(0);
        self.status.pause_conditions.clear();
        self.status.controller_pause = false;
        self.pause_started = None;
        self.status
            .set_condition("Progressing", "False", "RolloutAborted", &message);
        self.event("RolloutAborted", message);
    }

    fn now_s(&self) -> f64 {
        let now = Instant::now();
        match self.timeline.release() {
            Some(r) if now >= r => (now - r).as_secs_f64(),
            Some(r) => -(r - now).as_secs_f64(),
            None => 0.0,
        }
    }

    fn touch_progress(&mut self) {
        self.progress.1 = Instant::now();
    }

    fn current(&self) -> RevisionHash {
        RevisionHash(self.status.current_pod_hash.clone())
    }

    fn stable(&self) -> RevisionHash {
        RevisionHash(self.status.stable_rs.clone())
    }

    fn step(&self) -> Option<&Step> {
        self.status
            .current_step_index
            .and_then(|i| self.policy.steps.get(i as usize))
    }

    /// `GetCurrentSetWeight`: the last `setWeight` at or before the current step.
    fn current_set_weight(&self) -> u32 {
        let idx = self.status.current_step_index.unwrap_or(0) as usize;
        if idx >= self.policy.steps.len() {
            return self.policy.max_weight();
        }
        last_set_weight(&self.policy.steps[..=idx])
    }

    /// The last `setWeight` strictly before the current step: the weight kept while the canary
    /// is still scaling to the current step's count.
    fn previous_set_weight(&self) -> u32 {
        let idx =
            (self.status.current_step_index.unwrap_or(0) as usize).min(self.policy.steps.len());
        last_set_weight(&self.policy.steps[..idx])
    }

    /// The canary ReplicaSet's desired count (`utils/replicaset/canary.go` for traffic routing).
    fn canary_desired(&self) -> u32 {
        let replicas = self.policy.replicas;
        if self.status.promote_full {
            return replicas;
        }
        let idx = self.status.current_step_index.unwrap_or(0) as usize;
        if idx >= self.policy.steps.len() {
            return replicas;
        }
        let scale = self.policy.steps[..=idx]
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::SetCanaryScale(c) => Some(*c),
                _ => None,
            });
        let weight = self.current_set_weight();
        let pct = |w: u32| -> u32 {
            ((replicas as u64 * w as u64).div_ceil(self.policy.max_weight() as u64)) as u32
        };
        match scale {
            Some(CanaryScale::Replicas(r)) => r,
            Some(CanaryScale::Weight(w)) => pct(w),
            Some(CanaryScale::MatchTrafficWeight) | None => pct(weight),
        }
    }

    /// One reconcile pass. Returns when the next pass is due at the latest.
    pub async fn reconcile(&mut self) -> Result<(), InfraError> {
        if self.status.stable_rs.is_empty() {
            return Ok(());
        }
        let before = self.progress_key();
        let now = Instant::now();
        let current = self.current();
        let stable = self.stable();
        // The real controller judges steps on the ReplicaSet status its informer held when the
        // pass began; pods scaled in this pass count from the next one.
        let observed = (
            self.platform.replica_counts(&current),
            self.platform.replica_counts(&stable),
        );

        // Services: stable → stable RS; canary → the new RS, or the stable one after an abort.
        let services = Services {
            stable: stable.clone(),
            canary: Some(if self.status.abort {
                stable.clone()
            } else {
                current.clone()
            }),
        };
        if self.applied_services.as_ref() != Some(&services) {
            self.platform.set_services(services.clone()).await?;
            self.applied_services = Some(services);
        }

        // Traffic routing, evaluated before the step advances (§2.4).
        self.reconcile_weight().await?;

        // Analysis runs.
        self.reconcile_runs().await;

        // Replica sets.
        self.reconcile_replica_sets(now).await?;

        // The pause step.
        if !self.status.abort
            && let Some(Step::Pause(_)) = self.step()
        {
            let has = self
                .status
                .pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::CanaryPauseStep);
            if !has && !self.status.controller_pause {
                self.status.pause_conditions.push(PauseCondition {
                    reason: PauseReason::CanaryPauseStep,
                    start_time: self.now_s(),
                });
                self.status.controller_pause = true;
                self.pause_started = Some(now);
                self.event(
                    "RolloutPaused",
                    "Rollout is paused (CanaryPauseStep)".into(),
                );
            }
        }

        self.sync_status(now, observed).await?;
        self.check_progress_deadline(now);
        self.update_phase();
        self.requeue = self.progress_key() != before;
        Ok(())
    }

    /// What a pass can change that makes the next pass do something different.
    fn progress_key(&self) -> (Option<u32>, String, bool, usize, bool, Phase, Option<u32>) {
        (
            self.status.current_step_index,
            self.status.stable_rs.clone(),
            self.status.abort,
            self.status.pause_conditions.len(),
            self.status.promote_full,
            self.status.phase,
            self.applied_route.as_ref().map(|r| r.weight),
        )
    }

    async fn reconcile_weight(&mut self) -> Result<(), InfraError> {
        let current = self.current();
        let canary = self.platform.replica_counts(&current);
        let stable_counts = self.platform.replica_counts(&self.stable());
        let desired_canary = self.canary_desired();
        let weight = if self.status.fully_promoted() || self.status.abort || canary.available == 0 {
            0
        } else {
            let idx = self.status.current_step_index.unwrap_or(0) as usize;
            let at_desired = canary.available >= desired_canary;
            if idx >= self.policy.steps.len() {
                // All steps done: 100 while the canary scales to full, before promotion.
                self.policy.max_weight()
            } else if self.status.promote_full {
                if canary.available >= self.policy.replicas {
                    self.policy.max_weight()
                } else {
                    self.previous_set_weight()
                }
            } else if at_desired {
                self.current_set_weight()
            } else {
                self.previous_set_weight()
            }
        };
        // Weight safety: only with enough stable pods for the rest of the traffic.
        let max = self.policy.max_weight();
        let stable_needed =
            (self.policy.replicas as u64 * (max - weight.min(max)) as u64).div_ceil(max as u64);
        let applied_weight = self.applied_route.as_ref().map(|r| r.weight);
        let weight = if weight > 0
            && (stable_counts.available as u64) < stable_needed
            && !self.status.fully_promoted()
        {
            applied_weight.unwrap_or(0).min(weight)
        } else {
            weight
        };
        let route = CanaryRoute {
            weight,
            weight_total: max,
            ..self.policy.route.clone()
        };
        if self.applied_route.as_ref() != Some(&route) {
            self.platform.set_canary_route(route.clone()).await?;
            let from = applied_weight.unwrap_or(0);
            if from != weight {
                self.event(
                    "TrafficWeightUpdated",
                    format!("Traffic weight updated from {from} to {weight}"),
                );
            }
            self.applied_route = Some(route);
        }
        self.status.canary.weights = Some(TrafficWeights {
            canary: WeightDestination {
                weight,
                pod_template_hash: self.status.current_pod_hash.clone(),
                service_name: self.policy.canary_service.clone(),
            },
            stable: WeightDestination {
                weight: max - weight.min(max),
                pod_template_hash: self.status.stable_rs.clone(),
                service_name: self.policy.stable_service.clone(),
            },
        });
        Ok(())
    }

    fn run_name(&mut self, base: String) -> String {
        let n = self.run_names.entry(base.clone()).or_insert(0);
        let name = if *n == 0 { base } else { format!("{base}.{n}") };
        *n += 1;
        name
    }

    fn terminate_runs(&mut self) {
        for r in [self.step_run.as_mut(), self.background_run.as_mut()]
            .into_iter()
            .flatten()
        {
            r.run.terminate();
        }
    }

    async fn reconcile_runs(&mut self) {
        let promoted = self.status.fully_promoted();
        if self.status.abort || self.status.promote_full || promoted {
            self.terminate_runs();
        }
        let hashes = Hashes {
            stable: self.stable(),
            latest: self.current(),
        };
        let revision = self.revision_of(&hashes.latest.0);
        let idx = self.status.current_step_index.unwrap_or(0);

        // Background run: from startingStep on, not on the initial deploy or when promoted.
        if let Some(bg) = self.policy.background.clone()
            && self.background_run.is_none()
            && !promoted
            && !self.status.abort
            && !self.status.promote_full
            && idx >= bg.starting_step
            && !self
                .status
                .pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
        {
            let name = self.run_name(format!("{}-{}-{revision}", self.policy.name, hashes.latest));
            match self.runs.create(bg.analysis, &name, &hashes) {
                Ok(run) => {
                    self.event("AnalysisRunCreated", format!("Created AnalysisRun {name}"));
                    self.background_run = Some(ActiveRun {
                        name,
                        run,
                        step: None,
                        reported: None,
                    });
                }
                Err(e) => self.add_abort(format!("Background analysis phase error: {e}")),
            }
        }

        // Step run: when the current step is an analysis.
        if let Some(Step::Analysis(which)) = self.step().cloned()
            && !self.status.abort
            && !self.status.promote_full
            && self.step_run.as_ref().is_none_or(|r| r.step != Some(idx))
        {
            if let Some(old) = self.step_run.as_mut() {
                old.run.terminate();
            }
            let name = self.run_name(format!(
                "{}-{}-{revision}-{idx}",
                self.policy.name, hashes.latest
            ));
            match self.runs.create(which, &name, &hashes) {
                Ok(run) => {
                    self.event("AnalysisRunCreated", format!("Created AnalysisRun {name}"));
                    self.step_run = Some(ActiveRun {
                        name,
                        run,
                        step: Some(idx),
                        reported: None,
                    });
                }
                Err(e) => self.add_abort(format!("Step-based analysis phase error: {e}")),
            }
        }
        // A step run whose step was left (promote skipped it) is terminated.
        if let Some(r) = self.step_run.as_mut()
            && r.step != Some(idx)
        {
            r.run.terminate();
        }

        for slot in [&mut self.step_run, &mut self.background_run] {
            if let Some(r) = slot.as_mut()
                && !r.run.phase().is_complete()
            {
                r.run.advance().await;
            }
        }

        // Judge: Failed/Error abort at once; Inconclusive pauses.
        let mut abort = None;
        let mut inconclusive = false;
        for (slot, kind, is_step) in [
            (&mut self.step_run, "Step-based", true),
            (&mut self.background_run, "Background", false),
        ] {
            let Some(r) = slot.as_mut() else { continue };
            let phase = r.run.phase();
            let status = RunStatus {
                name: r.name.clone(),
                status: phase.to_string(),
                message: r.run.message(),
            };
            if is_step {
                self.status.canary.current_step_analysis_run_status = Some(status);
            } else {
                self.status.canary.current_background_analysis_run_status = Some(status);
            }
            if r.reported != Some(phase) {
                r.reported = Some(phase);
                self.timeline.emit(
                    Source::Analysis,
                    format!("AnalysisRun{phase}"),
                    format!("AnalysisRun {} {phase}: {}", r.name, r.run.message()),
                    serde_json::json!({"run": r.name, "phase": phase, "message": r.run.message()}),
                );
            }
            let current_step_run = !is_step || r.step == Some(idx);
            if self.status.abort || self.status.fully_promoted() || !current_step_run {
                continue;
            }
            match phase {
                RunPhase::Failed | RunPhase::Error => {
                    let msg = r.run.message();
                    abort.get_or_insert(if msg.is_empty() {
                        format!("{kind} analysis phase error/failed")
                    } else {
                        format!("{kind} analysis phase error/failed: {msg}")
                    });
                }
                RunPhase::Inconclusive => inconclusive = true,
                _ => {}
            }
        }
        if let Some(msg) = abort {
            self.add_abort(msg);
        } else if inconclusive
            && !self
                .status
                .pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
            && !(self.status.controller_pause && self.status.pause_conditions.is_empty())
        {
            self.status.pause_conditions.push(PauseCondition {
                reason: PauseReason::InconclusiveAnalysisRun,
                start_time: self.now_s(),
            });
            self.status.controller_pause = true;
            self.event(
                "RolloutPaused",
                "Rollout is paused (InconclusiveAnalysisRun)".into(),
            );
        }
        // A background run that ended inconclusive is replaced once the user resumes.
        if self.status.pause_conditions.is_empty()
            && self
                .background_run
                .as_ref()
                .is_some_and(|r| r.run.phase() == RunPhase::Inconclusive)
        {
            self.background_run = None;
        }
    }

    async fn reconcile_replica_sets(&mut self, now: Instant) -> Result<(), InfraError> {
        let current = self.current();
        let stable = self.stable();
        let replicas = self.policy.replicas;
        if self.status.fully_promoted() {
            self.platform.scale(&current, replicas).await?;
        } else {
            self.platform.scale(&stable, replicas).await?;
            let desired = if self.status.abort {
                let stable_counts = self.platform.replica_counts(&stable);
                if self.abort_scale_down_at.is_none()
                    && stable_counts.available >= replicas
                    && let Some(delay) = self.policy.abort_scale_down_delay
                {
                    self.abort_scale_down_at = Some(now + delay);
                }
                match self.abort_scale_down_at {
                    Some(at) if now >= at => 0,
                    _ => self.platform.replica_counts(&current).desired,
                }
            } else {
                self.canary_desired()
            };
            self.platform.scale(&current, desired).await?;
        }
        // Old stables after a promotion, once their scale-down deadline passed.
        let mut keep = Vec::new();
        for (hash, at) in std::mem::take(&mut self.old_stables) {
            if now >= at {
                self.platform.scale(&hash, 0).await?;
                self.event(
                    "ScalingReplicaSet",
                    format!(
                        "Scaled down ReplicaSet {} from {replicas} to 0",
                        self.rs_name(&hash)
                    ),
                );
            } else {
                keep.push((hash, at));
            }
        }
        self.old_stables = keep;
        Ok(())
    }

    async fn sync_status(
        &mut self,
        now: Instant,
        (canary, stable): (ReplicaCounts, ReplicaCounts),
    ) -> Result<(), InfraError> {
        let steps = self.policy.steps.len() as u32;

        if self.status.abort {
            self.status.current_step_index = Some(if self.status.fully_promoted() {
                steps
            } else {
                0
            });
            return Ok(());
        }
        if self.status.fully_promoted() {
            return Ok(());
        }
        if self.status.promote_full {
            if canary.available >= self.policy.replicas {
                self.promote(now, "Full promotion requested");
            }
            return Ok(());
        }
        let idx = self.status.current_step_index.unwrap_or(0);
        if idx < steps && self.step_completed(now, canary, stable) {
            let step = self.policy.steps[idx as usize].clone();
            self.status
                .pause_conditions
                .retain(|c| c.reason != PauseReason::CanaryPauseStep);
            self.status.controller_pause = false;
            self.pause_started = None;
            self.status.current_step_index = Some(idx + 1);
            self.status.canary.current_step_analysis_run_status = None;
            self.event(
                "RolloutStepCompleted",
                format!("Rollout step {}/{steps} completed ({step})", idx + 1),
            );
            return Ok(());
        }
        if idx >= steps && canary.available >= self.policy.replicas {
            self.promote(now, &format!("Completed all {steps} canary steps"));
        }
        Ok(())
    }

    fn step_completed(&self, now: Instant, canary: ReplicaCounts, stable: ReplicaCounts) -> bool {
        if let Some(Step::Pause(duration)) = self.step() {
            // `completedPauseStep`: the user removed the condition, or the duration elapsed.
            let user_resumed =
                self.status.controller_pause && self.status.pause_conditions.is_empty();
            if user_resumed && self.pause_started.is_some() {
                return true;
            }
            let only_step_pause = self
                .status
                .pause_conditions
                .iter()
                .all(|c| c.reason == PauseReason::CanaryPauseStep);
            return only_step_pause
                && matches!((duration, self.pause_started),
                    (Some(d), Some(start)) if now >= start + *d);
        }
        if !self.status.pause_conditions.is_empty() {
            return false;
        }
        match self.step() {
            Some(Step::SetWeight(_)) | Some(Step::SetCanaryScale(_)) => {
                canary.available >= self.canary_desired()
                    && canary.current <= self.canary_desired().max(canary.current)
                    && stable.available >= self.policy.replicas
            }
            Some(Step::Analysis(_)) => self.step_run.as_ref().is_some_and(|r| {
                r.step == self.status.current_step_index && r.run.phase() == RunPhase::Successful
            }),
            Some(Step::Pause(_)) | None => false,
        }
    }

    fn promote(&mut self, now: Instant, reason: &str) {
        let previous = self.stable();
        let current = self.current();
        let revision = self.revision_of(&current.0);
        self.status.stable_rs = current.0.clone();
        self.status.current_step_index = Some(self.policy.steps.len() as u32);
        self.status.pause_conditions.clear();
        self.status.controller_pause = false;
        self.status.promote_full = false;
        self.terminate_runs();
        if previous != current {
            self.old_stables
                .push((previous, now + self.policy.scale_down_delay));
        }
        self.status.set_condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!(
                "ReplicaSet \"{}\" has successfully progressed.",
                self.rs_name(&current)
            ),
        );
        self.event(
            "RolloutCompleted",
            format!("Rollout completed update to revision {revision} ({current}): {reason}"),
        );
    }

    fn check_progress_deadline(&mut self, now: Instant) {
        let current = self.current();
        let counts = self.platform.replica_counts(&current);
        let stable_counts = self.platform.replica_counts(&self.stable());
        let snapshot = ProgressSnapshot {
            updated: counts.current,
            ready: counts.ready + stable_counts.ready,
            available: counts.available + stable_counts.available,
            stable: self.status.stable_rs.clone(),
            step: self.status.current_step_index,
        };
        let (prev, _) = &self.progress;
        let progressed = snapshot.updated != prev.updated
            || snapshot.ready > prev.ready
            || snapshot.available > prev.available
            || snapshot.stable != prev.stable
            || snapshot.step != prev.step;
        if progressed {
            self.progress = (snapshot, now);
            if !self.status.abort && !self.status.fully_promoted() {
                let msg = format!("ReplicaSet \"{}\" is progressing.", self.rs_name(&current));
                self.status
                    .set_condition("Progressing", "True", "ReplicaSetUpdated", &msg);
            }
        } else {
            self.progress.0 = snapshot;
        }
        if !self.progress_deadline_armed() {
            return;
        }
        if now >= self.progress.1 + self.policy.progress_deadline {
            let msg = format!(
                "ReplicaSet \"{}\" has timed out progressing.",
                self.rs_name(&current)
            );
            self.status
                .set_condition("Progressing", "False", "ProgressDeadlineExceeded", &msg);
            self.event("RolloutTimedOut", msg.clone());
            if self.policy.progress_deadline_abort {
                self.add_abort(msg);
            }
        }
    }

    /// Whether the progress deadline can still fire: not while paused, at a pause or analysis
    /// step (those wait indefinitely by design), after a decision, or once it has fired.
    fn progress_deadline_armed(&self) -> bool {
        let indefinite = matches!(self.step(), Some(Step::Pause(_)) | Some(Step::Analysis(_)));
        let timed_out = self
            .status
            .condition("Progressing")
            .is_some_and(|c| c.reason == "ProgressDeadlineExceeded");
        !(self.status.fully_promoted()
            || self.status.abort
            || !self.status.pause_conditions.is_empty()
            || indefinite
            || timed_out)
    }

    /// `CalculateRolloutPhase` (reference §3.2); the first match wins.
    fn update_phase(&mut self) {
        let current = self.current();
        let counts = self.platform.replica_counts(&current);
        let stable_counts = self.platform.replica_counts(&self.stable());
        let promoted = self.status.fully_promoted();
        self.status.replicas = counts.current + if promoted { 0 } else { stable_counts.current };
        self.status.updated_replicas = counts.current;
        self.status.ready_replicas = counts.ready + if promoted { 0 } else { stable_counts.ready };
        self.status.available_replicas =
            counts.available + if promoted { 0 } else { stable_counts.available };
        let progressing = self.status.condition("Progressing").cloned();
        let (phase, message) = match progressing {
            Some(c) if c.reason == "RolloutAborted" => {
                (Phase::Degraded, format!("RolloutAborted: {}", c.message))
            }
            Some(c) if c.reason == "ProgressDeadlineExceeded" => (
                Phase::Degraded,
                format!("ProgressDeadlineExceeded: {}", c.message),
            ),
            _ => {
                if let Some(p) = self.status.pause_conditions.first() {
                    (Phase::Paused, p.reason.to_string())
                } else if self.status.updated_replicas < self.policy.replicas {
                    (
                        Phase::Progressing,
                        "more replicas need to be updated".into(),
                    )
                } else if self.status.available_replicas < self.status.updated_replicas {
                    (
                        Phase::Progressing,
                        "updated replicas are still becoming available".into(),
                    )
                } else if !promoted {
                    (
                        Phase::Progressing,
                        "waiting for all steps to complete".into(),
                    )
                } else {
                    (Phase::Healthy, String::new())
                }
            }
        };
        self.status.phase = phase;
        self.status.message = message.clone();
        if self.last_phase.as_ref() != Some(&(phase, message.clone())) {
            self.last_phase = Some((phase, message.clone()));
            self.timeline.emit(
                Source::Controller,
                "phase",
                if message.is_empty() {
                    phase.to_string()
                } else {
                    format!("{phase}: {message}")
                },
                serde_json::json!({
                    "phase": phase,
                    "message": message,
                    "currentStepIndex": self.status.current_step_index,
                    "stableRS": self.status.stable_rs,
                    "currentPodHash": self.status.current_pod_hash,
                    "abort": self.status.abort,
                }),
            );
        }
    }

    /// The latest moment the next pass must run: a pause expiring, a measurement due, a
    /// scale-down deadline, the progress deadline. Pod changes and operations wake the driver
    /// earlier.
    pub fn next_wake(&self) -> Option<Instant> {
        let mut times = Vec::new();
        if let (Some(Step::Pause(Some(d))), Some(start)) = (self.step(), self.pause_started) {
            times.push(start + *d);
        }
        for r in [self.step_run.as_ref(), self.background_run.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(t) = r.run.next_due() {
                times.push(t);
            }
        }
        if let Some(t) = self.abort_scale_down_at {
            times.push(t);
        }
        times.extend(self.old_stables.iter().map(|(_, t)| *t));
        if self.progress_deadline_armed() {
            times.push(self.progress.1 + self.policy.progress_deadline);
        }
        // A deadline already past that no pass acts on must not make a driver spin.
        let now = Instant::now();
        times.into_iter().filter(|t| *t > now).min()
    }

    /// The decision the scenario waits for, once reached: promoted (Healthy with
    /// `stableRS == currentPodHash`), rolled back (Degraded), or paused (indefinitely or
    /// inconclusive).
    pub fn decision(&self) -> Option<Decision> {
        match self.status.phase {
            Phase::Healthy if self.status.fully_promoted() => Some(Decision::Promoted),
            Phase::Degraded => Some(Decision::RolledBack),
            Phase::Paused => {
                let indefinite = self.status.pause_conditions.iter().any(|c| {
                    c.reason == PauseReason::InconclusiveAnalysisRun
                        || matches!(self.step(), Some(Step::Pause(None)))
                });
                indefinite.then_some(Decision::Paused)
            }
            _ => None,
        }
    }

    /// How long to wait at most before the next pass, so a driver never sleeps past work.
    pub fn wait_hint(&self, cap: Duration) -> Duration {
        if self.requeue {
            return Duration::ZERO;
        }
        let now = Instant::now();
        self.next_wake()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(cap)
            .min(cap)
    }
}

/// The last `setWeight` among `steps`, 0 when there is none.
fn last_set_weight(steps: &[Step]) -> u32 {
    steps
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::SetWeight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(0)
}

/// Where a rollout ended up, in the words of a scenario's `expect.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Promoted,
    RolledBack,
    Paused,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Promoted => "promoted",
            Decision::RolledBack => "rolled-back",
            Decision::Paused => "paused",
        })
    }
}

#[cfg(test)]
mod tests;
