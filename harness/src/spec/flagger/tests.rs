//! Tests of the Flagger objects: literal documents in, parsed values and exact key paths out.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::spec::error::{SpecError, SpecErrors};
use crate::spec::manifests::Manifests;

/// Decodes and validates documents given as JSON values (JSON is YAML), as one file.
fn check_docs(docs: &[Value]) -> (Manifests, Vec<SpecError>) {
    let text = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let mut m = Manifests::new(Path::new("t"));
    let mut errors = Vec::new();
    m.add_text(Path::new("t/all.yaml"), &text, &mut errors);
    errors.extend(validate(&m));
    (m, errors)
}

/// `(object, path, reason)` of each error.
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

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            }
        }
    })
}

fn ingress(backend: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": backend, "port": {"number": 80}}}}]}}]}
    })
}

fn template(name: &str, query: &str) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": name},
        "spec": {"provider": {"type": "prometheus", "address": "http://prom:9090"}, "query": query}
    })
}

fn canary() -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": "app"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
            "service": {"port": 80, "targetPort": "http"},
            "analysis": {
                "interval": "30s",
                "threshold": 3,
                "stepWeight": 20,
                "maxWeight": 60,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
                ]
            }
        }
    })
}

/// The canary with `f` applied to its `spec.analysis`, beside a valid Deployment and Ingress.
fn with_analysis(f: impl FnOnce(&mut Value)) -> Vec<SpecError> {
    let mut c = canary();
    f(c.pointer_mut("/spec/analysis").unwrap());
    check_docs(&[deployment(), ingress("app"), c]).1
}

#[test]
fn the_fixtures_are_valid_and_decode() {
    for name in [
        "flagger",
        "flagger-gate",
        "flagger-matrix",
        "flagger-task-without-cmd",
        "flagger-slow-start",
    ] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/apps")
            .join(name);
        let m = crate::spec::load_target(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (objects, errors) = decode(&m);
        assert!(errors.is_empty(), "{}", SpecErrors(errors));
        assert_eq!(objects.canaries.len(), 1);
        let c = &objects.canaries[0].object;
        let a = c.analysis().unwrap();
        assert_eq!(a.step_weights(), [1, 2, 10, 80]);
        assert_eq!(a.max_weight(), 80);
        assert_eq!(a.interval(), Duration::from_secs(60));
        assert_eq!(c.provider(), "nginx");
        assert_eq!(c.apex(), "sample-app");
        assert_eq!(c.primary_service(), "sample-app-primary");
        assert_eq!(c.canary_service(), "sample-app-canary");
    }
}

#[test]
fn a_valid_canary_has_no_errors_and_defaults_to_nginx() {
    let (m, errors) = check_docs(&[deployment(), ingress("app"), canary()]);
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
    let (objects, _) = decode(&m);
    let c = &objects.canaries[0].object;
    assert_eq!(c.spec.provider, None);
    assert_eq!(c.provider(), "nginx");
    assert_eq!(c.progress_deadline(), Duration::from_secs(600));
    assert!(!c.skip_analysis());
}

#[test]
fn exactly_one_of_step_weight_and_step_weights_is_set() {
    let none = with_analysis(|a| {
        a.as_object_mut().unwrap().remove("stepWeight");
    });
    assert_eq!(paths(&none), ["spec.analysis"]);
    assert!(
        none[0]
            .kind
            .reason()
            .contains("exactly one of iterations, stepWeight, stepWeights"),
        "{}",
        none[0].kind
    );
    let both = with_analysis(|a| a["stepWeights"] = json!([10, 20]));
    assert!(
        found(&both)
            .iter()
            .any(|(_, p, r)| p == "spec.analysis.stepWeights"
                && r.contains("stepWeight and stepWeights are")),
        "{both:?}"
    );
    let iterations = with_analysis(|a| a["iterations"] = json!(10));
    assert_eq!(paths(&iterations), ["spec.analysis.iterations"]);
    assert!(iterations[0].is_unsupported());
}

#[test]
fn interval_and_threshold_are_required_and_checked() {
    let e = with_analysis(|a| {
        a.as_object_mut().unwrap().remove("interval");
        a.as_object_mut().unwrap().remove("threshold");
    });
    assert_eq!(
        paths(&e),
        ["spec.analysis.interval", "spec.analysis.threshold"]
    );
    let e = with_analysis(|a| a["interval"] = json!("90"));
    assert_eq!(paths(&e), ["spec.analysis.interval"]);
    assert!(e[0].kind.reason().contains("^[0-9]+(m|s)"));
    let e = with_analysis(|a| a["interval"] = json!("10sx"));
    assert!(
        e[0].kind.reason().contains("Flagger would silently use"),
        "{}",
        e[0].kind
    );
}

#[test]
fn weights_that_can_never_promote_are_refused() {
    let e = with_analysis(|a| a["maxWeight"] = json!(150));
    assert_eq!(paths(&e), ["spec.analysis.maxWeight"]);
    assert!(e[0].kind.reason().contains("never"));
    let e = with_analysis(|a| a["stepWeight"] = json!(0));
    assert_eq!(paths(&e), ["spec.analysis.stepWeight"]);
    let e = with_analysis(|a| {
        a.as_object_mut().unwrap().remove("stepWeight");
        a.as_object_mut().unwrap().remove("maxWeight");
        a["stepWeights"] = json!([1, 10, 5]);
    });
    assert_eq!(paths(&e), ["spec.analysis.stepWeights[2]"]);
    let e = with_analysis(|a| a["mirror"] = json!(true));
    assert_eq!(paths(&e), ["spec.analysis.mirror"]);
}

#[test]
fn metrics_must_be_builtin_or_templated_and_templates_must_exist() {
    let e = with_analysis(|a| {
        a["metrics"] =
            json!([{"name": "error-rate", "thresholdRange": {"max": 1}, "interval": "1m"}]);
    });
    assert_eq!(paths(&e), ["spec.analysis.metrics[0].name"]);
    assert!(
        e[0].kind.reason().contains("is not a builtin metric"),
        "{}",
        e[0].kind
    );
    let e = with_analysis(|a| {
        a["metrics"] = json!([{"name": "latency", "templateRef": {"name": "latency"},
            "thresholdRange": {"max": 1}, "interval": "1m"}]);
    });
    assert_eq!(paths(&e), ["spec.analysis.metrics[0].templateRef.name"]);
    assert!(
        e[0].kind
            .reason()
            .contains("MetricTemplate `latency` is not in this target")
    );
    let e = with_analysis(|a| {
        a["metrics"] = json!([{"name": "request-duration", "interval": "1m"}]);
    });
    assert_eq!(paths(&e), ["spec.analysis.metrics[0].thresholdRange"]);
}

#[test]
fn templates_render_with_the_canary_and_need_a_window() {
    let mut c = canary();
    c["spec"]["analysis"]["metrics"] = json!([
        {"name": "latency", "templateRef": {"name": "latency"}, "thresholdRange": {"max": 1}},
        {"name": "by-path", "templateRef": {"name": "by-path"}, "thresholdRange": {"max": 1},
         "interval": "1m"}
    ]);
    let (_, errors) = check_docs(&[
        deployment(),
        ingress("app"),
        c,
        template("latency", "rate(x[{{ interval }}])"),
        template("by-path", r#"x{path="{{ variables.path }}"}"#),
        template("broken", "{{ nope }}"),
    ]);
    let got = found(&errors);
    assert_eq!(
        got.iter()
            .map(|(o, p, _)| (o.as_str(), p.as_str()))
            .collect::<Vec<_>>(),
        [
            ("MetricTemplate/broken", "spec.query"),
            ("Canary/app", "spec.analysis.metrics[0].interval"),
            ("Canary/app", "spec.analysis.metrics[1].templateVariables"),
        ],
        "{got:?}"
    );
    assert!(got[0].2.contains("function \"nope\" not defined"));
    assert!(got[1].2.contains("renders `[]`"));
    assert!(got[2].2.contains("map has no entry for key \"path\""));
}

#[test]
fn only_nginx_and_prometheus_are_emulated() {
    let mut c = canary();
    c["spec"]["provider"] = json!("istio");
    let mut t = template("t", "up");
    t["spec"]["provider"]["type"] = json!("datadog");
    let (_, errors) = check_docs(&[deployment(), ingress("app"), c, t]);
    let unsupported: Vec<&str> = errors
        .iter()
        .filter(|e| e.is_unsupported())
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(unsupported, ["spec.provider.type", "spec.provider"]);
}

#[test]
fn unknown_and_mesh_only_fields_are_refused_with_their_path() {
    let mut c = canary();
    c["spec"]["analysis"]["stepWieght"] = json!(5);
    c["spec"]["service"]["gateways"] = json!(["public"]);
    c["spec"]["autoscalerRef"] = json!({"name": "hpa"});
    let (_, errors) = check_docs(&[deployment(), ingress("app"), c]);
    let got = found(&errors);
    let paths: Vec<&str> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.analysis.stepWieght",
            "spec.autoscalerRef",
            "spec.service.gateways"
        ],
        "{got:?}"
    );
    assert_eq!(
        errors[0].kind.hint(),
        Some("did you mean `stepWeight`?"),
        "{}",
        errors[0].kind
    );
}

#[test]
fn the_ingress_and_target_must_be_in_the_target_and_fit_together() {
    let (_, errors) = check_docs(&[deployment(), ingress("app-primary"), canary()]);
    assert_eq!(paths(&errors), ["spec.ingressRef.name"]);
    assert!(
        errors[0]
            .kind
            .reason()
            .starts_with("backend app not found in ingress web")
    );
    let mut c = canary();
    c["spec"].as_object_mut().unwrap().remove("ingressRef");
    let (_, errors) = check_docs(&[deployment(), c]);
    assert_eq!(paths(&errors), ["spec.ingressRef"]);
    let (_, errors) = check_docs(&[ingress("app"), canary()]);
    assert_eq!(paths(&errors), ["spec.targetRef.name"]);
    let mut d = deployment();
    d["spec"]["selector"]["matchLabels"] = json!({"tier": "web"});
    let (_, errors) = check_docs(&[d, ingress("app"), canary()]);
    assert_eq!(
        found(&errors)[0].0,
        "Deployment/app",
        "reported on the Deployment"
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app-canary"},
        "spec": {"ports": [{"port": 80}]}});
    let (_, errors) = check_docs(&[deployment(), ingress("app"), canary(), svc]);
    assert_eq!(found(&errors)[0].0, "Service/app-canary");
}

#[test]
fn webhooks_must_be_reachable_locally() {
    let e = with_analysis(|a| {
        a["webhooks"] = json!([
            {"name": "gate", "type": "confirm-promotion", "url": "http://flagger-loadtester.test/gate/check"},
            {"name": "load", "url": "http://flagger-loadtester.test/", "metadata": {"cmd": "hey http://x/"}},
            {"name": "smoke", "type": "pre-rollout", "url": "http://flagger-loadtester.test/",
             "metadata": {"type": "bash", "cmd": "curl -f http://app-canary/"}},
            {"name": "checker", "type": "rollout", "url": "http://checker.test.svc:8080/"},
            {"name": "oops", "type": "rollback", "url": "http://flagger-loadtester.test/",
             "metadata": {"cmd": "true"}},
            {"name": "slow", "url": "http://127.0.0.1:9/", "timeout": "1"},
            {"name": "bad", "type": "sometimes", "url": "http://127.0.0.1:9/"}
        ]);
    });
    let got = found(&e);
    let paths: Vec<&str> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.analysis.webhooks[5].timeout",
            "spec.analysis.webhooks[6].type",
        ],
        "shape errors stop the decode first: {got:?}"
    );
    let e = with_analysis(|a| {
        a["webhooks"] = json!([
            {"name": "gate", "type": "confirm-promotion", "url": "http://flagger-loadtester.test/gate/check"},
            {"name": "load", "url": "http://flagger-loadtester.test/", "metadata": {"cmd": "hey http://x/"}},
            {"name": "smoke", "type": "pre-rollout", "url": "http://flagger-loadtester.test/",
             "metadata": {"type": "bash", "cmd": "curl -f http://app-canary/"}},
            {"name": "checker", "type": "rollout", "url": "http://checker.test.svc:8080/"},
            {"name": "oops", "type": "rollback", "url": "http://flagger-loadtester.test/",
             "metadata": {"cmd": "true"}},
            {"name": "empty", "url": "http://flagger-loadtester/"}
        ]);
    });
    let got = found(&e);
    let paths: Vec<&str> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.analysis.webhooks[2].metadata.type",
            "spec.analysis.webhooks[3].url",
            "spec.analysis.webhooks[4].url",
            "spec.analysis.webhooks[5].metadata",
        ],
        "{got:?}"
    );
    assert!(e[0].is_unsupported() && e[1].is_unsupported());
    assert!(!e[2].is_unsupported());
    assert!(got[2].2.contains("every release would be rolled back"));
}

#[test]
fn other_flagger_kinds_and_versions() {
    let old =
        json!({"apiVersion": "flagger.app/v1alpha3", "kind": "Canary", "metadata": {"name": "x"}});
    let alert = json!({"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "slack"}, "spec": {"type": "slack"}});
    let odd =
        json!({"apiVersion": "flagger.app/v1beta1", "kind": "Gate", "metadata": {"name": "g"}});
    let (_, errors) = check_docs(&[old, alert, odd]);
    assert_eq!(paths(&errors), ["apiVersion", "kind"]);
}

#[test]
fn only_targeted_deployments_are_decoded_and_a_broken_one_is_reported_once() {
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db"},
        "spec": {}});
    let (_, errors) = check_docs(&[other, deployment(), ingress("app"), canary()]);
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
    let mut d = deployment();
    d["spec"]["replicas"] = json!("two");
    let (_, errors) = check_docs(&[d, ingress("app"), canary()]);
    assert_eq!(found(&errors).len(), 1, "{}", SpecErrors(errors));
    assert_eq!(errors[0].object.as_deref(), Some("Deployment/app"));
}

#[test]
fn max_unavailable_is_zero_for_recreate() {
    let deployment = |replicas: i32, strategy: Value| -> k8s_openapi::api::apps::v1::Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "app"}},
                "strategy": strategy,
                "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": []}}
            }
        }))
        .unwrap()
    };
    // Recreate: nothing may be unavailable for `Available`.
    assert_eq!(
        deployment(4, json!({"type": "Recreate"})).max_unavailable(),
        0
    );
    // RollingUpdate: 25 % rounded down by default, capped at the replicas.
    assert_eq!(deployment(4, json!({})).max_unavailable(), 1);
    assert_eq!(deployment(3, json!({})).max_unavailable(), 0);
    assert_eq!(
        deployment(2, json!({"rollingUpdate": {"maxUnavailable": 5}})).max_unavailable(),
        2
    );
    // `ResolveFenceposts`: both resolving to 0 makes unavailable 1.
    assert_eq!(
        deployment(
            2,
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}})
        )
        .max_unavailable(),
        1
    );
    assert_eq!(
        deployment(0, json!({"type": "RollingUpdate"})).max_unavailable(),
        0
    );
}

#[test]
fn call_webhook_fails_on_a_timeout_go_cannot_parse() {
    let reasons = |timeout: &str| {
        let e = with_analysis(|a| {
            a["webhooks"] = json!([
                {"name": "slow", "url": "http://127.0.0.1:9/", "timeout": timeout}
            ]);
        });
        found(&e)
            .into_iter()
            .map(|(_, path, reason)| (path, reason))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reasons("10sx"),
        [(
            "spec.analysis.webhooks[0].timeout".to_string(),
            "time: unknown unit \"sx\" in duration \"10sx\": the CRD's pattern lets it through, \
             but Flagger cannot parse it and fails this webhook at every call"
                .to_string()
        )]
    );
    // Shorter than two characters never matches the pattern: the API server refuses it.
    assert_eq!(
        reasons("5")[0].1,
        "\"5\" does not match the CRD's pattern ^[0-9]+(m|s) (e.g. 5s)"
    );
    assert!(reasons("1m30s").is_empty());
}

/// Flagger's v1beta1 CRD has no `canaryAnalysis` (the API server drops it) and requires
/// `analysis`: both are refused without Go too, by gauntlet's own checks.
#[test]
fn canary_analysis_is_not_a_field_and_analysis_is_required() {
    let mut c = canary();
    let analysis = c["spec"]["analysis"].take();
    c["spec"].as_object_mut().unwrap().remove("analysis");
    c["spec"]["canaryAnalysis"] = analysis;
    let (_, errors) = check_docs(&[deployment(), c]);
    let p = paths(&errors);
    assert!(p.contains(&"spec.canaryAnalysis"), "{p:?}");
    assert!(p.contains(&"spec.analysis"), "{p:?}");
}
