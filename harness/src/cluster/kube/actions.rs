//! Promote, abort and retry, as the controllers' own CLIs do them (Argo Rollouts v1.9.1's
//! `pkg/kubectl-argo-rollouts/cmd/*`): JSON merge patches on the Rollout's `status`
//! subresource, with the plugin's keys in the plugin's order. The bodies are pure functions of
//! the Rollout, tested byte for byte; the bytes tested are the bytes sent (`KubeCluster::act`,
//! which falls back to the main resource on 404).

use serde::Serialize;
use serde_json::Value;

/// What a person (or a scenario) asks of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Skip the current pause (or the current step when not paused).
    Promote,
    /// Skip every remaining step (`promote --full`).
    PromoteFull,
    Abort,
    Retry,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Promote => "promote",
            Action::PromoteFull => "promote --full",
            Action::Abort => "abort",
            Action::Retry => "retry",
        })
    }
}

/// Which part of the Rollout a patch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchTarget {
    /// The `status` subresource (the main resource if the CRD has none).
    Status,
    /// The main resource (`spec`).
    Spec,
}

/// One merge patch: where it goes and its body. The body serializes to exactly
/// [`MergePatch::json`] (compact, keys in the plugin's order), and that is what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePatch {
    pub target: PatchTarget,
    pub body: Body,
}

impl MergePatch {
    /// The bytes sent.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.body).expect("plain data")
    }
}

/// The body of a merge patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `{"status":{...}}`
    Status(StatusChange),
    /// `{"spec":{"paused":false}}`
    Unpause,
}

/// The fields of a status patch, in the order the plugin writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusChange {
    /// `"pauseConditions":null`
    pub clear_pause: bool,
    pub controller_pause: Option<bool>,
    pub current_step_index: Option<u64>,
    pub promote_full: Option<bool>,
    pub abort: Option<bool>,
}

impl Serialize for StatusChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if self.clear_pause {
            m.serialize_entry("pauseConditions", &())?;
        }
        if let Some(v) = self.controller_pause {
            m.serialize_entry("controllerPause", &v)?;
        }
        if let Some(v) = self.current_step_index {
            m.serialize_entry("currentStepIndex", &v)?;
        }
        if let Some(v) = self.promote_full {
            m.serialize_entry("promoteFull", &v)?;
        }
        if let Some(v) = self.abort {
            m.serialize_entry("abort", &v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Paused {
    paused: bool,
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Body::Status(c) => m.serialize_entry("status", c)?,
            Body::Unpause => m.serialize_entry("spec", &Paused { paused: false })?,
        }
        m.end()
    }
}

/// The patches `kubectl argo rollouts <action>` sends for this Rollout, in order. Empty when the
/// plugin would send nothing (e.g. `promote --full` of a fully promoted Rollout).
pub fn argo_patches(rollout: &Value, action: Action) -> Vec<MergePatch> {
    let status = |c: StatusChange| MergePatch {
        target: PatchTarget::Status,
        body: Body::Status(c),
    };
    let unpause = MergePatch {
        target: PatchTarget::Spec,
        body: Body::Unpause,
    };
    let spec_paused = rollout.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let st = rollout.get("status").cloned().unwrap_or(Value::Null);
    let paused_by_conditions = st
        .get("pauseConditions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    // The plugin's `isInconclusive`: the current step's own run, not the pause's reason (a
    // background run's Inconclusive pauses with the same reason while the step's run measures).
    let step_run_inconclusive = st
        .pointer("/canary/currentStepAnalysisRunStatus/status")
        .and_then(Value::as_str)
        == Some("Inconclusive");
    let controller_pause = st.get("controllerPause").and_then(Value::as_bool) == Some(true);
    let steps = rollout
        .pointer("/spec/strategy/canary/steps")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as u64;
    let index = st
        .get("currentStepIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let next = (index + 1).min(steps);
    let mut out = Vec::new();
    match action {
        Action::Abort => out.push(status(StatusChange {
            abort: Some(true),
            ..Default::default()
        })),
        Action::Retry => out.push(status(StatusChange {
            abort: Some(false),
            ..Default::default()
        })),
        Action::PromoteFull => {
            let current = st.get("currentPodHash").and_then(Value::as_str);
            let stable = st.get("stableRS").and_then(Value::as_str);
            if current != stable {
                out.push(status(StatusChange {
                    promote_full: Some(true),
                    ..Default::default()
                }));
            }
            if spec_paused {
                out.push(unpause);
            }
        }
        Action::Promote => {
            if step_run_inconclusive && paused_by_conditions && controller_pause {
                out.push(status(StatusChange {
                    clear_pause: true,
                    controller_pause: Some(false),
                    current_step_index: Some(next),
                    ..Default::default()
                }));
            } else if paused_by_conditions {
                out.push(status(StatusChange {
                    clear_pause: true,
                    ..Default::default()
                }));
            } else if steps > 0 {
                // No pause condition: skip the running setWeight/analysis step (whether or not
                // `spec.paused` is also set; the plugin decides the status patch apart from it).
                out.push(status(StatusChange {
                    clear_pause: true,
                    current_step_index: Some(next),
                    ..Default::default()
                }));
            }
            if spec_paused {
                out.push(unpause);
            }
        }
    }
    out
}

/// Flagger has no promote/abort API: its gates are webhooks (the loadtester's `/gate/*` and
/// `/rollback/*`). A retry is a change of the target's pod template, as Flagger's FAQ says; this
/// is the strategic-merge patch of that change for the Deployment.
pub fn flagger_retry_patch(stamp: &str) -> Value {
    serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "gauntlet.dev/retry": stamp
    }}}}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ro(status: Value) -> Value {
        json!({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}}},
               "status": status})
    }

    fn bodies(p: Vec<MergePatch>) -> Vec<(PatchTarget, String)> {
        p.into_iter().map(|p| (p.target, p.json())).collect()
    }

    #[test]
    fn the_plugin_bodies() {
        use PatchTarget::*;
        let paused = ro(
            json!({"currentStepIndex": 1, "controllerPause": true, "pauseConditions": [{"reason": "CanaryPauseStep"}]}),
        );
        assert_eq!(
            bodies(argo_patches(&paused, Action::Promote)),
            [(Status, r#"{"status":{"pauseConditions":null}}"#.into())]
        );
        let inconclusive = |step_run: &str| {
            ro(json!({"currentStepIndex": 1, "controllerPause": true,
                      "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
                      "canary": {"currentStepAnalysisRunStatus": {"name": "r", "status": step_run}}}))
        };
        assert_eq!(
            bodies(argo_patches(&inconclusive("Inconclusive"), Action::Promote)),
            [(
                Status,
                r#"{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":2}}"#
                    .into()
            )]
        );
        // Paused by the background run while the step's own run still measures: the plugin's
        // `isInconclusive` is false, so the promote only clears the pause and the step stays.
        assert_eq!(
            bodies(argo_patches(&inconclusive("Running"), Action::Promote)),
            [(Status, r#"{"status":{"pauseConditions":null}}"#.into())]
        );
        let running = ro(json!({"currentStepIndex": 0}));
        assert_eq!(
            bodies(argo_patches(&running, Action::Promote)),
            [(
                Status,
                r#"{"status":{"pauseConditions":null,"currentStepIndex":1}}"#.into()
            )]
        );
        assert_eq!(
            bodies(argo_patches(&running, Action::Abort)),
            [(Status, r#"{"status":{"abort":true}}"#.into())]
        );
        assert_eq!(
            bodies(argo_patches(&running, Action::Retry)),
            [(Status, r#"{"status":{"abort":false}}"#.into())]
        );
        let mid = ro(json!({"currentPodHash": "b", "stableRS": "a"}));
        assert_eq!(
            bodies(argo_patches(&mid, Action::PromoteFull)),
            [(Status, r#"{"status":{"promoteFull":true}}"#.into())]
        );
        let done = ro(json!({"currentPodHash": "a", "stableRS": "a"}));
        assert!(argo_patches(&done, Action::PromoteFull).is_empty());
        // `spec.paused` alone (no pause condition): the step is skipped and the spec unpaused.
        let mut held = running.clone();
        held["spec"]["paused"] = json!(true);
        assert_eq!(
            bodies(argo_patches(&held, Action::Promote)),
            [
                (
                    Status,
                    r#"{"status":{"pauseConditions":null,"currentStepIndex":1}}"#.into()
                ),
                (Spec, r#"{"spec":{"paused":false}}"#.into())
            ]
        );
        let mut manual = paused.clone();
        manual["spec"]["paused"] = json!(true);
        assert_eq!(
            bodies(argo_patches(&manual, Action::Promote)),
            [
                (Status, r#"{"status":{"pauseConditions":null}}"#.into()),
                (Spec, r#"{"spec":{"paused":false}}"#.into())
            ]
        );
    }
}
