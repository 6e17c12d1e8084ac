//! Local emulation of the progressive-delivery controllers, free of I/O where it can be, so the
//! decisions can be tested under a paused clock.

pub mod actions;
pub mod analysis;
pub mod argo;
pub mod driver;
pub mod expr;
pub mod flagger;
pub mod timescale;

use std::time::Duration;

use crate::cluster::{InfraError, Platform, PodTemplate, RevisionHash};

pub use self::argo::Decision;

/// What the scenario runner needs from an emulated controller, whichever it is. Each
/// controller keeps its own status type; this is the common view.
#[allow(async_fn_in_trait)]
pub trait Controller {
    type Platform: Platform;
    /// A new pod template for the workload: the first is the baseline (deployed and promoted
    /// without analysis), later ones are releases.
    async fn apply_template(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError>;
    /// One reconcile pass (one tick).
    async fn reconcile(&mut self) -> Result<(), InfraError>;
    /// The verdict state, once reached: promoted, rolled back, or paused for a person.
    fn decision(&self) -> Option<Decision>;
    /// How long a driver may sleep before the next pass, at most `cap`.
    fn wait_hint(&self, cap: Duration) -> Duration;
    /// One line for people: phase and message.
    fn status_line(&self) -> String;
    /// Phase, step (`"2/4"`), canary weight: for the live progress line.
    fn live(&self) -> (String, Option<String>, Option<u32>);
    fn platform(&self) -> &Self::Platform;
    fn platform_mut(&mut self) -> &mut Self::Platform;
    fn into_platform(self) -> Self::Platform;
}

impl<P: Platform, F: argo::RunFactory> Controller for argo::ArgoController<P, F> {
    type Platform = P;

    async fn apply_template(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        argo::ArgoController::apply_template(self, hash, template)
            .await
            .map(|_| ())
    }

    async fn reconcile(&mut self) -> Result<(), InfraError> {
        argo::ArgoController::reconcile(self).await
    }

    fn decision(&self) -> Option<Decision> {
        argo::ArgoController::decision(self)
    }

    fn wait_hint(&self, cap: Duration) -> Duration {
        argo::ArgoController::wait_hint(self, cap)
    }

    fn status_line(&self) -> String {
        let st = self.status();
        if st.message.is_empty() {
            format!("{:?}", st.phase)
        } else {
            format!("{:?}: {}", st.phase, st.message)
        }
    }

    fn live(&self) -> (String, Option<String>, Option<u32>) {
        let st = self.status();
        let steps = self.policy().steps.len() as u32;
        (
            format!("{:?}", st.phase),
            st.current_step_index
                .map(|i| format!("{}/{steps}", i.min(steps))),
            st.canary.weights.as_ref().map(|w| w.canary.weight),
        )
    }

    fn platform(&self) -> &P {
        argo::ArgoController::platform(self)
    }

    fn platform_mut(&mut self) -> &mut P {
        argo::ArgoController::platform_mut(self)
    }

    fn into_platform(self) -> P {
        argo::ArgoController::into_platform(self)
    }
}
