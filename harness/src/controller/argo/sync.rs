//! The end of a pass (`rollout/canary.go` `syncRolloutStatusCanary`, `rollout/sync.go`):
//! promotion, abort, step completion, the Progressing condition and its deadline, the phase,
//! and the pause state applied last. Also `checkPausedConditions`, which runs before a pass.

use tokio::time::Instant;

use super::pause::{PauseContext, completed_canary_pause_step};
use super::replicas::{Observed, at_desired_replica_counts};
use super::status::{PauseReason, Phase, RolloutStatus};
use super::{ArgoController, Run, RunFactory, RunPhase, Step};
use crate::cluster::Platform;

const PROGRESSING: &str = "Progressing";
const PAUSED: &str = "Paused";

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    /// `syncRolloutStatusCanary`: a full promotion clears pauses and the abort and jumps to the
    /// end; then the first that applies of promotion (`shouldFullPromote`), abort (back to step
    /// 0), or completion of the current step. Conditions, pause state and phase follow.
    pub(super) fn sync_rollout_status_canary(
        &mut self,
        old: &RolloutStatus,
        mut pc: PauseContext,
        observed: &Observed,
        mut new: RolloutStatus,
        now: Instant,
    ) {
        let steps = self.policy.steps.len() as u32;
        let total = observed.total();
        let canary = observed.of(&old.current_pod_hash);
        new.current_pod_hash = old.current_pod_hash.clone();
        new.stable_rs = old.stable_rs.clone();
        new.replicas = total.current;
        new.updated_replicas = canary.current;
        new.ready_replicas = total.ready;
        new.available_replicas = total.available;
        new.conditions = old.conditions.clone();
        new.observed_generation = old.observed_generation.clone();
        new.promote_full = !old.fully_promoted() && old.promote_full;

        // A pointer to the index, as upstream's: a full promotion points it at the end, and a
        // step completed in that same pass moves it one further.
        let mut index = (steps > 0).then(|| old.current_step_index.unwrap_or(0));
        if new.promote_full {
            pc.clear_pause_conditions();
            pc.remove_abort();
            if steps > 0 {
                index = Some(steps);
            }
        }
        if let Some(reason) = self.should_full_promote(old, &pc, observed) {
            self.promote_stable(&mut new, &mut pc, &reason);
        } else if pc.is_aborted() {
            if steps > 0 {
                new.current_step_index = Some(if new.fully_promoted() { steps } else { 0 });
            }
        } else {
            if self.completed_current_canary_step(old, observed, now) {
                let step = old
                    .current_step_index
                    .and_then(|i| self.policy.steps.get(i as usize))
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let next = index.map_or(1, |i| i + 1);
                index = Some(next);
                new.canary.current_step_analysis_run_status = None;
                self.retire_step_run();
                self.event(
                    "RolloutStepCompleted",
                    format!("Rollout step {next}/{steps} completed ({step})"),
                );
                pc.remove_pause(PauseReason::CanaryPauseStep);
            }
            new.current_step_index = index;
        }
        self.calculate_rollout_conditions(old, &mut pc, &mut new, now);
        self.persist_rollout_status(old, &pc, new, now);
    }

    /// `shouldFullPromote`: never while aborted, never before the canary has all its pods
    /// available; then on a full promotion, or once the steps are done (judged on the index
    /// the pass began with). The pause conditions play no part: a single-replica canary is
    /// promoted even while an inconclusive analysis holds the rollout paused.
    fn should_full_promote(
        &self,
        old: &RolloutStatus,
        pc: &PauseContext,
        observed: &Observed,
    ) -> Option<String> {
        if pc.is_aborted() {
            return None;
        }
        if observed.of(&old.current_pod_hash).available < self.policy.replicas {
            return None;
        }
        if old.promote_full {
            return Some("Full promotion requested".into());
        }
        let steps = self.policy.steps.len() as u32;
        (steps == 0 || old.current_step_index.unwrap_or(0) == steps)
            .then(|| format!("Completed all {steps} canary steps"))
    }

    /// `promoteStable`: the new ReplicaSet becomes stable; pauses, abort and the full-promotion
    /// request are cleared. Runs end with the next pass, which no longer holds them current.
    fn promote_stable(&mut self, new: &mut RolloutStatus, pc: &mut PauseContext, reason: &str) {
        pc.clear_pause_conditions();
        pc.remove_abort();
        new.promote_full = false;
        let steps = self.policy.steps.len() as u32;
        new.current_step_index = (steps > 0).then_some(steps);
        if new.stable_rs != new.current_pod_hash {
            new.stable_rs = new.current_pod_hash.clone();
            let revision = self.revision_of(&new.current_pod_hash);
            self.event(
                "RolloutCompleted",
                format!(
                    "Rollout completed update to revision {revision} ({}): {reason}",
                    new.current_pod_hash
                ),
            );
        }
    }

    /// `completedCurrentCanaryStep`, on the status the pass began with.
    fn completed_current_canary_step(
        &self,
        old: &RolloutStatus,
        observed: &Observed,
        now: Instant,
    ) -> bool {
        let Some(step) = old
            .current_step_index
            .or(Some(0))
            .and_then(|i| self.policy.steps.get(i as usize))
        else {
            return false;
        };
        match step {
            Step::Pause(d) => completed_canary_pause_step(old, *d, now),
            Step::SetWeight(_) | Step::SetCanaryScale(_) => {
                at_desired_replica_counts(&self.policy, old, observed)
            }
            Step::Analysis(_) => self
                .step_run
                .as_ref()
                .is_some_and(|r| r.run.phase() == RunPhase::Successful),
        }
    }

    /// `calculateRolloutConditions`, for the Progressing condition: aborted, healthy, progress
    /// (which restarts the deadline), or, outside pause and analysis steps and with nothing
    /// waiting to scale down, the progress deadline (which aborts with
    /// `progressDeadlineAbort`).
    fn calculate_rollout_conditions(
        &mut self,
        old: &RolloutStatus,
        pc: &mut PauseContext,
        new: &mut RolloutStatus,
        now: Instant,
    ) {
        let rs = self.rs_name_of(&new.current_pod_hash);
        if pc.is_aborted() {
            let revision = self.revision_of(&new.current_pod_hash);
            let mut message = format!("Rollout aborted update to revision {revision}");
            if !pc.abort_message().is_empty() {
                message.push_str(": ");
                message.push_str(pc.abort_message());
            }
            if self.set_progressing(new, "False", "RolloutAborted", &message, now) {
                self.event("RolloutAborted", message);
            }
            return;
        }
        if self.rollout_healthy(new) {
            let msg = format!("ReplicaSet \"{rs}\" has successfully progressed.");
            self.set_progressing(new, "True", "NewReplicaSetAvailable", &msg, now);
        } else if rollout_progressing(old, new) {
            let msg = format!("ReplicaSet \"{rs}\" is progressing.");
            new.replace_condition(PROGRESSING, "True", "ReplicaSetUpdated", &msg);
            self.progress_updated = now;
        } else if !self.indefinite_step(old)
            && !self.waiting_for_scale_down(old)
            && self.rollout_timed_out(new, now)
        {
            let msg = format!("ReplicaSet \"{rs}\" has timed out progressing.");
            self.set_progressing(new, "False", "ProgressDeadlineExceeded", &msg, now);
            // Upstream adds the abort whether or not the condition just changed: this branch
            // only runs while not aborted.
            if self.policy.progress_deadline_abort {
                pc.add_abort(msg.clone());
                self.event("RolloutAborted", msg);
            }
        }
    }

    /// `SetRolloutCondition` on Progressing; a change restarts the deadline (its
    /// `lastUpdateTime`).
    fn set_progressing(
        &mut self,
        new: &mut RolloutStatus,
        status: &str,
        reason: &str,
        message: &str,
        now: Instant,
    ) -> bool {
        let changed = new.set_condition(PROGRESSING, status, reason, message);
        if changed {
            self.progress_updated = now;
        }
        changed
    }

    /// `RolloutHealthy`: all pods updated and available, all steps done, promoted, and the old
    /// ReplicaSets scaled down.
    fn rollout_healthy(&self, new: &RolloutStatus) -> bool {
        let steps = self.policy.steps.len() as u32;
        let replicas = self.policy.replicas;
        new.updated_replicas == replicas
            && new.available_replicas == replicas
            && (steps == 0 || new.current_step_index == Some(steps))
            && new.fully_promoted()
            && new.replicas == replicas
    }

    /// `isIndefiniteStep`: a pause or analysis step, or a Paused condition; no deadline there.
    fn indefinite_step(&self, old: &RolloutStatus) -> bool {
        let at_step = old
            .current_step_index
            .or(Some(0))
            .and_then(|i| self.policy.steps.get(i as usize));
        matches!(at_step, Some(Step::Pause(_)) | Some(Step::Analysis(_)))
            || old.condition(PAUSED).is_some_and(|c| c.status == "True")
    }

    /// `isWaitingForReplicaSetScaleDown`: another ReplicaSet still holds a scale-down deadline.
    fn waiting_for_scale_down(&self, old: &RolloutStatus) -> bool {
        self.scale_down_at
            .keys()
            .any(|h| h.0 != old.current_pod_hash && h.0 != old.stable_rs)
    }

    /// `RolloutTimedOut`: never while the condition says paused or aborted; otherwise once
    /// `progressDeadlineSeconds` have passed since it last changed.
    fn rollout_timed_out(&self, new: &RolloutStatus, now: Instant) -> bool {
        match new.condition(PROGRESSING) {
            None => false,
            Some(c) if c.reason == "RolloutAborted" || c.reason == "RolloutPaused" => false,
            Some(c) if c.reason == "ProgressDeadlineExceeded" => true,
            Some(_) => now >= self.progress_updated + self.policy.progress_deadline,
        }
    }

    /// Whether the progress deadline can still fire on its own, and when
    /// (`requeueStuckRollout`).
    pub(super) fn progress_deadline_due(&self) -> Option<Instant> {
        let s = &self.status;
        let condition = s.condition(PROGRESSING)?;
        let done = s.fully_promoted() || s.abort || !s.pause_conditions.is_empty();
        let quiet = matches!(
            condition.reason.as_str(),
            "ProgressDeadlineExceeded" | "RolloutPaused" | "RolloutAborted"
        );
        (!(done || quiet || self.indefinite_step(s)))
            .then(|| self.progress_updated + self.policy.progress_deadline)
    }

    /// `persistRolloutStatus`: the pause state (`CalculatePauseStatus`), the phase, and the
    /// pause/resume events (`sendStateChangeEvents`).
    fn persist_rollout_status(
        &mut self,
        old: &RolloutStatus,
        pc: &PauseContext,
        mut new: RolloutStatus,
        now: Instant,
    ) {
        pc.apply(old, &mut new, now, self.now_s());
        let (phase, message) = self.calculate_rollout_phase(&new);
        new.phase = phase;
        new.message = message;
        let was_paused = !old.pause_conditions.is_empty();
        let paused = new.pause_conditions.first().map(|c| c.reason);
        match (was_paused, paused) {
            (false, Some(reason)) => {
                self.event("RolloutPaused", format!("Rollout is paused ({reason})"));
            }
            (true, None) if new.aborted_at.is_none() => {
                self.event("RolloutResumed", "Rollout is resumed".into());
            }
            _ => {}
        }
        self.status = new;
        self.report_phase();
    }

    /// `CalculateRolloutPhase`; the first match wins.
    fn calculate_rollout_phase(&self, s: &RolloutStatus) -> (Phase, String) {
        for c in &s.conditions {
            if c.reason == "RolloutAborted" || c.reason == "ProgressDeadlineExceeded" {
                return (Phase::Degraded, format!("{}: {}", c.reason, c.message));
            }
        }
        if let Some(p) = s.pause_conditions.first() {
            return (Phase::Paused, p.reason.to_string());
        }
        if s.updated_replicas < self.policy.replicas {
            (
                Phase::Progressing,
                "more replicas need to be updated".into(),
            )
        } else if s.available_replicas < s.updated_replicas {
            (
                Phase::Progressing,
                "updated replicas are still becoming available".into(),
            )
        } else if !s.fully_promoted() {
            (
                Phase::Progressing,
                "waiting for all steps to complete".into(),
            )
        } else {
            (Phase::Healthy, String::new())
        }
    }

    /// `checkPausedConditions`, before a pass: the Progressing condition says paused while a
    /// pause condition exists and resumed once none does, each change restarting the deadline
    /// (a resumed rollout gets its full `progressDeadlineSeconds` again); a retried rollout's
    /// aborted condition becomes RolloutRetry; the Paused condition follows the pause state.
    pub(super) fn check_paused_conditions(&mut self, now: Instant) {
        let mut s = std::mem::take(&mut self.status);
        let reason = s.condition(PROGRESSING).map(|c| c.reason.clone());
        let prog_paused = reason.as_deref() == Some("RolloutPaused");
        let abort_cond = reason.as_deref() == Some("RolloutAborted");
        let is_paused = !s.pause_conditions.is_empty();
        if is_paused != prog_paused && !abort_cond && !s.fully_promoted() {
            let (reason, message) = if is_paused {
                ("RolloutPaused", "Rollout is paused")
            } else {
                ("RolloutResumed", "Rollout is resumed")
            };
            self.set_progressing(&mut s, "Unknown", reason, message, now);
        }
        if !s.abort && abort_cond {
            self.set_progressing(
                &mut s,
                "Unknown",
                "RolloutRetry",
                "Retrying Rollout after abort",
                now,
            );
        }
        let paused_true = s.condition(PAUSED).is_some_and(|c| c.status == "True");
        if is_paused != paused_true && !abort_cond {
            let status = if is_paused { "True" } else { "False" };
            s.set_condition(PAUSED, status, "RolloutPaused", "Rollout is paused");
        }
        self.status = s;
    }
}

/// `RolloutProgressing`: pods updated, old ones scaled down, more ready or available, a new
/// stable, or a step done.
fn rollout_progressing(old: &RolloutStatus, new: &RolloutStatus) -> bool {
    let old_olds = old.replicas.saturating_sub(old.updated_replicas);
    let new_olds = new.replicas.saturating_sub(new.updated_replicas);
    let step_changed = matches!(
        (old.current_step_index, new.current_step_index),
        (Some(a), Some(b)) if a != b
    );
    new.updated_replicas != old.updated_replicas
        || new_olds < old_olds
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
        || new.stable_rs != old.stable_rs
        || step_changed
}
