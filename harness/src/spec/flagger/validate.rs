//! The checks Flagger's CRD and controller make, plus what a cluster would only find at run time
//! (a MetricTemplate that is missing or does not render, a metric that is neither builtin nor
//! templated, a webhook nothing answers): each is one [`SpecError`] naming file, object and key
//! path, and every one of a target is reported.

use k8s_openapi::api::networking::v1::Ingress;

use super::template::{self, Model, RenderError};
use super::{
    Canary, CanaryAnalysis, CanaryMetric, CanaryWebhook, DEFAULT_METRIC_INTERVAL, DeploymentExt,
    MetricTemplate, Objects, REQUEST_DURATION, SELECTOR_LABELS, SUCCESS_RATE, decode,
};
use crate::spec::error::{KeyPath, SpecError, SpecErrorKind};
use crate::spec::manifests::{self, Manifest, Manifests, Origin, doc_error};

/// The metric providers Flagger knows besides Prometheus.
const OTHER_PROVIDERS: [&str; 9] = [
    "influxdb",
    "datadog",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
    "stackdriver",
];

/// The loadtester's task types that run a command against the cluster (blocking ones and
/// external tools); gauntlet runs none of them.
const LOADTESTER_COMMANDS: [&str; 6] = ["bash", "kubectl", "helm", "helmv3", "concord", "ngrinder"];

/// Checks the Flagger objects of a target against each other and against Flagger's rules.
pub fn validate(m: &Manifests) -> Vec<SpecError> {
    let (objects, mut out) = decode(m);
    for t in &objects.metric_templates {
        let mut sink = Sink::new(
            &t.origin,
            format!("MetricTemplate/{}", t.object.name()),
            &mut out,
        );
        validate_template(&t.object, &mut sink);
    }
    for (i, c) in objects.canaries.iter().enumerate() {
        let mut sink = Sink::new(&c.origin, format!("Canary/{}", c.object.name()), &mut out);
        validate_canary(m, &objects, c, &mut sink);
        let target = &c.object.spec.target_ref.name;
        if let Some(other) = objects.canaries[..i].iter().find(|o| {
            &o.object.spec.target_ref.name == target && o.object.namespace() == c.object.namespace()
        }) {
            sink.invalid(
                &KeyPath::from("spec.targetRef.name"),
                format!(
                    "Canary `{}` already targets Deployment `{target}`; Flagger warns \"Bad \
                     things will happen!\" when two Canaries share a target",
                    other.object.name()
                ),
            );
        }
        let mut out_services = Vec::new();
        for svc in &m.services {
            let name = manifests::name(&svc.object.metadata);
            let generated = [c.object.primary_service(), c.object.canary_service()];
            if manifests::namespace(&svc.object.metadata) == c.object.namespace()
                && generated.iter().any(|g| g == name)
            {
                out_services.push(doc_error(
                    &svc.origin,
                    Some(&format!("Service/{name}")),
                    "metadata.name",
                    SpecErrorKind::invalid_hint(
                        format!(
                            "Flagger generates Service `{name}` for Canary `{}`; a manifest of \
                             it would fight the controller",
                            c.object.name()
                        ),
                        "remove it; Flagger creates <service>, <service>-primary and \
                         <service>-canary",
                    ),
                ));
            }
        }
        out.extend(out_services);
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

    fn unsupported(&mut self, path: &KeyPath, reason: impl Into<String>, hint: Option<&str>) {
        self.push(path, SpecErrorKind::unsupported(reason, hint));
    }

    fn render_error(&mut self, path: &KeyPath, e: RenderError, what: &str) {
        match e {
            RenderError::Unsupported(reason) => self.unsupported(path, reason, None),
            other => self.invalid(
                path,
                format!("{what} does not render, so every check would fail: {other}"),
            ),
        }
    }
}

// ---- MetricTemplate ----------------------------------------------------------------------------

fn validate_template(t: &MetricTemplate, sink: &mut Sink<'_>) {
    let provider = KeyPath::from("spec.provider");
    let kind = t.spec.provider.kind.as_str();
    if kind == "prometheus" {
        match t.spec.provider.address.as_deref() {
            None | Some("") => sink.invalid_hint(
                &provider.key("address"),
                "a prometheus provider needs an address (Flagger fails every check with \
                 \"prometheus address  is not a valid URL\")",
                "address: http://prometheus.monitoring:9090",
            ),
            Some(a) if reqwest::Url::parse(a).is_err() => sink.invalid(
                &provider.key("address"),
                format!("{a:?} is not a valid URL"),
            ),
            Some(_) => {}
        }
    } else if OTHER_PROVIDERS.contains(&kind) {
        sink.unsupported(
            &provider.key("type"),
            format!("the {kind} provider: only prometheus can be emulated locally"),
            Some("query Prometheus, or run this policy with --backend kind/kube"),
        );
    } else {
        sink.invalid_hint(
            &provider.key("type"),
            format!(
                "unknown provider type {kind:?}; Flagger would warn and query it as prometheus"
            ),
            "type: prometheus",
        );
    }
    if t.spec.query.trim().is_empty() {
        sink.invalid(&KeyPath::from("spec.query"), "the query is empty");
    } else if let Err(e) = template::check_syntax(&t.spec.query) {
        sink.render_error(&KeyPath::from("spec.query"), e, "the query");
    }
}

// ---- Canary ------------------------------------------------------------------------------------

fn validate_canary(m: &Manifests, objects: &Objects, c: &Manifest<Canary>, sink: &mut Sink<'_>) {
    let canary = &c.object;
    let spec = KeyPath::from("spec");
    if canary.provider() != "nginx" {
        sink.unsupported(
            &spec.key("provider"),
            format!(
                "provider {:?}: only nginx routing can be emulated locally",
                canary.provider()
            ),
            Some("use provider: nginx (or leave it unset), or run with --backend kind/kube"),
        );
    }
    validate_target(objects, canary, sink);
    validate_ingress(m, canary, sink);
    let port = canary.spec.service.port;
    if !(1..=65535).contains(&port) {
        sink.invalid(
            &spec.key("service").key("port"),
            format!("must be a port number between 1 and 65535, got {port}"),
        );
    }
    if let Some(s) = canary.spec.progress_deadline_seconds
        && s < 0
    {
        sink.invalid(
            &spec.key("progressDeadlineSeconds"),
            format!("must be >= 0, got {s}"),
        );
    }
    // `canaryAnalysis` and a missing `analysis` are the shape's to refuse (as the CRD does).
    if let Some(analysis) = &canary.spec.analysis {
        validate_analysis(objects, canary, analysis, &spec.key("analysis"), sink);
    }
}

fn validate_target(objects: &Objects, canary: &Canary, sink: &mut Sink<'_>) {
    let at = KeyPath::from("spec.targetRef");
    let r = &canary.spec.target_ref;
    match r.kind.as_deref() {
        None | Some("Deployment") => {}
        Some(k @ ("DaemonSet" | "Service")) => {
            sink.unsupported(
                &at.key("kind"),
                format!("a {k} target is not emulated; only Deployment is"),
                None,
            );
            return;
        }
        Some(k) => {
            sink.invalid(
                &at.key("kind"),
                format!("Flagger targets a Deployment, DaemonSet or Service, not {k:?}"),
            );
            return;
        }
    }
    if let Some(v) = r.api_version.as_deref()
        && v != "apps/v1"
    {
        sink.invalid_hint(
            &at.key("apiVersion"),
            format!("a Deployment is apps/v1, not {v}"),
            "apiVersion: apps/v1",
        );
    }
    if let Some(ns) = r.namespace.as_deref()
        && ns != canary.namespace()
    {
        sink.invalid(
            &at.key("namespace"),
            format!(
                "Flagger looks the target up in the Canary's namespace `{}`, not `{ns}`",
                canary.namespace()
            ),
        );
    }
    let Some(deployment) = objects.deployment(canary.namespace(), &r.name) else {
        if objects
            .broken_deployments
            .contains(&(canary.namespace().to_string(), r.name.clone()))
        {
            return;
        }
        sink.invalid_hint(
            &at.key("name"),
            format!(
                "Deployment `{}` is not in this target (namespace `{}`); Flagger would report \
                 \"deployment {}.{} get query error\" at every tick",
                r.name,
                canary.namespace(),
                r.name,
                canary.namespace()
            ),
            "add the Deployment's manifest to the target folder",
        );
        return;
    };
    if deployment.object.selector_label().is_none() {
        sink.out.push(doc_error(
            &deployment.origin,
            Some(&format!("Deployment/{}", r.name)),
            "spec.selector.matchLabels",
            SpecErrorKind::invalid_hint(
                format!(
                    "Deployment {}.{} spec.selector.matchLabels must contain one of {:?} \
                     (Flagger's -selector-labels)",
                    r.name,
                    canary.namespace(),
                    SELECTOR_LABELS
                ),
                format!("matchLabels: {{app: {}}}", r.name),
            ),
        ));
    }
}

fn validate_ingress(m: &Manifests, canary: &Canary, sink: &mut Sink<'_>) {
    let at = KeyPath::from("spec.ingressRef");
    let Some(r) = &canary.spec.ingress_ref else {
        if canary.provider() == "nginx" {
            sink.invalid_hint(
                &at,
                "ingressRef is required with provider nginx: Flagger copies that Ingress into \
                 the canary Ingress",
                "ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: <ingress>}",
            );
        }
        return;
    };
    if let Some(k) = r.kind.as_deref()
        && k != "Ingress"
    {
        sink.invalid(&at.key("kind"), format!("expected Ingress, got {k:?}"));
    }
    if let Some(v) = r.api_version.as_deref()
        && v != "networking.k8s.io/v1"
    {
        sink.invalid_hint(
            &at.key("apiVersion"),
            format!("an Ingress is networking.k8s.io/v1, not {v}"),
            "apiVersion: networking.k8s.io/v1",
        );
    }
    let Some(ingress) = m.ingress(canary.namespace(), &r.name) else {
        sink.invalid_hint(
            &at.key("name"),
            format!(
                "Ingress `{}` is not in this target (namespace `{}`)",
                r.name,
                canary.namespace()
            ),
            "add the Ingress users reach to the target folder",
        );
        return;
    };
    let apex = canary.apex();
    if !backends(&ingress.object).iter().any(|b| b == apex) {
        sink.invalid_hint(
            &at.key("name"),
            format!(
                "backend {apex} not found in ingress {} (Flagger's error: the Ingress must route \
                 to the apex Service `{apex}`)",
                r.name
            ),
            format!("set the Ingress backend to service {apex}"),
        );
    }
}

/// The Services an Ingress routes to.
fn backends(ingress: &Ingress) -> Vec<String> {
    let mut out = Vec::new();
    let Some(spec) = &ingress.spec else {
        return out;
    };
    if let Some(s) = spec
        .default_backend
        .as_ref()
        .and_then(|b| b.service.as_ref())
    {
        out.push(s.name.clone());
    }
    for rule in spec.rules.iter().flatten() {
        for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
            if let Some(s) = &path.backend.service {
                out.push(s.name.clone());
            }
        }
    }
    out
}

fn validate_analysis(
    objects: &Objects,
    canary: &Canary,
    a: &CanaryAnalysis,
    at: &KeyPath,
    sink: &mut Sink<'_>,
) {
    // The CRD: oneOf [interval, threshold, iterations | stepWeight | stepWeights].
    for (field, present) in [
        ("interval", a.interval.is_some()),
        ("threshold", a.threshold.is_some()),
    ] {
        if !present {
            sink.invalid(
                &at.key(field),
                format!(
                    "{field} is required: the CRD requires interval and threshold with \
                     stepWeight, stepWeights or iterations"
                ),
            );
        }
    }
    let set: Vec<&str> = [
        ("stepWeight", a.step_weight.is_some()),
        ("stepWeights", a.step_weights.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.then_some(n))
    .collect();
    match set.as_slice() {
        [] => sink.invalid_hint(
            at,
            "exactly one of iterations, stepWeight, stepWeights must be set (the CRD's oneOf); \
             none is",
            "stepWeight: 10 with maxWeight: 50, or stepWeights: [1, 2, 10, 80]",
        ),
        [_] => {}
        many => sink.invalid(
            &at.key(many[1]),
            format!(
                "exactly one of iterations, stepWeight, stepWeights must be set (the CRD's \
                 oneOf); {} are",
                many.join(" and ")
            ),
        ),
    }
    if let Some(w) = a.step_weight
        && !(1..=100).contains(&w)
    {
        sink.invalid(
            &at.key("stepWeight"),
            format!(
                "must be between 1 and 100, got {w}{}",
                if w <= 0 {
                    ": the canary would stay at weight 0 forever"
                } else {
                    ""
                }
            ),
        );
    }
    if let Some(ws) = &a.step_weights {
        let path = at.key("stepWeights");
        if ws.is_empty() {
            sink.invalid(&path, "is empty: the canary would stay at weight 0 forever");
        }
        for (i, w) in ws.iter().enumerate() {
            if !(1..=100).contains(w) {
                sink.invalid(
                    &path.index(i),
                    format!("must be between 1 and 100, got {w}"),
                );
            } else if i > 0 && *w <= ws[i - 1] {
                sink.invalid(
                    &path.index(i),
                    format!(
                        "step weights must be strictly ascending; {w} follows {}",
                        ws[i - 1]
                    ),
                );
            }
        }
        if a.max_weight.is_some() {
            sink.invalid_hint(
                &at.key("maxWeight"),
                "maxWeight is ignored with stepWeights (the last step weight is the maximum)",
                "remove maxWeight",
            );
        }
    }
    if let Some(w) = a.max_weight
        && !(0..=100).contains(&w)
    {
        sink.invalid(
            &at.key("maxWeight"),
            format!(
                "must be between 1 and 100 (0 means 100), got {w}{}",
                if w > 100 {
                    ": the canary weight stops at 100 and would never reach it, so it would never \
                     be promoted"
                } else {
                    ""
                }
            ),
        );
    }
    if let Some(w) = a.step_weight_promotion
        && !(0..=100).contains(&w)
    {
        sink.invalid(
            &at.key("stepWeightPromotion"),
            format!("must be between 0 and 100, got {w}"),
        );
    }
    if a.mirror {
        sink.invalid(
            &at.key("mirror"),
            "mirroring with provider nginx never shifts traffic: Flagger sets weight 0 at every \
             tick and the canary is never promoted",
        );
    }
    for (field, v) in [
        ("primaryReadyThreshold", a.primary_ready_threshold),
        ("canaryReadyThreshold", a.canary_ready_threshold),
    ] {
        if let Some(t) = v
            && !(0..=100).contains(&t)
        {
            sink.invalid(
                &at.key(field),
                format!("a percentage between 0 and 100, got {t}"),
            );
        }
    }
    for (i, metric) in a.metrics.iter().enumerate() {
        validate_metric(objects, canary, metric, &at.key("metrics").index(i), sink);
    }
    for (i, hook) in a.webhooks.iter().enumerate() {
        validate_webhook(hook, &at.key("webhooks").index(i), sink);
    }
}

fn validate_metric(
    objects: &Objects,
    canary: &Canary,
    metric: &CanaryMetric,
    at: &KeyPath,
    sink: &mut Sink<'_>,
) {
    let builtin = metric.name == SUCCESS_RATE || metric.name == REQUEST_DURATION;
    let query = metric.query.as_deref().filter(|q| !q.is_empty());
    if !builtin && metric.template_ref.is_none() && query.is_none() {
        sink.invalid_hint(
            &at.key("name"),
            format!(
                "`{}` is not a builtin metric ({SUCCESS_RATE}, {REQUEST_DURATION}) and has \
                 neither templateRef nor query: Flagger fails every check with \"no usable \
                 metrics template and query were configured\"",
                metric.name
            ),
            "reference a MetricTemplate with templateRef, or use a builtin name",
        );
    }
    if builtin && metric.template_ref.is_none() && query.is_none() {
        if !metric.template_variables.is_empty() {
            sink.invalid(
                &at.key("templateVariables"),
                "templateVariables are only rendered into a templateRef or query; the builtin \
                 query does not use them",
            );
        }
        if metric.threshold_range.is_none() && metric.threshold.is_none() {
            let reason = if metric.name == SUCCESS_RATE {
                "request-success-rate without thresholdRange (or threshold) never fails a check"
            } else {
                "request-duration without thresholdRange (or threshold) fails every check (the \
                 limit is 0 ms)"
            };
            sink.invalid_hint(
                &at.key("thresholdRange"),
                reason,
                "thresholdRange: {min: 99} for the success rate, {max: 500} (ms) for the duration",
            );
        }
    }
    if let Some(r) = metric.threshold_range
        && let (Some(min), Some(max)) = (r.min, r.max)
        && min > max
    {
        sink.invalid(
            &at.key("thresholdRange"),
            format!("min {min} is above max {max}: every check would fail"),
        );
    }
    if let Some(q) = query {
        let interval = metric
            .interval
            .as_deref()
            .unwrap_or(DEFAULT_METRIC_INTERVAL);
        if let Err(e) = template::render(q, &Model::new(canary, metric, interval)) {
            sink.render_error(&at.key("query"), e, "the query");
        }
    }
    let Some(r) = &metric.template_ref else {
        return;
    };
    let namespace = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(canary.namespace());
    let Some(t) = objects.metric_template(namespace, &r.name) else {
        sink.invalid_hint(
            &at.key("templateRef").key("name"),
            format!(
                "MetricTemplate `{}` is not in this target (namespace `{namespace}`): Flagger \
                 fails every check with \"Metric template {}.{namespace} error\"",
                r.name, r.name
            ),
            "add the MetricTemplate's manifest to the target folder",
        );
        return;
    };
    let query = &t.object.spec.query;
    if metric.interval.is_none() && template::uses_interval(query) {
        sink.invalid_hint(
            &at.key("interval"),
            format!(
                "MetricTemplate `{}` uses {{{{ interval }}}} and this metric sets none: Flagger \
                 gives templated metrics no default, renders `[]` and Prometheus refuses it \
                 (\"missing unit character in duration\")",
                r.name
            ),
            "interval: 1m",
        );
    }
    let interval = metric.interval.as_deref().unwrap_or_default();
    match template::render(query, &Model::new(canary, metric, interval)) {
        Ok(_) => {}
        // The template's own syntax is reported on the template.
        Err(RenderError::Parse(_) | RenderError::Unsupported(_))
            if template::check_syntax(query).is_err() => {}
        Err(e) => sink.render_error(
            &at.key("templateVariables"),
            e,
            &format!("MetricTemplate `{}` with these variables", r.name),
        ),
    }
}

fn validate_webhook(hook: &CanaryWebhook, at: &KeyPath, sink: &mut Sink<'_>) {
    if let Some(r) = hook.retries
        && r < 0
    {
        sink.invalid(&at.key("retries"), format!("must be >= 0, got {r}"));
    }
    let url = match reqwest::Url::parse(&hook.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => {
            sink.invalid(
                &at.key("url"),
                format!("Flagger POSTs webhooks over HTTP; `{}:` is not", u.scheme()),
            );
            return;
        }
        Err(e) => {
            sink.invalid(&at.key("url"), format!("{:?} is not a URL: {e}", hook.url));
            return;
        }
    };
    let host = url.host_str().unwrap_or_default();
    if is_loadtester(host) {
        validate_loadtester_hook(hook, url.path(), at, sink);
        return;
    }
    let local = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    let in_cluster = !local
        && (!host.contains('.')
            || host.ends_with(".svc")
            || host.ends_with(".cluster.local")
            || host.ends_with(".svc.cluster.local"));
    if in_cluster {
        sink.unsupported(
            &at.key("url"),
            format!(
                "{host} is an in-cluster Service that does not exist locally; only the \
                 loadtester (flagger-loadtester.<namespace>) is emulated"
            ),
            Some("point gates at the loadtester (/gate/check, /rollback/check), or run with --backend kind/kube"),
        );
    }
}

/// Whether a webhook host is Flagger's loadtester Service (`flagger-loadtester`, with any
/// namespace and cluster domain after it), which the emulation serves itself.
pub fn is_loadtester(host: &str) -> bool {
    host == "flagger-loadtester" || host.starts_with("flagger-loadtester.")
}

fn validate_loadtester_hook(hook: &CanaryWebhook, path: &str, at: &KeyPath, sink: &mut Sink<'_>) {
    let gate = path.starts_with("/gate/") || path.starts_with("/rollback/") || path == "/healthz";
    if gate {
        return;
    }
    // Every other path is the loadtester's task endpoint.
    if hook.metadata.is_empty() {
        sink.invalid(
            &at.key("metadata"),
            "the loadtester answers 400 \"metadata not found in payload\" to a task without \
             metadata, so this webhook would fail every time",
        );
        return;
    }
    let kind = hook
        .metadata
        .get("type")
        .map(String::as_str)
        .unwrap_or("cmd");
    if LOADTESTER_COMMANDS.contains(&kind) {
        sink.unsupported(
            &at.key("metadata").key("type"),
            format!(
                "a loadtester `{kind}` task runs a command against the cluster; the local \
                 emulation runs none"
            ),
            Some("drive load with the scenario's `load`, or run with --backend kind/kube"),
        );
        return;
    }
    if kind != "cmd" {
        sink.invalid(
            &at.key("metadata").key("type"),
            format!("the loadtester answers 400 \"unknown task type {kind}\""),
        );
        return;
    }
    if hook.hook_type() == "rollback" {
        sink.invalid(
            &at.key("url"),
            "a rollback hook on the loadtester's task endpoint is answered 202 at once, which \
             Flagger takes as \"roll back now\": every release would be rolled back at its \
             first analysis tick",
        );
    }
}
