//! `rollout/pause.go`: what a pass wants done to the pause conditions and the abort flag,
//! collected while the pass runs and applied once at its end (`CalculatePauseStatus`). Every
//! rule of the pass therefore reads the status as it was when the pass began, as upstream's
//! rules read `c.rollout.Status` while building `newStatus`.

use std::time::Duration;

use tokio::time::Instant;

use super::status::{PauseCondition, PauseReason, RolloutStatus};

/// `pauseContext`.
#[derive(Debug, Default)]
pub(super) struct PauseContext {
    add: Vec<PauseReason>,
    remove: Vec<PauseReason>,
    clear: bool,
    add_abort: bool,
    remove_abort: bool,
    abort_message: String,
    /// `status.abort` when the pass began.
    was_aborted: bool,
}

impl PauseContext {
    pub(super) fn new(status: &RolloutStatus) -> Self {
        PauseContext {
            was_aborted: status.abort,
            ..Default::default()
        }
    }

    pub(super) fn has_add_pause(&self) -> bool {
        !self.add.is_empty()
    }

    /// `IsAborted`: a removal this pass wins over the status and over an abort added.
    pub(super) fn is_aborted(&self) -> bool {
        !self.remove_abort && (self.add_abort || self.was_aborted)
    }

    /// `AddAbort`; the last message wins, as upstream overwrites it.
    pub(super) fn add_abort(&mut self, message: String) {
        self.add_abort = true;
        self.abort_message = message;
    }

    pub(super) fn abort_message(&self) -> &str {
        &self.abort_message
    }

    pub(super) fn remove_abort(&mut self) {
        self.remove_abort = true;
    }

    pub(super) fn add_pause(&mut self, reason: PauseReason) {
        self.add.push(reason);
    }

    pub(super) fn remove_pause(&mut self, reason: PauseReason) {
        self.remove.push(reason);
    }

    pub(super) fn clear_pause_conditions(&mut self) {
        self.clear = true;
    }

    /// `CalculatePauseStatus` on the pass's new status: an abort clears every pause condition
    /// (and keeps the first `abortedAt`); otherwise the conditions are the old ones minus those
    /// removed plus those added, and `controllerPause` survives only while some condition does.
    pub(super) fn apply(
        &self,
        old: &RolloutStatus,
        new: &mut RolloutStatus,
        now: Instant,
        now_s: f64,
    ) {
        new.pause_conditions.clear();
        new.controller_pause = false;
        if self.add_abort || (!self.remove_abort && old.abort) {
            new.abort = true;
            new.aborted_at = old.aborted_at.or(Some(now_s));
            return;
        }
        new.abort = false;
        new.aborted_at = None;
        if self.clear {
            return;
        }
        let mut controller_pause = old.controller_pause;
        let mut conditions: Vec<PauseCondition> = old
            .pause_conditions
            .iter()
            .filter(|c| !self.remove.contains(&c.reason))
            .cloned()
            .collect();
        for reason in &self.add {
            // A reason the old status had is not added again, even when removed this pass.
            if old.has_pause(*reason) || conditions.iter().any(|c| c.reason == *reason) {
                continue;
            }
            conditions.push(PauseCondition {
                reason: *reason,
                start_time: now_s,
                since: now,
            });
            controller_pause = true;
        }
        if conditions.is_empty() {
            return;
        }
        new.controller_pause = controller_pause;
        new.pause_conditions = conditions;
    }
}

/// `CompletedCanaryPauseStep`: a person removed the step's condition (the controller's pause
/// is still recorded), or the pause has lasted its duration. A pause step reached while the
/// controller already holds the rollout paused (an inconclusive analysis) completes at once:
/// its condition was never added.
pub(super) fn completed_canary_pause_step(
    old: &RolloutStatus,
    duration: Option<Duration>,
    now: Instant,
) -> bool {
    let condition = old.pause(PauseReason::CanaryPauseStep);
    if old.controller_pause && condition.is_none() {
        return true;
    }
    match (duration, condition) {
        (Some(d), Some(c)) => now >= c.since + d,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paused(reasons: &[PauseReason], controller_pause: bool) -> RolloutStatus {
        let now = Instant::now();
        RolloutStatus {
            pause_conditions: reasons
                .iter()
                .map(|r| PauseCondition {
                    reason: *r,
                    start_time: 0.0,
                    since: now,
                })
                .collect(),
            controller_pause,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calculate_pause_status_keeps_controller_pause_only_with_a_condition() {
        let old = paused(&[PauseReason::CanaryPauseStep], true);
        let mut pc = PauseContext::new(&old);
        pc.remove_pause(PauseReason::CanaryPauseStep);
        let mut new = RolloutStatus::default();
        pc.apply(&old, &mut new, Instant::now(), 1.0);
        assert!(new.pause_conditions.is_empty());
        assert!(!new.controller_pause);

        let old = paused(&[PauseReason::InconclusiveAnalysisRun], true);
        let mut pc = PauseContext::new(&old);
        pc.add_pause(PauseReason::CanaryPauseStep);
        pc.remove_pause(PauseReason::CanaryPauseStep);
        let mut new = RolloutStatus::default();
        pc.apply(&old, &mut new, Instant::now(), 1.0);
        assert_eq!(
            new.pause_conditions.len(),
            2,
            "added: the old status lacked it"
        );
        assert!(new.controller_pause);
    }

    #[tokio::test(start_paused = true)]
    async fn calculate_abort_status_clears_the_pause_conditions() {
        let old = paused(&[PauseReason::InconclusiveAnalysisRun], true);
        let mut pc = PauseContext::new(&old);
        pc.add_abort("boom".into());
        let mut new = RolloutStatus::default();
        pc.apply(&old, &mut new, Instant::now(), 3.0);
        assert!(new.abort && pc.is_aborted());
        assert_eq!(new.aborted_at, Some(3.0));
        assert!(new.pause_conditions.is_empty() && !new.controller_pause);
        pc.remove_abort();
        assert!(!pc.is_aborted());
    }

    #[tokio::test(start_paused = true)]
    async fn completed_canary_pause_step_after_a_resume_or_the_duration() {
        let now = Instant::now();
        let resumed = paused(&[], true);
        assert!(completed_canary_pause_step(&resumed, None, now));
        let waiting = paused(&[PauseReason::CanaryPauseStep], true);
        assert!(!completed_canary_pause_step(&waiting, None, now));
        let d = Duration::from_secs(30);
        assert!(!completed_canary_pause_step(&waiting, Some(d), now));
        assert!(completed_canary_pause_step(&waiting, Some(d), now + d));
        assert!(!completed_canary_pause_step(
            &paused(&[], false),
            Some(d),
            now + d
        ));
    }
}
