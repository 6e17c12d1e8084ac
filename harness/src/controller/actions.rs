//! A scenario's actions on a running rollout: what a person does with the kubectl plugin
//! (Argo) or with the loadtester's gates (Flagger).

use crate::cluster::Platform;
use crate::controller::analysis::MetricSource;
use crate::controller::argo::{ArgoController, Operation, RunFactory};
use crate::controller::flagger::FlaggerController;
use crate::scenario::Action;

/// Applies an [`Action`]; an action the controller does not have is an error (validation
/// refuses those up front).
pub trait Operable {
    fn act(&mut self, action: Action) -> Result<(), String>;
    /// How long after an action the controller may take to react: a pause seen before then
    /// is not yet its answer to the action.
    fn reaction_time(&self) -> std::time::Duration;
}

impl<P: Platform, F: RunFactory> Operable for ArgoController<P, F> {
    fn act(&mut self, action: Action) -> Result<(), String> {
        let op = match action {
            Action::Promote => Operation::Promote,
            Action::PromoteFull => Operation::PromoteFull,
            Action::Abort => Operation::Abort,
            Action::Retry => Operation::Retry,
            other => return Err(format!("Argo Rollouts has no `{}`", other.name())),
        };
        self.operate(op);
        Ok(())
    }

    fn reaction_time(&self) -> std::time::Duration {
        // The next pass applies the status patch.
        std::time::Duration::ZERO
    }
}

impl<P: Platform, M: MetricSource + Clone> Operable for FlaggerController<P, M> {
    fn act(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::OpenGate => self.gates().open(&self.gate_key()),
            Action::CloseGate => self.gates().close(&self.gate_key()),
            Action::Rollback => self.gates().open(&self.rollback_key()),
            other => {
                return Err(format!(
                    "Flagger has no `{}`; use its gates (open-gate, close-gate, rollback)",
                    other.name()
                ));
            }
        }
        Ok(())
    }

    fn reaction_time(&self) -> std::time::Duration {
        // Gates are polled by the webhooks of the next tick.
        self.policy().interval
    }
}
