//! The rollout's side of its AnalysisRuns (`rollout/analysis.go`): which runs are current,
//! when a new one is created, and when a run's phase is allowed to pause or abort.
//!
//! The runs measure on their own ([`Run::advance`] never waits for a query, as Argo's analysis
//! controller measures apart from the rollout controller); a pass reads their phase as the
//! rollout controller reads the AnalysisRun status from its informer.

use super::pause::PauseContext;
use super::status::{PauseReason, RolloutStatus, RunStatus};
use super::{ActiveRun, ArgoController, Hashes, Run, RunFactory, RunPhase, Step};
use crate::cluster::Platform;
use crate::timeline::Source;

/// Which of the two current runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Step,
    Background,
}

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    /// `reconcileAnalysisRuns`: on an abort, a full promotion or a rollback to a ReplicaSet
    /// still within its scale-down delay, every run is cancelled (and stays current); otherwise
    /// the step run, then the background run. Sets the runs' statuses in `new`.
    pub(super) async fn reconcile_analysis_runs(
        &mut self,
        old: &RolloutStatus,
        pc: &mut PauseContext,
        new: &mut RolloutStatus,
    ) {
        for r in [self.step_run.as_mut(), self.background_run.as_mut()]
            .into_iter()
            .flatten()
        {
            if !r.run.phase().is_complete() {
                r.run.advance().await;
            }
        }
        // `HasScaleDownDeadline(newRS)`: also true for the canary an abort left up for its
        // delay, until the pass after a retry removes the deadline.
        let rollback_to_scale_down_delay = self.scale_down_at.contains_key(&self.current());
        if pc.is_aborted() || old.promote_full || rollback_to_scale_down_delay {
            for r in [self.step_run.as_mut(), self.background_run.as_mut()]
                .into_iter()
                .flatten()
            {
                r.run.terminate();
            }
        } else {
            self.reconcile_step_based_analysis_run(old, pc);
            self.reconcile_background_analysis_run(old, pc);
        }
        new.canary.current_step_analysis_run_status = self.step_run.as_ref().map(run_status);
        new.canary.current_background_analysis_run_status =
            self.background_run.as_ref().map(run_status);
        self.report_run_phases();
    }

    /// `reconcileStepBasedAnalysisRun`. Nothing at all (no new run, no verdict) while any pause
    /// condition exists or the rollout is aborted; a run left from an earlier step is cancelled;
    /// a new run when [`needs_new_analysis_run`] says so; otherwise the run's phase pauses
    /// (Inconclusive) or aborts (Failed, Error).
    fn reconcile_step_based_analysis_run(&mut self, old: &RolloutStatus, pc: &mut PauseContext) {
        if !old.pause_conditions.is_empty() || old.abort {
            return;
        }
        let idx = old.current_step_index.unwrap_or(0);
        let at_analysis = match self.policy.steps.get(idx as usize) {
            Some(Step::Analysis(which)) => Some(*which),
            _ => None,
        };
        let from_previous_step = self.step_run.as_ref().is_some_and(|r| r.step != Some(idx));
        let Some(which) = at_analysis.filter(|_| !from_previous_step) else {
            self.retire(Kind::Step);
            return;
        };
        if needs_new_analysis_run(self.step_run.as_ref().map(|r| r.run.phase()), old) {
            let base = format!(
                "{}-{}-{}-{idx}",
                self.policy.name,
                old.current_pod_hash,
                self.revision_of(&old.current_pod_hash)
            );
            match self.create_run(which, base, Some(idx)) {
                Ok(run) => self.replace(Kind::Step, run),
                Err(e) => pc.add_abort(format!("Step-based analysis phase error: {e}")),
            }
            return;
        }
        if let Some(r) = &self.step_run {
            judge(r, "Step-based", pc);
        }
    }

    /// `reconcileBackgroundAnalysisRun`. No run once fully promoted or before `startingStep`;
    /// nothing at all while an InconclusiveAnalysisRun condition exists (whichever run set
    /// it); a new run when [`needs_new_analysis_run`] says so; otherwise the run's phase pauses
    /// or aborts. Pause steps and a person's pause do not stop it.
    fn reconcile_background_analysis_run(&mut self, old: &RolloutStatus, pc: &mut PauseContext) {
        let Some(bg) = self.policy.background.clone() else {
            self.retire(Kind::Background);
            return;
        };
        let idx = old.current_step_index.unwrap_or(0);
        if old.fully_promoted() || old.stable_rs.is_empty() || idx < bg.starting_step {
            self.retire(Kind::Background);
            return;
        }
        if old.has_pause(PauseReason::InconclusiveAnalysisRun) {
            return;
        }
        if needs_new_analysis_run(self.background_run.as_ref().map(|r| r.run.phase()), old) {
            let base = format!(
                "{}-{}-{}",
                self.policy.name,
                old.current_pod_hash,
                self.revision_of(&old.current_pod_hash)
            );
            match self.create_run(bg.analysis, base, None) {
                Ok(run) => self.replace(Kind::Background, run),
                Err(e) => pc.add_abort(format!("Background analysis phase error: {e}")),
            }
            return;
        }
        if let Some(r) = &self.background_run {
            judge(r, "Background", pc);
        }
    }

    /// Creates a run named `base` (with `.1`, `.2` on collision, as
    /// `CreateWithCollisionCounter`).
    fn create_run(
        &mut self,
        analysis: usize,
        base: String,
        step: Option<u32>,
    ) -> Result<ActiveRun<F::Run>, String> {
        let n = self.run_names.entry(base.clone()).or_insert(0);
        let name = if *n == 0 { base } else { format!("{base}.{n}") };
        *n += 1;
        let hashes = Hashes {
            stable: self.stable(),
            latest: self.current(),
        };
        let run = self.runs.create(analysis, &name, &hashes)?;
        self.event("AnalysisRunCreated", format!("Created AnalysisRun {name}"));
        Ok(ActiveRun {
            name,
            run,
            step,
            reported: None,
        })
    }

    fn slot(&mut self, kind: Kind) -> &mut Option<ActiveRun<F::Run>> {
        match kind {
            Kind::Step => &mut self.step_run,
            Kind::Background => &mut self.background_run,
        }
    }

    /// A new current run; the one it replaces is cancelled (upstream cancels it as one of the
    /// rollout's other runs).
    fn replace(&mut self, kind: Kind, run: ActiveRun<F::Run>) {
        self.retire(kind);
        *self.slot(kind) = Some(run);
    }

    /// The run stops being current: cancelled (`spec.terminate`), its last phase reported.
    pub(super) fn retire_step_run(&mut self) {
        self.retire(Kind::Step);
    }

    fn retire(&mut self, kind: Kind) {
        if let Some(mut r) = self.slot(kind).take() {
            r.run.terminate();
            self.report(&mut r);
        }
    }

    /// Cancels both runs (promotion or a new update).
    pub(super) fn terminate_runs(&mut self) {
        self.retire(Kind::Step);
        self.retire(Kind::Background);
    }

    /// `emitAnalysisRunStatusChanges`, on the timeline.
    fn report_run_phases(&mut self) {
        for kind in [Kind::Step, Kind::Background] {
            if let Some(mut r) = self.slot(kind).take() {
                self.report(&mut r);
                *self.slot(kind) = Some(r);
            }
        }
    }

    fn report(&self, r: &mut ActiveRun<F::Run>) {
        let phase = r.run.phase();
        if r.reported == Some(phase) {
            return;
        }
        r.reported = Some(phase);
        let message = r.run.message();
        self.timeline.emit(
            Source::Analysis,
            format!("AnalysisRun{phase}"),
            format!("AnalysisRun {} {phase}: {message}", r.name),
            serde_json::json!({"run": r.name, "phase": phase, "message": message}),
        );
    }
}

/// `needsNewAnalysisRun`: no run yet; or, while the controller holds the rollout paused without
/// a pause step, the run it paused for was Inconclusive (a person resumed: measure again);
/// otherwise only when an abort is still recorded (`abortedAt`, in the pass after a retry).
fn needs_new_analysis_run(current: Option<RunPhase>, old: &RolloutStatus) -> bool {
    let Some(phase) = current else {
        return true;
    };
    if old.controller_pause && !old.has_pause(PauseReason::CanaryPauseStep) {
        return phase == RunPhase::Inconclusive;
    }
    old.aborted_at.is_some()
}

/// The verdict of a current run: Inconclusive pauses, Failed or Error aborts with upstream's
/// message.
fn judge<R: Run>(r: &ActiveRun<R>, kind: &str, pc: &mut PauseContext) {
    match r.run.phase() {
        RunPhase::Inconclusive => pc.add_pause(PauseReason::InconclusiveAnalysisRun),
        RunPhase::Failed | RunPhase::Error => {
            let msg = r.run.message();
            pc.add_abort(if msg.is_empty() {
                format!("{kind} analysis phase error/failed")
            } else {
                format!("{kind} analysis phase error/failed: {msg}")
            });
        }
        _ => {}
    }
}

fn run_status<R: Run>(r: &ActiveRun<R>) -> RunStatus {
    RunStatus {
        name: r.name.clone(),
        status: r.run.phase().to_string(),
        message: r.run.message(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_new_analysis_run_after_a_resume_from_inconclusive_or_a_retry() {
        let mut s = RolloutStatus::default();
        assert!(needs_new_analysis_run(None, &s));
        assert!(!needs_new_analysis_run(Some(RunPhase::Inconclusive), &s));
        s.controller_pause = true;
        assert!(needs_new_analysis_run(Some(RunPhase::Inconclusive), &s));
        assert!(!needs_new_analysis_run(Some(RunPhase::Running), &s));
        s.controller_pause = false;
        s.aborted_at = Some(1.0);
        assert!(needs_new_analysis_run(Some(RunPhase::Successful), &s));
    }
}
