//! `Canary.status` as Flagger v1.44.0 writes it (`pkg/apis/flagger/v1beta1/status.go`), so one observer code path can
//! read the emulation and a real cluster alike.

use serde::Serialize;

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum Phase {
    #[default]
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The one condition type, `Promoted`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// Seconds since the release, on the timeline's clock.
    pub last_transition_time: f64,
}

/// The emulated `Canary.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub phase: Phase,
    /// As Flagger writes it: 0 in WaitingPromotion and Finalising even while the router still
    /// sends traffic to the canary (the router's weight is the truth).
    pub canary_weight: u32,
    pub failed_checks: u32,
    /// -1 in WaitingPromotion with the canary strategy (`analysis.iterations - 1`).
    pub iterations: i32,
    /// The hash of the target's pod template the run is about.
    pub last_applied_spec: String,
    /// The hash of the template the primary runs.
    pub last_promoted_spec: String,
    /// Seconds since the release; updated at every status write.
    pub last_transition_time: f64,
    pub conditions: Vec<Condition>,
}

impl CanaryStatus {
    /// `MakeStatusConditions`: the `Promoted` condition for `phase`; the transition time moves
    /// only when the status changes.
    pub fn set_condition(&mut self, phase: Phase, target_kind: &str, now_s: f64) {
        let (status, message) = match phase {
            Phase::Initializing => (
                "Unknown",
                format!("New {target_kind} detected, starting initialization."),
            ),
            Phase::Initialized => ("True", format!("{target_kind} initialization completed.")),
            Phase::Waiting | Phase::WaitingPromotion => ("Unknown", "Waiting for approval.".into()),
            Phase::Progressing => (
                "Unknown",
                "New revision detected, progressing canary analysis.".into(),
            ),
            Phase::Promoting => (
                "Unknown",
                "Canary analysis completed, starting primary rolling update.".into(),
            ),
            Phase::Finalising => (
                "Unknown",
                "Canary analysis completed, routing all traffic to primary.".into(),
            ),
            Phase::Succeeded => (
                "True",
                "Canary analysis completed successfully, promotion finished.".into(),
            ),
            Phase::Failed => (
                "False",
                format!("Canary analysis failed, {target_kind} scaled to zero."),
            ),
        };
        let reason = phase.to_string();
        let current = self.conditions.first();
        if current.is_some_and(|c| c.status == status && c.reason == reason) {
            return;
        }
        let last_transition_time = match current {
            Some(c) if c.status == status => c.last_transition_time,
            _ => now_s,
        };
        self.conditions = vec![Condition {
            kind: "Promoted".into(),
            status: status.into(),
            reason,
            message,
            last_transition_time,
        }];
    }
}
