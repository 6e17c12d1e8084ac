//! Tests of the Argo objects: literal YAML in, parsed values and exact key paths out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::spec::error::{SpecError, SpecErrors};
use crate::spec::manifests::Manifests;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo")
}

/// Decodes and validates documents given as JSON values (JSON is YAML), as one file.
fn check_docs(docs: &[Value]) -> (Manifests, Vec<SpecError>) {
    let text = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    check_text(&text)
}

fn check_text(text: &str) -> (Manifests, Vec<SpecError>) {
    let mut m = Manifests::new(Path::new("t"));
    let mut errors = Vec::new();
    m.add_text(Path::new("t/all.yaml"), text, &mut errors);
    errors.extend(validate(&m));
    (m, errors)
}

/// `(object, path, reason)` of each error, for exact assertions.
fn found(errors: &[SpecError]) -> Vec<(String, String, String)> {
    errors
        .iter()
        .map(|e| {
            (
                e.object.clone().unwrap_or_default(),
                e.path.clone(),
                e.kind.reason(),
            )
        })
        .collect()
}

fn paths(errors: &[SpecError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

fn rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            },
            "strategy": {"canary": {
                "canaryService": "app-canary",
                "stableService": "app-stable",
                "trafficRouting": {"nginx": {"stableIngress": "app"}},
                "steps": [{"setWeight": 20}, {"pause": {}}]
            }}
        }
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "app"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })
}

fn ingress(backend: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "app"},
        "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": backend, "port": {"number": 80}}}
        }]}}]}
    })
}

fn template(name: &str, metric: Value, args: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"args": args, "metrics": [metric]}
    })
}

fn metric(name: &str) -> Value {
    json!({
        "name": name,
        "interval": "10s",
        "successCondition": "result[0] >= 0.95",
        "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "up"}}
    })
}

/// A valid target with `r` as its Rollout, and `extra` documents after the Services.
fn with(r: Value, extra: &[Value]) -> Vec<Value> {
    let mut docs = vec![
        r,
        service("app-stable"),
        service("app-canary"),
        ingress("app-stable"),
    ];
    docs.extend(extra.iter().cloned());
    docs
}

fn set(v: &mut Value, pointer: &str, new: Value) {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = new;
}

// ---- the fixture ---------------------------------------------------------------------------

#[test]
fn the_sample_app_fixture_loads_and_validates() {
    let m = crate::spec::load_target(&fixture_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.controller(), Ok(crate::spec::ControllerKind::Argo));
    assert_eq!(m.rollouts.len(), 1);
    assert_eq!(m.analysis_templates.len(), 4);
    assert_eq!(m.services.len(), 2);
    assert_eq!(m.ingresses.len(), 1);
    assert!(m.others.is_empty());

    let r = &m.rollouts[0];
    let ro = &r.object;
    assert_eq!(ro.name(), "sample-app");
    assert_eq!(ro.namespace(), "default");
    assert_eq!(ro.replicas(), 2);
    assert_eq!(ro.progress_deadline(), Duration::from_secs(60));
    assert!(ro.spec.progress_deadline_abort);
    let canary = ro.canary().unwrap();
    assert_eq!(
        canary.abort_scale_down_delay(),
        Some(Duration::from_secs(30))
    );
    assert_eq!(canary.scale_down_delay(), Duration::from_secs(30));
    assert_eq!(canary.nginx().unwrap().stable_ingresses(), ["sample-app"]);
    let kinds: Vec<String> = canary
        .steps
        .iter()
        .map(|s| match s.kind().unwrap() {
            StepKind::SetWeight(w) => format!("w{w}"),
            StepKind::Pause(p) => format!("p{:?}", p.duration()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["w20", "pSome(30s)", "w50", "pSome(30s)"]);

    let bg = canary.analysis.as_ref().unwrap();
    assert_eq!(bg.starting_step, Some(1));
    let merged = merge_analysis(&m, ro.namespace(), bg).unwrap();
    let names: Vec<&str> = merged.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["success-rate", "p95-latency", "memory", "restarts"]);
    let args = merged.arg_values(r, "stable1", "canary1").unwrap();
    assert_eq!(
        args,
        BTreeMap::from([
            ("canary-hash".to_string(), "canary1".to_string()),
            ("ingress".to_string(), "sample-app".to_string()),
            ("namespace".to_string(), "default".to_string()),
        ])
    );
    let resolved = merged.resolve(&args).unwrap();
    let sr = &resolved[0];
    assert_eq!(sr.interval, Some(Duration::from_secs(10)));
    assert_eq!(
        sr.effective_count(),
        None,
        "a background metric runs until promotion"
    );
    assert_eq!(sr.failure_limit, 1);
    assert_eq!(sr.consecutive_error_limit, 4);
    assert_eq!(sr.prometheus.timeout, Duration::from_secs(30));
    assert!(
        sr.prometheus
            .query
            .contains(r#"namespace="default",ingress="sample-app",canary!="""#)
    );
    assert!(
        resolved[1]
            .prometheus
            .query
            .contains(r#"pod=~"sample-app-canary1-.*""#)
    );
    assert!(!merged.is_dry_run("memory"));
    assert_eq!(merged.measurement_limit("memory"), None);
}

#[test]
fn the_fixture_pod_template_runs_locally() {
    let m = Manifests::load(&fixture_dir()).unwrap();
    let ro = &m.rollouts[0].object;
    let tpl =
        crate::cluster::local::template::from_k8s(ro.name(), &ro.spec.template, ro.min_ready())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tpl.memory_limit, Some(64 << 20));
    assert_eq!(tpl.env, [("APP_VERSION".to_string(), "1.0.0".to_string())]);
}

#[test]
fn every_fixture_condition_parses() {
    let m = Manifests::load(&fixture_dir()).unwrap();
    for t in &m.analysis_templates {
        for metric in &t.object.spec.metrics {
            let c = metric.success_condition.as_deref().unwrap();
            crate::controller::expr::Condition::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
    }
}

// ---- parsing and defaults ------------------------------------------------------------------

#[test]
fn defaults_come_from_methods() {
    let (m, errors) = check_text(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app}]}
  strategy:
    canary:
      canaryService: c
      stableService: s
      trafficRouting: {nginx: {stableIngress: app}}
"#,
    );
    // Only the references are missing here; the defaults are what matter.
    assert_eq!(
        paths(&errors),
        [
            "spec.strategy.canary.trafficRouting.nginx.stableIngress",
            "spec.strategy.canary.stableService",
            "spec.strategy.canary.canaryService"
        ]
    );
    let r = &m.rollouts[0].object;
    assert_eq!(r.replicas(), 1);
    assert_eq!(r.progress_deadline(), Duration::from_secs(600));
    assert_eq!(r.revision_history_limit(), 10);
    assert_eq!(r.min_ready(), Duration::ZERO);
    assert!(!r.spec.paused && !r.spec.progress_deadline_abort);
    let c = r.canary().unwrap();
    assert!(c.steps.is_empty());
    assert_eq!(c.max_traffic_weight(), 100);
    assert_eq!(c.scale_down_delay(), Duration::from_secs(30));
    assert_eq!(c.abort_scale_down_delay(), Some(Duration::from_secs(30)));
    // 25 % of 4: surge rounds up, unavailable down.
    assert_eq!((c.max_surge(4), c.max_unavailable(4)), (1, 1));
    assert_eq!((c.max_surge(2), c.max_unavailable(2)), (1, 0));
    let nginx = c.nginx().unwrap();
    assert_eq!(nginx.annotation_prefix(), "nginx.ingress.kubernetes.io");
    assert_eq!(canary_ingress_name("app", "app"), "app-app-canary");
}

#[test]
fn pause_durations_accept_seconds_and_go_strings() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"pause": {"duration": 30}}, {"pause": {"duration": "45"}}, {"pause": {"duration": "1m30s"}}, {"pause": {}}]),
    );
    let (m, errors) = check_docs(&with(r, &[]));
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
    let got: Vec<Option<Duration>> = m.rollouts[0]
        .object
        .canary()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.pause.as_ref().unwrap().duration())
        .collect();
    assert_eq!(
        got,
        [
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(45)),
            Some(Duration::from_secs(90)),
            None
        ]
    );
}

#[test]
fn nginx_canary_annotations_merge_as_argo_writes_them() {
    let nginx: NginxTrafficRouting = serde_json::from_value(json!({
        "stableIngress": "app",
        "additionalIngressAnnotations": {"canary-by-header": "X-Canary", "nginx.ingress.kubernetes.io/canary-by-cookie": "c"},
        "canaryIngressAnnotations": {"nginx.ingress.kubernetes.io/canary-by-header": "X-Other"}
    }))
    .unwrap();
    assert_eq!(
        nginx.static_canary_annotations(),
        BTreeMap::from([
            (
                "nginx.ingress.kubernetes.io/canary-by-cookie".to_string(),
                "c".to_string()
            ),
            (
                "nginx.ingress.kubernetes.io/canary-by-header".to_string(),
                "X-Other".to_string()
            ),
        ])
    );
}

#[test]
fn a_rollout_with_every_accepted_field_decodes() {
    let mut r = rollout();
    let spec = r.pointer_mut("/spec").unwrap();
    spec["minReadySeconds"] = json!(1);
    spec["revisionHistoryLimit"] = json!(2);
    spec["paused"] = json!(false);
    spec["progressDeadlineSeconds"] = json!(120);
    spec["progressDeadlineAbort"] = json!(true);
    spec["analysis"] = json!({"successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 1});
    spec["strategy"]["canary"] = json!({
        "canaryService": "app-canary",
        "stableService": "app-stable",
        "maxSurge": "50%",
        "maxUnavailable": 0,
        "antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 1}},
        "scaleDownDelaySeconds": 10,
        "scaleDownDelayRevisionLimit": 1,
        "abortScaleDownDelaySeconds": 0,
        "dynamicStableScale": false,
        "trafficRouting": {"maxTrafficWeight": 1000, "nginx": {
            "annotationPrefix": "nginx.ingress.kubernetes.io",
            "stableIngress": "app",
            "additionalIngressAnnotations": {"canary-by-header": "X-Canary"},
            "canaryIngressAnnotations": {"nginx.ingress.kubernetes.io/canary-by-cookie": "c"}
        }},
        "steps": [
            {"setCanaryScale": {"replicas": 1}},
            {"setWeight": 200},
            {"setCanaryScale": {"matchTrafficWeight": true}},
            {"analysis": {"templates": [{"templateName": "t", "clusterScope": false}],
                          "args": [{"name": "a", "value": "1"}],
                          "dryRun": [{"metricName": "m"}],
                          "measurementRetention": [{"metricName": "m", "limit": 5}],
                          "analysisRunMetadata": {"labels": {"x": "y"}, "annotations": {}}}}
        ],
        "analysis": {"templates": [{"templateName": "t"}], "args": [{"name": "a", "value": "2"}], "startingStep": 2}
    });
    let mut m = metric("m");
    m["count"] = json!("3");
    m["initialDelay"] = json!("5s");
    m["failureCondition"] = json!("result[0] < 0.5");
    m["failureLimit"] = json!(1);
    m["inconclusiveLimit"] = json!("1");
    m["consecutiveErrorLimit"] = json!(2);
    m["consecutiveSuccessLimit"] = json!(0);
    m["provider"]["prometheus"]["timeout"] = json!(10);
    m["provider"]["prometheus"]["insecure"] = json!(true);
    m["provider"]["prometheus"]["headers"] = json!([{"key": "X-Scope-OrgID", "value": "t"}]);
    let t = template("t", m, json!([{"name": "a", "value": "0"}]));
    let (ms, errors) = check_docs(&with(r, &[t]));
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
    let c = ms.rollouts[0].object.canary().unwrap();
    assert_eq!(c.max_traffic_weight(), 1000);
    assert_eq!(c.abort_scale_down_delay(), None);
    assert_eq!((c.max_surge(4), c.max_unavailable(4)), (2, 0));
    let resolved = ms.analysis_templates[0].object.spec.metrics[0]
        .resolve(&BTreeMap::new())
        .unwrap();
    assert_eq!(resolved.count, 3);
    assert_eq!(resolved.inconclusive_limit, 1);
    assert_eq!(resolved.consecutive_error_limit, 2);
    assert_eq!(resolved.initial_delay, Duration::from_secs(5));
    assert_eq!(resolved.prometheus.timeout, Duration::from_secs(10));
    assert_eq!(
        resolved.prometheus.headers,
        [("X-Scope-OrgID".to_string(), "t".to_string())]
    );
}

// ---- the CRD's shape -----------------------------------------------------------------------

#[test]
fn unknown_and_mistyped_fields_are_refused_with_their_paths() {
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["stepz"] = json!([]);
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"setWeight": "20"}, {"pause": {"duration": "soon"}}]),
    );
    r["spec"]["strategy"]["canary"]["analysis"] =
        json!({"templates": [{"templateName": "t"}], "args": [{"name": "port", "value": 80}]});
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(
        found(&errors),
        [
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.args[0].value".into(),
                "expected a string, got number 80".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[0].setWeight".into(),
                r#"expected an integer (int32), got string "20""#.into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[1].pause.duration".into(),
                r#"Duration needs to be greater than 0 (time: invalid duration "soon"); write seconds (30) or a Go duration ("30s", "1m30s")"#.into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.stepz".into(),
                "unknown field `stepz` (the API server would drop it; gauntlet refuses it so that nothing is silently ignored)".into()
            ),
        ]
    );
    assert_eq!(errors[0].kind.hint(), Some("quote it: \"80\""));
    assert_eq!(errors[1].kind.hint(), Some("drop the quotes: 20"));
    assert_eq!(errors[3].kind.hint(), Some("did you mean `steps`?"));
    assert_eq!(errors[0].document, Some(1));
}

#[test]
fn what_the_emulation_cannot_honour_is_refused_by_name() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"experiment": {}}, {"setHeaderRoute": {"name": "h"}}, {"setMirrorRoute": {"name": "m"}}, {"plugin": {}}]),
    );
    r["spec"]["strategy"]["canary"]["trafficRouting"]["istio"] = json!({});
    r["spec"]["workloadRef"] = json!({"kind": "Deployment", "name": "x"});
    let (_, errors) = check_docs(&with(r, &[]));
    let got: Vec<(&str, bool)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.is_unsupported()))
        .collect();
    assert_eq!(
        got,
        [
            ("spec.strategy.canary.steps[0].experiment", true),
            ("spec.strategy.canary.steps[1].setHeaderRoute", false),
            ("spec.strategy.canary.steps[2].setMirrorRoute", false),
            ("spec.strategy.canary.steps[3].plugin", true),
            ("spec.strategy.canary.trafficRouting.istio", true),
            ("spec.workloadRef", true),
        ]
    );
    assert_eq!(
        errors[4].kind.reason(),
        "only nginx routing can be emulated locally"
    );
    assert_eq!(
        errors[1].kind.reason(),
        "SetHeaderRoute requires TrafficRouting, supports Istio and ALB and Apisix"
    );
}

#[test]
fn blue_green_is_refused() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy",
        json!({"blueGreen": {"activeService": "a"}}),
    );
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(paths(&errors), ["spec.strategy.blueGreen"]);
    assert!(errors[0].is_unsupported());
    let kept = SpecErrors(errors).without_unsupported();
    assert!(kept.is_empty());
}

// ---- Argo's validation ---------------------------------------------------------------------

#[test]
fn steps_are_checked_as_argo_checks_them() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([
            {"setWeight": 120},
            {"setWeight": 10, "pause": {}},
            {},
            {"setCanaryScale": {"replicas": 1, "weight": 10}},
            {"setWeight": -1}
        ]),
    );
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(
        found(&errors),
        [
            ("Rollout/app".into(), "spec.strategy.canary.steps[0].setWeight".into(), "SetWeight needs to be between 0 and 100".into()),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[1]".into(),
                "a step must set exactly one of setWeight, pause, analysis, setCanaryScale; this one sets setWeight and pause".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[2]".into(),
                "Step must have one of the following set: experiment, setWeight, setCanaryScale or pause".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[3].setCanaryScale".into(),
                "set exactly one of replicas, weight or matchTrafficWeight: true".into()
            ),
            ("Rollout/app".into(), "spec.strategy.canary.steps[4].setWeight".into(), "SetWeight needs to be between 0 and 100".into()),
        ]
    );
}

#[test]
fn a_bare_pause_key_is_an_empty_step() {
    let (_, errors) = check_text(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template: {metadata: {labels: {app: app}}, spec: {containers: [{name: app}]}}
  strategy:
    canary:
      canaryService: app-canary
      stableService: app-stable
      trafficRouting: {nginx: {stableIngress: app}}
      steps:
        - pause:
"#,
    );
    let step = errors
        .iter()
        .find(|e| e.path == "spec.strategy.canary.steps[0]")
        .unwrap();
    assert_eq!(
        step.kind.hint(),
        Some("an indefinite pause is `pause: {}` (a bare `pause:` is null and dropped)")
    );
}

#[test]
fn services_and_routing_are_checked() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/canaryService",
        json!("app-stable"),
    );
    r["spec"]["strategy"]["canary"]["maxSurge"] = json!(0);
    r["spec"]["strategy"]["canary"]["maxUnavailable"] = json!("0%");
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(
        paths(&errors),
        [
            "spec.strategy.canary.maxSurge",
            "spec.strategy.canary.stableService"
        ]
    );
    assert_eq!(
        errors[0].kind.reason(),
        "MaxSurge and MaxUnavailable both can not be zero"
    );

    let mut r = rollout();
    set(&mut r, "/spec/strategy/canary/canaryService", json!(""));
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(
        found(&errors),
        [(
            "Rollout/app".into(),
            "spec.strategy.canary.canaryService".into(),
            "Canary service and Stable service must to be set to use Traffic Routing".into()
        )]
    );

    let mut r = rollout();
    r["spec"]["strategy"]["canary"]
        .as_object_mut()
        .unwrap()
        .remove("trafficRouting");
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(paths(&errors), ["spec.strategy.canary.trafficRouting"]);
    assert!(errors[0].is_unsupported());
}

#[test]
fn referenced_objects_must_be_in_the_target() {
    // The canary Service is missing, the Ingress routes elsewhere.
    let docs = vec![rollout(), service("app-stable"), ingress("other")];
    let (_, errors) = check_docs(&docs);
    assert_eq!(
        found(&errors),
        [
            (
                "Rollout/app".into(),
                "spec.strategy.canary.trafficRouting.nginx.stableIngress".into(),
                "ingress `app` has no rules using service app-stable backend".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.canaryService".into(),
                "Service `app-canary` is not among the target's manifests (namespace `default`)"
                    .into()
            ),
        ]
    );

    let docs = vec![rollout(), service("app-stable"), service("app-canary")];
    let (_, errors) = check_docs(&docs);
    assert_eq!(
        found(&errors),
        [(
            "Rollout/app".into(),
            "spec.strategy.canary.trafficRouting.nginx.stableIngress".into(),
            "ingress `app` is not among the target's manifests (namespace `default`)".into()
        )]
    );

    let mut bad_port = ingress("app-stable");
    set(
        &mut bad_port,
        "/spec/rules/0/http/paths/0/backend/service/port",
        json!({"number": 8080}),
    );
    let mut other_labels = service("app-canary");
    set(
        &mut other_labels,
        "/spec/selector",
        json!({"app": "app", "tier": "web"}),
    );
    let docs = vec![rollout(), service("app-stable"), other_labels, bad_port];
    let (_, errors) = check_docs(&docs);
    assert_eq!(
        found(&errors),
        [
            (
                "Rollout/app".into(),
                "spec.strategy.canary.trafficRouting.nginx.stableIngress".into(),
                "ingress `app` routes to port 8080 of Service `app-stable`, which has no such port"
                    .into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.canaryService".into(),
                r#"Service "app-canary" has unmatch label "tier" in rollout"#.into()
            ),
        ]
    );
}

#[test]
fn the_pod_template_must_match_the_selector() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/selector",
        json!({"matchLabels": {"app": "other"}}),
    );
    let (_, errors) = check_docs(&[r]);
    let mine: Vec<&str> = paths(&errors)
        .into_iter()
        .filter(|p| !p.contains("canary"))
        .collect();
    assert_eq!(mine, ["spec.template.metadata.labels"]);

    let mut r = rollout();
    set(&mut r, "/spec/selector", json!({}));
    r["spec"]["minReadySeconds"] = json!(700);
    let (_, errors) = check_docs(&with(r, &[]));
    assert_eq!(
        paths(&errors),
        ["spec.progressDeadlineSeconds", "spec.selector"]
    );
    assert_eq!(
        errors[0].kind.reason(),
        "must be greater than minReadySeconds"
    );
}

#[test]
fn nginx_annotations_the_router_cannot_honour_are_refused() {
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"]["additionalIngressAnnotations"] = json!({"canary-by-header": "X-Canary", "canary-by-header-pattern": "^a", "canary-weight": "5"});
    let (_, errors) = check_docs(&with(r, &[]));
    let got: Vec<(&str, bool)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.is_unsupported()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "spec.strategy.canary.trafficRouting.nginx.additionalIngressAnnotations.canary-by-header-pattern",
                true
            ),
            (
                "spec.strategy.canary.trafficRouting.nginx.additionalIngressAnnotations.canary-weight",
                false
            ),
        ]
    );
}

// ---- analysis references -------------------------------------------------------------------

#[test]
fn missing_templates_are_reported_where_they_are_named() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"analysis": {"templates": [{"templateName": "nope"}, {"templateName": "t", "clusterScope": true}]}}]),
    );
    let (_, errors) = check_docs(&with(r, &[template("t", metric("m"), json!([]))]));
    assert_eq!(
        found(&errors),
        [
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[0].analysis.templates[0].templateName".into(),
                r#"AnalysisTemplate "nope" not found in the target's AnalysisTemplates"#.into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.steps[0].analysis.templates[1].templateName".into(),
                r#"ClusterAnalysisTemplate "t" not found in the target's ClusterAnalysisTemplates"#
                    .into()
            ),
        ]
    );
    assert_eq!(
        errors[1].kind.hint(),
        Some("an AnalysisTemplate of that name exists: drop `clusterScope: true`")
    );
}

#[test]
fn template_args_nobody_supplies_are_reported() {
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["analysis"] = json!({
        "templates": [{"templateName": "t"}],
        "args": [{"name": "unused", "value": "x"}]
    });
    let t = template(
        "t",
        metric("m"),
        json!([{"name": "service"}, {"name": "port", "value": "80"}]),
    );
    let (_, errors) = check_docs(&with(r, &[t]));
    assert_eq!(
        found(&errors),
        [(
            "Rollout/app".into(),
            "spec.strategy.canary.analysis.args".into(),
            "args.service was not resolved".into()
        )]
    );
}

#[test]
fn step_analyses_must_finish() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "t"}]}}]),
    );
    let (_, errors) = check_docs(&with(r.clone(), &[template("t", metric("m"), json!([]))]));
    assert_eq!(
        found(&errors),
        [(
            "Rollout/app".into(),
            "spec.strategy.canary.steps[1].analysis.templates".into(),
            "AnalysisTemplate t has metric m which runs indefinitely. Invalid value for count: <nil>".into()
        )]
    );
    // With a count it finishes; as a background analysis it may run until promotion.
    let mut counted = metric("m");
    counted["count"] = json!(3);
    let (_, errors) = check_docs(&with(r, &[template("t", counted, json!([]))]));
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
}

#[test]
fn args_are_checked_where_the_rollout_gives_them() {
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["analysis"] = json!({
        "templates": [{"templateName": "t"}],
        "args": [
            {"name": "every", "value": "30"},
            {"name": "env", "valueFrom": {"fieldRef": {"fieldPath": "metadata.generateName"}}},
            {"name": "hash", "valueFrom": {}},
            {"name": "image", "valueFrom": {"fieldRef": {"fieldPath": "spec.template.spec.containers[0].image"}}}
        ],
        "startingStep": 9
    });
    let mut m = metric("m");
    m["interval"] = json!("{{args.every}}");
    m["provider"]["prometheus"]["query"] =
        json!("up{image=\"{{args.image}}\",x=\"{{args.undeclared}}\"}");
    let t = template("t", m, json!([{"name": "every"}, {"name": "image"}]));
    let (_, errors) = check_docs(&with(r, &[t]));
    assert_eq!(
        found(&errors),
        [
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.args[1].valueFrom.fieldRef.fieldPath".into(),
                INVALID_ANALYSIS_ARGS_MESSAGE.into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.args[2].valueFrom".into(),
                "valueFrom needs podTemplateHashValue or fieldRef".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.args".into(),
                r#"AnalysisTemplate/t metric `m` at `interval`: invalid interval string: time: missing unit in duration "30" ("{{args.every}}" gives "30")"#.into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.templates".into(),
                "AnalysisTemplate/t metric `m` uses {{args.undeclared}}, which no template declares: failed to resolve {{args.undeclared}}".into()
            ),
            (
                "Rollout/app".into(),
                "spec.strategy.canary.analysis.startingStep".into(),
                "startingStep 9 is outside the steps (0..=2); the background analysis would never start".into()
            ),
        ]
    );
}

// ---- AnalysisTemplate on its own -----------------------------------------------------------

#[test]
fn template_metrics_are_checked_for_what_fails_at_run_time() {
    let text = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
    - name: a
      interval: "30"
      initialDelay: 1d
      successCondition: result[0] >=
      provider: {prometheus: {address: prometheus:9090, query: up}}
    - name: a
      count: 3
      provider: {}
    - name: c
      provider: {web: {url: "http://x"}}
    - name: d
      count: 2
      interval: 10s
      failureLimit: 3
      failureCondition: "nope(result)"
      provider: {prometheus: {query: ""}}
"#;
    let (_, errors) = check_text(text);
    let got: Vec<(String, String, String)> = found(&errors);
    let t = |p: &str, r: &str| {
        (
            "AnalysisTemplate/t".to_string(),
            p.to_string(),
            r.to_string(),
        )
    };
    assert_eq!(
        got[0],
        t(
            "spec.metrics[2].provider.web",
            "only the prometheus provider can be emulated locally"
        )
    );
    // A refused provider stops the decode; the rest is checked once it decodes.
    assert_eq!(got.len(), 1);
    assert!(errors[0].is_unsupported());

    let text = text.replace(
        "      provider: {web: {url: \"http://x\"}}\n",
        "      provider: {prometheus: {query: up}}\n",
    );
    let (_, errors) = check_text(&text);
    let got = found(&errors);
    assert_eq!(
        got.iter().map(|(_, p, _)| p.as_str()).collect::<Vec<_>>(),
        [
            "spec.metrics[0].interval",
            "spec.metrics[0].initialDelay",
            "spec.metrics[0].successCondition",
            "spec.metrics[0].provider.prometheus.address",
            "spec.metrics[1].name",
            "spec.metrics[1].count",
            "spec.metrics[1].provider",
            "spec.metrics[3].failureCondition",
            "spec.metrics[3].count",
            "spec.metrics[3].provider.prometheus.query",
        ]
    );
    assert_eq!(
        got[0].2,
        r#"invalid interval string: time: missing unit in duration "30""#
    );
    assert_eq!(errors[0].kind.hint(), Some("add a unit: \"30s\""));
    assert_eq!(
        got[1].2,
        r#"invalid startDelay string: time: unknown unit "d" in duration "1d""#
    );
    assert!(
        got[2].2.starts_with("successCondition does not parse: "),
        "{}",
        got[2].2
    );
    assert_eq!(
        got[3].2,
        r#"address "prometheus:9090" is not a URL with scheme and host"#
    );
    assert_eq!(got[4].2, "duplicate name 'a'");
    assert_eq!(got[5].2, "interval must be specified when count > 1");
    assert_eq!(got[6].2, "no provider specified");
    assert!(
        got[7]
            .2
            .starts_with("failureCondition can never be evaluated: "),
        "{}",
        got[7].2
    );
    assert_eq!(
        got[8].2,
        "count must be >= failureLimit + consecutiveSuccessLimit"
    );
    assert_eq!(got[9].2, "a prometheus metric needs a query");
}

#[test]
fn a_template_without_metrics_or_provider_key_is_refused() {
    let (_, errors) = check_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec:\n  metrics:\n    - name: a\n",
    );
    assert_eq!(paths(&errors), ["spec.metrics[0].provider"]);
    assert_eq!(errors[0].kind.reason(), "no provider specified");
    let (_, errors) = check_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec: {}\n",
    );
    assert_eq!(paths(&errors), ["spec.metrics"]);
    assert_eq!(errors[0].kind.reason(), "no metrics specified");
}

#[test]
fn every_problem_of_a_target_is_reported_across_documents() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"setWeight": 101}]),
    );
    let mut bad = metric("m");
    bad["interval"] = json!("5");
    let docs = with(r, &[template("t", bad, json!([]))]);
    let (_, errors) = check_docs(&docs);
    let got: Vec<(Option<usize>, &str)> = errors
        .iter()
        .map(|e| (e.document, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(5), "spec.metrics[0].interval"),
            (Some(1), "spec.strategy.canary.steps[0].setWeight")
        ]
    );
    let text = SpecErrors(errors).to_string();
    assert!(
        text.contains("invalid manifest `t/all.yaml` (document 1), Rollout/app, at `spec.strategy.canary.steps[0].setWeight`: SetWeight needs to be between 0 and 100"),
        "{text}"
    );
}

#[test]
fn an_argo_version_or_kind_not_read_is_refused() {
    let (_, errors) = check_text(
        "apiVersion: argoproj.io/v1beta1\nkind: Rollout\nmetadata: {name: a}\n---\napiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {name: b}\n",
    );
    assert_eq!(paths(&errors), ["apiVersion", "kind"]);
    assert_eq!(
        errors[1].kind.hint(),
        Some("the controller creates AnalysisRuns itself; remove it")
    );
}

// ---- merging -------------------------------------------------------------------------------

#[test]
fn templates_merge_in_argo_order_with_nested_and_cluster_ones() {
    let nested = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "outer"},
        "spec": {"templates": [{"templateName": "inner"}, {"templateName": "shared", "clusterScope": true}],
                 "metrics": [metric("outer")], "args": [{"name": "x", "value": "1"}],
                 "dryRun": [{"metricName": "inner"}]}
    });
    let inner = template(
        "inner",
        metric("inner"),
        json!([{"name": "x"}, {"name": "y", "value": "2"}]),
    );
    let mut shared = template("shared", metric("shared"), json!([]));
    shared["kind"] = json!("ClusterAnalysisTemplate");
    let (m, errors) = check_docs(&[nested, inner, shared]);
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
    let analysis: RolloutAnalysis = serde_json::from_value(json!({
        "templates": [{"templateName": "outer"}, {"templateName": "inner"}],
        "args": [{"name": "y", "value": "3"}],
        "measurementRetention": [{"metricName": "^out.*$", "limit": 20}]
    }))
    .unwrap();
    let merged = merge_analysis(&m, "default", &analysis).unwrap();
    assert_eq!(
        merged.templates,
        [
            "AnalysisTemplate/outer",
            "AnalysisTemplate/inner",
            "ClusterAnalysisTemplate/shared"
        ]
    );
    let names: Vec<&str> = merged.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["outer", "inner", "shared"]);
    assert_eq!(
        merged.args,
        [
            MergedArg {
                name: "x".into(),
                source: ArgSource::Value("1".into())
            },
            MergedArg {
                name: "y".into(),
                source: ArgSource::Value("3".into())
            },
        ]
    );
    assert!(merged.is_dry_run("inner") && !merged.is_dry_run("outer"));
    assert_eq!(merged.measurement_limit("outer"), Some(20));
    assert_eq!(merged.measurement_limit("inner"), None);
}

#[test]
fn merge_conflicts_are_argos_errors() {
    let a = template("a", metric("m"), json!([{"name": "x", "value": "1"}]));
    let b = template("b", metric("m"), json!([{"name": "x", "value": "2"}]));
    let (m, _) = check_docs(&[a, b]);
    let analysis: RolloutAnalysis = serde_json::from_value(json!({
        "templates": [{"templateName": "a"}, {"templateName": "b"}],
        "dryRun": [{"metricName": "zzz"}, {"metricName": "[m]"}]
    }))
    .unwrap();
    let problems = merge_analysis(&m, "default", &analysis).unwrap_err();
    let reasons: Vec<&str> = problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons[0], "two metrics have the same name 'm'");
    assert_eq!(
        reasons[1],
        "Argument `x` specified multiple times with different values: '1', '2'"
    );
    assert_eq!(
        reasons[2],
        "dryRun[0]: Rule didn't match any metric name(s)"
    );
    assert!(
        reasons[3].contains("regular-expression syntax"),
        "{}",
        reasons[3]
    );
    assert_eq!(problems[2].path.as_str(), "dryRun[0].metricName");
}

#[test]
fn resolve_gives_argos_run_errors() {
    let m: Metric = serde_json::from_value(json!({
        "name": "m", "interval": "{{args.i}}", "count": "{{ args.n }}",
        "provider": {"prometheus": {"query": "up{a=\"{{args.a}}\"}"}}
    }))
    .unwrap();
    let args = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ok = m
        .resolve(&args(&[("i", "1m"), ("n", "5"), ("a", "x")]))
        .unwrap();
    assert_eq!(ok.interval, Some(Duration::from_secs(60)));
    assert_eq!(ok.effective_count(), Some(5));
    assert_eq!(ok.prometheus.query, "up{a=\"x\"}");
    let merged = MergedAnalysis {
        templates: vec![],
        metrics: vec![m],
        metric_origins: vec!["AnalysisTemplate/t".into()],
        args: vec![],
        dry_run: vec![],
        measurement_retention: vec![],
    };
    assert_eq!(
        merged
            .resolve(&args(&[("i", "1m"), ("n", "5")]))
            .unwrap_err(),
        "Unable to resolve metric arguments: failed to resolve {{args.a}}"
    );
    assert_eq!(
        merged
            .resolve(&args(&[("i", "60"), ("n", "5"), ("a", "x")]))
            .unwrap_err(),
        r#"Analysis spec invalid: metrics[0]: invalid interval string: time: missing unit in duration "60""#
    );
}

// ---- field paths and patterns --------------------------------------------------------------

#[test]
fn field_paths_read_the_rollout_as_argo_does() {
    let raw = json!({
        "metadata": {"name": "app", "labels": {"env": "prod"}, "annotations": {"team": "a"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "app:1"}]}}}
    });
    let v = |p: &str| field_value(&raw, "ns", p);
    assert_eq!(v("metadata.name").unwrap(), "app");
    assert_eq!(v("metadata.namespace").unwrap(), "ns");
    assert_eq!(v("metadata.labels['env']").unwrap(), "prod");
    assert_eq!(v("metadata.labels['none']").unwrap(), "");
    assert_eq!(v("metadata.annotations['team']").unwrap(), "a");
    assert_eq!(v("spec.replicas").unwrap(), "3");
    assert_eq!(
        v("spec.template.spec.containers[0].image").unwrap(),
        "app:1"
    );
    assert_eq!(
        v("spec.template").unwrap_err(),
        FieldRefError::Invalid(
            "path spec.template in rollout must terminate in a primitive value".into()
        )
    );
    assert_eq!(
        v("spec.nope").unwrap_err(),
        FieldRefError::Invalid("invalid path spec.nope in rollout".into())
    );
    assert_eq!(
        v("spec.template.spec.containers[3]").unwrap_err(),
        FieldRefError::Invalid("index 3 out of range".into())
    );
    assert!(matches!(
        v("metadata.uid"),
        Err(FieldRefError::Unsupported(_))
    ));
    assert!(matches!(
        v("status.stableRS"),
        Err(FieldRefError::Unsupported(_))
    ));
    assert_eq!(
        v("metadata.ownerReferences").unwrap_err(),
        FieldRefError::Invalid(INVALID_ANALYSIS_ARGS_MESSAGE.into())
    );
}

#[test]
fn metric_name_rules_match_like_unanchored_go_regexps() {
    let m = |p: &str, n: &str| metric_name_matches(p, n).unwrap();
    assert!(m(".*", "anything"));
    assert!(m("rate", "success-rate"));
    assert!(m("^success", "success-rate"));
    assert!(!m("^rate", "success-rate"));
    assert!(m("rate$", "success-rate"));
    assert!(!m("^success$", "success-rate"));
    assert!(m("succ.ss-r.*e", "success-rate"));
    assert!(m("a\\.b", "a.b"));
    assert!(!m("a\\.b", "axb"));
    assert!(metric_name_matches("(a|b)", "a").is_err());
    assert!(metric_name_matches("*", "a").is_err());
}

#[test]
fn referenced_args_are_found_with_spaces() {
    assert_eq!(
        referenced_args("{{args.a}} and {{ args.b-c }} and {{other}}"),
        ["a", "b-c"]
    );
}

#[test]
fn conditions_must_fit_the_shape_of_the_query_result() {
    let mut vector = metric("v");
    vector["successCondition"] = json!("result >= 0.95");
    let mut scalar = metric("s");
    scalar["successCondition"] = json!("result[0] >= 0.95");
    scalar["provider"]["prometheus"]["query"] = json!("scalar(up)");
    let mut fine = metric("f");
    fine["successCondition"] = json!("result >= 0.95");
    fine["provider"]["prometheus"]["query"] = json!("scalar(up)");
    let docs = [
        template("a", vector, json!([])),
        template("b", scalar, json!([])),
        template("c", fine, json!([])),
    ];
    let (_, errors) = check_docs(&docs);
    assert_eq!(
        found(&errors),
        [
            (
                "AnalysisTemplate/a".into(),
                "spec.metrics[0].successCondition".into(),
                "successCondition fails on every measurement: the query returns a vector, and \
                 invalid operation: >= (mismatched types []float64 and float64)"
                    .into()
            ),
            (
                "AnalysisTemplate/b".into(),
                "spec.metrics[0].successCondition".into(),
                errors[1].kind.reason()
            ),
        ]
    );
    assert!(
        errors[1]
            .kind
            .reason()
            .contains("the query returns a scalar")
    );
}

#[test]
fn a_missing_template_does_not_hide_the_other_problems() {
    let mut r = rollout();
    set(
        &mut r,
        "/spec/strategy/canary/steps",
        json!([{"analysis": {"templates": [{"templateName": "t"}, {"templateName": "missing"}]}}]),
    );
    let mut counted = metric("m");
    counted["count"] = json!(1);
    let (_, errors) = check_docs(&with(
        r,
        &[template("t", counted, json!([{"name": "svc"}]))],
    ));
    assert_eq!(
        paths(&errors),
        [
            "spec.strategy.canary.steps[0].analysis.templates[1].templateName",
            "spec.strategy.canary.steps[0].analysis.args"
        ]
    );
}
