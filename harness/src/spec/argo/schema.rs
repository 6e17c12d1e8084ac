//! The structural schema of the Argo objects as the emulation reads them: every field Argo
//! Rollouts v1.9.1 has in the interpreted parts, typed, with the ones the emulation cannot
//! honour refused by name and reason. Free-form parts (metadata, pod template, selector) are
//! `Any` here and decoded by k8s-openapi.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::percent_value;
use crate::spec::duration::parse_pause_duration;
use crate::spec::shape::{Field, Refusal, Shape, opt, refused, req};

static ONLY_NGINX: Refusal = Refusal {
    unsupported: true,
    reason: "only nginx routing can be emulated locally",
    hint: Some("use trafficRouting.nginx, or run this policy with --backend kind/kube"),
};

static ONLY_PROMETHEUS: Refusal = Refusal {
    unsupported: true,
    reason: "only the prometheus provider can be emulated locally",
    hint: Some("query Prometheus, or run this policy with --backend kind/kube"),
};

// ---- Rollout ------------------------------------------------------------------------------

pub static ROLLOUT: Shape = Shape::Obj(&[
    opt!("apiVersion", Shape::Str),
    opt!("kind", Shape::Str),
    req!("metadata", Shape::Any, "metadata is required"),
    req!("spec", Shape::Obj(ROLLOUT_SPEC), "spec is required"),
    // Written by the controller; the API server ignores it on apply.
    opt!("status", Shape::Any),
]);

const ROLLOUT_SPEC: &[Field] = &[
    opt!("replicas", Shape::Int32),
    req!(
        "selector",
        Shape::Any,
        "Rollout has missing field '.spec.selector'"
    ),
    req!(
        "template",
        Shape::Any,
        "Rollout has missing field '.spec.template' (workloadRef is not emulated)",
    ),
    refused!(
        "workloadRef",
        &Refusal {
            unsupported: true,
            reason: "workloadRef (a Rollout over a Deployment's template) is not emulated",
            hint: Some("inline the Deployment's pod template as spec.template"),
        },
    ),
    opt!("minReadySeconds", Shape::Int32),
    req!(
        "strategy",
        Shape::Obj(STRATEGY),
        "Rollout has missing field '.spec.strategy.canary or .spec.strategy.blueGreen'",
    ),
    opt!("revisionHistoryLimit", Shape::Int32),
    opt!("paused", Shape::Bool),
    opt!("progressDeadlineSeconds", Shape::Int32),
    opt!("progressDeadlineAbort", Shape::Bool),
    refused!(
        "restartAt",
        &Refusal {
            unsupported: true,
            reason: "restartAt (restarting every pod) is not emulated",
            hint: None,
        },
    ),
    refused!(
        "rollbackWindow",
        &Refusal {
            unsupported: true,
            reason: "rollbackWindow is not emulated",
            hint: None,
        },
    ),
    opt!(
        "analysis",
        Shape::Obj(&[
            opt!("successfulRunHistoryLimit", Shape::Int32),
            opt!("unsuccessfulRunHistoryLimit", Shape::Int32),
        ]),
    ),
];

const STRATEGY: &[Field] = &[
    opt!("canary", Shape::Obj(CANARY)),
    refused!(
        "blueGreen",
        &Refusal {
            unsupported: true,
            reason: "the blueGreen strategy is not emulated; only canary is",
            hint: Some("run this policy with --backend kind/kube"),
        },
    ),
];

const INT_OR_PERCENT: Shape = Shape::Parsed {
    base: &Shape::IntOrStr,
    check: int_or_percent,
};

const CANARY: &[Field] = &[
    opt!("canaryService", Shape::Str),
    opt!("stableService", Shape::Str),
    opt!("steps", Shape::List(&STEP)),
    opt!("trafficRouting", Shape::Obj(TRAFFIC_ROUTING)),
    opt!("maxUnavailable", INT_OR_PERCENT),
    opt!("maxSurge", INT_OR_PERCENT),
    opt!("analysis", Shape::Obj(BACKGROUND_ANALYSIS)),
    // Scheduling only: without nodes it changes nothing, so it is accepted as a no-op.
    opt!("antiAffinity", Shape::Any),
    refused!(
        "canaryMetadata",
        &Refusal {
            unsupported: true,
            reason: "canaryMetadata (ephemeral pod labels) is not emulated; queries selecting on \
                     those labels would find nothing",
            hint: Some(
                "select canary pods by hash: an arg with valueFrom.podTemplateHashValue: Latest"
            ),
        },
    ),
    refused!(
        "stableMetadata",
        &Refusal {
            unsupported: true,
            reason: "stableMetadata (ephemeral pod labels) is not emulated",
            hint: Some(
                "select stable pods by hash: an arg with valueFrom.podTemplateHashValue: Stable"
            ),
        },
    ),
    opt!("scaleDownDelaySeconds", Shape::Int32),
    opt!("scaleDownDelayRevisionLimit", Shape::Int32),
    opt!("abortScaleDownDelaySeconds", Shape::Int32),
    opt!("dynamicStableScale", Shape::Bool),
    refused!(
        "pingPong",
        invalid,
        "Ping-pong feature works with the ALB traffic routing only",
        None,
    ),
    refused!(
        "minPodsPerReplicaSet",
        &Refusal {
            unsupported: true,
            reason: "minPodsPerReplicaSet is not emulated",
            hint: None,
        },
    ),
    refused!(
        "replicaProgressThreshold",
        &Refusal {
            unsupported: true,
            reason: "replicaProgressThreshold is not emulated (steps wait for all canary pods)",
            hint: None,
        },
    ),
];

static STEP: Shape = Shape::Obj(&[
    opt!("setWeight", Shape::Int32),
    opt!(
        "pause",
        Shape::Obj(&[opt!(
            "duration",
            Shape::Parsed {
                base: &Shape::IntOrStr,
                check: pause_duration,
            },
        )]),
    ),
    opt!("analysis", Shape::Obj(STEP_ANALYSIS)),
    opt!(
        "setCanaryScale",
        Shape::Obj(&[
            opt!("weight", Shape::Int32),
            opt!("replicas", Shape::Int32),
            opt!("matchTrafficWeight", Shape::Bool),
        ]),
    ),
    refused!(
        "experiment",
        &Refusal {
            unsupported: true,
            reason: "experiment steps are not emulated",
            hint: Some("use an analysis step, or run this policy with --backend kind/kube"),
        },
    ),
    refused!(
        "setHeaderRoute",
        invalid,
        "SetHeaderRoute requires TrafficRouting, supports Istio and ALB and Apisix",
        Some(
            "with nginx, route by header for the whole update with \
             trafficRouting.nginx.additionalIngressAnnotations (canary-by-header)",
        ),
    ),
    refused!(
        "setMirrorRoute",
        invalid,
        "SetMirrorRoute requires TrafficRouting, supports Istio only",
        None,
    ),
    refused!(
        "plugin",
        &Refusal {
            unsupported: true,
            reason: "step plugins are not emulated",
            hint: None,
        },
    ),
]);

const TRAFFIC_ROUTING: &[Field] = &[
    opt!(
        "nginx",
        Shape::Obj(&[
            opt!("annotationPrefix", Shape::Str),
            opt!("stableIngress", Shape::Str),
            opt!("stableIngresses", Shape::List(&Shape::Str)),
            opt!("additionalIngressAnnotations", Shape::StrMap),
            opt!("canaryIngressAnnotations", Shape::StrMap),
        ]),
    ),
    opt!("maxTrafficWeight", Shape::Int32),
    refused!(
        "managedRoutes",
        invalid,
        "managedRoutes only serve setHeaderRoute and setMirrorRoute, which nginx does not support",
        None,
    ),
    refused!("istio", &ONLY_NGINX),
    refused!("alb", &ONLY_NGINX),
    refused!("smi", &ONLY_NGINX),
    refused!("ambassador", &ONLY_NGINX),
    refused!("appMesh", &ONLY_NGINX),
    refused!("traefik", &ONLY_NGINX),
    refused!("apisix", &ONLY_NGINX),
    refused!("plugins", &ONLY_NGINX),
];

static TEMPLATE_REF_ITEM: Shape = Shape::Obj(&[
    req!("templateName", Shape::Str, "templateName is required"),
    opt!("clusterScope", Shape::Bool),
]);

static RUN_ARG: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "an arg needs a name"),
    opt!("value", Shape::Str),
    opt!(
        "valueFrom",
        Shape::Obj(&[
            opt!("podTemplateHashValue", Shape::Enum(&["Stable", "Latest"])),
            opt!(
                "fieldRef",
                Shape::Obj(&[req!("fieldPath", Shape::Str, "fieldRef needs a fieldPath")]),
            ),
        ]),
    ),
]);

static DRY_RUN: Shape = Shape::Obj(&[req!("metricName", Shape::Str, "metricName is required")]);

static RETENTION: Shape = Shape::Obj(&[
    req!("metricName", Shape::Str, "metricName is required"),
    req!("limit", Shape::Int32, "limit is required"),
]);

const RUN_METADATA: Shape = Shape::Obj(&[
    opt!("labels", Shape::StrMap),
    opt!("annotations", Shape::StrMap),
]);

const STEP_ANALYSIS: &[Field] = &[
    opt!("templates", Shape::List(&TEMPLATE_REF_ITEM)),
    opt!("args", Shape::List(&RUN_ARG)),
    opt!("dryRun", Shape::List(&DRY_RUN)),
    opt!("measurementRetention", Shape::List(&RETENTION)),
    opt!("analysisRunMetadata", RUN_METADATA),
];

const BACKGROUND_ANALYSIS: &[Field] = &[
    opt!("templates", Shape::List(&TEMPLATE_REF_ITEM)),
    opt!("args", Shape::List(&RUN_ARG)),
    opt!("dryRun", Shape::List(&DRY_RUN)),
    opt!("measurementRetention", Shape::List(&RETENTION)),
    opt!("analysisRunMetadata", RUN_METADATA),
    opt!("startingStep", Shape::Int32),
];

// ---- AnalysisTemplate / ClusterAnalysisTemplate --------------------------------------------

pub static ANALYSIS_TEMPLATE: Shape = Shape::Obj(&[
    opt!("apiVersion", Shape::Str),
    opt!("kind", Shape::Str),
    req!("metadata", Shape::Any, "metadata is required"),
    req!(
        "spec",
        Shape::Obj(&[
            opt!("metrics", Shape::List(&METRIC)),
            opt!("args", Shape::List(&TEMPLATE_ARG)),
            opt!("dryRun", Shape::List(&DRY_RUN)),
            opt!("measurementRetention", Shape::List(&RETENTION)),
            opt!("templates", Shape::List(&TEMPLATE_REF_ITEM)),
        ]),
        "spec is required",
    ),
]);

static TEMPLATE_ARG: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "an arg needs a name"),
    opt!("value", Shape::Str),
    refused!(
        "valueFrom",
        &Refusal {
            unsupported: true,
            reason: "valueFrom in an AnalysisTemplate's args (secretKeyRef, fieldRef) is not \
                     emulated; there are no Secrets locally",
            hint: Some(
                "give a default with `value:`, or pass the arg from the Rollout's analysis args"
            ),
        },
    ),
]);

static METRIC: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "a metric needs a name"),
    opt!("interval", Shape::Str),
    opt!("initialDelay", Shape::Str),
    opt!("count", Shape::IntOrStr),
    opt!("successCondition", Shape::Str),
    opt!("failureCondition", Shape::Str),
    opt!("failureLimit", Shape::IntOrStr),
    opt!("inconclusiveLimit", Shape::IntOrStr),
    opt!("consecutiveErrorLimit", Shape::IntOrStr),
    opt!("consecutiveSuccessLimit", Shape::IntOrStr),
    req!("provider", Shape::Obj(PROVIDER), "no provider specified"),
]);

const PROVIDER: &[Field] = &[
    opt!(
        "prometheus",
        Shape::Obj(&[
            opt!("address", Shape::Str),
            opt!("query", Shape::Str),
            opt!("timeout", Shape::Int64),
            opt!("insecure", Shape::Bool),
            opt!("headers", Shape::List(&HEADER),),
            refused!(
                "authentication",
                &Refusal {
                    unsupported: true,
                    reason: "Prometheus authentication (sigv4, oauth2, basicAuth) is not emulated",
                    hint: None,
                },
            ),
            refused!(
                "rangeQuery",
                &Refusal {
                    unsupported: true,
                    reason: "range queries are not emulated",
                    hint: Some("use an instant query over a range vector, e.g. rate(x[1m])"),
                },
            ),
        ]),
    ),
    refused!("kayenta", &ONLY_PROMETHEUS),
    refused!("web", &ONLY_PROMETHEUS),
    refused!("datadog", &ONLY_PROMETHEUS),
    refused!("wavefront", &ONLY_PROMETHEUS),
    refused!("newRelic", &ONLY_PROMETHEUS),
    refused!("job", &ONLY_PROMETHEUS),
    refused!("cloudWatch", &ONLY_PROMETHEUS),
    refused!("graphite", &ONLY_PROMETHEUS),
    refused!("influxdb", &ONLY_PROMETHEUS),
    refused!("skywalking", &ONLY_PROMETHEUS),
    refused!("plugin", &ONLY_PROMETHEUS),
];

static HEADER: Shape = Shape::Obj(&[
    req!("key", Shape::Str, "a header needs a key"),
    req!("value", Shape::Str, "a header needs a value"),
]);

// ---- Value checks ---------------------------------------------------------------------------

fn int_or_string(v: &Value) -> Option<IntOrString> {
    match v {
        Value::String(s) => Some(IntOrString::String(s.clone())),
        v => v
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(IntOrString::Int),
    }
}

/// `pause.duration`: Argo gives -1 for anything it cannot read, then refuses the step.
fn pause_duration(v: &Value) -> Result<(), String> {
    let Some(d) = int_or_string(v) else {
        return Ok(());
    };
    parse_pause_duration(&d)
        .map(drop)
        .map_err(|e| format!("Duration needs to be greater than 0 ({e}); write seconds (30) or a Go duration (\"30s\", \"1m30s\")"))
}

/// `maxSurge` / `maxUnavailable`: a non-negative int, or a percent with or without `%`.
fn int_or_percent(v: &Value) -> Result<(), String> {
    match int_or_string(v) {
        Some(IntOrString::Int(i)) if i < 0 => Err(format!("must be >= 0, got {i}")),
        Some(IntOrString::String(s)) if percent_value(&s).is_none() => Err(format!(
            "invalid value for IntOrString: {s:?} is not a percentage (e.g. \"25%\")"
        )),
        _ => Ok(()),
    }
}
