//! The checks Argo's CRD, API validation (`validation.go`, `validation_references.go`) and
//! controller make, plus what a cluster would only find at run time (an interval without a
//! unit, a condition that does not parse, an arg nobody supplies): each is one [`SpecError`]
//! naming file, object and key path, and every one of a target is reported.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AnalysisTemplateSpec, ArgSource, CanaryStrategy, FieldRefError, Metric, NginxTrafficRouting,
    POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis, StepKind, check_counts, field_value,
    int_field, merge_analysis, percent_value, referenced_args,
};
use crate::controller::expr::{Condition, ConditionError, EvalError, MetricValue};
use crate::spec::duration::{DurationError, parse_go_duration};
use crate::spec::error::{KeyPath, SpecError, SpecErrorKind};
use crate::spec::manifests::{Manifest, Manifests, Origin, doc_error};

/// The canary annotations of ingress-nginx the local router honours, besides the weight the
/// controller sets.
pub const SUPPORTED_CANARY_ANNOTATIONS: [&str; 3] = [
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
];

/// Stands in for a ReplicaSet hash while checking what args make of a template before any
/// ReplicaSet exists; it has the shape of a real one.
const PLACEHOLDER_HASH: &str = "6d4cf56db6";

/// Checks the Argo objects of a target against each other and against Argo's rules.
pub fn validate(m: &Manifests) -> Vec<SpecError> {
    let mut out = Vec::new();
    for t in &m.analysis_templates {
        let mut sink = Sink::new(
            &t.origin,
            format!("AnalysisTemplate/{}", t.object.name()),
            &mut out,
        );
        validate_template(&t.object.spec, &mut sink);
    }
    for t in &m.cluster_analysis_templates {
        let mut sink = Sink::new(
            &t.origin,
            format!("ClusterAnalysisTemplate/{}", t.object.name()),
            &mut out,
        );
        validate_template(&t.object.spec, &mut sink);
    }
    for r in &m.rollouts {
        let mut sink = Sink::new(&r.origin, format!("Rollout/{}", r.object.name()), &mut out);
        validate_rollout(m, r, &mut sink);
    }
    out
}

/// Collects the errors of one object.
struct Sink<'a> {
    origin: &'a Origin,
    object: String,
    out: &'a mut Vec<SpecError>,
}

impl<'a> Sink<'a> {
    fn new(origin: &'a Origin, object: String, out: &'a mut Vec<SpecError>) -> Self {
        Sink {
            origin,
            object,
            out,
        }
    }

    fn push(&mut self, path: &KeyPath, kind: SpecErrorKind) {
        self.out.push(doc_error(
            self.origin,
            Some(&self.object),
            path.as_str(),
            kind,
        ));
    }

    fn invalid(&mut self, path: &KeyPath, reason: impl Into<String>) {
        self.push(path, SpecErrorKind::invalid(reason));
    }

    fn invalid_hint(&mut self, path: &KeyPath, reason: impl Into<String>, hint: impl Into<String>) {
        self.push(path, SpecErrorKind::invalid_hint(reason, hint));
    }
}

// ---- AnalysisTemplate ------------------------------------------------------------------------

fn validate_template(spec: &AnalysisTemplateSpec, sink: &mut Sink<'_>) {
    let metrics = KeyPath::from("spec.metrics");
    if spec.metrics.is_empty() && spec.templates.is_empty() {
        sink.invalid_hint(
            &metrics,
            "no metrics specified",
            "add a metric with a prometheus provider",
        );
    }
    for (i, m) in spec.metrics.iter().enumerate() {
        let at = metrics.index(i);
        if spec.metrics[..i].iter().any(|o| o.name == m.name) {
            sink.invalid(&at.key("name"), format!("duplicate name '{}'", m.name));
        }
        for (path, kind) in check_metric(m, Mode::Literal) {
            sink.push(&at.join(&path), kind);
        }
    }
    let args = KeyPath::from("spec.args");
    for (i, a) in spec.args.iter().enumerate() {
        if spec.args[..i].iter().any(|o| o.name == a.name) {
            sink.invalid(
                &args.index(i).key("name"),
                format!("arg `{}` is declared twice", a.name),
            );
        }
    }
}

/// Which fields of a metric to check: the literal ones once per template, the ones holding
/// `{{args.x}}` once per reference, with the args that reference gives.
#[derive(Clone, Copy)]
enum Mode<'a> {
    Literal,
    Args(&'a BTreeMap<String, String>),
}

/// The problems of one metric's fields, relative to the metric.
fn check_metric(m: &Metric, mode: Mode<'_>) -> Vec<(KeyPath, SpecErrorKind)> {
    let mut out = Vec::new();
    // The value to check for a field in this mode, or None to leave it to the other mode. An
    // arg that does not resolve is reported once, by the caller, not per field.
    let value = |raw: &str| -> Option<String> {
        match (mode, raw.contains("{{")) {
            (Mode::Literal, false) => Some(raw.to_string()),
            (Mode::Args(args), true) => crate::controller::analysis::render_args(raw, args).ok(),
            _ => None,
        }
    };
    let shown = |v: &str, raw: &str| {
        if v == raw {
            String::new()
        } else {
            format!(" ({raw:?} gives {v:?})")
        }
    };

    let interval_set = m.interval.as_deref().is_some_and(|s| !s.is_empty());
    let mut relations_apply = matches!(mode, Mode::Literal);
    for (field, label, raw) in [
        ("interval", "invalid interval string", &m.interval),
        (
            "initialDelay",
            "invalid startDelay string",
            &m.initial_delay,
        ),
    ] {
        let Some(raw) = raw.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if matches!(mode, Mode::Args(_)) && raw.contains("{{") {
            relations_apply = true;
        }
        if let Some(v) = value(raw)
            && let Err(e) = parse_go_duration(&v)
        {
            let hint = match e {
                DurationError::MissingUnit(_) => Some(format!("add a unit: \"{v}s\"")),
                DurationError::UnknownUnit { .. } => {
                    Some("units are ns, us, ms, s, m, h (no days)".into())
                }
                _ => None,
            };
            let reason = format!("{label}: {e}{}", shown(&v, raw));
            out.push((
                KeyPath::from(field),
                SpecErrorKind::Invalid { reason, hint },
            ));
        }
    }

    // What Argo binds `result` to: a scalar only for a query whose top level is `scalar(...)`
    // (or a number); anything else comes back as a vector (a matrix is flattened to one).
    let query = m.provider.prometheus.as_ref().map(|p| p.query.trim_start());
    let shape = match query {
        Some(q) if q.starts_with("scalar(") || q.parse::<f64>().is_ok() => MetricValue::Scalar(1.0),
        _ => MetricValue::Vector(vec![1.0]),
    };
    for (field, raw) in [
        ("successCondition", &m.success_condition),
        ("failureCondition", &m.failure_condition),
    ] {
        let Some(raw) = raw.as_deref().filter(|s| !s.trim().is_empty()) else {
            continue;
        };
        let Some(v) = value(raw) else {
            continue;
        };
        if let Ok(c) = Condition::parse(&v) {
            if let Err(EvalError::Compile(e)) = c.evaluate(&shape) {
                let (got, hint) = match shape {
                    MetricValue::Scalar(_) => (
                        "a scalar",
                        "a scalar(...) query gives `result`, not `result[0]`",
                    ),
                    MetricValue::Vector(_) => (
                        "a vector",
                        "a Prometheus instant query gives a vector: compare `result[0]`, guarded by `len(result) == 0 ||`",
                    ),
                };
                out.push((
                    KeyPath::from(field),
                    SpecErrorKind::invalid_hint(
                        format!(
                            "{field} fails on every measurement: the query returns {got}, and {e}{}",
                            shown(&v, raw)
                        ),
                        hint,
                    ),
                ));
            }
            continue;
        }
        if let Err(e) = Condition::parse(&v) {
            let kind = match e {
                ConditionError::Syntax { .. } => {
                    SpecErrorKind::invalid(format!("{field} does not parse: {e}{}", shown(&v, raw)))
                }
                ConditionError::NeverEvaluates(_) => SpecErrorKind::invalid_hint(
                    format!("{field} can never be evaluated: {e}{}", shown(&v, raw)),
                    "a Prometheus vector is `result[0]`, a scalar is `result`",
                ),
                ConditionError::Unsupported(_) => {
                    SpecErrorKind::unsupported(format!("{field}: {e}{}", shown(&v, raw)), None)
                }
            };
            out.push((KeyPath::from(field), kind));
        }
    }

    // Counts and limits: each must be an integer; their relations are checked when every one
    // of them is known in this mode.
    let mut ints: BTreeMap<&str, Option<i32>> = BTreeMap::new();
    let mut all_known = true;
    for (field, v) in [
        ("count", &m.count),
        ("failureLimit", &m.failure_limit),
        ("inconclusiveLimit", &m.inconclusive_limit),
        ("consecutiveErrorLimit", &m.consecutive_error_limit),
        ("consecutiveSuccessLimit", &m.consecutive_success_limit),
    ] {
        let known = match v {
            Some(IntOrString::String(raw)) => {
                if matches!(mode, Mode::Args(_)) && raw.contains("{{") {
                    relations_apply = true;
                }
                match value(raw) {
                    Some(v) => match int_field(field, &Some(IntOrString::String(v))) {
                        Ok(i) => Some(i),
                        Err(e) => {
                            out.push((KeyPath::from(field), SpecErrorKind::invalid(e)));
                            None
                        }
                    },
                    None => None,
                }
            }
            other => Some(other.as_ref().and_then(|v| match v {
                IntOrString::Int(i) => Some(*i),
                IntOrString::String(_) => None,
            })),
        };
        match known {
            Some(v) => {
                ints.insert(field, v);
            }
            None => all_known = false,
        }
    }
    let interval_templated = m.interval.as_deref().is_some_and(|s| s.contains("{{"));
    if relations_apply && all_known && !(matches!(mode, Mode::Literal) && interval_templated) {
        let get = |k: &str| ints.get(k).copied().flatten();
        if let Err(e) = check_counts(
            get("count").unwrap_or(0),
            interval_set,
            get("failureLimit").unwrap_or(0),
            get("inconclusiveLimit").unwrap_or(0),
            get("consecutiveErrorLimit").unwrap_or(4),
            get("consecutiveSuccessLimit").unwrap_or(0),
        ) {
            let field = if e.starts_with("interval") || e.starts_with("count") {
                "count"
            } else {
                e.split(' ').next().unwrap_or("count")
            };
            out.push((KeyPath::from(field), SpecErrorKind::invalid(e)));
        }
    }

    let provider = KeyPath::from("provider");
    match &m.provider.prometheus {
        None => {
            if matches!(mode, Mode::Literal) {
                out.push((
                    provider,
                    SpecErrorKind::invalid_hint(
                        "no provider specified",
                        "add provider.prometheus with address and query",
                    ),
                ));
            }
        }
        Some(p) => {
            let prom = provider.key("prometheus");
            if p.query.trim().is_empty() {
                if matches!(mode, Mode::Literal) {
                    out.push((
                        prom.key("query"),
                        SpecErrorKind::invalid("a prometheus metric needs a query"),
                    ));
                }
            } else if let Some(q) = value(&p.query)
                && q.trim().is_empty()
            {
                out.push((
                    prom.key("query"),
                    SpecErrorKind::invalid("the query is empty once its args are substituted"),
                ));
            }
            if !p.address.is_empty()
                && let Some(a) = value(&p.address)
                && !is_http_url(&a)
            {
                out.push((
                    prom.key("address"),
                    SpecErrorKind::invalid_hint(
                        format!("address {a:?} is not a URL with scheme and host"),
                        "e.g. http://prometheus.monitoring.svc:9090",
                    ),
                ));
            }
            if matches!(mode, Mode::Literal)
                && let Some(t) = p.timeout
                && t < 0
            {
                out.push((
                    prom.key("timeout"),
                    SpecErrorKind::invalid(format!("timeout must be >= 0, got {t}")),
                ));
            }
        }
    }
    out
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':') && !host.contains(char::is_whitespace)
    })
}

// ---- Rollout ---------------------------------------------------------------------------------

fn validate_rollout(m: &Manifests, r: &Manifest<Rollout>, sink: &mut Sink<'_>) {
    let rollout = &r.object;
    let spec = &rollout.spec;
    let at = KeyPath::from("spec");
    let nonneg = |sink: &mut Sink<'_>, field: &str, v: Option<i32>| {
        if let Some(v) = v
            && v < 0
        {
            sink.invalid(
                &at.key(field),
                format!("must be greater than or equal to 0, got {v}"),
            );
        }
    };
    nonneg(sink, "replicas", spec.replicas);
    nonneg(sink, "minReadySeconds", spec.min_ready_seconds);
    nonneg(sink, "revisionHistoryLimit", spec.revision_history_limit);
    nonneg(
        sink,
        "progressDeadlineSeconds",
        spec.progress_deadline_seconds,
    );
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    if deadline <= spec.min_ready_seconds.unwrap_or(0) {
        sink.invalid(
            &at.key("progressDeadlineSeconds"),
            "must be greater than minReadySeconds",
        );
    }

    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.labels.clone())
        .unwrap_or_default();
    let sel = &spec.selector;
    let sel_empty = sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty);
    if sel_empty {
        sink.invalid_hint(
            &at.key("selector"),
            "empty selector is invalid for deployment",
            "select the template's labels, e.g. matchLabels: {app: <name>}",
        );
    } else if let Err(e) = selector_matches(sel, &labels) {
        sink.invalid_hint(
            &at.key("template").key("metadata").key("labels"),
            format!("`selector` does not match template `labels` ({e})"),
            "give the pod template the labels spec.selector selects",
        );
    }
    let containers = spec
        .template
        .spec
        .as_ref()
        .map_or(0, |s| s.containers.len());
    if containers == 0 {
        sink.invalid(
            &at.key("template").key("spec").key("containers"),
            "Required value: a pod template needs at least one container",
        );
    }

    let Some(canary) = rollout.canary() else {
        sink.invalid(
            &at.key("strategy"),
            "Rollout has missing field '.spec.strategy.canary or .spec.strategy.blueGreen'",
        );
        return;
    };
    validate_canary(m, r, canary, sink);
}

fn validate_canary(
    m: &Manifests,
    r: &Manifest<Rollout>,
    canary: &CanaryStrategy,
    sink: &mut Sink<'_>,
) {
    let rollout = &r.object;
    let ns = rollout.namespace();
    let at = KeyPath::from("spec.strategy.canary");

    // MaxSurge / MaxUnavailable, as Argo's getIntOrPercentValue reads them.
    let value = |v: &Option<IntOrString>| match v {
        None => 25,
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => percent_value(s).map_or(0, |p| p as i64),
    };
    if value(&canary.max_surge) == 0 && value(&canary.max_unavailable) == 0 {
        sink.invalid(
            &at.key("maxSurge"),
            "MaxSurge and MaxUnavailable both can not be zero",
        );
    }
    if !canary.canary_service.is_empty() && canary.canary_service == canary.stable_service {
        sink.invalid(
            &at.key("stableService"),
            "This rollout uses the same service for the stable and canary services, but two \
             different services are required.",
        );
    }

    let routing = at.key("trafficRouting");
    match &canary.traffic_routing {
        None => {
            if canary.scale_down_delay_seconds.is_some() {
                sink.invalid(
                    &at.key("scaleDownDelaySeconds"),
                    "Canary scaleDownDelaySeconds can only be used with traffic routing",
                );
            }
            if canary.dynamic_stable_scale {
                sink.invalid(
                    &at.key("dynamicStableScale"),
                    "Canary dynamicStableScale can only be used with traffic routing",
                );
            }
            sink.push(
                &routing,
                SpecErrorKind::unsupported(
                    "a canary without trafficRouting (split by replica count) is not emulated; \
                     only nginx traffic routing is",
                    Some("add trafficRouting.nginx.stableIngress naming the Ingress users reach"),
                ),
            );
        }
        Some(tr) => {
            for (field, name) in [
                ("stableService", &canary.stable_service),
                ("canaryService", &canary.canary_service),
            ] {
                if name.is_empty() {
                    sink.invalid_hint(
                        &at.key(field),
                        "Canary service and Stable service must to be set to use Traffic Routing",
                        format!(
                            "name the Service the controller points at the {} pods",
                            &field[..6]
                        ),
                    );
                }
            }
            if canary.dynamic_stable_scale {
                if canary.scale_down_delay_seconds.is_some() {
                    sink.invalid(
                        &at.key("dynamicStableScale"),
                        "Canary dynamicStableScale cannot be used with scaleDownDelaySeconds",
                    );
                }
                sink.push(
                    &at.key("dynamicStableScale"),
                    SpecErrorKind::unsupported("dynamicStableScale is not emulated", None),
                );
            }
            if let Some(w) = tr.max_traffic_weight
                && w <= 0
            {
                sink.invalid(
                    &routing.key("maxTrafficWeight"),
                    format!("must be greater than 0, got {w}"),
                );
            }
            match &tr.nginx {
                None => sink.invalid_hint(
                    &routing,
                    "trafficRouting names no router",
                    "add trafficRouting.nginx.stableIngress",
                ),
                Some(nginx) => validate_nginx(m, ns, canary, nginx, &routing.key("nginx"), sink),
            }
        }
    }
    for (field, name) in [
        ("stableService", &canary.stable_service),
        ("canaryService", &canary.canary_service),
    ] {
        if !name.is_empty() {
            validate_service(m, rollout, name, &at.key(field), sink);
        }
    }

    let max_weight = canary.max_traffic_weight();
    let steps = at.key("steps");
    for (i, step) in canary.steps.iter().enumerate() {
        let sp = steps.index(i);
        match step.kind() {
            None if step.fields_set().is_empty() => sink.invalid_hint(
                &sp,
                "Step must have one of the following set: experiment, setWeight, setCanaryScale or pause",
                "an indefinite pause is `pause: {}` (a bare `pause:` is null and dropped)",
            ),
            None => sink.invalid_hint(
                &sp,
                format!(
                    "a step must set exactly one of setWeight, pause, analysis, setCanaryScale; this one sets {}",
                    step.fields_set().join(" and ")
                ),
                "split it into one step per field",
            ),
            Some(StepKind::SetWeight(w)) => {
                if w < 0 || i64::from(w) > i64::from(max_weight) {
                    sink.invalid(&sp.key("setWeight"), format!("SetWeight needs to be between 0 and {max_weight}"));
                }
            }
            Some(StepKind::Pause(_)) => {}
            Some(StepKind::SetCanaryScale(s)) => {
                let set = usize::from(s.replicas.is_some()) + usize::from(s.weight.is_some()) + usize::from(s.match_traffic_weight);
                let scale = sp.key("setCanaryScale");
                if set != 1 {
                    sink.invalid(&scale, "set exactly one of replicas, weight or matchTrafficWeight: true");
                }
                if let Some(rp) = s.replicas
                    && rp < 0
                {
                    sink.invalid(&scale.key("replicas"), format!("must be greater than or equal to 0, got {rp}"));
                }
                if let Some(w) = s.weight
                    && !(0..=100).contains(&w)
                {
                    sink.invalid(&scale.key("weight"), format!("must be between 0 and 100, got {w}"));
                }
            }
            Some(StepKind::Analysis(a)) => validate_analysis(m, r, a, &sp.key("analysis"), true, sink),
        }
    }

    if let Some(bg) = &canary.analysis {
        let path = at.key("analysis");
        validate_analysis(m, r, bg, &path, false, sink);
        if let Some(s) = bg.starting_step {
            let len = canary.steps.len();
            if s < 0 || s as usize > len {
                sink.invalid(
                    &path.key("startingStep"),
                    format!(
                        "startingStep {s} is outside the steps (0..={len}); the background analysis would never start"
                    ),
                );
            }
        }
    }
}

fn validate_nginx(
    m: &Manifests,
    ns: &str,
    canary: &CanaryStrategy,
    nginx: &NginxTrafficRouting,
    at: &KeyPath,
    sink: &mut Sink<'_>,
) {
    match (
        nginx.stable_ingress.is_empty(),
        nginx.stable_ingresses.is_empty(),
    ) {
        (false, false) => sink.invalid(
            at,
            "Either StableIngress or StableIngresses must be configured. Both are configured.",
        ),
        (true, true) => sink.invalid_hint(
            at,
            "Either StableIngress or StableIngresses must be configured. Neither are configured.",
            "stableIngress: <the Ingress users reach, routing to stableService>",
        ),
        _ => {}
    }
    let stable: Vec<(KeyPath, &str)> = if nginx.stable_ingress.is_empty() {
        nginx
            .stable_ingresses
            .iter()
            .enumerate()
            .map(|(i, n)| (at.key("stableIngresses").index(i), n.as_str()))
            .collect()
    } else {
        vec![(at.key("stableIngress"), nginx.stable_ingress.as_str())]
    };
    for (path, name) in stable {
        match m.ingress(ns, name) {
            None if m.is_broken("Ingress", ns, name) => {}
            None => sink.invalid_hint(
                &path,
                format!("ingress `{name}` is not among the target's manifests (namespace `{ns}`)"),
                format!(
                    "add the Ingress to `{}`: the controller copies it into the canary Ingress",
                    m.dir.display()
                ),
            ),
            Some(ing) if !canary.stable_service.is_empty() => {
                check_ingress_backend(
                    m,
                    ns,
                    &ing.object,
                    name,
                    &canary.stable_service,
                    &path,
                    sink,
                );
            }
            Some(_) => {}
        }
    }

    let prefix = nginx.annotation_prefix();
    let check = |sink: &mut Sink<'_>, path: KeyPath, short: &str| {
        if SUPPORTED_CANARY_ANNOTATIONS.contains(&short) {
            return;
        }
        if matches!(short, "canary" | "canary-weight" | "canary-weight-total") {
            sink.invalid_hint(
                &path,
                format!("`{short}` is set by the controller and overwritten"),
                "remove it; use setWeight steps and trafficRouting.maxTrafficWeight",
            );
        } else {
            sink.push(
                &path,
                SpecErrorKind::unsupported(
                    format!(
                        "ingress-nginx annotation `{short}` is not emulated by the local router (it honours {})",
                        SUPPORTED_CANARY_ANNOTATIONS.join(", ")
                    ),
                    None,
                ),
            );
        }
    };
    for key in nginx.additional_ingress_annotations.keys() {
        let short = key
            .strip_prefix(prefix)
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key);
        check(sink, at.key("additionalIngressAnnotations").key(key), short);
    }
    for key in nginx.canary_ingress_annotations.keys() {
        let path = at.key("canaryIngressAnnotations").key(key);
        match key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) {
            Some(short) => check(sink, path, short),
            None => sink.push(
                &path,
                SpecErrorKind::unsupported(
                    format!("annotation `{key}` is not an ingress-nginx (`{prefix}/`) annotation; the local router ignores it"),
                    None,
                ),
            ),
        }
    }
}

/// The stable Ingress must route to the stable Service (Argo copies those rules into the canary
/// Ingress), on a port the Service has (or ingress-nginx answers 503).
fn check_ingress_backend(
    m: &Manifests,
    ns: &str,
    ingress: &Ingress,
    name: &str,
    service: &str,
    path: &KeyPath,
    sink: &mut Sink<'_>,
) {
    let backends: Vec<_> = ingress
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|rule| rule.http.iter().flat_map(|h| h.paths.iter()))
        .filter_map(|p| p.backend.service.as_ref())
        .filter(|b| b.name == service)
        .collect();
    if backends.is_empty() {
        sink.invalid_hint(
            path,
            format!("ingress `{name}` has no rules using service {service} backend"),
            format!("route a rule's path to service `{service}`"),
        );
        return;
    }
    let Some(svc) = m.service(ns, service) else {
        return;
    };
    let ports: Vec<_> = svc
        .object
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .collect();
    for b in backends {
        let Some(port) = &b.port else { continue };
        let found = ports.iter().any(|p| {
            port.number.is_some_and(|n| n == p.port)
                || port
                    .name
                    .as_ref()
                    .is_some_and(|n| p.name.as_ref() == Some(n))
        });
        if !found {
            let shown = port
                .number
                .map(|n| n.to_string())
                .or_else(|| port.name.clone())
                .unwrap_or_default();
            sink.invalid(
                path,
                format!("ingress `{name}` routes to port {shown} of Service `{service}`, which has no such port"),
            );
        }
    }
}

/// A Service the Rollout names must exist, and its selector must select the Rollout's pods
/// (apart from the hash label the controller adds), as Argo's `ValidateService` checks.
fn validate_service(
    m: &Manifests,
    rollout: &Rollout,
    name: &str,
    path: &KeyPath,
    sink: &mut Sink<'_>,
) {
    let ns = rollout.namespace();
    let Some(svc) = m.service(ns, name) else {
        if !m.is_broken("Service", ns, name) {
            sink.invalid_hint(
                path,
                format!("Service `{name}` is not among the target's manifests (namespace `{ns}`)"),
                format!("add the Service to `{}`", m.dir.display()),
            );
        }
        return;
    };
    let labels = rollout
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.labels.clone())
        .unwrap_or_default();
    let selector = selector_of(&svc.object);
    for (k, v) in selector {
        if k == POD_TEMPLATE_HASH_LABEL {
            continue;
        }
        if labels.get(&k) != Some(&v) {
            sink.invalid_hint(
                path,
                format!("Service \"{name}\" has unmatch label \"{k}\" in rollout"),
                format!("the pod template needs the label {k}: {v}, or the Service should not select on it"),
            );
        }
    }
}

fn selector_of(svc: &Service) -> BTreeMap<String, String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// Whether a label selector selects these labels; the first requirement that fails otherwise.
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Err(format!("matchLabels {k}: {v}"));
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => return Err(format!("unknown operator {other:?} for key {}", e.key)),
        };
        if !ok {
            return Err(format!("matchExpressions {} {}", e.key, e.operator));
        }
    }
    Ok(())
}

// ---- Analyses --------------------------------------------------------------------------------

fn validate_analysis(
    m: &Manifests,
    r: &Manifest<Rollout>,
    analysis: &RolloutAnalysis,
    at: &KeyPath,
    is_step: bool,
    sink: &mut Sink<'_>,
) {
    let rollout = &r.object;
    let args_path = at.key("args");
    for (j, a) in analysis.args.iter().enumerate() {
        let ap = args_path.index(j);
        if analysis.args[..j].iter().any(|o| o.name == a.name) {
            sink.invalid(&ap.key("name"), format!("arg `{}` is given twice", a.name));
        }
        match (&a.value, &a.value_from) {
            (None, None) => sink.invalid_hint(
                &ap,
                format!("arg `{}` has neither value nor valueFrom", a.name),
                "add `value: ...` or `valueFrom: {podTemplateHashValue: Latest}`",
            ),
            (Some(_), Some(_)) => sink.invalid(&ap, "set either value or valueFrom, not both"),
            (None, Some(from)) => {
                let fp = ap.key("valueFrom");
                match (&from.pod_template_hash_value, &from.field_ref) {
                    (None, None) => {
                        sink.invalid(&fp, "valueFrom needs podTemplateHashValue or fieldRef")
                    }
                    (Some(_), Some(_)) => {
                        sink.invalid(&fp, "set either podTemplateHashValue or fieldRef, not both")
                    }
                    (None, Some(f)) => {
                        let path = fp.key("fieldRef").key("fieldPath");
                        match field_value(&r.raw, rollout.namespace(), &f.field_path) {
                            Ok(_) => {}
                            Err(FieldRefError::Invalid(e)) => sink.invalid(&path, e),
                            Err(FieldRefError::Unsupported(e)) => {
                                sink.push(&path, SpecErrorKind::unsupported(e, None));
                            }
                        }
                    }
                    (Some(_), None) => {}
                }
            }
            (Some(_), None) => {}
        }
    }
    for (j, d) in analysis.measurement_retention.iter().enumerate() {
        if d.limit < 0 {
            sink.invalid(
                &at.key("measurementRetention").index(j).key("limit"),
                format!("must be greater than or equal to 0, got {}", d.limit),
            );
        }
    }

    let merged = match merge_analysis(m, rollout.namespace(), analysis) {
        Ok(merged) => merged,
        Err(problems) => {
            for p in problems {
                let kind = match p.hint {
                    Some(h) => SpecErrorKind::invalid_hint(p.reason, h),
                    None => SpecErrorKind::invalid(p.reason),
                };
                sink.push(&at.join(&p.path), kind);
            }
            return;
        }
    };

    // What the args make of templated fields, with the values known before a run exists.
    let mut values = BTreeMap::new();
    for a in &merged.args {
        let v = match &a.source {
            ArgSource::Value(v) => v.clone(),
            ArgSource::PodTemplateHash(_) => PLACEHOLDER_HASH.to_string(),
            ArgSource::FieldRef(p) => match field_value(&r.raw, rollout.namespace(), p) {
                Ok(v) => v,
                Err(_) => continue, // reported with the arg above
            },
        };
        values.insert(a.name.clone(), v);
    }
    for (k, metric) in merged.metrics.iter().enumerate() {
        let origin = &merged.metric_origins[k];
        for (path, kind) in check_metric(metric, Mode::Args(&values)) {
            let reason = format!(
                "{origin} metric `{}` at `{path}`: {}",
                metric.name,
                kind.reason()
            );
            let kind = match kind.hint() {
                Some(h) => SpecErrorKind::invalid_hint(reason, h),
                None => SpecErrorKind::invalid(reason),
            };
            sink.push(&args_path, kind);
        }
        if is_step
            && let Ok(resolved) = metric.resolve(&values)
            && resolved.effective_count().is_none()
        {
            let count = metric.count.as_ref().map_or_else(
                || "<nil>".to_string(),
                |c| match c {
                    IntOrString::Int(i) => i.to_string(),
                    IntOrString::String(s) => s.clone(),
                },
            );
            sink.invalid_hint(
                &at.key("templates"),
                format!(
                    "{} has metric {} which runs indefinitely. Invalid value for count: {count}",
                    origin.replace('/', " "),
                    metric.name
                ),
                "give the metric a count: an analysis step waits for its run to finish",
            );
        }
    }
    // Args a template uses but declares in no template: Argo fails the run on them.
    let declared: Vec<&str> = merged.args.iter().map(|a| a.name.as_str()).collect();
    for (k, metric) in merged.metrics.iter().enumerate() {
        let mut used = Vec::new();
        for s in metric_strings(metric) {
            used.extend(referenced_args(s));
        }
        used.sort_unstable();
        used.dedup();
        for name in used {
            if !declared.contains(&name) {
                sink.invalid_hint(
                    &at.key("templates"),
                    format!(
                        "{} metric `{}` uses {{{{args.{name}}}}}, which no template declares: failed to resolve {{{{args.{name}}}}}",
                        merged.metric_origins[k], metric.name
                    ),
                    format!("declare `- name: {name}` in the template's spec.args"),
                );
            }
        }
    }
}

/// Every string of a metric that args can be substituted into.
fn metric_strings(m: &Metric) -> Vec<&str> {
    let mut out: Vec<&str> = [
        &m.interval,
        &m.initial_delay,
        &m.success_condition,
        &m.failure_condition,
    ]
    .into_iter()
    .filter_map(|s| s.as_deref())
    .collect();
    for v in [
        &m.count,
        &m.failure_limit,
        &m.inconclusive_limit,
        &m.consecutive_error_limit,
        &m.consecutive_success_limit,
    ]
    .into_iter()
    .flatten()
    {
        if let IntOrString::String(s) = v {
            out.push(s);
        }
    }
    if let Some(p) = &m.provider.prometheus {
        out.push(&p.query);
        out.push(&p.address);
    }
    out
}
