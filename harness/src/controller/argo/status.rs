//! `Rollout.status` as Argo Rollouts v1.9.1 writes it, so one observer code path can read the
//! emulation and a real cluster alike. Field names and message texts are the real ones
//! (`pkg/apis/rollouts/v1alpha1/types.go`, `utils/conditions`).

use serde::Serialize;
use tokio::time::Instant;

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum Phase {
    #[default]
    Progressing,
    Paused,
    Healthy,
    Degraded,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// `status.pauseConditions[].reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PauseReason {
    CanaryPauseStep,
    InconclusiveAnalysisRun,
}

impl std::fmt::Display for PauseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    pub reason: PauseReason,
    /// Seconds since the release, on the timeline's clock.
    pub start_time: f64,
    /// The same moment on the engine's clock: what a timed pause expires from.
    #[serde(skip)]
    pub since: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    pub weight: u32,
    pub pod_template_hash: String,
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub name: String,
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RunStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RunStatus>,
}

/// A `status.conditions[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The emulated `Rollout.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub phase: Phase,
    pub message: String,
    /// A string, as the real controller writes it.
    pub observed_generation: String,
    pub current_pod_hash: String,
    #[serde(rename = "stableRS")]
    pub stable_rs: String,
    pub current_step_index: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub controller_pause: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub promote_full: bool,
    pub replicas: u32,
    pub updated_replicas: u32,
    pub ready_replicas: u32,
    pub available_replicas: u32,
    pub canary: CanaryStatus,
    pub conditions: Vec<Condition>,
}

impl RolloutStatus {
    /// Fully promoted: the stable ReplicaSet is the desired one.
    pub fn fully_promoted(&self) -> bool {
        !self.stable_rs.is_empty() && self.stable_rs == self.current_pod_hash
    }

    /// `SetRolloutCondition`: replaces the condition of this type unless it already has this
    /// status and reason (a new message alone changes nothing); returns whether it changed.
    pub fn set_condition(&mut self, kind: &str, status: &str, reason: &str, message: &str) -> bool {
        if self
            .condition(kind)
            .is_some_and(|c| c.status == status && c.reason == reason)
        {
            return false;
        }
        self.replace_condition(kind, status, reason, message);
        true
    }

    /// Replaces the condition of this type whatever it was (upstream removes and re-adds the
    /// Progressing condition to record progress).
    pub fn replace_condition(&mut self, kind: &str, status: &str, reason: &str, message: &str) {
        let c = Condition {
            kind: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
        };
        self.conditions.retain(|x| x.kind != kind);
        self.conditions.push(c);
    }

    pub fn has_pause(&self, reason: PauseReason) -> bool {
        self.pause_conditions.iter().any(|p| p.reason == reason)
    }

    pub fn pause(&self, reason: PauseReason) -> Option<&PauseCondition> {
        self.pause_conditions.iter().find(|p| p.reason == reason)
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}
