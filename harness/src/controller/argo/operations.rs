//! What a person does with the kubectl plugin: each operation is exactly the plugin's status
//! patch (`pkg/kubectl-argo-rollouts/cmd/{promote,abort,retry}`); everything that follows
//! from it is the controller's next pass.

use super::{ArgoController, Operation, RunFactory};
use crate::cluster::Platform;

impl<P: Platform, F: RunFactory> ArgoController<P, F> {
    /// Applies a user operation as the plugin patches the status.
    pub fn operate(&mut self, op: Operation) {
        match op {
            Operation::Promote => self.promote_patch(),
            // `promoteFullPatch`, only while an update is under way. The pauses and an abort
            // are cleared, and the steps skipped, by the controller (`syncRolloutStatusCanary`).
            Operation::PromoteFull => {
                if !self.status.fully_promoted() {
                    self.status.promote_full = true;
                }
            }
            // `abortPatch`; the controller sets `abortedAt`, the condition and the weight.
            Operation::Abort => self.status.abort = true,
            // `retryRolloutPatch`.
            Operation::Retry => self.status.abort = false,
        }
    }

    /// `getPatches` without flags: the current step is skipped (and the controller's pause
    /// released) only when the current step's run is Inconclusive (`isInconclusive`); any other
    /// pause only loses its conditions, so the controller still records it was paused (a pause
    /// step then completes, an inconclusive background run is replaced); an unpaused rollout
    /// skips its current step.
    fn promote_patch(&mut self) {
        let s = &mut self.status;
        let steps = self.policy.steps.len() as u32;
        let next = |index: Option<u32>| index.map(|i| if i < steps { i + 1 } else { i });
        let inconclusive = s
            .canary
            .current_step_analysis_run_status
            .as_ref()
            .is_some_and(|r| r.status == "Inconclusive");
        if inconclusive && !s.pause_conditions.is_empty() && s.controller_pause {
            if let Some(i) = next(Some(s.current_step_index.unwrap_or(0))).filter(|_| steps > 0) {
                s.pause_conditions.clear();
                s.controller_pause = false;
                s.current_step_index = Some(i);
            }
        } else if !s.pause_conditions.is_empty() {
            s.pause_conditions.clear();
        } else if steps > 0 {
            s.current_step_index = next(Some(s.current_step_index.unwrap_or(0)));
        }
    }
}
