//! From the objects a real controller writes to timeline events and a decision, as pure
//! functions: the watch loop feeds every Rollout / Canary, AnalysisRun, Event and Ingress it
//! receives to an [`Observer`] and writes what comes out to the timeline. Recorded objects go
//! through the same code in `tests/kube_api.rs`.
//!
//! Event names follow the emulation (`controller/argo/mod.rs`), so reports and the verdict read
//! both backends alike. Each name has one owner, so a relist after a lost watch repeats nothing:
//! - the Rollout's status: `phase` (on a change of phase or message, once the controller has
//!   observed the current generation) and `TrafficWeightUpdated` (on a change of
//!   `status.canary.weights.canary.weight`);
//! - AnalysisRuns: `AnalysisRunCreated` (first sight) and `AnalysisRun<Phase>` (on a change);
//! - the canary Ingress (ingress-nginx's annotations, as Argo or Flagger set them):
//!   `canary-route` from the router, as the local router writes it;
//! - Kubernetes Events: every other reason, named by its reason, deduplicated by uid and count.
//!
//! The decision follows docs/scenarios.md ("Outcomes") with the real controllers' rules:
//! Argo is judged only when `status.observedGeneration` equals `metadata.generation`, never while
//! a promote is not yet seen (`controllerPause` with no pause conditions), and never on a
//! Rollout older than the release. Healthy with `stableRS == currentPodHash` is promoted;
//! Degraded is rolled back (an abort, or a progress deadline, as the scenario format and the emulation
//! count it) except `InvalidSpec`, which is bad input and no verdict; Paused is paused only for
//! an inconclusive analysis or an indefinite `pause: {}` step. Flagger is judged only once the
//! Canary has taken up the release (its `lastAppliedSpec` moved): Succeeded, Failed,
//! WaitingPromotion.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::CanaryRoute;
use crate::controller::Decision;
use crate::spec::ControllerKind;
use crate::timeline::Source;

/// One object as the watch delivered it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The Rollout or the Canary.
    Target(Value),
    AnalysisRun(Value),
    /// A core/v1 Event.
    Event(Value),
    Ingress(Value),
}

impl Observed {
    /// Reads a recorded object, choosing the variant by its `kind`.
    pub fn from_object(o: Value) -> Option<Observed> {
        match o.get("kind").and_then(Value::as_str)? {
            "Rollout" | "Canary" => Some(Observed::Target(o)),
            "AnalysisRun" => Some(Observed::AnalysisRun(o)),
            "Event" => Some(Observed::Event(o)),
            "Ingress" => Some(Observed::Ingress(o)),
            _ => None,
        }
    }
}

/// An event for the timeline (its time is the moment it is written).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Emitted {
    pub source: Source,
    pub kind: String,
    pub message: String,
    pub data: Value,
}

/// Where the watched object stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Judgement {
    /// No verdict state (yet).
    Pending,
    Decided(Decision),
    /// The controller refused the object (Argo `InvalidSpec`): bad input, not a verdict.
    Invalid(String),
}

/// What the release must have reached before a verdict counts.
#[derive(Debug, Clone, PartialEq)]
enum Arm {
    /// Argo: the Rollout's `metadata.generation` after the release was applied.
    Generation(i64),
    /// Flagger: `status.lastAppliedSpec` before the release; a verdict needs another one.
    AppliedSpec(Option<String>),
}

/// The translation state of one watched Rollout or Canary.
#[derive(Debug, Clone)]
pub struct Observer {
    controller: ControllerKind,
    name: String,
    arm: Option<Arm>,
    target: Option<Value>,
    last_phase: Option<(String, String)>,
    last_weight: Option<u64>,
    runs: BTreeMap<String, String>,
    /// (run, metric, startedAt) of every measurement already reported.
    measured: BTreeSet<(String, String, String)>,
    events: BTreeSet<(String, i64)>,
    routes: BTreeMap<String, CanaryRoute>,
}

/// The AnalysisRun phases whose Events the AnalysisRun watch already reports.
const RUN_PHASES: &[&str] = &[
    "Successful",
    "Running",
    "Pending",
    "Inconclusive",
    "Error",
    "Failed",
];

impl Observer {
    pub fn new(controller: ControllerKind, name: impl Into<String>) -> Observer {
        Observer {
            controller,
            name: name.into(),
            arm: None,
            target: None,
            last_phase: None,
            last_weight: None,
            runs: BTreeMap::new(),
            measured: BTreeSet::new(),
            events: BTreeSet::new(),
            routes: BTreeMap::new(),
        }
    }

    pub fn controller(&self) -> ControllerKind {
        self.controller
    }

    /// The name of the watched Rollout or Canary.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the release. For Argo, `generation` is the Rollout's `metadata.generation` as the
    /// apply returned it; for Flagger the Canary's current `lastAppliedSpec` is remembered.
    pub fn arm(&mut self, generation: Option<i64>) {
        self.arm = Some(match self.controller {
            ControllerKind::Argo => Arm::Generation(generation.unwrap_or(i64::MAX)),
            ControllerKind::Flagger => Arm::AppliedSpec(
                self.target
                    .as_ref()
                    .and_then(|t| str_at(t, "/status/lastAppliedSpec"))
                    .map(str::to_string),
            ),
        });
    }

    pub fn is_armed(&self) -> bool {
        self.arm.is_some()
    }

    /// The last Rollout or Canary seen.
    pub fn target(&self) -> Option<&Value> {
        self.target.as_ref()
    }

    /// Takes one object in and returns what it adds to the timeline.
    pub fn observe(&mut self, o: &Observed) -> Vec<Emitted> {
        match o {
            Observed::Target(t) => {
                if str_at(t, "/metadata/name") != Some(self.name.as_str()) {
                    return Vec::new();
                }
                let out = match self.controller {
                    ControllerKind::Argo => self.rollout(t),
                    ControllerKind::Flagger => self.canary(t),
                };
                // Keep the newest: a watch may replay an older object after a relist.
                let newer = match (&self.target, generation(t)) {
                    (Some(old), Some(g)) => generation(old).is_none_or(|og| g >= og),
                    _ => true,
                };
                if newer {
                    self.target = Some(t.clone());
                }
                out
            }
            Observed::AnalysisRun(r) => self.analysis_run(r),
            Observed::Event(e) => self.event(e),
            Observed::Ingress(i) => self.ingress(i),
        }
    }

    /// The verdict state of the last target seen, by the rules in the module doc.
    pub fn judgement(&self) -> Judgement {
        let Some(t) = &self.target else {
            return Judgement::Pending;
        };
        match self.controller {
            ControllerKind::Argo => self.argo_judgement(t),
            ControllerKind::Flagger => self.flagger_judgement(t),
        }
    }

    /// The baseline is in place: Argo Healthy and fully promoted at the applied generation;
    /// Flagger `Initialized` (or `Succeeded`).
    pub fn baseline_ready(&self) -> bool {
        let Some(t) = &self.target else { return false };
        match self.controller {
            ControllerKind::Argo => {
                self.argo_judgement(t) == Judgement::Decided(Decision::Promoted)
            }
            ControllerKind::Flagger => matches!(
                str_at(t, "/status/phase"),
                Some("Initialized" | "Succeeded")
            ),
        }
    }

    /// One line for people: phase and message.
    pub fn status_line(&self) -> String {
        let Some(t) = &self.target else {
            return format!("{} not seen yet", self.name);
        };
        let phase = str_at(t, "/status/phase").unwrap_or("(no phase)");
        let message = match self.controller {
            ControllerKind::Argo => str_at(t, "/status/message").unwrap_or_default(),
            ControllerKind::Flagger => {
                str_at(t, "/status/conditions/0/message").unwrap_or_default()
            }
        };
        if message.is_empty() {
            phase.to_string()
        } else {
            format!("{phase}: {message}")
        }
    }

    /// Phase, step (`"2/4"`) and canary weight, for the live progress line.
    pub fn live(&self) -> (String, Option<String>, Option<u32>) {
        let Some(t) = &self.target else {
            return ("Unknown".into(), None, None);
        };
        let phase = str_at(t, "/status/phase").unwrap_or("Unknown").to_string();
        match self.controller {
            ControllerKind::Argo => {
                let steps = t
                    .pointer("/spec/strategy/canary/steps")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let step = t
                    .pointer("/status/currentStepIndex")
                    .and_then(Value::as_u64)
                    .map(|i| format!("{}/{steps}", i.min(steps as u64)));
                let weight = t
                    .pointer("/status/canary/weights/canary/weight")
                    .and_then(Value::as_u64)
                    .map(|w| w as u32);
                (phase, step, weight)
            }
            ControllerKind::Flagger => {
                let weight = t
                    .pointer("/status/canaryWeight")
                    .and_then(Value::as_u64)
                    .map(|w| w as u32);
                (phase, None, weight)
            }
        }
    }

    fn rollout(&mut self, ro: &Value) -> Vec<Emitted> {
        let mut out = Vec::new();
        if !argo_observed(ro) {
            return out;
        }
        let phase = str_at(ro, "/status/phase").unwrap_or_default().to_string();
        let message = str_at(ro, "/status/message")
            .unwrap_or_default()
            .to_string();
        if !phase.is_empty() && self.last_phase.as_ref() != Some(&(phase.clone(), message.clone()))
        {
            self.last_phase = Some((phase.clone(), message.clone()));
            out.push(phase_event(
                &phase,
                &message,
                json!({
                    "currentStepIndex": ro.pointer("/status/currentStepIndex"),
                    "stableRS": str_at(ro, "/status/stableRS").unwrap_or_default(),
                    "currentPodHash": str_at(ro, "/status/currentPodHash").unwrap_or_default(),
                    "abort": ro.pointer("/status/abort").and_then(Value::as_bool).unwrap_or(false),
                }),
            ));
        }
        if let Some(w) = ro
            .pointer("/status/canary/weights/canary/weight")
            .and_then(Value::as_u64)
        {
            match self.last_weight {
                Some(from) if from != w => out.push(Emitted {
                    source: Source::Controller,
                    kind: "TrafficWeightUpdated".into(),
                    message: format!("Traffic weight updated from {from} to {w}"),
                    data: json!({"rollout": self.name}),
                }),
                _ => {}
            }
            self.last_weight = Some(w);
        }
        out
    }

    fn canary(&mut self, c: &Value) -> Vec<Emitted> {
        let mut out = Vec::new();
        let phase = str_at(c, "/status/phase").unwrap_or_default().to_string();
        let message = str_at(c, "/status/conditions/0/message")
            .unwrap_or_default()
            .to_string();
        if !phase.is_empty() && self.last_phase.as_ref().map(|(p, _)| p) != Some(&phase) {
            self.last_phase = Some((phase.clone(), message.clone()));
            out.push(phase_event(
                &phase,
                &message,
                json!({
                    "canaryWeight": c.pointer("/status/canaryWeight"),
                    "failedChecks": c.pointer("/status/failedChecks"),
                    "iterations": c.pointer("/status/iterations"),
                }),
            ));
        }
        out
    }

    fn analysis_run(&mut self, r: &Value) -> Vec<Emitted> {
        if self.controller != ControllerKind::Argo || !owned_by(r, "Rollout", &self.name) {
            return Vec::new();
        }
        let name = str_at(r, "/metadata/name").unwrap_or_default().to_string();
        let phase = str_at(r, "/status/phase").unwrap_or_default().to_string();
        let message = str_at(r, "/status/message").unwrap_or_default().to_string();
        let mut out = Vec::new();
        let previous = self.runs.get(&name).cloned();
        if previous.is_none() {
            out.push(Emitted {
                source: Source::Controller,
                kind: "AnalysisRunCreated".into(),
                message: format!("Created AnalysisRun {name}"),
                data: json!({"rollout": self.name}),
            });
        }
        out.extend(self.measurements(r, &name));
        if !phase.is_empty() && previous.as_deref() != Some(phase.as_str()) {
            out.push(Emitted {
                source: Source::Analysis,
                kind: format!("AnalysisRun{phase}"),
                message: format!("AnalysisRun {name} {phase}: {message}"),
                data: json!({"run": name, "phase": phase, "message": message}),
            });
        }
        self.runs.insert(name, phase);
        out
    }

    /// A `measurement` event for each finished measurement of the run not reported before,
    /// with the data the emulation writes (its metric's conditions included), so that reports
    /// draw both controllers alike. Its time is when the watch saw it, within a reconcile of
    /// the measurement's end.
    fn measurements(&mut self, r: &Value, run: &str) -> Vec<Emitted> {
        let mut out = Vec::new();
        let results = r
            .pointer("/status/metricResults")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let specs = r
            .pointer("/spec/metrics")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for result in results {
            let metric = str_at(result, "/name").unwrap_or_default();
            let spec = specs.iter().find(|m| str_at(m, "/name") == Some(metric));
            let condition = |key: &str| {
                spec.and_then(|m| str_at(m, key))
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
            };
            let measurements = result
                .get("measurements")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for m in measurements {
                let (Some(started), Some(_)) = (str_at(m, "/startedAt"), str_at(m, "/finishedAt"))
                else {
                    continue;
                };
                let key = (run.to_string(), metric.to_string(), started.to_string());
                if !self.measured.insert(key) {
                    continue;
                }
                let phase = str_at(m, "/phase").unwrap_or_default();
                let value = str_at(m, "/value");
                let message = str_at(m, "/message").unwrap_or_default();
                out.push(Emitted {
                    source: Source::Analysis,
                    kind: "measurement".into(),
                    message: format!(
                        "{metric}: {phase} {}{}",
                        value.unwrap_or("-"),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({message})")
                        }
                    ),
                    data: json!({
                        "run": run,
                        "metric": metric,
                        "phase": phase,
                        "value": value,
                        "message": message,
                        "success_condition": condition("/successCondition"),
                        "failure_condition": condition("/failureCondition"),
                    }),
                });
            }
        }
        out
    }

    fn event(&mut self, e: &Value) -> Vec<Emitted> {
        let uid = str_at(e, "/metadata/uid")
            .or_else(|| str_at(e, "/metadata/name"))
            .unwrap_or_default()
            .to_string();
        let count = e
            .get("count")
            .and_then(Value::as_i64)
            .or_else(|| e.pointer("/series/count").and_then(Value::as_i64))
            .unwrap_or(1);
        if !self.events.insert((uid, count)) {
            return Vec::new();
        }
        let reason = str_at(e, "/reason").unwrap_or_default().to_string();
        let involved_kind = str_at(e, "/involvedObject/kind").unwrap_or_default();
        let involved = str_at(e, "/involvedObject/name").unwrap_or_default();
        // Owned by the object watches (see the module doc).
        let owned = reason == "TrafficWeightUpdated"
            || reason == "AnalysisRunCreated"
            || reason
                .strip_prefix("AnalysisRun")
                .is_some_and(|p| RUN_PHASES.contains(&p));
        if owned && self.controller == ControllerKind::Argo {
            return Vec::new();
        }
        let message = str_at(e, "/message")
            .or_else(|| str_at(e, "/note"))
            .unwrap_or_default()
            .to_string();
        let source = match involved_kind {
            "Rollout" | "Canary" | "Deployment" => Source::Controller,
            "AnalysisRun" => Source::Analysis,
            "Pod" | "ReplicaSet" => Source::Pod,
            "Ingress" => Source::Router,
            _ => Source::Controller,
        };
        let key = match involved_kind {
            "Rollout" => "rollout",
            "Canary" => "canary",
            "AnalysisRun" => "run",
            "Pod" => "pod",
            _ => "object",
        };
        let halted = (self.controller == ControllerKind::Flagger)
            .then(|| flagger_halt(&message))
            .flatten();
        let mut out = vec![Emitted {
            source,
            kind: reason,
            message,
            data: json!({
                key: involved,
                "involvedKind": involved_kind,
                "type": str_at(e, "/type").unwrap_or_default(),
                "count": count,
            }),
        }];
        out.extend(halted);
        out
    }

    fn ingress(&mut self, i: &Value) -> Vec<Emitted> {
        let Some(route) = canary_route(i) else {
            return Vec::new();
        };
        let name = str_at(i, "/metadata/name").unwrap_or_default().to_string();
        if self.routes.get(&name) == Some(&route) {
            return Vec::new();
        }
        self.routes.insert(name.clone(), route.clone());
        vec![Emitted {
            source: Source::Router,
            kind: "canary-route".into(),
            message: format!("canary weight {}%", route.percent()),
            data: json!({"weight": route.weight, "route": route, "ingress": name}),
        }]
    }

    fn argo_judgement(&self, ro: &Value) -> Judgement {
        if !argo_observed(ro) {
            return Judgement::Pending;
        }
        if let Some(Arm::Generation(g)) = self.arm
            && generation(ro).is_none_or(|have| have < g)
        {
            return Judgement::Pending;
        }
        let status = ro.get("status").cloned().unwrap_or(Value::Null);
        let pause_conditions: Vec<&str> = status
            .get("pauseConditions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| str_at(c, "/reason")).collect())
            .unwrap_or_default();
        let controller_pause = status
            .get("controllerPause")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if controller_pause && pause_conditions.is_empty() {
            // "waiting for rollout to unpause": a promote the controller has not seen yet.
            return Judgement::Pending;
        }
        let stable = str_at(ro, "/status/stableRS").unwrap_or_default();
        let current = str_at(ro, "/status/currentPodHash").unwrap_or_default();
        let message = str_at(ro, "/status/message").unwrap_or_default();
        match str_at(ro, "/status/phase").unwrap_or_default() {
            "Healthy" if !stable.is_empty() && stable == current => {
                Judgement::Decided(Decision::Promoted)
            }
            "Degraded" if message.starts_with("InvalidSpec") => {
                Judgement::Invalid(message.to_string())
            }
            "Degraded" => Judgement::Decided(Decision::RolledBack),
            "Paused" => {
                if ro.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                    return Judgement::Pending;
                }
                let inconclusive = pause_conditions.contains(&"InconclusiveAnalysisRun");
                let indefinite_step = pause_conditions.contains(&"CanaryPauseStep")
                    && current_step(ro)
                        .and_then(|s| s.get("pause"))
                        .is_some_and(|p| p.get("duration").is_none_or(Value::is_null));
                if inconclusive || indefinite_step {
                    Judgement::Decided(Decision::Paused)
                } else {
                    Judgement::Pending
                }
            }
            _ => Judgement::Pending,
        }
    }

    fn flagger_judgement(&self, c: &Value) -> Judgement {
        let Some(Arm::AppliedSpec(before)) = &self.arm else {
            return Judgement::Pending;
        };
        let applied = str_at(c, "/status/lastAppliedSpec");
        if before.is_some() && applied == before.as_deref() {
            return Judgement::Pending;
        }
        match str_at(c, "/status/phase").unwrap_or_default() {
            "Succeeded" => Judgement::Decided(Decision::Promoted),
            // handleFailedPromotion: a primary that could not become ready leaves every user
            // on the canary (`SyncStatus(Failed, 100)`): the new version serves, as promoted.
            "Failed" if c.pointer("/status/canaryWeight").and_then(Value::as_u64) == Some(100) => {
                Judgement::Decided(Decision::Promoted)
            }
            "Failed" => Judgement::Decided(Decision::RolledBack),
            "WaitingPromotion" => Judgement::Decided(Decision::Paused),
            _ => Judgement::Pending,
        }
    }
}

/// `status.observedGeneration` (a string in Argo, a number in older objects) equals
/// `metadata.generation`.
pub fn argo_observed(ro: &Value) -> bool {
    let Some(g) = generation(ro) else {
        return false;
    };
    match ro.pointer("/status/observedGeneration") {
        Some(Value::String(s)) => s.parse::<i64>().ok() == Some(g),
        Some(Value::Number(n)) => n.as_i64() == Some(g),
        _ => false,
    }
}

fn generation(o: &Value) -> Option<i64> {
    o.pointer("/metadata/generation").and_then(Value::as_i64)
}

/// `spec.strategy.canary.steps[status.currentStepIndex]`.
fn current_step(ro: &Value) -> Option<&Value> {
    let i = ro.pointer("/status/currentStepIndex")?.as_u64()? as usize;
    ro.pointer("/spec/strategy/canary/steps")?
        .as_array()?
        .get(i)
}

/// A failed check of a real Flagger, read back from the event it writes for it (`Halt
/// <canary> advancement success rate 61.39% < 99%`, `... request duration 1.2s > 500ms`,
/// `... <metric> 3.00 > 2`, `Halt advancement no values found for ... <metric>`), as a
/// `measurement` event in the emulation's shape. Flagger records passing checks nowhere a
/// watch can see, so only failures reach the report from a real Flagger.
fn flagger_halt(message: &str) -> Option<Emitted> {
    use std::sync::OnceLock;
    static COMPARED: OnceLock<regex::Regex> = OnceLock::new();
    static NO_VALUES: OnceLock<regex::Regex> = OnceLock::new();
    let compared = COMPARED.get_or_init(|| {
        regex::Regex::new(r"^Halt \S+ advancement (.+) (\S+) ([<>]) (\S+)$")
            .expect("a valid pattern")
    });
    let no_values = NO_VALUES.get_or_init(|| {
        regex::Regex::new(r"^Halt advancement no values found for (?:nginx metric|metric:|custom metric:) ([^\s:]+)")
            .expect("a valid pattern")
    });
    let measurement = |metric: &str, phase: &str, value: Option<f64>, min, max| {
        let condition = match (min, max) {
            (Some(m), _) => format!("min {m}"),
            (_, Some(m)) => format!("max {m}"),
            _ => String::new(),
        };
        Emitted {
            source: Source::Analysis,
            kind: "measurement".into(),
            message: format!("{metric}: {message}"),
            data: json!({
                "metric": metric,
                "phase": phase,
                "value": value,
                "reading": message,
                "passed": false,
                "min": min,
                "max": max,
                "condition": condition,
            }),
        }
    };
    if let Some(c) = no_values.captures(message) {
        return Some(measurement(&c[1], "Error", None, None, None));
    }
    let c = compared.captures(message)?;
    let (what, op) = (&c[1], &c[3]);
    let (metric, value, bound) = match what {
        "success rate" => (
            "request-success-rate".to_string(),
            c[2].trim_end_matches('%').parse::<f64>().ok()?,
            c[4].trim_end_matches('%').parse::<f64>().ok()?,
        ),
        "request duration" => (
            "request-duration".to_string(),
            go_duration_ms(&c[2])?,
            go_duration_ms(&c[4])?,
        ),
        name => (name.to_string(), c[2].parse().ok()?, c[4].parse().ok()?),
    };
    // `value < bound` halts on a floor, `value > bound` on a ceiling.
    let (min, max) = if op == "<" {
        (Some(bound), None)
    } else {
        (None, Some(bound))
    };
    Some(measurement(&metric, "Failed", Some(value), min, max))
}

/// A Go `time.Duration` as it prints (`1.5s`, `500ms`, `1m30s`), in milliseconds.
fn go_duration_ms(text: &str) -> Option<f64> {
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn owned_by(o: &Value, kind: &str, name: &str) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| str_at(r, "/kind") == Some(kind) && str_at(r, "/name") == Some(name))
        })
}

fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

/// The canary route of an Ingress that ingress-nginx treats as a canary (annotation
/// `<prefix>/canary: "true"`; the prefix is `nginx.ingress.kubernetes.io` unless Argo's
/// `annotationPrefix` says otherwise).
pub fn canary_route(i: &Value) -> Option<CanaryRoute> {
    let ann = i.pointer("/metadata/annotations")?.as_object()?;
    let prefix = ann.iter().find_map(|(k, v)| {
        (k.ends_with("/canary") && v.as_str() == Some("true")).then(|| &k[..k.len() - 7])
    })?;
    let get = |suffix: &str| {
        ann.get(&format!("{prefix}/{suffix}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(CanaryRoute {
        weight: get("canary-weight")
            .and_then(|w| w.parse().ok())
            .unwrap_or(0),
        weight_total: get("canary-weight-total")
            .and_then(|w| w.parse().ok())
            .unwrap_or(100),
        by_header: get("canary-by-header"),
        by_header_value: get("canary-by-header-value"),
        by_cookie: get("canary-by-cookie"),
    })
}

/// The timeline's `phase` event: `Phase` or `Phase: message`, with the controller's own fields
/// (`extra`, an object) beside `phase` and `message`.
fn phase_event(phase: &str, message: &str, mut extra: Value) -> Emitted {
    extra["phase"] = json!(phase);
    extra["message"] = json!(message);
    Emitted {
        source: Source::Controller,
        kind: "phase".into(),
        message: if message.is_empty() {
            phase.to_string()
        } else {
            format!("{phase}: {message}")
        },
        data: extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(generation: i64, observed: &str, phase: &str, stable: &str, current: &str) -> Value {
        json!({"kind": "Rollout", "metadata": {"name": "app", "generation": generation},
               "spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
               "status": {"observedGeneration": observed, "phase": phase, "stableRS": stable,
                          "currentPodHash": current, "currentStepIndex": 0}})
    }

    #[test]
    fn a_stale_or_unobserved_rollout_decides_nothing() {
        let mut o = Observer::new(ControllerKind::Argo, "app");
        o.observe(&Observed::Target(rollout(1, "1", "Healthy", "a", "a")));
        assert!(o.baseline_ready());
        o.arm(Some(2));
        // The old object, still Healthy: not the release's verdict.
        assert_eq!(o.judgement(), Judgement::Pending);
        // The new generation, not yet observed by the controller.
        o.observe(&Observed::Target(rollout(2, "1", "Healthy", "a", "a")));
        assert_eq!(o.judgement(), Judgement::Pending);
        o.observe(&Observed::Target(rollout(2, "2", "Progressing", "a", "b")));
        assert_eq!(o.judgement(), Judgement::Pending);
        o.observe(&Observed::Target(rollout(2, "2", "Healthy", "b", "b")));
        assert_eq!(o.judgement(), Judgement::Decided(Decision::Promoted));
    }

    #[test]
    fn an_unseen_promote_is_not_a_pause_verdict() {
        let mut o = Observer::new(ControllerKind::Argo, "app");
        let mut ro = rollout(2, "2", "Paused", "a", "b");
        ro["status"]["currentStepIndex"] = json!(1);
        ro["status"]["controllerPause"] = json!(true);
        ro["status"]["pauseConditions"] = json!([{"reason": "CanaryPauseStep"}]);
        o.arm(Some(2));
        o.observe(&Observed::Target(ro.clone()));
        assert_eq!(o.judgement(), Judgement::Decided(Decision::Paused));
        ro["status"]["pauseConditions"] = json!([]);
        o.observe(&Observed::Target(ro));
        assert_eq!(o.judgement(), Judgement::Pending);
    }

    #[test]
    fn canary_routes_read_any_annotation_prefix() {
        let i = json!({"metadata": {"name": "c", "annotations": {
            "custom.io/canary": "true", "custom.io/canary-weight": "20",
            "custom.io/canary-weight-total": "200"}}});
        let r = canary_route(&i).unwrap();
        assert_eq!((r.weight, r.weight_total), (20, 200));
        assert!((r.percent() - 10.0).abs() < 1e-9);
        assert!(canary_route(&json!({"metadata": {"name": "stable"}})).is_none());
    }

    #[test]
    fn each_finished_measurement_of_a_run_is_reported_once_with_its_conditions() {
        let mut o = Observer::new(ControllerKind::Argo, "app");
        let run = |measurements: Value| {
            Observed::AnalysisRun(json!({
                "kind": "AnalysisRun",
                "metadata": {"name": "app-abc-2", "ownerReferences": [{"kind": "Rollout", "name": "app"}]},
                "spec": {"metrics": [{"name": "success-rate",
                    "successCondition": "result[0] >= 0.95", "failureCondition": ""}]},
                "status": {"phase": "Running", "metricResults": [
                    {"name": "success-rate", "measurements": measurements}]},
            }))
        };
        let first = json!({"phase": "Failed", "value": "[0.7]",
            "startedAt": "2025-01-01T00:00:05Z", "finishedAt": "2025-01-01T00:00:05Z"});
        let running = json!({"phase": "Running", "startedAt": "2025-01-01T00:00:15Z"});
        let out = o.observe(&run(json!([first.clone(), running])));
        let measured: Vec<&Emitted> = out.iter().filter(|e| e.kind == "measurement").collect();
        assert_eq!(measured.len(), 1, "{out:#?}");
        let d = &measured[0].data;
        assert_eq!(d["metric"], "success-rate");
        assert_eq!(d["phase"], "Failed");
        assert_eq!(d["value"], "[0.7]");
        assert_eq!(d["run"], "app-abc-2");
        assert_eq!(d["success_condition"], "result[0] >= 0.95");
        assert!(d["failure_condition"].is_null());
        // A relist repeats the run: nothing new.
        let again = o.observe(&run(json!([first])));
        assert!(again.iter().all(|e| e.kind != "measurement"), "{again:#?}");
    }

    #[test]
    fn a_real_flaggers_halt_events_become_failed_measurements() {
        let rate = flagger_halt("Halt podinfo.test advancement success rate 61.39% < 99%").unwrap();
        assert_eq!(rate.data["metric"], "request-success-rate");
        assert_eq!(rate.data["value"], 61.39);
        assert_eq!(rate.data["min"], 99.0);
        assert_eq!(rate.data["phase"], "Failed");
        let slow =
            flagger_halt("Halt podinfo.test advancement request duration 1.5s > 500ms").unwrap();
        assert_eq!(slow.data["metric"], "request-duration");
        assert_eq!(slow.data["value"], 1500.0);
        assert_eq!(slow.data["max"], 500.0);
        let custom = flagger_halt("Halt podinfo.test advancement latency 3.00 > 2").unwrap();
        assert_eq!(
            (&custom.data["metric"], &custom.data["value"]),
            (&json!("latency"), &json!(3.0))
        );
        let none = flagger_halt(
            "Halt advancement no values found for custom metric: latency: no values found",
        )
        .unwrap();
        assert_eq!(
            (&none.data["metric"], &none.data["phase"]),
            (&json!("latency"), &json!("Error"))
        );
        assert!(none.data["value"].is_null());
        assert!(flagger_halt("Advance podinfo.test canary weight 10").is_none());
        assert_eq!(go_duration_ms("1m30s"), Some(90_000.0));
        assert_eq!(go_duration_ms("1x"), None);
    }
}
