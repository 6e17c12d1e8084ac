//! Flagger v1.44.0 objects as the user wrote them: `Canary` and `MetricTemplate`
//! (`flagger.app/v1beta1`), and the `apps/v1` Deployment a Canary targets, with Flagger's serde
//! names and its defaults applied through methods (`pkg/apis/flagger/v1beta1/canary.go`).
//!
//! # Brief overview
//! - The manifests loader keeps Flagger's objects raw ([`Manifests::others`]); [`decode`] turns
//!   them into typed objects, checking each against a structural schema first ([`schema`]) so
//!   every unknown or refused field is reported with its key path, as the Argo objects are.
//! - [`validate()`] holds the rules of Flagger's CRD (e.g. exactly one of `iterations`,
//!   `stepWeight`, `stepWeights`) and of its controller, plus what would only fail at run time
//!   (a missing MetricTemplate, a template that does not render, a metric that is neither builtin
//!   nor templated, a provider other than nginx).
//! - [`template`] renders MetricTemplate queries the way Flagger's Go `text/template` does, for
//!   the variables Flagger defines.
//!
//! What the local emulation cannot honour is refused, never dropped: only the canary strategy
//! (`stepWeight` / `stepWeights`), the nginx provider and the Prometheus metric provider are read.

pub mod schema;
pub mod template;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::validate::validate;
use super::duration::parse_go_duration;
use super::error::{KeyPath, SpecError, SpecErrorKind};
use super::manifests::{self, Manifest, Manifests, RawManifest, decode_checked, doc_error};
use super::shape::Problem;

/// The only version of Flagger's API this emulation reads.
pub const API_VERSION: &str = "flagger.app/v1beta1";
/// The API group of Flagger's objects.
pub const GROUP: &str = "flagger.app";

/// The builtin metric names, matched by name only (`pkg/metrics/observers`).
pub const SUCCESS_RATE: &str = "request-success-rate";
pub const REQUEST_DURATION: &str = "request-duration";

/// Flagger's `-selector-labels` default: the target's `spec.selector.matchLabels` must hold one.
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// `analysis.interval` when empty or unparsable.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Intervals shorter than this are raised to it (`GetAnalysisInterval`).
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The window of a builtin metric without `interval` (`GetMetricInterval`).
pub const DEFAULT_METRIC_INTERVAL: &str = "1m";
/// `spec.progressDeadlineSeconds` default.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// A webhook's timeout when unset (or shorter than two characters).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------
// Canary

/// `flagger.app/v1beta1` `Canary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: CanarySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanarySpec {
    /// The router (and builtin-metric observer); unset means Flagger's `-mesh-provider`, which
    /// for gauntlet is `nginx`, the only router it has.
    pub provider: Option<String>,
    /// Prometheus for builtin metrics and inline queries. The local backend queries its own
    /// Prometheus whatever this says.
    pub metrics_server: Option<String>,
    pub target_ref: ObjectRef,
    /// Required with nginx: the Ingress users reach.
    pub ingress_ref: Option<ObjectRef>,
    pub service: CanaryService,
    pub analysis: Option<CanaryAnalysis>,
    /// The deprecated name of `analysis`.
    pub canary_analysis: Option<CanaryAnalysis>,
    /// Default 600.
    pub progress_deadline_seconds: Option<i32>,
    #[serde(default)]
    pub skip_analysis: bool,
    /// Only acts when the Canary is deleted, which never happens during a scenario.
    #[serde(default)]
    pub revert_on_deletion: bool,
    /// Every tick returns at once ("skipping canary run as object is suspended").
    #[serde(default)]
    pub suspend: bool,
}

/// `CrossNamespaceObjectReference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

/// `spec.service`: how Flagger generates the apex, `-primary` and `-canary` Services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryService {
    /// The apex name; default `targetRef.name`.
    pub name: Option<String>,
    pub port: i32,
    pub port_name: Option<String>,
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub port_discovery: bool,
    pub app_protocol: Option<String>,
    /// Labels and annotations of the generated Services; no effect on routing.
    pub apex: Option<Value>,
    pub primary: Option<Value>,
    pub canary: Option<Value>,
}

/// `spec.analysis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryAnalysis {
    /// Go duration matching `^[0-9]+(m|s)`; the tick period. Default 60 s, at least 10 s.
    pub interval: Option<String>,
    /// Failed checks (cumulative) before rollback; <= 0 means 1.
    pub threshold: Option<i32>,
    /// Default 100; ignored with `stepWeights`.
    pub max_weight: Option<i32>,
    pub step_weight: Option<i32>,
    pub step_weights: Option<Vec<i32>>,
    /// 0: all traffic back to the primary in one tick.
    pub step_weight_promotion: Option<i32>,
    /// `mirror: true` is refused by validation (with nginx it never leaves weight 0).
    #[serde(default)]
    pub mirror: bool,
    /// Percent of updated replicas that must be available; default 100.
    pub primary_ready_threshold: Option<i32>,
    pub canary_ready_threshold: Option<i32>,
    /// Notifications only; no effect on decisions (no alert provider exists locally).
    pub alerts: Option<Value>,
    #[serde(default)]
    pub metrics: Vec<CanaryMetric>,
    #[serde(default)]
    pub webhooks: Vec<CanaryWebhook>,
}

/// `analysis.metrics[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryMetric {
    pub name: String,
    /// The PromQL window, rendered as `{{ interval }}`. Builtins default to `1m`; templated
    /// metrics get no default.
    pub interval: Option<String>,
    /// Deprecated: used only without `thresholdRange`.
    pub threshold: Option<f64>,
    pub threshold_range: Option<ThresholdRange>,
    /// Deprecated inline PromQL against `metricsServer`.
    pub query: Option<String>,
    pub template_ref: Option<ObjectRef>,
    #[serde(default)]
    pub template_variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdRange {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// `analysis.webhooks[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryWebhook {
    pub name: String,
    /// One of [`HOOK_TYPES`]; empty or unset means `rollout`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: String,
    /// Go duration matching `^[0-9]+(m|s)`; default 10 s.
    pub timeout: Option<String>,
    /// Retries of go-retryablehttp (connection errors, 5xx except 501, 429); default 0.
    pub retries: Option<i32>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub mute_alert: bool,
    #[serde(default, rename = "disableTLS")]
    pub disable_tls: bool,
}

/// The webhook types of the CRD's enum (`""` means `rollout`).
pub const HOOK_TYPES: [&str; 9] = [
    "",
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
];

impl Canary {
    pub fn name(&self) -> &str {
        manifests::name(&self.metadata)
    }

    /// `metadata.namespace`, or `default`.
    pub fn namespace(&self) -> &str {
        manifests::namespace(&self.metadata)
    }

    /// `GetAnalysis`: `analysis`, else the deprecated `canaryAnalysis`.
    pub fn analysis(&self) -> Option<&CanaryAnalysis> {
        self.spec
            .analysis
            .as_ref()
            .or(self.spec.canary_analysis.as_ref())
    }

    /// `SkipAnalysis`: no analysis at all, or `skipAnalysis: true`.
    pub fn skip_analysis(&self) -> bool {
        self.analysis().is_none() || self.spec.skip_analysis
    }

    /// The provider, with gauntlet's `-mesh-provider` (`nginx`) for an unset one.
    pub fn provider(&self) -> &str {
        self.spec
            .provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("nginx")
    }

    /// The apex Service name: `service.name`, else `targetRef.name`.
    pub fn apex(&self) -> &str {
        self.spec
            .service
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.spec.target_ref.name)
    }

    /// `<apex>-primary`: the Service Flagger points at the primary pods.
    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.apex())
    }

    /// `<apex>-canary`: the Service Flagger points at the target's (canary) pods.
    pub fn canary_service(&self) -> String {
        format!("{}-canary", self.apex())
    }

    /// `{{ ingress }}`: `ingressRef.name`, else `targetRef.name`.
    pub fn ingress(&self) -> &str {
        self.spec
            .ingress_ref
            .as_ref()
            .map_or(&self.spec.target_ref.name, |r| &r.name)
    }

    /// `spec.progressDeadlineSeconds`, default 600 s.
    pub fn progress_deadline(&self) -> Duration {
        secs(
            self.spec
                .progress_deadline_seconds
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
        )
    }
}

impl CanaryAnalysis {
    /// `GetAnalysisInterval`: default 60 s, unparsable 60 s, below 10 s raised to 10 s. This
    /// is the policy's own time, before `--time-scale`.
    pub fn interval(&self) -> Duration {
        let Some(s) = self.interval.as_deref().filter(|s| !s.is_empty()) else {
            return DEFAULT_INTERVAL;
        };
        match parse_go_duration(s) {
            Ok(d) if d < MIN_INTERVAL => MIN_INTERVAL,
            Ok(d) => d,
            Err(_) => DEFAULT_INTERVAL,
        }
    }

    /// `GetAnalysisThreshold`: <= 0 means 1.
    pub fn threshold(&self) -> u32 {
        match self.threshold {
            Some(t) if t > 0 => t.unsigned_abs(),
            _ => 1,
        }
    }

    /// `stepWeight`, 0 when unset.
    pub fn step_weight(&self) -> i32 {
        self.step_weight.unwrap_or(0)
    }

    /// `stepWeights`, empty when unset.
    pub fn step_weights(&self) -> &[i32] {
        self.step_weights.as_deref().unwrap_or(&[])
    }

    /// The scheduler's `maxWeight()`: `min(100, last(stepWeights))` with stepWeights, else
    /// `maxWeight` when > 0, else 100.
    pub fn max_weight(&self) -> i32 {
        if let Some(last) = self.step_weights().last() {
            return (*last).min(100);
        }
        match self.max_weight {
            Some(w) if w > 0 => w,
            _ => 100,
        }
    }

    /// `primaryReadyThreshold`, default 100 (%).
    pub fn primary_ready_threshold(&self) -> u32 {
        self.primary_ready_threshold
            .map_or(100, |t| t.max(0).unsigned_abs())
    }

    /// `canaryReadyThreshold`, default 100 (%).
    pub fn canary_ready_threshold(&self) -> u32 {
        self.canary_ready_threshold
            .map_or(100, |t| t.max(0).unsigned_abs())
    }
}

impl CanaryWebhook {
    /// The type, with `""` and unset as `rollout`.
    pub fn hook_type(&self) -> &str {
        match self.kind.as_deref() {
            None | Some("") => "rollout",
            Some(t) => t,
        }
    }

    /// The timeout: unset or shorter than two characters is 10 s (`CallWebhook`).
    pub fn timeout(&self) -> Duration {
        match self.timeout.as_deref() {
            Some(t) if t.len() >= 2 => parse_go_duration(t).unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
            _ => DEFAULT_WEBHOOK_TIMEOUT,
        }
    }
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::from(s.max(0).unsigned_abs()))
}

// ------------------------------------------------------------------------------------------
// MetricTemplate

/// `flagger.app/v1beta1` `MetricTemplate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: MetricTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTemplateSpec {
    pub provider: MetricTemplateProvider,
    /// Go `text/template` over [`template::Model`].
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTemplateProvider {
    /// `prometheus`, the only provider emulated.
    #[serde(rename = "type")]
    pub kind: String,
    /// The in-cluster Prometheus; the local backend queries its own Prometheus instead.
    pub address: Option<String>,
    /// Credentials for the in-cluster Prometheus; the local Prometheus needs none.
    pub secret_ref: Option<Value>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl MetricTemplate {
    pub fn name(&self) -> &str {
        manifests::name(&self.metadata)
    }

    pub fn namespace(&self) -> &str {
        manifests::namespace(&self.metadata)
    }
}

// ------------------------------------------------------------------------------------------
// Decoding

/// The Flagger objects of a target, and the Deployments they may target.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub canaries: Vec<Manifest<Canary>>,
    pub metric_templates: Vec<Manifest<MetricTemplate>>,
    /// The Deployments Canaries target, decoded by k8s-openapi.
    pub deployments: Vec<Manifest<Deployment>>,
    /// `(namespace, name)` of targeted Deployments that did not decode (their errors are
    /// reported; a reference to them is not reported again as missing).
    pub broken_deployments: std::collections::BTreeSet<(String, String)>,
}

impl Objects {
    pub fn metric_template(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<&Manifest<MetricTemplate>> {
        self.metric_templates
            .iter()
            .find(|t| t.object.name() == name && t.object.namespace() == namespace)
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<&Manifest<Deployment>> {
        self.deployments.iter().find(|d| {
            manifests::name(&d.object.metadata) == name
                && manifests::namespace(&d.object.metadata) == namespace
        })
    }
}

/// Decodes the Flagger objects and Deployments kept raw in `m.others`; every object that does
/// not decode is an error with its key path, and is left out.
pub fn decode(m: &Manifests) -> (Objects, Vec<SpecError>) {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    let mut deployments = Vec::new();
    let report = |raw: &RawManifest, problems: Vec<Problem>, errors: &mut Vec<SpecError>| {
        let label = format!(
            "{}/{}",
            raw.kind,
            if raw.name.is_empty() { "?" } else { &raw.name }
        );
        for (path, kind) in problems {
            errors.push(doc_error(&raw.origin, Some(&label), path.as_str(), kind));
        }
    };
    for raw in &m.others {
        if raw.api_version.split('/').next() == Some(GROUP) {
            match decode_flagger(raw) {
                Ok(Decoded::Canary(c)) => objects.canaries.push(manifest(raw, *c)),
                Ok(Decoded::MetricTemplate(t)) => objects.metric_templates.push(manifest(raw, *t)),
                Ok(Decoded::Other) => {}
                Err(problems) => report(raw, problems, &mut errors),
            }
        } else if raw.api_version == "apps/v1" && raw.kind == "Deployment" {
            deployments.push(raw);
        }
    }
    // Only the Deployments a Canary targets are the emulation's business.
    for raw in deployments {
        let targeted = objects.canaries.iter().any(|c| {
            c.object.namespace() == raw.namespace && c.object.spec.target_ref.name == raw.name
        });
        if !targeted {
            continue;
        }
        match decode_deployment(&raw.value) {
            Ok(d) => objects.deployments.push(manifest(raw, d)),
            Err(problems) => {
                objects
                    .broken_deployments
                    .insert((raw.namespace.clone(), raw.name.clone()));
                report(raw, problems, &mut errors);
            }
        }
    }
    (objects, errors)
}

fn manifest<T>(raw: &RawManifest, object: T) -> Manifest<T> {
    Manifest {
        origin: raw.origin.clone(),
        object,
        raw: raw.value.clone(),
    }
}

enum Decoded {
    Canary(Box<Canary>),
    MetricTemplate(Box<MetricTemplate>),
    /// A Flagger kind with no effect on decisions (`AlertProvider`).
    Other,
}

fn decode_flagger(raw: &RawManifest) -> Result<Decoded, Vec<Problem>> {
    if raw.api_version != API_VERSION {
        return Err(vec![(
            KeyPath::from("apiVersion"),
            SpecErrorKind::invalid_hint(
                format!(
                    "Flagger v1.44.0 serves {API_VERSION}, not {}",
                    raw.api_version
                ),
                format!("apiVersion: {API_VERSION}"),
            ),
        )]);
    }
    match raw.kind.as_str() {
        "Canary" => decode_canary(&raw.value).map(|c| Decoded::Canary(Box::new(c))),
        "MetricTemplate" => {
            decode_metric_template(&raw.value).map(|t| Decoded::MetricTemplate(Box::new(t)))
        }
        // Alert providers only notify (Slack, Teams, ...); no decision depends on them.
        "AlertProvider" => Ok(Decoded::Other),
        other => Err(vec![(
            KeyPath::from("kind"),
            SpecErrorKind::invalid(format!(
                "{other}: Flagger's kinds are Canary, MetricTemplate and AlertProvider"
            )),
        )]),
    }
}

fn metadata(v: &Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<ObjectMeta>(v.clone()).map(drop)
}

/// Decodes a `Canary` document, reporting every field that is unknown, refused or of the wrong
/// type.
///
/// # Errors
/// The problems, each with its key path.
pub fn decode_canary(doc: &Value) -> Result<Canary, Vec<Problem>> {
    decode_checked(doc, &schema::CANARY, &[("/metadata", metadata)])
}

/// Decodes a `MetricTemplate` document.
///
/// # Errors
/// The problems, each with its key path.
pub fn decode_metric_template(doc: &Value) -> Result<MetricTemplate, Vec<Problem>> {
    decode_checked(doc, &schema::METRIC_TEMPLATE, &[("/metadata", metadata)])
}

/// Decodes an `apps/v1` Deployment with k8s-openapi.
///
/// # Errors
/// The schema error, at the object's root.
pub fn decode_deployment(doc: &Value) -> Result<Deployment, Vec<Problem>> {
    serde_json::from_value(doc.clone())
        .map_err(|e| vec![(KeyPath::root(), SpecErrorKind::Schema(e))])
}

// ------------------------------------------------------------------------------------------
// The target Deployment

/// What the emulation reads from the Deployment a Canary targets.
pub trait DeploymentExt {
    /// `spec.replicas`, default 1.
    fn replicas(&self) -> u32;
    /// `spec.minReadySeconds`, default 0.
    fn min_ready(&self) -> Duration;
    /// `spec.progressDeadlineSeconds`, default 600 s (the Deployment's own deadline).
    fn progress_deadline(&self) -> Duration;
    /// `MaxUnavailable` at `replicas`, as the `Available` condition uses it: 0 for Recreate.
    fn max_unavailable(&self) -> u32;
    /// The first of [`SELECTOR_LABELS`] in `spec.selector.matchLabels`, with its value.
    fn selector_label(&self) -> Option<(String, String)>;
}

impl DeploymentExt for Deployment {
    fn replicas(&self) -> u32 {
        self.spec
            .as_ref()
            .and_then(|s| s.replicas)
            .map_or(1, |r| r.max(0).unsigned_abs())
    }

    fn min_ready(&self) -> Duration {
        secs(
            self.spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0),
        )
    }

    fn progress_deadline(&self) -> Duration {
        secs(
            self.spec
                .as_ref()
                .and_then(|s| s.progress_deadline_seconds)
                .unwrap_or(600),
        )
    }

    /// `deploymentutil.MaxUnavailable`: 0 unless the strategy is a rolling update (Recreate
    /// keeps no pods available during its rollout, so `Available` needs them all); else
    /// `ResolveFenceposts` (surge rounded up, unavailable down, both 25 % by default, 1 when
    /// both resolve to 0), at most `replicas`.
    fn max_unavailable(&self) -> u32 {
        let replicas = self.replicas();
        let strategy = self.spec.as_ref().and_then(|s| s.strategy.as_ref());
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") || replicas == 0 {
            return 0;
        }
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let quarter = IntOrString::String("25%".into());
        let resolve = |v: Option<&IntOrString>, round_up: bool| match v.unwrap_or(&quarter) {
            IntOrString::Int(i) => i.max(&0).unsigned_abs(),
            IntOrString::String(s) => {
                let pct: u64 = s.trim_end_matches('%').parse().unwrap_or(25);
                let x = pct * u64::from(replicas);
                u32::try_from(if round_up { x.div_ceil(100) } else { x / 100 }).unwrap_or(replicas)
            }
        };
        let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
        let unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
        if surge == 0 && unavailable == 0 {
            return 1.min(replicas);
        }
        unavailable.min(replicas)
    }

    fn selector_label(&self) -> Option<(String, String)> {
        let labels = self.spec.as_ref()?.selector.match_labels.as_ref()?;
        SELECTOR_LABELS
            .iter()
            .find_map(|k| labels.get(*k).map(|v| (k.to_string(), v.clone())))
    }
}
