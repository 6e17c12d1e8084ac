//! Where `--time-scale` makes a run differ from the policy it stands for: a duration of the
//! policy, scaled, falls below a part of the run that is not scaled and that it races against.
//!
//! The local backend multiplies every duration of the controller objects by the time scale
//! ([`crate::controller::timescale`]), but not what the run itself takes: pods become ready on
//! their own probes, the kubelet backs off 10 s before a restart, a query may take its timeout,
//! nginx may take seconds to apply a weight, a webhook takes its real round trip. At a small
//! scale those can outlast a scaled deadline, interval or pause that they never could on a
//! cluster, and the verdict can differ from the real controller's. [`races`] lists each such
//! case of a scenario, naming both sides; `gauntlet validate` and `gauntlet run` print them as
//! warnings.
//!
//! A race is reported only when the scaled value is below the unscaled part while the value as
//! written is not: a policy that already races on a cluster (a 2 s webhook timeout against a
//! slow hook) behaves the same at every scale, and that is the policy's business, not the time
//! scale's. At time scale 1 nothing is reported.
//!
//! The races, each with the code of the unscaled part ([`Part::code`]):
//! - [`Part::Availability`], `progressDeadlineSeconds` (Rollout; Canary and its Deployment)
//!   against a new pod's earliest availability: the readiness probe's `initialDelaySeconds`
//!   plus `successThreshold - 1` periods, plus a Flagger Deployment's `minReadySeconds` (Argo's
//!   is scaled with the policy).
//! - [`Part::RestartBackoff`], the policy's fastest promotion against a crashing release's
//!   first restart (`crash.after` + kubelet's 10 s back-off), when restarts first count.
//! - [`Part::ErrorRetry`], the fastest promotion against Argo's 10 s retries of an Error
//!   measurement, `consecutiveErrorLimit` of them before the metric fails.
//! - [`Part::QueryTimeout`], a metric's `interval` (Argo) or the analysis `interval` (Flagger)
//!   against the query timeout a slow query may take.
//! - [`Part::ReloadWait`], a timed pause (Argo) or the analysis `interval` (Flagger) against the
//!   up to 5 s a weight change may hold the controller while nginx's old workers exit.
//! - [`Part::HookResponse`], a Flagger webhook's `timeout` against a hook's response time.
//! - [`Part::HookRetry`], the analysis `interval` against go-retryablehttp's first 1 s back-off
//!   of a webhook with `retries`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::budget::{Plan, Policy};
use super::{Fault, Scenario};
use crate::controller::timescale::TimeScale;
use crate::spec::argo::{DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_PROMETHEUS_TIMEOUT, StepKind};
use crate::spec::flagger::DeploymentExt;

/// go-retryablehttp's first back-off (`DefaultBackoff`: 1 s, doubling), which
/// `controller/flagger/webhooks.rs` (`call`) waits unscaled before a webhook's retry.
pub const HOOK_RETRY_WAIT: Duration = Duration::from_secs(1);

/// What a webhook's round trip may take: a Service hop and a receiver that does real work (the
/// real loadtester's blocking tasks, a remote gate). gauntlet's own loadtester answers in
/// milliseconds, so locally only a slow receiver loses this race; below 1 s the margin a
/// timeout written for a cluster had is gone.
pub const HOOK_RESPONSE_ALLOWANCE: Duration = Duration::from_secs(1);

/// The unscaled part of a run that a scaled duration races against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Availability,
    RestartBackoff,
    ErrorRetry,
    QueryTimeout,
    ReloadWait,
    HookResponse,
    HookRetry,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Availability,
        Part::RestartBackoff,
        Part::ErrorRetry,
        Part::QueryTimeout,
        Part::ReloadWait,
        Part::HookResponse,
        Part::HookRetry,
    ];

    /// Where gauntlet's code keeps the part unscaled.
    pub fn code(self) -> &'static str {
        match self {
            Part::Availability => {
                "cluster/local/pods.rs (probe_loop: initial delay and period as written; \
                 available after min_ready), target.rs (min_ready from minReadySeconds)"
            }
            Part::RestartBackoff => "cluster/local/pods.rs (Backoff::default: 10 s doubling)",
            Part::ErrorRetry => "controller/analysis.rs (ERROR_RETRY_INTERVAL: 10 s)",
            Part::QueryTimeout => {
                "controller/flagger/provider.rs (QUERY_TIMEOUT: 5 s), controller/analysis.rs \
                 (the metric's prometheus timeout, default 30 s)"
            }
            Part::ReloadWait => "cluster/local/router.rs (Router::apply, RELOAD_WAIT: 5 s)",
            Part::HookResponse => "controller/flagger/webhooks.rs (HttpTransport::post)",
            Part::HookRetry => "controller/flagger/webhooks.rs (call: 1 s back-off, doubling)",
        }
    }
}

/// One race: a policy value, where it is written, and what it races against.
#[derive(Debug, Clone, PartialEq)]
pub struct Race {
    pub part: Part,
    /// The manifest that holds the policy value.
    pub file: PathBuf,
    /// `Kind/name` of the object.
    pub object: String,
    /// The key path of the policy value, or what it is derived from.
    pub field: String,
    pub written: Duration,
    pub scaled: Duration,
    /// The unscaled side, in words (`readinessProbe.initialDelaySeconds 15s`).
    pub against: String,
    pub unscaled: Duration,
    /// What can happen.
    pub effect: String,
}

impl fmt::Display for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` {} {} = {} runs as {}, below {} = {} (not scaled): {}",
            self.file.display(),
            self.object,
            self.field,
            show(self.written),
            show(self.scaled),
            self.against,
            show(self.unscaled),
            self.effect
        )
    }
}

fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// The races of `s` at the time scale it runs at (`plan.scale`).
pub fn races(s: &Scenario, plan: &Plan) -> Vec<Race> {
    let scale = plan.scale;
    if scale.factor() >= 1.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut race = |r: Race| {
        if r.scaled < r.unscaled && r.written >= r.unscaled {
            out.push(r);
        }
    };
    let availability = availability(plan, scale);
    match &plan.policy {
        Policy::Argo(e) => {
            let Some(rollout) = plan.workload.manifests.rollouts.first() else {
                return Vec::new();
            };
            let file = rollout.origin.file.clone();
            let object = format!("Rollout/{}", rollout.object.name());
            let at = |field: String,
                      written: Duration,
                      part: Part,
                      against: String,
                      unscaled: Duration,
                      effect: &str| Race {
                part,
                file: file.clone(),
                object: object.clone(),
                field,
                written,
                scaled: scale.duration(written),
                against,
                unscaled,
                effect: effect.to_string(),
            };
            if let Some((against, unscaled)) = &availability {
                let set = rollout.object.spec.progress_deadline_seconds.is_some();
                race(at(
                    field_or_default("spec.progressDeadlineSeconds", set),
                    rollout.object.progress_deadline(),
                    Part::Availability,
                    against.clone(),
                    *unscaled,
                    "the deadline can pass before a new pod can be available, so the rollout is \
                     marked as stalled (and aborted with progressDeadlineAbort) where the real \
                     controller sees the canary become available in time",
                ));
            }
            if let Some(canary) = rollout.object.canary() {
                for (i, step) in canary.steps.iter().enumerate() {
                    if let Some(StepKind::Pause(p)) = step.kind()
                        && let Some(d) = p.duration()
                    {
                        race(at(
                            format!("spec.strategy.canary.steps[{i}].pause.duration"),
                            d,
                            Part::ReloadWait,
                            "the nginx reload wait of a weight change".into(),
                            crate::cluster::local::router::RELOAD_WAIT,
                            "applying the preceding weight can hold the controller longer than \
                             the whole pause, so steps take longer than the policy's clock says",
                        ));
                    }
                }
            }
            for a in &e.analyses {
                for (metric, origin) in a.metrics.iter().zip(&a.metric_origins) {
                    let Some((tfile, tobject, index)) = template_metric(plan, origin, &metric.name)
                    else {
                        continue;
                    };
                    let interval = metric
                        .interval
                        .as_deref()
                        .and_then(|i| crate::spec::duration::parse_go_duration(i).ok());
                    let timeout = metric
                        .provider
                        .prometheus
                        .as_ref()
                        .and_then(|p| p.timeout)
                        .map_or(DEFAULT_PROMETHEUS_TIMEOUT, |t| {
                            Duration::from_secs(t.max(0).unsigned_abs())
                        });
                    if let Some(interval) = interval {
                        race(Race {
                            part: Part::QueryTimeout,
                            file: tfile.clone(),
                            object: tobject.clone(),
                            field: format!("spec.metrics[{index}].interval"),
                            written: interval,
                            scaled: scale.duration(interval),
                            against: format!(
                                "its query timeout (spec.metrics[{index}].provider.prometheus.timeout)"
                            ),
                            unscaled: timeout,
                            effect: "a slow query delays the next measurement by more than an \
                                     interval, so fewer measurements fit the scaled steps"
                                .into(),
                        });
                    }
                }
            }
            if let Some(promoted) = plan.fastest.promoted {
                let written = scale.unscale(promoted);
                let field = "the fastest promotion (its steps' pauses and analyses)".to_string();
                if let Some(after) = crash_after(s) {
                    let backoff = crate::cluster::local::pods::Backoff::default().initial;
                    race(at(
                        field.clone(),
                        written,
                        Part::RestartBackoff,
                        format!(
                            "the release's first restart (crash.after {} + kubelet back-off {})",
                            show(after),
                            show(backoff)
                        ),
                        after + backoff,
                        "the canary can be promoted before its first restart is counted, so a \
                         restart-based check cannot stop it",
                    ));
                }
                if let Some((name, limit)) = smallest_error_limit(e) {
                    let retry = crate::controller::analysis::ERROR_RETRY_INTERVAL;
                    race(at(
                        field,
                        written,
                        Part::ErrorRetry,
                        format!(
                            "metric {name}'s time to fail on errors ({limit} retries of an Error \
                             measurement, every {})",
                            show(retry)
                        ),
                        retry * limit,
                        "a condition that errors (no data, a bad query) fails the metric only \
                         after the canary could be promoted, where the real controller aborts",
                    ));
                }
            }
        }
        Policy::Flagger(e) => {
            let canary = &e.canary;
            let file = canary.origin.file.clone();
            let object = format!("Canary/{}", canary.object.name());
            let at = |field: String,
                      written: Duration,
                      part: Part,
                      against: String,
                      unscaled: Duration,
                      effect: &str| Race {
                part,
                file: file.clone(),
                object: object.clone(),
                field,
                written,
                scaled: scale.duration(written),
                against,
                unscaled,
                effect: effect.to_string(),
            };
            if let Some((against, unscaled)) = &availability {
                let set = canary.object.spec.progress_deadline_seconds.is_some();
                race(at(
                    field_or_default("spec.progressDeadlineSeconds", set),
                    canary.object.progress_deadline(),
                    Part::Availability,
                    against.clone(),
                    *unscaled,
                    "the canary can be rolled back for not becoming ready in time where the real \
                     Flagger waits for it",
                ));
                let d = &e.deployment;
                let set = d
                    .object
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.progress_deadline_seconds.is_some());
                race(Race {
                    part: Part::Availability,
                    file: d.origin.file.clone(),
                    object: format!(
                        "Deployment/{}",
                        crate::spec::manifests::name(&d.object.metadata)
                    ),
                    field: field_or_default("spec.progressDeadlineSeconds", set),
                    written: d.object.progress_deadline(),
                    scaled: scale.duration(d.object.progress_deadline()),
                    against: against.clone(),
                    unscaled: *unscaled,
                    effect: "the Deployment can report ProgressDeadlineExceeded before a new pod \
                             can be available, which Flagger rolls back"
                        .into(),
                });
            }
            let Some(analysis) = canary.object.analysis() else {
                return out;
            };
            let interval = analysis.interval();
            let interval_field =
                field_or_default("spec.analysis.interval", analysis.interval.is_some());
            if !analysis.metrics.is_empty() {
                race(at(
                    interval_field.clone(),
                    interval,
                    Part::QueryTimeout,
                    "the metric query timeout".into(),
                    crate::controller::flagger::QUERY_TIMEOUT,
                    "a slow query holds the tick past the next one, so fewer checks run than \
                     the policy's clock says",
                ));
            }
            race(at(
                interval_field.clone(),
                interval,
                Part::ReloadWait,
                "the nginx reload wait of a weight change".into(),
                crate::cluster::local::router::RELOAD_WAIT,
                "a weight change can hold the tick past the next one, so the analysis advances \
                 slower than the policy's clock says",
            ));
            for (i, hook) in analysis.webhooks.iter().enumerate() {
                let default = if hook.timeout.is_some() {
                    ""
                } else {
                    ", default"
                };
                race(at(
                    format!(
                        "spec.analysis.webhooks[{i}].timeout ({}{default})",
                        hook.name
                    ),
                    hook.timeout(),
                    Part::HookResponse,
                    "a webhook's response time".into(),
                    HOOK_RESPONSE_ALLOWANCE,
                    "a hook that answers in time on a cluster can time out here (a failed \
                     check, a gate that stays closed)",
                ));
                if hook.retries.is_some_and(|r| r > 0) {
                    race(at(
                        interval_field.clone(),
                        interval,
                        Part::HookRetry,
                        format!("webhook {}'s first retry back-off", hook.name),
                        HOOK_RETRY_WAIT,
                        "a retried hook holds the tick past the next one",
                    ));
                }
            }
            if let (Some(after), Some(promoted)) = (crash_after(s), plan.fastest.promoted) {
                let backoff = crate::cluster::local::pods::Backoff::default().initial;
                race(at(
                    "the fastest promotion (its interval, steps and threshold)".into(),
                    scale.unscale(promoted),
                    Part::RestartBackoff,
                    format!(
                        "the release's first restart (crash.after {} + kubelet back-off {})",
                        show(after),
                        show(backoff)
                    ),
                    after + backoff,
                    "the canary can be promoted before its first restart is counted, so a \
                     restart-based check cannot stop it",
                ));
            }
        }
    }
    out
}

/// `path`, or `path (unset: the default)`.
fn field_or_default(path: &str, set: bool) -> String {
    if set {
        path.to_string()
    } else {
        format!("{path} (unset, the default)")
    }
}

/// A new pod's earliest availability where it is not scaled: the readiness probe's initial
/// delay and the further successes it needs, and `minReadySeconds` unless the workload runs it
/// scaled. `None` when that is zero.
fn availability(plan: &Plan, scale: TimeScale) -> Option<(String, Duration)> {
    let w = &plan.workload;
    let container = w.spec.spec.as_ref()?.containers.first()?;
    let mut parts = Vec::new();
    let mut total = Duration::ZERO;
    let probe = container.readiness_probe.as_ref();
    let secs =
        |v: Option<i32>| Duration::from_secs(v.map_or(0, |v| v.max(0).unsigned_abs().into()));
    if let Some(p) = probe {
        let delay = secs(p.initial_delay_seconds);
        if !delay.is_zero() {
            parts.push(format!(
                "readinessProbe.initialDelaySeconds {}",
                show(delay)
            ));
            total += delay;
        }
        let more = p.success_threshold.unwrap_or(1).max(1).unsigned_abs() - 1;
        if more > 0 {
            let period = p.period_seconds.map_or(Duration::from_secs(10), |v| {
                Duration::from_secs(v.max(1).unsigned_abs().into())
            });
            parts.push(format!(
                "{more} more readinessProbe.periodSeconds {}",
                show(period)
            ));
            total += period * more;
        }
    }
    // Argo's ReplicaSets get the Rollout's minReadySeconds on the policy's clock (scaled with
    // it); a Flagger target's Deployment keeps its own, unscaled.
    let written_min_ready = written_min_ready(plan);
    let unscaled = matches!(plan.policy, Policy::Flagger(_));
    if !written_min_ready.is_zero() && unscaled && !scale.is_identity() {
        parts.push(format!("minReadySeconds {}", show(written_min_ready)));
        total += written_min_ready;
    }
    if total.is_zero() {
        return None;
    }
    Some((
        format!("a new pod's earliest availability ({})", parts.join(" + ")),
        total,
    ))
}

fn written_min_ready(plan: &Plan) -> Duration {
    match &plan.policy {
        Policy::Argo(_) => plan
            .workload
            .manifests
            .rollouts
            .first()
            .map_or(Duration::ZERO, |r| r.object.min_ready()),
        Policy::Flagger(e) => e.deployment.object.min_ready(),
    }
}

fn crash_after(s: &Scenario) -> Option<Duration> {
    s.faults.iter().find_map(|f| match f {
        Fault::Crash { after } => Some(*after),
        _ => None,
    })
}

/// The file, object and metric index of a merged metric, from its origin (`AnalysisTemplate/x`).
fn template_metric(plan: &Plan, origin: &str, metric: &str) -> Option<(PathBuf, String, usize)> {
    let m = &plan.workload.manifests;
    let (kind, name) = origin.split_once('/')?;
    let namespace = plan.workload.namespace.as_str();
    let (file, metrics) = match kind {
        "AnalysisTemplate" => {
            let t = m.analysis_template(namespace, name)?;
            (t.origin.file.clone(), &t.object.spec.metrics)
        }
        "ClusterAnalysisTemplate" => {
            let t = m.cluster_analysis_template(name)?;
            (t.origin.file.clone(), &t.object.spec.metrics)
        }
        _ => return None,
    };
    let index = metrics.iter().position(|x| x.name == metric)?;
    Some((file, origin.to_string(), index))
}

/// The metric that fails soonest on errors: its name and `consecutiveErrorLimit`.
fn smallest_error_limit(e: &crate::controller::argo::from_spec::Emulated) -> Option<(String, u32)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    e.analyses
        .iter()
        .flat_map(|a| &a.metrics)
        .filter(|m| m.provider.prometheus.is_some())
        .map(|m| {
            let limit = match &m.consecutive_error_limit {
                Some(IntOrString::Int(i)) => i.max(&0).unsigned_abs(),
                Some(IntOrString::String(s)) => {
                    s.parse().unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT)
                }
                None => DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            };
            (m.name.clone(), limit)
        })
        .filter(|(_, limit)| *limit > 0)
        .min_by_key(|(_, limit)| *limit)
}

#[cfg(test)]
mod tests;
