//! The Rollout as the emulation runs it: the user's objects with defaults applied, durations
//! already multiplied by `--time-scale`, and analyses resolved to an index into the run factory.
//! Built from the parsed spec (`spec::argo`) by [`super::from_spec`]; tests build it directly.

use std::time::Duration;

use crate::cluster::CanaryRoute;

/// One canary step the emulation supports.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    SetWeight(u32),
    /// `None`: indefinite, until promoted.
    Pause(Option<Duration>),
    /// An inline analysis; the number selects the analysis in the run factory.
    Analysis(usize),
    SetCanaryScale(CanaryScale),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryScale {
    Replicas(u32),
    Weight(u32),
    MatchTrafficWeight,
}

impl std::fmt::Display for Step {
    /// The step as Argo prints it in `RolloutStepCompleted` events.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::SetWeight(w) => write!(f, "setWeight: {w}"),
            Step::Pause(Some(d)) => write!(f, "pause: {}s", d.as_secs_f64()),
            Step::Pause(None) => write!(f, "pause"),
            Step::Analysis(_) => write!(f, "analysis"),
            Step::SetCanaryScale(CanaryScale::Replicas(r)) => {
                write!(f, "setCanaryScale: replicas {r}")
            }
            Step::SetCanaryScale(CanaryScale::Weight(w)) => write!(f, "setCanaryScale: weight {w}"),
            Step::SetCanaryScale(CanaryScale::MatchTrafficWeight) => {
                write!(f, "setCanaryScale: matchTrafficWeight")
            }
        }
    }
}

/// A background analysis (`spec.strategy.canary.analysis`).
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    pub analysis: usize,
    /// The run is created once `currentStepIndex >= starting_step`.
    pub starting_step: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    pub steps: Vec<Step>,
    pub background: Option<Background>,
    pub progress_deadline: Duration,
    pub progress_deadline_abort: bool,
    /// `spec.minReadySeconds`, which the controller gives every ReplicaSet it creates: on the
    /// same (scaled) clock as the deadline it races against.
    pub min_ready: Duration,
    /// `abortScaleDownDelaySeconds`; `None` when 0, which does not keep the canary up: without
    /// a `setCanaryScale` at the first step it goes to 0 at once (the weight after an abort is
    /// 0), with one it keeps that scale.
    pub abort_scale_down_delay: Option<Duration>,
    pub scale_down_delay: Duration,
    pub canary_service: String,
    pub stable_service: String,
    /// The static part of the canary Ingress annotations (header/cookie routes from
    /// `additionalIngressAnnotations`, `canary-weight-total` from `maxTrafficWeight`); the
    /// controller sets the weight.
    pub route: CanaryRoute,
}

impl RolloutPolicy {
    /// A policy with Argo's defaults and the given steps, for tests and builders.
    pub fn new(name: &str, replicas: u32, steps: Vec<Step>) -> Self {
        RolloutPolicy {
            name: name.into(),
            namespace: "default".into(),
            replicas,
            steps,
            background: None,
            progress_deadline: Duration::from_secs(600),
            progress_deadline_abort: false,
            min_ready: Duration::ZERO,
            abort_scale_down_delay: Some(Duration::from_secs(30)),
            scale_down_delay: Duration::from_secs(30),
            canary_service: format!("{name}-canary"),
            stable_service: format!("{name}-stable"),
            route: CanaryRoute::weight(0),
        }
    }

    /// `maxTrafficWeight` (100 unless set).
    pub fn max_weight(&self) -> u32 {
        if self.route.weight_total == 0 {
            100
        } else {
            self.route.weight_total
        }
    }
}
