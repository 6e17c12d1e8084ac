//! Argo Rollouts v1.9.1 objects as the user wrote them: `Rollout`, `AnalysisTemplate`,
//! `ClusterAnalysisTemplate` (`argoproj.io/v1alpha1`), with Argo's serde names, defaults applied
//! through methods, and durations parsed so the controller never handles strings.
//!
//! # Brief overview
//! - Decoding ([`decode_rollout`] and friends) checks each object against a structural schema
//!   first ([`schema`]), so every unknown or refused field is reported with its key path; the
//!   pod template and metadata are free-form and decoded by k8s-openapi.
//! - [`validate()`] holds the rules of Argo's CRD and controller (its CRD schema and `pkg/apis/rollouts/validation` at v1.9.1) and what
//!   would only fail at run time, across the objects of a target.
//! - [`merge_analysis`] is Argo's `NewAnalysisRunFromTemplates`: templates (nested and
//!   cluster-scoped) flattened, args merged. [`MergedAnalysis::arg_values`] and
//!   [`MergedAnalysis::resolve`] then give the controller typed metrics for a run.
//!
//! What the local emulation cannot honour is refused, never dropped: only the canary strategy,
//! nginx traffic routing and the Prometheus provider are read.

pub mod schema;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::validate::validate;
use super::duration::{PauseDuration, parse_go_duration};
use super::error::{KeyPath, SpecErrorKind};
use super::manifests::{self, Manifest, Manifests, decode_checked};
use super::shape::Problem;

/// The only version of Argo's API this emulation reads.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";

/// The label Argo puts on pods and ReplicaSets, and strips from Service selectors it compares.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";

/// ingress-nginx's annotation prefix unless `annotationPrefix` says otherwise.
pub const DEFAULT_NGINX_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";

// ------------------------------------------------------------------------------------------
// Rollout

/// `argoproj.io/v1alpha1` `Rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: RolloutSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Pods of the stable revision. Default 1 (Argo writes it back when unset).
    pub replicas: Option<i32>,
    /// Required; must select the template's labels.
    pub selector: LabelSelector,
    /// The pod template; free-form here, interpreted by the backend.
    pub template: PodTemplateSpec,
    /// Seconds a pod must be ready before it counts as available. Default 0.
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept. Default 10.
    pub revision_history_limit: Option<i32>,
    /// `true` holds the rollout at its current step (phase `Paused`, `manually paused`).
    #[serde(default)]
    pub paused: bool,
    /// Seconds without progress before `ProgressDeadlineExceeded`. Default 600. Not checked
    /// during pause, analysis or experiment steps.
    pub progress_deadline_seconds: Option<i32>,
    /// Abort (not only mark Degraded) when the progress deadline passes. Default false.
    #[serde(default)]
    pub progress_deadline_abort: bool,
    pub strategy: RolloutStrategy,
    /// Garbage collection of old AnalysisRuns; no effect on decisions.
    pub analysis: Option<AnalysisRunStrategy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// The only strategy emulated; `None` only in an object that failed validation.
    pub canary: Option<CanaryStrategy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunStrategy {
    /// Successful AnalysisRuns kept. Default 5.
    pub successful_run_history_limit: Option<i32>,
    /// Unsuccessful AnalysisRuns kept. Default 5.
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// `spec.strategy.canary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStrategy {
    /// Service the controller points at the canary ReplicaSet. Required with trafficRouting.
    #[serde(default)]
    pub canary_service: String,
    /// Service the controller points at the stable ReplicaSet. Required with trafficRouting.
    #[serde(default)]
    pub stable_service: String,
    /// No steps: straight to 100 % and promote.
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    pub traffic_routing: Option<RolloutTrafficRouting>,
    /// Int, or a string that always counts as a percent (`"1"` = 1 %). Default `"25%"`.
    pub max_unavailable: Option<IntOrString>,
    /// Int, or a string that always counts as a percent. Default `"25%"`.
    pub max_surge: Option<IntOrString>,
    /// The background analysis, running beside the steps from `startingStep` on.
    pub analysis: Option<RolloutAnalysis>,
    /// Scheduling only; there are no nodes locally, so it changes nothing.
    pub anti_affinity: Option<Value>,
    /// Seconds the previous stable ReplicaSet stays up after promotion. Default 30 with
    /// trafficRouting.
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old ReplicaSets may wait for their scale-down at once. Default unlimited.
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds the canary stays up after an abort, counted from the stable being fully
    /// available; 0 = never scaled down. Default 30 with trafficRouting.
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable down as the canary weight rises. Refused locally.
    #[serde(default)]
    pub dynamic_stable_scale: bool,
}

/// One canary step; exactly one field is set in a valid step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of traffic (of `maxTrafficWeight`) to the canary.
    pub set_weight: Option<i32>,
    pub pause: Option<RolloutPause>,
    /// An inline analysis; its metrics must all finish (a count).
    pub analysis: Option<RolloutAnalysis>,
    pub set_canary_scale: Option<SetCanaryScale>,
}

/// What a step does, once validation has made sure it does one thing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepKind<'a> {
    SetWeight(i32),
    Pause(&'a RolloutPause),
    Analysis(&'a RolloutAnalysis),
    SetCanaryScale(&'a SetCanaryScale),
}

impl CanaryStep {
    /// The one thing the step does; `None` when it sets no field or several.
    pub fn kind(&self) -> Option<StepKind<'_>> {
        let all = [
            self.set_weight.map(StepKind::SetWeight),
            self.pause.as_ref().map(StepKind::Pause),
            self.analysis.as_ref().map(StepKind::Analysis),
            self.set_canary_scale.as_ref().map(StepKind::SetCanaryScale),
        ];
        let mut set = all.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }

    /// The names of the fields set, for messages.
    pub(crate) fn fields_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.set_weight.is_some() {
            v.push("setWeight");
        }
        if self.pause.is_some() {
            v.push("pause");
        }
        if self.analysis.is_some() {
            v.push("analysis");
        }
        if self.set_canary_scale.is_some() {
            v.push("setCanaryScale");
        }
        v
    }
}

/// `pause: {}` waits until promoted; `pause: {duration: 30s}` (or `30`, `"30"`) waits that long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPause {
    pub duration: Option<PauseDuration>,
}

impl RolloutPause {
    /// `None`: indefinite, until promoted. Whole seconds, as Argo truncates.
    pub fn duration(&self) -> Option<Duration> {
        self.duration.as_ref().map(PauseDuration::duration)
    }
}

/// `setCanaryScale`: exactly one of the three in a valid step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetCanaryScale {
    /// Canary pods as a percent of `spec.replicas`.
    pub weight: Option<i32>,
    /// Canary pods as a count.
    pub replicas: Option<i32>,
    /// Canary pods follow the traffic weight again (the default behaviour).
    #[serde(default)]
    pub match_traffic_weight: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutTrafficRouting {
    /// The only router emulated.
    pub nginx: Option<NginxTrafficRouting>,
    /// The weight that means "all traffic". Default 100.
    pub max_traffic_weight: Option<i32>,
}

/// `trafficRouting.nginx`: the controller writes a canary Ingress
/// `<rollout>-<stableIngress>-canary` with ingress-nginx's canary annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NginxTrafficRouting {
    /// Default `nginx.ingress.kubernetes.io`.
    pub annotation_prefix: Option<String>,
    /// The Ingress users reach; exactly one of this and `stableIngresses`.
    #[serde(default)]
    pub stable_ingress: String,
    #[serde(default)]
    pub stable_ingresses: Vec<String>,
    /// Added to the canary Ingress as `<prefix>/<key>` (unless the key has the prefix).
    #[serde(default)]
    pub additional_ingress_annotations: BTreeMap<String, String>,
    /// Added verbatim after the additional ones, so they win.
    #[serde(default)]
    pub canary_ingress_annotations: BTreeMap<String, String>,
}

impl NginxTrafficRouting {
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_NGINX_ANNOTATION_PREFIX)
    }

    /// The stable Ingresses, whichever field names them.
    pub fn stable_ingresses(&self) -> Vec<&str> {
        if self.stable_ingress.is_empty() {
            self.stable_ingresses.iter().map(String::as_str).collect()
        } else {
            vec![self.stable_ingress.as_str()]
        }
    }

    /// The annotations the controller sets on the canary Ingress besides `canary` and
    /// `canary-weight`, with full keys, in Argo's order (additional first, canary ones win).
    pub fn static_canary_annotations(&self) -> BTreeMap<String, String> {
        let prefix = self.annotation_prefix();
        let mut out = BTreeMap::new();
        for (k, v) in &self.additional_ingress_annotations {
            let key = if k.starts_with(prefix) {
                k.clone()
            } else {
                format!("{prefix}/{k}")
            };
            out.insert(key, v.clone());
        }
        for (k, v) in &self.canary_ingress_annotations {
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

/// The name of the canary Ingress the controller creates for one stable Ingress.
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    let mut name = format!("{rollout}-{stable_ingress}-canary");
    name.truncate(253);
    name
}

/// A step's `analysis`, or the background `canary.analysis` (which alone has `startingStep`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutAnalysis {
    /// Merged into one run: metrics and args of all of them.
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
    /// Override or supply the templates' args; args no template declares are ignored.
    #[serde(default)]
    pub args: Vec<AnalysisRunArgument>,
    #[serde(default)]
    pub dry_run: Vec<DryRun>,
    #[serde(default)]
    pub measurement_retention: Vec<MeasurementRetention>,
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Background only: the run starts once `currentStepIndex >= startingStep`. Default 0.
    pub starting_step: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateRef {
    pub template_name: String,
    /// `true`: a ClusterAnalysisTemplate.
    #[serde(default)]
    pub cluster_scope: bool,
}

/// An arg the Rollout passes to its analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunArgument {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<ArgumentValueFrom>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgumentValueFrom {
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    pub field_ref: Option<FieldRef>,
}

/// Which ReplicaSet's `rollouts-pod-template-hash` an arg receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodTemplateHashValue {
    /// The stable ReplicaSet's.
    Stable,
    /// The newest (canary) ReplicaSet's.
    Latest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldRef {
    /// `metadata.name`, `metadata.labels['k']`, ... (downward API), or a path into the Rollout
    /// such as `spec.template.spec.containers[0].image`.
    pub field_path: String,
}

/// Metrics whose name matches (Go regexp, unanchored) are measured but never decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRun {
    pub metric_name: String,
}

/// Keep the last `limit` measurements (instead of 10) of matching metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasurementRetention {
    pub metric_name: String,
    pub limit: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Rollout {
    pub fn name(&self) -> &str {
        manifests::name(&self.metadata)
    }

    /// `metadata.namespace`, or `default`.
    pub fn namespace(&self) -> &str {
        manifests::namespace(&self.metadata)
    }

    /// `spec.replicas`, default 1.
    pub fn replicas(&self) -> u32 {
        self.spec.replicas.map_or(1, |r| r.max(0).unsigned_abs())
    }

    /// `spec.minReadySeconds`, default 0.
    pub fn min_ready(&self) -> Duration {
        secs(self.spec.min_ready_seconds.unwrap_or(0))
    }

    /// `spec.progressDeadlineSeconds`, default 600 s.
    pub fn progress_deadline(&self) -> Duration {
        secs(self.spec.progress_deadline_seconds.unwrap_or(600))
    }

    /// `spec.revisionHistoryLimit`, default 10.
    pub fn revision_history_limit(&self) -> u32 {
        self.spec
            .revision_history_limit
            .unwrap_or(10)
            .max(0)
            .unsigned_abs()
    }

    /// The canary strategy; always present in a validated Rollout.
    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.spec.strategy.canary.as_ref()
    }
}

impl CanaryStrategy {
    pub fn nginx(&self) -> Option<&NginxTrafficRouting> {
        self.traffic_routing.as_ref()?.nginx.as_ref()
    }

    /// `trafficRouting.maxTrafficWeight`, default 100.
    pub fn max_traffic_weight(&self) -> u32 {
        self.traffic_routing
            .as_ref()
            .and_then(|t| t.max_traffic_weight)
            .map_or(100, |w| w.max(0).unsigned_abs())
    }

    /// `scaleDownDelaySeconds`: default 30 s with trafficRouting (the only mode emulated).
    pub fn scale_down_delay(&self) -> Duration {
        secs(self.scale_down_delay_seconds.unwrap_or(30))
    }

    /// `abortScaleDownDelaySeconds`: default 30 s with trafficRouting; `None` for 0, which
    /// leaves the aborted canary up for good.
    pub fn abort_scale_down_delay(&self) -> Option<Duration> {
        match self.abort_scale_down_delay_seconds.unwrap_or(30) {
            0 => None,
            s => Some(secs(s)),
        }
    }

    /// `maxSurge` resolved against `replicas` (rounded up), as Argo's deprecated
    /// `GetValueFromIntOrPercent` does: every string is a percent, `%` or not.
    pub fn max_surge(&self, replicas: u32) -> u32 {
        let (surge, _) = self.surge_unavailable(replicas);
        surge
    }

    /// `maxUnavailable` resolved against `replicas` (rounded down); 1 when both would be 0.
    pub fn max_unavailable(&self, replicas: u32) -> u32 {
        let (_, unavailable) = self.surge_unavailable(replicas);
        unavailable
    }

    fn surge_unavailable(&self, replicas: u32) -> (u32, u32) {
        let quarter = IntOrString::String("25%".into());
        let surge = scaled(self.max_surge.as_ref().unwrap_or(&quarter), replicas, true);
        let unavailable = scaled(
            self.max_unavailable.as_ref().unwrap_or(&quarter),
            replicas,
            false,
        );
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }
}

/// An int-or-percent against a total; strings that are not numbers count as 0 (validation
/// refuses them first).
fn scaled(v: &IntOrString, total: u32, round_up: bool) -> u32 {
    match v {
        IntOrString::Int(i) => i.max(&0).unsigned_abs(),
        IntOrString::String(s) => {
            let pct: u64 = percent_value(s).unwrap_or(0);
            let x = pct * u64::from(total);
            let v = if round_up { x.div_ceil(100) } else { x / 100 };
            u32::try_from(v).unwrap_or(u32::MAX)
        }
    }
}

/// The number of a percent string, with or without `%`.
pub(crate) fn percent_value(s: &str) -> Option<u64> {
    s.strip_suffix('%').unwrap_or(s).parse().ok()
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::from(s.max(0).unsigned_abs()))
}

// ------------------------------------------------------------------------------------------
// AnalysisTemplate / ClusterAnalysisTemplate

/// `argoproj.io/v1alpha1` `AnalysisTemplate` (namespaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: AnalysisTemplateSpec,
}

/// `argoproj.io/v1alpha1` `ClusterAnalysisTemplate`: the same spec, cluster-scoped, referenced
/// with `clusterScope: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAnalysisTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: AnalysisTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateSpec {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Declared args; one without `value` must be supplied by the Rollout.
    #[serde(default)]
    pub args: Vec<Argument>,
    #[serde(default)]
    pub dry_run: Vec<DryRun>,
    #[serde(default)]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Nested templates whose metrics and args join this one's.
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
}

/// A template's declared arg: `value` is its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Argument {
    pub name: String,
    pub value: Option<String>,
}

/// One metric. Every string may hold `{{args.NAME}}`, substituted when a run is created, so
/// the typed values come from [`Metric::resolve`], not from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    /// Go duration between measurements (`30s`, `1m`); a unit is required. Unset: one
    /// measurement, unless `count` says more (then it is required).
    pub interval: Option<String>,
    /// Go duration after the run starts before the first measurement. Default 0.
    pub initial_delay: Option<String>,
    /// Measurements to take. Unset or 0: 1 without an interval, unbounded with one.
    pub count: Option<IntOrString>,
    /// expr-lang over `result`; see `controller::expr`.
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    /// The metric fails when failed measurements exceed this. Default 0; -1 disables it (only
    /// with `consecutiveSuccessLimit`).
    pub failure_limit: Option<IntOrString>,
    /// The metric is Inconclusive when inconclusive measurements exceed this. Default 0.
    pub inconclusive_limit: Option<IntOrString>,
    /// The metric errors when consecutive errors exceed this. Default 4.
    pub consecutive_error_limit: Option<IntOrString>,
    /// Successful as soon as this many consecutive successes are seen. Default 0 = off.
    pub consecutive_success_limit: Option<IntOrString>,
    pub provider: MetricProvider,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricProvider {
    /// The only provider emulated.
    pub prometheus: Option<PrometheusMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMetric {
    /// URL of the Prometheus server. The local backend queries its own Prometheus whatever
    /// this says; empty falls back to `ARGO_ROLLOUTS_PROMETHEUS_ADDRESS` in a cluster.
    #[serde(default)]
    pub address: String,
    /// An instant query; a vector result reaches the conditions as a list (`result[0]`).
    #[serde(default)]
    pub query: String,
    /// Seconds one query may take. Default 30.
    pub timeout: Option<i64>,
    /// Skip TLS verification; the local Prometheus is plain HTTP.
    #[serde(default)]
    pub insecure: bool,
    /// Extra request headers (e.g. a tenant id); the local Prometheus ignores them.
    #[serde(default)]
    pub headers: Vec<WebMetricHeader>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebMetricHeader {
    pub key: String,
    pub value: String,
}

impl AnalysisTemplate {
    pub fn name(&self) -> &str {
        manifests::name(&self.metadata)
    }
}

impl ClusterAnalysisTemplate {
    pub fn name(&self) -> &str {
        manifests::name(&self.metadata)
    }
}

/// A metric with its args substituted and every value typed: what a run measures.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMetric {
    pub name: String,
    /// `None`: no interval (a single measurement unless `count` > 1).
    pub interval: Option<Duration>,
    pub initial_delay: Duration,
    /// `count` as written, 0 when unset; see [`ResolvedMetric::effective_count`].
    pub count: u32,
    /// Negative disables the failure check.
    pub failure_limit: i32,
    pub inconclusive_limit: u32,
    pub consecutive_error_limit: u32,
    /// 0 = off.
    pub consecutive_success_limit: u32,
    /// Empty conditions are `None`.
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub prometheus: ResolvedPrometheus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPrometheus {
    pub address: String,
    /// The query after args were substituted (Argo's `ResolvedPrometheusQuery`).
    pub query: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
}

impl ResolvedMetric {
    /// Argo's `EffectiveCount()`: unset or 0 means 1 without an interval and unbounded
    /// (`None`) with one.
    pub fn effective_count(&self) -> Option<u32> {
        match (self.count, self.interval) {
            (0, None) => Some(1),
            (0, Some(_)) => None,
            (c, _) => Some(c),
        }
    }
}

/// Argo's default `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Argo's default Prometheus query timeout.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

impl Metric {
    /// Substitutes `args` into every string of the metric, as Argo does into the marshalled
    /// metric when it creates a run, then types the values.
    ///
    /// # Errors
    /// An arg that is not in `args` (`failed to resolve {{args.x}}`), or a value that is not
    /// what its field needs once substituted (`invalid interval string: ...`). Validation
    /// reports both up front for every arg it can know before the run.
    pub fn resolve(&self, args: &BTreeMap<String, String>) -> Result<ResolvedMetric, String> {
        let render = |s: &str| crate::controller::analysis::render_args(s, args);
        let render_opt = |s: &Option<String>| -> Result<Option<String>, String> {
            match s {
                Some(s) if !s.is_empty() => render(s).map(Some),
                _ => Ok(None),
            }
        };
        let render_int = |v: &Option<IntOrString>| -> Result<Option<IntOrString>, String> {
            match v {
                Some(IntOrString::String(s)) => Ok(Some(IntOrString::String(render(s)?))),
                other => Ok(other.clone()),
            }
        };
        let interval = render_opt(&self.interval)?;
        let initial_delay = render_opt(&self.initial_delay)?;
        let count = render_int(&self.count)?;
        let failure_limit = render_int(&self.failure_limit)?;
        let inconclusive_limit = render_int(&self.inconclusive_limit)?;
        let consecutive_error_limit = render_int(&self.consecutive_error_limit)?;
        let consecutive_success_limit = render_int(&self.consecutive_success_limit)?;
        let success_condition = render_opt(&self.success_condition)?;
        let failure_condition = render_opt(&self.failure_condition)?;
        let prom = self
            .provider
            .prometheus
            .as_ref()
            .ok_or_else(|| "no provider specified".to_string())?;
        let address = render(&prom.address)?;
        let query = render(&prom.query)?;

        let interval = interval
            .map(|s| parse_go_duration(&s).map_err(|e| format!("invalid interval string: {e}")))
            .transpose()?;
        let initial_delay = initial_delay
            .map(|s| parse_go_duration(&s).map_err(|e| format!("invalid startDelay string: {e}")))
            .transpose()?
            .unwrap_or_default();
        let count = int_field("count", &count)?.unwrap_or(0);
        let failure_limit = int_field("failureLimit", &failure_limit)?.unwrap_or(0);
        let inconclusive_limit = int_field("inconclusiveLimit", &inconclusive_limit)?.unwrap_or(0);
        let consecutive_error_limit = int_field("consecutiveErrorLimit", &consecutive_error_limit)?
            .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT as i32);
        let consecutive_success_limit =
            int_field("consecutiveSuccessLimit", &consecutive_success_limit)?.unwrap_or(0);
        check_counts(
            count,
            interval.is_some(),
            failure_limit,
            inconclusive_limit,
            consecutive_error_limit,
            consecutive_success_limit,
        )?;
        let timeout = match prom.timeout {
            None => DEFAULT_PROMETHEUS_TIMEOUT,
            Some(t) if t < 0 => return Err(format!("timeout must be >= 0, got {t}")),
            Some(t) => Duration::from_secs(t.unsigned_abs()),
        };
        let unsigned = |v: i32| v.max(0).unsigned_abs();
        Ok(ResolvedMetric {
            name: self.name.clone(),
            interval,
            initial_delay,
            count: unsigned(count),
            failure_limit,
            inconclusive_limit: unsigned(inconclusive_limit),
            consecutive_error_limit: unsigned(consecutive_error_limit),
            consecutive_success_limit: unsigned(consecutive_success_limit),
            success_condition,
            failure_condition,
            prometheus: ResolvedPrometheus {
                address,
                query,
                timeout,
                headers: prom
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
            },
        })
    }
}

/// An int-or-string count or limit as an int. Argo's `IntValue()` would read `"abc"` as 0;
/// gauntlet refuses it instead.
pub(crate) fn int_field(field: &str, v: &Option<IntOrString>) -> Result<Option<i32>, String> {
    match v {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(*i)),
        Some(IntOrString::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{field} must be an integer, got {s:?}")),
    }
}

/// The relations of Argo's `ValidateMetric` between count, interval and the limits.
pub(crate) fn check_counts(
    count: i32,
    has_interval: bool,
    failure_limit: i32,
    inconclusive_limit: i32,
    consecutive_error_limit: i32,
    consecutive_success_limit: i32,
) -> Result<(), String> {
    if count < 0 {
        return Err("count must be >= 0".into());
    }
    if count > 0 {
        if count < failure_limit + consecutive_success_limit.max(0) {
            return Err("count must be >= failureLimit + consecutiveSuccessLimit".into());
        }
        if count < inconclusive_limit {
            return Err("count must be >= inconclusiveLimit".into());
        }
    }
    if count > 1 && !has_interval {
        return Err("interval must be specified when count > 1".into());
    }
    if failure_limit < -1 || (failure_limit == -1 && consecutive_success_limit <= 0) {
        return Err(
            "failureLimit must be >= 0 (-1 is allowed only with consecutiveSuccessLimit > 0)"
                .into(),
        );
    }
    if inconclusive_limit < 0 {
        return Err("inconclusiveLimit must be >= 0".into());
    }
    if consecutive_error_limit < 0 {
        return Err("consecutiveErrorLimit must be >= 0".into());
    }
    if consecutive_success_limit < 0 {
        return Err("consecutiveSuccessLimit must be >= 0".into());
    }
    Ok(())
}

/// The names of the args a string refers to (`{{args.x}}`, spaces allowed inside the braces).
pub fn referenced_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        if let Some(name) = after[..close].trim().strip_prefix("args.") {
            out.push(name);
        }
        rest = &after[close + 2..];
    }
    out
}

// ------------------------------------------------------------------------------------------
// Merging templates into what one run measures

/// What one AnalysisRun of a Rollout measures: its templates flattened (nested ones included;
/// namespaced metrics first, then cluster-scoped ones, as Argo orders them) and its args
/// merged.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedAnalysis {
    /// `AnalysisTemplate/x`, `ClusterAnalysisTemplate/y`, in merge order.
    pub templates: Vec<String>,
    pub metrics: Vec<Metric>,
    /// For each metric, the template it came from (`AnalysisTemplate/x`), for messages.
    pub metric_origins: Vec<String>,
    pub args: Vec<MergedArg>,
    pub dry_run: Vec<DryRun>,
    pub measurement_retention: Vec<MeasurementRetention>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergedArg {
    pub name: String,
    pub source: ArgSource,
}

/// Where a run's arg gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgSource {
    Value(String),
    PodTemplateHash(PodTemplateHashValue),
    /// A `fieldPath` into the Rollout.
    FieldRef(String),
}

/// One problem found while merging, relative to the `RolloutAnalysis` (`templates[1]`,
/// `args`).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeProblem {
    pub path: KeyPath,
    pub reason: String,
    pub hint: Option<String>,
}

/// Flattens and merges the templates an analysis names, as Argo does when it creates the run
/// (`NewAnalysisRunFromTemplates`); `namespace` is the Rollout's.
///
/// # Errors
/// Every problem found: a template that is not in the target, two metrics with one name, an
/// arg given two different values, an arg nobody supplies, a dry-run or retention rule that
/// matches nothing. An empty list means a template failed to decode (already reported).
pub fn merge_analysis(
    manifests: &Manifests,
    namespace: &str,
    analysis: &RolloutAnalysis,
) -> Result<MergedAnalysis, Vec<MergeProblem>> {
    let mut problems = Vec::new();
    let mut broken = false;
    let mut namespaced: Vec<&Manifest<AnalysisTemplate>> = Vec::new();
    let mut cluster: Vec<&Manifest<ClusterAnalysisTemplate>> = Vec::new();
    if analysis.templates.is_empty() {
        problems.push(MergeProblem {
            path: KeyPath::from("templates"),
            reason: "an analysis needs at least one template".into(),
            hint: Some("add `templates: [{templateName: <AnalysisTemplate name>}]`".into()),
        });
    }
    for (i, r) in analysis.templates.iter().enumerate() {
        let path = KeyPath::from("templates").index(i).key("templateName");
        let mut seen = Vec::new();
        collect_templates(
            manifests,
            namespace,
            r,
            None,
            &mut Collect {
                namespaced: &mut namespaced,
                cluster: &mut cluster,
                seen: &mut seen,
                path: &path,
                problems: &mut problems,
                broken: &mut broken,
            },
        );
    }
    // A template that failed to decode has its own errors; guessing its args would add noise.
    // A missing one is reported, and the rest is still merged so its problems show too.
    if broken {
        return Err(problems);
    }
    let complete = problems.is_empty();

    let mut merged = MergedAnalysis {
        templates: Vec::new(),
        metrics: Vec::new(),
        metric_origins: Vec::new(),
        args: Vec::new(),
        dry_run: Vec::new(),
        measurement_retention: Vec::new(),
    };
    let specs: Vec<(String, &AnalysisTemplateSpec)> = namespaced
        .iter()
        .map(|t| {
            (
                format!("AnalysisTemplate/{}", t.object.name()),
                &t.object.spec,
            )
        })
        .chain(cluster.iter().map(|t| {
            (
                format!("ClusterAnalysisTemplate/{}", t.object.name()),
                &t.object.spec,
            )
        }))
        .collect();
    let mut template_args: Vec<Argument> = Vec::new();
    for (label, spec) in &specs {
        merged.templates.push(label.clone());
        for m in &spec.metrics {
            if merged.metrics.iter().any(|o| o.name == m.name) {
                problems.push(MergeProblem {
                    path: KeyPath::from("templates"),
                    reason: format!("two metrics have the same name '{}'", m.name),
                    hint: Some(format!("rename the metric in {label} or drop one template")),
                });
            } else {
                merged.metrics.push(m.clone());
                merged.metric_origins.push(label.clone());
            }
        }
        for a in &spec.args {
            match template_args.iter_mut().find(|p| p.name == a.name) {
                Some(prev) => match (&prev.value, &a.value) {
                    (Some(p), Some(n)) if p != n => problems.push(MergeProblem {
                        path: KeyPath::from("templates"),
                        reason: format!(
                            "Argument `{}` specified multiple times with different values: '{p}', '{n}'",
                            a.name
                        ),
                        hint: None,
                    }),
                    (None, _) => *prev = a.clone(),
                    _ => {}
                },
                None => template_args.push(a.clone()),
            }
        }
        merged.dry_run.extend(spec.dry_run.iter().cloned());
        merged
            .measurement_retention
            .extend(spec.measurement_retention.iter().cloned());
    }
    // The Rollout's rules come first, as in Argo's mergeDryRunMetrics.
    let mut dry_run = analysis.dry_run.clone();
    dry_run.append(&mut merged.dry_run);
    merged.dry_run = dry_run;
    let mut retention = analysis.measurement_retention.clone();
    retention.append(&mut merged.measurement_retention);
    merged.measurement_retention = retention;

    // MergeArgs: a Rollout arg overrides a declared arg of the same name; others are ignored.
    for a in template_args {
        let given = analysis.args.iter().find(|r| r.name == a.name);
        let source = match given.and_then(run_arg_source) {
            Some(s) => Some(s),
            None => a.value.clone().map(ArgSource::Value),
        };
        match source {
            Some(source) => merged.args.push(MergedArg {
                name: a.name.clone(),
                source,
            }),
            None => problems.push(MergeProblem {
                path: KeyPath::from("args"),
                reason: format!("args.{} was not resolved", a.name),
                hint: Some(format!(
                    "add `- name: {}` with a value or valueFrom to this analysis's args",
                    a.name
                )),
            }),
        }
    }

    if !complete {
        return Err(problems);
    }
    check_rules(
        "dryRun",
        merged.dry_run.iter().map(|d| d.metric_name.as_str()),
        "Dry-Run",
        &merged.metrics,
        analysis.dry_run.len(),
        &mut problems,
    );
    check_rules(
        "measurementRetention",
        merged
            .measurement_retention
            .iter()
            .map(|d| d.metric_name.as_str()),
        "Measurement Retention",
        &merged.metrics,
        analysis.measurement_retention.len(),
        &mut problems,
    );
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

/// Duplicate rule names and rules that match no metric, as Argo checks dry-run and retention
/// rules. `own` is how many of the rules come from the Rollout (they come first).
fn check_rules<'a>(
    key: &str,
    rules: impl Iterator<Item = &'a str>,
    label: &str,
    metrics: &[Metric],
    own: usize,
    problems: &mut Vec<MergeProblem>,
) {
    let rules: Vec<&str> = rules.collect();
    for (i, rule) in rules.iter().enumerate() {
        let path = if i < own {
            KeyPath::from(key).index(i).key("metricName")
        } else {
            KeyPath::from("templates")
        };
        if rules[..i].contains(rule) {
            problems.push(MergeProblem {
                path,
                reason: format!("two {label} metric rules have the same name '{rule}'"),
                hint: None,
            });
            continue;
        }
        match metric_name_matches_any(rule, metrics) {
            Ok(true) => {}
            Ok(false) => problems.push(MergeProblem {
                path,
                reason: format!("{key}[{i}]: Rule didn't match any metric name(s)"),
                hint: None,
            }),
            Err(e) => problems.push(MergeProblem {
                path,
                reason: e,
                hint: Some("use a metric name, or `.*` for all".into()),
            }),
        }
    }
}

fn metric_name_matches_any(rule: &str, metrics: &[Metric]) -> Result<bool, String> {
    for m in metrics {
        if metric_name_matches(rule, &m.name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The source a Rollout-side arg gives, `None` when it gives none.
fn run_arg_source(a: &AnalysisRunArgument) -> Option<ArgSource> {
    if let Some(v) = &a.value {
        return Some(ArgSource::Value(v.clone()));
    }
    let from = a.value_from.as_ref()?;
    if let Some(h) = from.pod_template_hash_value {
        return Some(ArgSource::PodTemplateHash(h));
    }
    from.field_ref
        .as_ref()
        .map(|f| ArgSource::FieldRef(f.field_path.clone()))
}

struct Collect<'a, 'm> {
    namespaced: &'a mut Vec<&'m Manifest<AnalysisTemplate>>,
    cluster: &'a mut Vec<&'m Manifest<ClusterAnalysisTemplate>>,
    /// Templates on the current path, so a cycle of nested templates ends.
    seen: &'a mut Vec<(bool, String)>,
    path: &'a KeyPath,
    problems: &'a mut Vec<MergeProblem>,
    broken: &'a mut bool,
}

/// Argo's `getAnalysisTemplatesFromRefs`: each template, then the ones it nests; duplicates
/// keep their first place.
fn collect_templates<'m>(
    manifests: &'m Manifests,
    namespace: &str,
    r: &AnalysisTemplateRef,
    parent: Option<&str>,
    c: &mut Collect<'_, 'm>,
) {
    let key = (r.cluster_scope, r.template_name.clone());
    if c.seen.contains(&key) {
        return;
    }
    c.seen.push(key);
    let nested = |kind: &str| match parent {
        Some(p) => format!(" (nested in {p})"),
        None => format!(" in the target's {kind}s"),
    };
    let nested_refs: &'m [AnalysisTemplateRef] = if r.cluster_scope {
        match manifests.cluster_analysis_template(&r.template_name) {
            Some(t) => {
                if !c.cluster.iter().any(|x| std::ptr::eq(*x, t)) {
                    c.cluster.push(t);
                }
                &t.object.spec.templates
            }
            None if manifests.is_broken(
                "ClusterAnalysisTemplate",
                manifests::DEFAULT_NAMESPACE,
                &r.template_name,
            ) =>
            {
                *c.broken = true;
                return;
            }
            None => {
                let also_namespaced = manifests
                    .analysis_template(namespace, &r.template_name)
                    .is_some();
                c.problems.push(MergeProblem {
                    path: c.path.clone(),
                    reason: format!(
                        "ClusterAnalysisTemplate \"{}\" not found{}",
                        r.template_name,
                        nested("ClusterAnalysisTemplate")
                    ),
                    hint: also_namespaced.then(|| {
                        "an AnalysisTemplate of that name exists: drop `clusterScope: true`".into()
                    }),
                });
                return;
            }
        }
    } else {
        match manifests.analysis_template(namespace, &r.template_name) {
            Some(t) => {
                if !c.namespaced.iter().any(|x| std::ptr::eq(*x, t)) {
                    c.namespaced.push(t);
                }
                &t.object.spec.templates
            }
            None if manifests.is_broken("AnalysisTemplate", namespace, &r.template_name) => {
                *c.broken = true;
                return;
            }
            None => {
                let also_cluster = manifests
                    .cluster_analysis_template(&r.template_name)
                    .is_some();
                c.problems.push(MergeProblem {
                    path: c.path.clone(),
                    reason: format!(
                        "AnalysisTemplate \"{}\" not found{}",
                        r.template_name,
                        nested("AnalysisTemplate")
                    ),
                    hint: Some(if also_cluster {
                        "a ClusterAnalysisTemplate of that name exists: add `clusterScope: true`".into()
                    } else {
                        format!(
                            "add the AnalysisTemplate to `{}` (namespace `{namespace}`) or fix the name",
                            manifests.dir.display()
                        )
                    }),
                });
                return;
            }
        }
    };
    let label = format!(
        "{}/{}",
        if r.cluster_scope {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        },
        r.template_name
    );
    for inner in nested_refs {
        collect_templates(manifests, namespace, inner, Some(&label), c);
    }
}

impl MergedAnalysis {
    /// The values of the run's args, as Argo computes them when it creates the run: hashes
    /// from the ReplicaSets, field paths from the Rollout.
    ///
    /// # Errors
    /// A field path that does not resolve in the Rollout.
    pub fn arg_values(
        &self,
        rollout: &Manifest<Rollout>,
        stable_hash: &str,
        latest_hash: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for a in &self.args {
            let v = match &a.source {
                ArgSource::Value(v) => v.clone(),
                ArgSource::PodTemplateHash(PodTemplateHashValue::Stable) => stable_hash.to_string(),
                ArgSource::PodTemplateHash(PodTemplateHashValue::Latest) => latest_hash.to_string(),
                ArgSource::FieldRef(path) => {
                    field_value(&rollout.raw, rollout.object.namespace(), path)
                        .map_err(|e| e.to_string())?
                }
            };
            out.insert(a.name.clone(), v);
        }
        Ok(out)
    }

    /// Every metric typed with `args` substituted.
    ///
    /// # Errors
    /// Argo's AnalysisRun error text: `Unable to resolve metric arguments: ...` or
    /// `Analysis spec invalid: metrics[i]: ...`.
    pub fn resolve(&self, args: &BTreeMap<String, String>) -> Result<Vec<ResolvedMetric>, String> {
        self.metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.resolve(args).map_err(|e| {
                    if e.starts_with("failed to resolve") || e.starts_with("cannot find end tag") {
                        format!("Unable to resolve metric arguments: {e}")
                    } else {
                        format!("Analysis spec invalid: metrics[{i}]: {e}")
                    }
                })
            })
            .collect()
    }

    /// Whether a dry-run rule matches the metric: measured, never deciding.
    pub fn is_dry_run(&self, metric: &str) -> bool {
        self.dry_run
            .iter()
            .any(|d| metric_name_matches(&d.metric_name, metric).unwrap_or(false))
    }

    /// How many measurements of the metric the status keeps; `None`: Argo's default of 10.
    pub fn measurement_limit(&self, metric: &str) -> Option<u32> {
        self.measurement_retention
            .iter()
            .rev()
            .find(|r| metric_name_matches(&r.metric_name, metric).unwrap_or(false))
            .map(|r| r.limit.max(0).unsigned_abs())
    }
}

// ------------------------------------------------------------------------------------------
// Field paths and metric-name patterns

/// Why a `fieldRef.fieldPath` gives no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldRefError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The text of Argo's error for a `metadata.*` path outside the downward API.
pub const INVALID_ANALYSIS_ARGS_MESSAGE: &str =
    "Analyses arguments must refer to valid object metadata supported by downwardAPI";

/// The value of `path` in the Rollout, as Argo's `BuildArgumentsForRolloutAnalysisRun` reads
/// it: `metadata.*` through the downward API (a missing label is `""`), anything else by
/// walking the Rollout's JSON down to a scalar.
///
/// # Errors
/// A path that does not resolve, or one the local emulation has no value for (`status.*`,
/// `metadata.uid`).
pub fn field_value(rollout: &Value, namespace: &str, path: &str) -> Result<String, FieldRefError> {
    if let Some(meta) = path.strip_prefix("metadata") {
        let map_key = |field: &str| -> Option<String> {
            let rest = meta.strip_prefix('.')?.strip_prefix(field)?;
            let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
            let key = inner
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
            Some(key.to_string())
        };
        return match meta {
            ".name" => Ok(rollout
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()),
            ".namespace" => Ok(namespace.to_string()),
            ".uid" => Err(FieldRefError::Unsupported(
                "metadata.uid has no value locally (no API server assigns one)".into(),
            )),
            _ => {
                for field in ["labels", "annotations"] {
                    if let Some(key) = map_key(field) {
                        return Ok(rollout
                            .get("metadata")
                            .and_then(|m| m.get(field))
                            .and_then(|m| m.get(&key))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string());
                    }
                }
                Err(FieldRefError::Invalid(INVALID_ANALYSIS_ARGS_MESSAGE.into()))
            }
        };
    }
    if path.starts_with("status") {
        return Err(FieldRefError::Unsupported(format!(
            "{path}: the emulated Rollout status is not readable by field path"
        )));
    }
    let mut at = rollout;
    for section in path.split(['.', '[', ']']).filter(|s| !s.is_empty()) {
        at = match at {
            Value::Array(items) => {
                let i: usize = section
                    .parse()
                    .map_err(|_| FieldRefError::Invalid(format!("invalid index '{section}'")))?;
                items
                    .get(i)
                    .ok_or_else(|| FieldRefError::Invalid(format!("index {i} out of range")))?
            }
            Value::Object(map) => map
                .get(section)
                .ok_or_else(|| FieldRefError::Invalid(format!("invalid path {path} in rollout")))?,
            _ => {
                return Err(FieldRefError::Invalid(format!(
                    "invalid path {path} in rollout"
                )));
            }
        };
    }
    match at {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(FieldRefError::Invalid(format!(
            "invalid path {path} in rollout"
        ))),
        Value::Array(_) | Value::Object(_) => Err(FieldRefError::Invalid(format!(
            "path {path} in rollout must terminate in a primitive value"
        ))),
    }
}

/// Whether a dry-run or retention rule matches a metric name. Argo uses Go's unanchored
/// `regexp.MatchString`; without a regex engine in the tree, gauntlet implements the subset
/// such rules use: literals, `.`, `*`, `^`, `$` and `\`-escapes.
///
/// # Errors
/// A pattern using other syntax (`[]`, `()`, `|`, `+`, `?`, `{}`).
pub fn metric_name_matches(pattern: &str, name: &str) -> Result<bool, String> {
    let mut tokens: Vec<(Option<char>, bool)> = Vec::new(); // (None = any char, starred)
    let mut chars = pattern.chars().peekable();
    let anchored_start = chars.peek() == Some(&'^');
    if anchored_start {
        chars.next();
    }
    let mut anchored_end = false;
    while let Some(c) = chars.next() {
        let atom = match c {
            '\\' => Some(chars.next().ok_or("a trailing `\\` in the pattern")?),
            '.' => None,
            '$' if chars.peek().is_none() => {
                anchored_end = true;
                break;
            }
            '*' => match tokens.last_mut() {
                Some(t) if !t.1 => {
                    t.1 = true;
                    continue;
                }
                _ => {
                    return Err(format!(
                        "metric name pattern {pattern:?}: `*` needs something before it"
                    ));
                }
            },
            '[' | ']' | '(' | ')' | '|' | '+' | '?' | '{' | '}' | '^' | '$' => {
                return Err(format!(
                    "metric name pattern {pattern:?} uses regular-expression syntax the local \
                     emulation does not implement (only literals, `.`, `*`, `^`, `$`)"
                ));
            }
            c => Some(c),
        };
        tokens.push((atom, false));
    }
    let name: Vec<char> = name.chars().collect();
    let starts: Vec<usize> = if anchored_start {
        vec![0]
    } else {
        (0..=name.len()).collect()
    };
    Ok(starts
        .into_iter()
        .any(|s| match_here(&tokens, &name[s..], anchored_end)))
}

fn match_here(tokens: &[(Option<char>, bool)], text: &[char], anchored_end: bool) -> bool {
    let Some(((atom, starred), rest)) = tokens.split_first() else {
        return !anchored_end || text.is_empty();
    };
    let matches = |c: char| atom.is_none_or(|a| a == c);
    if *starred {
        let mut i = 0;
        loop {
            if match_here(rest, &text[i..], anchored_end) {
                return true;
            }
            if i < text.len() && matches(text[i]) {
                i += 1;
            } else {
                return false;
            }
        }
    }
    match text.split_first() {
        Some((c, tail)) if matches(*c) => match_here(rest, tail, anchored_end),
        _ => false,
    }
}

// ------------------------------------------------------------------------------------------
// Decoding

fn metadata(v: &Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<ObjectMeta>(v.clone()).map(drop)
}

fn selector(v: &Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<LabelSelector>(v.clone()).map(drop)
}

fn template(v: &Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<PodTemplateSpec>(v.clone()).map(drop)
}

/// Decodes a `Rollout` document, reporting every field that is unknown, refused or of the
/// wrong type.
///
/// # Errors
/// The problems, each with its key path.
pub fn decode_rollout(doc: &Value) -> Result<Rollout, Vec<Problem>> {
    decode_checked(
        doc,
        &schema::ROLLOUT,
        &[
            ("/metadata", metadata),
            ("/spec/selector", selector),
            ("/spec/template", template),
        ],
    )
}

/// Decodes an `AnalysisTemplate` document.
///
/// # Errors
/// The problems, each with its key path.
pub fn decode_analysis_template(doc: &Value) -> Result<AnalysisTemplate, Vec<Problem>> {
    decode_checked(doc, &schema::ANALYSIS_TEMPLATE, &[("/metadata", metadata)])
}

/// Decodes a `ClusterAnalysisTemplate` document.
///
/// # Errors
/// The problems, each with its key path.
pub fn decode_cluster_analysis_template(
    doc: &Value,
) -> Result<ClusterAnalysisTemplate, Vec<Problem>> {
    decode_checked(doc, &schema::ANALYSIS_TEMPLATE, &[("/metadata", metadata)])
}

/// Other `argoproj.io` documents: a version Argo v1.9.1 does not serve, or a kind the
/// emulation does not read.
pub(crate) fn refuse_other(api_version: &str, kind: &str) -> Vec<Problem> {
    if api_version != API_VERSION {
        return vec![(
            KeyPath::from("apiVersion"),
            SpecErrorKind::invalid_hint(
                format!("Argo Rollouts v1.9.1 serves {API_VERSION}, not {api_version}"),
                format!("apiVersion: {API_VERSION}"),
            ),
        )];
    }
    vec![(
        KeyPath::from("kind"),
        SpecErrorKind::unsupported(
            format!(
                "{kind}: only Rollout, AnalysisTemplate and ClusterAnalysisTemplate are read by \
                 the emulated controller"
            ),
            match kind {
                "AnalysisRun" => Some("the controller creates AnalysisRuns itself; remove it"),
                _ => None,
            },
        ),
    )]
}
