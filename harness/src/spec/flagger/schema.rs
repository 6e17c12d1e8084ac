//! The structural schema of the Flagger objects as the emulation reads them: every field of
//! Flagger v1.44.0's Canary and MetricTemplate CRDs, typed, with the ones the emulation cannot
//! honour (or that Flagger would silently ignore with the nginx provider) refused by name and
//! reason. Free-form parts (metadata) are `Any` here and decoded by k8s-openapi.

use serde_json::Value;

use crate::controller::timescale::parse_promql_duration;
use crate::spec::duration::parse_go_duration;
use crate::spec::shape::{Field, Refusal, Shape, opt, refused, req};

/// Fields only service meshes and the Gateway API read; Flagger's nginx router ignores them.
static MESH_ONLY: Refusal = Refusal {
    unsupported: true,
    reason: "read only by service-mesh and Gateway API providers; with provider nginx Flagger \
             ignores it, and gauntlet refuses what would be silently ignored",
    hint: Some("remove it for a Canary routed by nginx"),
};

static NOT_STRATEGY: Refusal = Refusal {
    unsupported: true,
    reason: "Blue/Green and A/B testing (iterations, match) are not emulated; only the canary \
             strategy (stepWeight or stepWeights) is",
    hint: Some("use stepWeight or stepWeights, or run this policy with --backend kind/kube"),
};

// ---- Canary -------------------------------------------------------------------------------

pub static CANARY: Shape = Shape::Obj(&[
    opt!("apiVersion", Shape::Str),
    opt!("kind", Shape::Str),
    req!("metadata", Shape::Any, "metadata is required"),
    req!("spec", Shape::Obj(SPEC), "spec is required"),
    // Written by the controller; the API server ignores it on apply.
    opt!("status", Shape::Any),
]);

const SPEC: &[Field] = &[
    opt!("provider", Shape::Str),
    opt!("metricsServer", Shape::Str),
    req!(
        "targetRef",
        Shape::Obj(REF),
        "spec.targetRef is required (the Deployment to analyse)"
    ),
    refused!(
        "autoscalerRef",
        &Refusal {
            unsupported: true,
            reason: "autoscalerRef (HPA, KEDA) is not emulated: there is no autoscaler locally",
            hint: Some("remove it for local runs, or run this policy with --backend kind/kube"),
        },
    ),
    opt!("ingressRef", Shape::Obj(REF)),
    refused!("routeRef", &MESH_ONLY),
    refused!("upstreamRef", &MESH_ONLY),
    req!(
        "service",
        Shape::Obj(SERVICE),
        "spec.service is required (at least service.port)"
    ),
    req!(
        "analysis",
        Shape::Obj(ANALYSIS),
        "spec.analysis is required (Flagger's CRD requires it)"
    ),
    // Go's Canary type still has the deprecated field, but the v1beta1 CRD does not: the API
    // server drops it (kubectl refuses it), so Flagger never sees it.
    refused!(
        "canaryAnalysis",
        invalid,
        "canaryAnalysis is not a field of Flagger's v1beta1 CRD: the API server drops it and Flagger never reads it",
        Some("rename it to analysis"),
    ),
    opt!("progressDeadlineSeconds", Shape::Int32),
    opt!("skipAnalysis", Shape::Bool),
    opt!("revertOnDeletion", Shape::Bool),
    opt!("suspend", Shape::Bool),
];

const REF: &[Field] = &[
    opt!("apiVersion", Shape::Str),
    opt!("kind", Shape::Str),
    req!("name", Shape::Str, "name is required"),
    opt!("namespace", Shape::Str),
];

const CUSTOM_METADATA: Shape = Shape::Obj(&[
    opt!("labels", Shape::StrMap),
    opt!("annotations", Shape::StrMap),
]);

const SERVICE: &[Field] = &[
    opt!("name", Shape::Str),
    req!(
        "port",
        Shape::Int32,
        "spec.service.port is required (the port of the generated Services)"
    ),
    opt!("portName", Shape::Str),
    opt!("targetPort", Shape::IntOrStr),
    opt!("portDiscovery", Shape::Bool),
    opt!("appProtocol", Shape::Str),
    opt!("apex", CUSTOM_METADATA),
    opt!("primary", CUSTOM_METADATA),
    opt!("canary", CUSTOM_METADATA),
    refused!("timeout", &MESH_ONLY),
    refused!("gateways", &MESH_ONLY),
    refused!("gatewayRefs", &MESH_ONLY),
    refused!("hosts", &MESH_ONLY),
    refused!("trafficPolicy", &MESH_ONLY),
    refused!("match", &MESH_ONLY),
    refused!("rewrite", &MESH_ONLY),
    refused!("retries", &MESH_ONLY),
    refused!("headers", &MESH_ONLY),
    refused!("corsPolicy", &MESH_ONLY),
    refused!("meshName", &MESH_ONLY),
    refused!("backends", &MESH_ONLY),
    refused!("delegation", &MESH_ONLY),
    refused!("mirror", &MESH_ONLY),
    refused!(
        "headless",
        &Refusal {
            unsupported: true,
            reason: "headless Services are not emulated; the local router balances over the \
                     ready pods of a Service",
            hint: None,
        },
    ),
    refused!(
        "trafficDistribution",
        &Refusal {
            unsupported: true,
            reason: "trafficDistribution (topology-aware routing) has no meaning without nodes",
            hint: None,
        },
    ),
    refused!(
        "unmanagedMetadata",
        &Refusal {
            unsupported: true,
            reason: "unmanagedMetadata is not emulated",
            hint: None,
        },
    ),
];

const INTERVAL: Shape = Shape::Parsed {
    base: &Shape::Str,
    check: crd_duration,
};

const ANALYSIS: &[Field] = &[
    opt!("interval", INTERVAL),
    opt!("threshold", Shape::Int32),
    opt!("maxWeight", Shape::Int32),
    opt!("stepWeight", Shape::Int32),
    opt!("stepWeights", Shape::List(&Shape::Int32)),
    opt!("stepWeightPromotion", Shape::Int32),
    refused!("iterations", &NOT_STRATEGY),
    refused!("match", &NOT_STRATEGY),
    opt!("mirror", Shape::Bool),
    refused!("mirrorWeight", &MESH_ONLY),
    refused!("sessionAffinity", &MESH_ONLY),
    opt!("primaryReadyThreshold", Shape::Int32),
    opt!("canaryReadyThreshold", Shape::Int32),
    opt!("alerts", Shape::List(&ALERT)),
    opt!("metrics", Shape::List(&METRIC)),
    opt!("webhooks", Shape::List(&WEBHOOK)),
];

static ALERT: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "name is required"),
    opt!("severity", Shape::Enum(&["info", "warn", "error"])),
    req!("providerRef", Shape::Obj(REF), "providerRef is required"),
]);

const NUMBER: Shape = Shape::Parsed {
    base: &Shape::Any,
    check: number,
};

static METRIC: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "name is required"),
    opt!(
        "interval",
        Shape::Parsed {
            base: &Shape::Str,
            check: metric_interval,
        },
    ),
    opt!("threshold", NUMBER),
    opt!(
        "thresholdRange",
        Shape::Obj(&[opt!("min", NUMBER), opt!("max", NUMBER)])
    ),
    opt!("query", Shape::Str),
    opt!("templateRef", Shape::Obj(REF)),
    opt!("templateVariables", Shape::StrMap),
]);

static WEBHOOK: Shape = Shape::Obj(&[
    req!("name", Shape::Str, "name is required"),
    opt!("type", Shape::Enum(&super::HOOK_TYPES)),
    req!("url", Shape::Str, "url is required"),
    opt!(
        "timeout",
        Shape::Parsed {
            base: &Shape::Str,
            check: webhook_timeout,
        },
    ),
    opt!("retries", Shape::Int32),
    opt!("metadata", Shape::StrMap),
    opt!("muteAlert", Shape::Bool),
    opt!("disableTLS", Shape::Bool),
]);

// ---- MetricTemplate -----------------------------------------------------------------------

pub static METRIC_TEMPLATE: Shape = Shape::Obj(&[
    opt!("apiVersion", Shape::Str),
    opt!("kind", Shape::Str),
    req!("metadata", Shape::Any, "metadata is required"),
    req!(
        "spec",
        Shape::Obj(&[
            req!(
                "provider",
                Shape::Obj(&[
                    req!("type", Shape::Str, "provider.type is required"),
                    opt!("address", Shape::Str),
                    opt!(
                        "secretRef",
                        Shape::Obj(&[req!("name", Shape::Str, "name is required")])
                    ),
                    opt!("insecureSkipVerify", Shape::Bool),
                    refused!(
                        "region",
                        &Refusal {
                            unsupported: true,
                            reason: "region is read by the CloudWatch provider only; only \
                                     prometheus is emulated",
                            hint: None,
                        },
                    ),
                ]),
                "spec.provider is required"
            ),
            req!("query", Shape::Str, "spec.query is required"),
        ]),
        "spec is required"
    ),
    opt!("status", Shape::Any),
]);

// ---- Checks ------------------------------------------------------------------------------

/// The CRD pattern `^[0-9]+(m|s)` (a prefix match), and then a Go duration: a value the
/// pattern lets through that Go cannot parse (`10sx`) silently becomes 60 s in Flagger.
fn crd_duration(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    crd_pattern(s, "e.g. 30s, 1m")?;
    parse_go_duration(s).map(drop).map_err(|e| {
        format!("{e}; Flagger would silently use its default instead, so gauntlet refuses it")
    })
}

/// The CRD's pattern `^[0-9]+(m|s)`: digits then `m` or `s`, anything after (a prefix match).
fn crd_pattern(s: &str, example: &str) -> Result<(), String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !matches!(s.as_bytes().get(digits), Some(b'm' | b's')) {
        return Err(format!(
            "{s:?} does not match the CRD's pattern ^[0-9]+(m|s) ({example})"
        ));
    }
    Ok(())
}

/// A webhook timeout: the CRD's pattern (no string shorter than two characters matches it, so
/// only an unset timeout gets `CallWebhook`'s 10 s default), then `time.ParseDuration` in
/// `callWebhook`, which fails the webhook at every call when Go cannot parse what the pattern
/// let through.
fn webhook_timeout(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    crd_pattern(s, "e.g. 5s")?;
    parse_go_duration(s).map(drop).map_err(|e| {
        format!(
            "{e}: the CRD's pattern lets it through, but Flagger cannot parse it and fails this \
             webhook at every call"
        )
    })
}

/// A metric window: rendered into `[{{ interval }}]`, so it must be a PromQL duration.
fn metric_interval(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if parse_promql_duration(s).is_none() {
        return Err(format!(
            "{s:?} is not a PromQL duration (e.g. 30s, 1m, 1m30s); the query would fail with \
             \"bad_data\" at every check"
        ));
    }
    Ok(())
}

fn number(v: &Value) -> Result<(), String> {
    if v.is_number() {
        Ok(())
    } else {
        Err(format!(
            "expected a number, got {}",
            crate::spec::shape::describe(v)
        ))
    }
}
