//! The Argo Rollouts v1.9.1 canary engine, emulated on a [`Platform`].
//!
//! One [`ArgoController::reconcile`] is one pass of the real controller's `reconcile`:
//! `checkPausedConditions`, then `rolloutCanary` in its order: services → traffic weight
//! (`traffic`) → analysis runs (`analysis_runs`) → replica sets (`replicas`), unless a run just
//! paused the rollout → the pause step, unless something scaled → `syncRolloutStatusCanary`
//! (`sync`: promotion, abort, step completion, conditions, phase). Every rule reads the status
//! the pass began with and writes a new one, and changes to the pause conditions and the abort
//! flag are collected (`pause`) and applied last, as upstream's `pauseContext` does; a person's
//! operations are the kubectl plugin's status patches (`operations`).
//!
//! The real controller is driven by informer events and requeues; here
//! [`ArgoController::next_wake`] says when the next pass is due (a pause expiring, a
//! measurement due, a scale-down or progress deadline), a pass that changed the status asks for
//! the next at once, and the driver also runs one at least every `driver::TICK`.
//!
//! Analysis runs come from a [`RunFactory`], so the rollout rules can be tested with scripted
//! runs under a paused clock, apart from the measurement rules of `controller::analysis`.

mod analysis_runs;
pub mod from_spec;
mod operations;
mod pause;
pub mod policy;
mod replicas;
pub mod runs;
pub mod status;
mod sync;
mod traffic;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use self::pause::PauseContext;
pub use self::policy::{Background, CanaryScale, RolloutPolicy, Step};
use self::replicas::Observed;
pub use self::status::{PauseCondition, PauseReason, Phase, RolloutStatus};
use crate::cluster::{CanaryRoute, InfraError, Platform, PodTemplate, RevisionHash, Services};
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
    /// Starts the measurements that are due and records those that have finished, without
    /// waiting for a query: Argo measures in its analysis controller, apart from the rollout
    /// pass, which only reads the run's status.
    async fn advance(&mut self);
    fn phase(&self) -> RunPhase;
    /// The run's `status.message`, e.g. `Metric "x" assessed Failed due to failed (1) > failureLimit (0)`.
    fn message(&self) -> String;
    /// `spec.terminate`: the run ends Successful unless a metric already failed.
    fn terminate(&mut self);
    /// When the next measurement is due, if any; none while measurements are in flight (the
    /// driver's regular passes see them finish).
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
    /// The phase last put on the timeline.
    reported: Option<RunPhase>,
}

/// How many passes in a row may ask for the next at once; a status that keeps changing
/// (it should not) then waits for the driver's regular tick instead of spinning.
const MAX_REQUEUES: u32 = 20;

/// The emulated controller of one Rollout.
pub struct ArgoController<P, F: RunFactory> {
    policy: RolloutPolicy,
    platform: P,
    runs: F,
    timeline: Timeline,
    status: RolloutStatus,
    revisions: BTreeMap<RevisionHash, u32>,
    /// The current step-based run (`currentArs.CanaryStep`).
    step_run: Option<ActiveRun<F::Run>>,
    /// The current background run (`currentArs.CanaryBackground`).
    background_run: Option<ActiveRun<F::Run>>,
    /// Collision counters for run names, as `CreateWithCollisionCounter` appends `.1`, `.2`.
    run_names: BTreeMap<String, u32>,
    /// The `scale-down-deadline` annotations: old stables after a promotion, the canary after
    /// an abort.
    scale_down_at: BTreeMap<RevisionHash, Instant>,
    /// The Progressing condition's `lastUpdateTime`, which the progress deadline counts from.
    progress_updated: Instant,
    applied_route: Option<CanaryRoute>,
    applied_services: Option<Services>,
    generation: u64,
    last_phase: Option<(Phase, String)>,
    /// Passes in a row that changed the status: the next one runs at once, as the real
    /// controller's own status update requeues the rollout.
    requeues: u32,
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
            scale_down_at: BTreeMap::new(),
            progress_updated: Instant::now(),
            applied_route: None,
            applied_services: None,
            generation: 0,
            last_phase: None,
            requeues: 0,
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
        self.rs_name_of(&hash.0)
    }

    fn rs_name_of(&self, hash: &str) -> String {
        format!("{}-{}", self.policy.name, hash)
    }

    fn revision_of(&self, hash: &str) -> u32 {
        self.revisions
            .get(&RevisionHash(hash.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn current(&self) -> RevisionHash {
        RevisionHash(self.status.current_pod_hash.clone())
    }

    fn stable(&self) -> RevisionHash {
        RevisionHash(self.status.stable_rs.clone())
    }

    /// The current step, `None` past the last one.
    fn step(&self) -> Option<&Step> {
        self.policy
            .steps
            .get(self.status.current_step_index.unwrap_or(0) as usize)
    }

    fn now_s(&self) -> f64 {
        let now = Instant::now();
        match self.timeline.release() {
            Some(r) if now >= r => (now - r).as_secs_f64(),
            Some(r) => -(r - now).as_secs_f64(),
            None => 0.0,
        }
    }

    /// Applies a new pod template: the first one is the initial deploy (promoted at once, no
    /// steps, no analysis); later ones start an update from step 0. The ReplicaSet gets the
    /// Rollout's `minReadySeconds` (`createDesiredReplicaSet`), on the policy's clock. Returns
    /// the revision number.
    pub async fn apply_template(
        &mut self,
        hash: RevisionHash,
        mut template: PodTemplate,
    ) -> Result<u32, InfraError> {
        self.generation += 1;
        self.status.observed_generation = self.generation.to_string();
        if self.status.current_pod_hash == hash.0 {
            return Ok(self.revision_of(&hash.0));
        }
        let now = Instant::now();
        let revision = match self.revisions.get(&hash) {
            Some(r) => *r,
            None => {
                let r = self.revisions.values().max().copied().unwrap_or(0) + 1;
                template.min_ready = self.policy.min_ready;
                self.platform
                    .create_revision(hash.clone(), template)
                    .await?;
                self.revisions.insert(hash.clone(), r);
                let name = self.rs_name(&hash);
                self.event(
                    "NewReplicaSetCreated",
                    format!("Created ReplicaSet {name} (revision {r})"),
                );
                self.status.set_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{name}\""),
                );
                self.progress_updated = now;
                r
            }
        };
        let steps = self.policy.steps.len() as u32;
        let end = (steps > 0).then_some(steps);
        if self.status.stable_rs.is_empty() {
            // Initial deploy: promoted at once, with no steps and no analysis.
            self.status.stable_rs = hash.0.clone();
            self.status.current_pod_hash = hash.0.clone();
            self.status.current_step_index = end;
            self.event(
                "RolloutCompleted",
                format!("Rollout completed update to revision {revision} ({hash}): Initial deploy"),
            );
        } else if self.status.stable_rs == hash.0 {
            // A revert to the stable template skips the steps.
            self.reset_for_update(&hash);
            self.status.current_step_index = end;
            self.event("SkipSteps", "Rollback to stable ReplicaSets".into());
        } else {
            self.reset_for_update(&hash);
            self.event(
                "RolloutUpdated",
                format!("Rollout updated to revision {revision}"),
            );
        }
        Ok(revision)
    }

    /// `resetRolloutStatus`: a new update starts from step 0; the old update's runs are
    /// cancelled.
    fn reset_for_update(&mut self, hash: &RevisionHash) {
        self.terminate_runs();
        self.status.current_pod_hash = hash.0.clone();
        self.status.current_step_index = (!self.policy.steps.is_empty()).then_some(0);
        self.status.pause_conditions.clear();
        self.status.controller_pause = false;
        self.status.abort = false;
        self.status.aborted_at = None;
        self.status.promote_full = false;
        self.status.canary.current_step_analysis_run_status = None;
        self.status.canary.current_background_analysis_run_status = None;
    }

    /// Every ReplicaSet's counts, read once at the start of a pass.
    fn observe(&self) -> Observed {
        Observed(
            self.revisions
                .keys()
                .map(|h| (h.clone(), self.platform.replica_counts(h)))
                .collect(),
        )
    }

    /// One reconcile pass (see the module's documentation for its order).
    pub async fn reconcile(&mut self) -> Result<(), InfraError> {
        if self.status.stable_rs.is_empty() {
            return Ok(());
        }
        let before = (self.status.clone(), self.applied_route.clone());
        let now = Instant::now();
        self.check_paused_conditions(now);
        let old = self.status.clone();
        let observed = self.observe();
        let mut pc = PauseContext::new(&old);
        let mut new = RolloutStatus::default();

        self.reconcile_services(pc.is_aborted()).await?;
        self.reconcile_traffic_routing(&old, &pc, &observed, &mut new)
            .await?;
        self.reconcile_analysis_runs(&old, &mut pc, &mut new).await;
        // A run that pauses the rollout this pass skips the scaling and the pause step.
        if !pc.has_add_pause() {
            let scaled = self
                .reconcile_canary_replica_sets(&old, &pc, &observed, now)
                .await?;
            if !scaled {
                self.reconcile_canary_pause(&old, &mut pc);
            }
        }
        self.sync_rollout_status_canary(&old, pc, &observed, new, now);

        let changed = before != (self.status.clone(), self.applied_route.clone());
        self.requeues = if changed { self.requeues + 1 } else { 0 };
        Ok(())
    }

    /// `reconcileCanaryPause`: at a pause step the controller adds its pause condition, unless
    /// it already holds the rollout paused (then the step completes at once) or a full
    /// promotion is under way.
    fn reconcile_canary_pause(&self, old: &RolloutStatus, pc: &mut PauseContext) {
        if old.promote_full {
            return;
        }
        let idx = old.current_step_index.unwrap_or(0) as usize;
        if let Some(Step::Pause(_)) = self.policy.steps.get(idx)
            && !old.has_pause(PauseReason::CanaryPauseStep)
            && !old.controller_pause
        {
            pc.add_pause(PauseReason::CanaryPauseStep);
        }
    }

    /// Puts a change of phase or message on the timeline.
    fn report_phase(&mut self) {
        let (phase, message) = (self.status.phase, self.status.message.clone());
        if self.last_phase.as_ref() == Some(&(phase, message.clone())) {
            return;
        }
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

    /// The latest moment the next pass must run: a pause expiring, a measurement due, a
    /// scale-down deadline, the progress deadline. Pod changes are seen by the driver's
    /// regular passes.
    pub fn next_wake(&self) -> Option<Instant> {
        let mut times = Vec::new();
        if let (Some(Step::Pause(Some(d))), Some(c)) =
            (self.step(), self.status.pause(PauseReason::CanaryPauseStep))
        {
            times.push(c.since + *d);
        }
        for r in [self.step_run.as_ref(), self.background_run.as_ref()]
            .into_iter()
            .flatten()
        {
            times.extend(r.run.next_due());
        }
        times.extend(self.scale_down_at.values().copied());
        times.extend(self.progress_deadline_due());
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
                let indefinite = self.status.has_pause(PauseReason::InconclusiveAnalysisRun)
                    || matches!(self.step(), Some(Step::Pause(None)));
                indefinite.then_some(Decision::Paused)
            }
            _ => None,
        }
    }

    /// How long to wait at most before the next pass, so a driver never sleeps past work.
    pub fn wait_hint(&self, cap: Duration) -> Duration {
        if self.requeues > 0 && self.requeues <= MAX_REQUEUES {
            return Duration::ZERO;
        }
        let now = Instant::now();
        self.next_wake()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(cap)
            .min(cap)
    }
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
