//! From the user's Canary (already validated by `spec::flagger`) to the policy the engine runs.
//!
//! Defaults and clamps are applied in the policy's own time, as Flagger applies them (interval
//! 60 s and at least 10 s, threshold 1, maxWeight 100, builtin windows `1m`); then every
//! duration is multiplied by `--time-scale`. Queries are rendered with Flagger's model first and
//! their range windows scaled after ([`TimeScale::promql`]), then whitespace runs are collapsed
//! as Flagger's Prometheus provider does before sending.
//!
//! Webhooks to the loadtester Service (`http://flagger-loadtester.<namespace>/...`, any host
//! `flagger-loadtester` or `flagger-loadtester.*`) are mapped to the controller's own loadtester
//! on 127.0.0.1, path and query kept ([`HookTarget::Loadtester`]); other URLs are called as
//! written.

use k8s_openapi::api::apps::v1::Deployment;

use super::policy::{Check, CheckKind, FlaggerPolicy, HookTarget, HookType, Webhook};
use crate::controller::timescale::TimeScale;
use crate::spec::Manifest;
use crate::spec::Manifests;
use crate::spec::flagger::template::{Model, render};
use crate::spec::flagger::validate::is_loadtester;
use crate::spec::flagger::{
    self, Canary, CanaryMetric, DEFAULT_INTERVAL, DEFAULT_METRIC_INTERVAL, DeploymentExt,
    REQUEST_DURATION, SUCCESS_RATE,
};

/// `pkg/metrics/observers/nginx.go`: the canary's success rate through the Ingress, percent.
pub const NGINX_SUCCESS_RATE: &str = r#"sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!="",status!~"5.*"}[{{ interval }}])) / sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) * 100"#;

/// `pkg/metrics/observers/nginx.go`: the canary's mean upstream response time, ms.
pub const NGINX_REQUEST_DURATION: &str = r#"sum(rate(nginx_ingress_controller_response_duration_seconds_sum{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) * 1000"#;

/// The engine's view of one Canary, and the objects it came from.
#[derive(Debug, Clone)]
pub struct Emulated {
    pub policy: FlaggerPolicy,
    /// Boxed: the objects are large and only read for reports and the workload.
    pub canary: Box<Manifest<Canary>>,
    pub deployment: Box<Manifest<Deployment>>,
}

/// Builds the policy of the target's Canary.
///
/// # Errors
/// A text naming the object or field when the target cannot be emulated (validation normally
/// refuses it first, with file and path).
pub fn from_spec(manifests: &Manifests, scale: TimeScale) -> Result<Emulated, String> {
    let (objects, errors) = flagger::decode(manifests);
    if let Some(e) = errors.first() {
        return Err(format!("{e}: {}", e.kind));
    }
    let canary = match objects.canaries.as_slice() {
        [c] => c.clone(),
        [] => return Err("no Canary (flagger.app/v1beta1) in the target".into()),
        [a, b, ..] => {
            return Err(format!(
                "a target holds one Canary; found {} (`{}` and `{}`)",
                objects.canaries.len(),
                a.object.name(),
                b.object.name()
            ));
        }
    };
    let c = &canary.object;
    let namespace = c.namespace();
    let deployment = objects
        .deployment(namespace, &c.spec.target_ref.name)
        .cloned()
        .ok_or_else(|| {
            format!(
                "spec.targetRef: Deployment `{}` is not in the target",
                c.spec.target_ref.name
            )
        })?;
    let d = &deployment.object;
    let mut p = FlaggerPolicy::new(c.name(), d.replicas());
    p.namespace = namespace.to_string();
    p.target = c.spec.target_ref.name.clone();
    p.service = c.apex().to_string();
    p.ingress = c.ingress().to_string();
    p.max_unavailable = d.max_unavailable();
    p.selector_label = d.selector_label();
    p.progress_deadline = scale.duration(c.progress_deadline());
    p.deployment_progress_deadline = scale.duration(d.progress_deadline());
    p.skip_analysis = c.skip_analysis();
    p.suspend = c.spec.suspend;
    let Some(a) = c.analysis() else {
        p.interval = scale.duration(DEFAULT_INTERVAL);
        p.step_weight = 0;
        return Ok(Emulated {
            policy: p,
            canary: Box::new(canary),
            deployment: Box::new(deployment),
        });
    };
    // Defaults and clamps first, in the policy's own time; then the scale.
    p.interval = scale.duration(a.interval());
    p.threshold = a.threshold();
    p.max_weight = a.max_weight().clamp(0, 100).unsigned_abs();
    p.step_weight = a.step_weight().max(0).unsigned_abs();
    p.step_weights = a
        .step_weights()
        .iter()
        .map(|w| w.max(&0).unsigned_abs())
        .collect();
    p.step_weight_promotion = a.step_weight_promotion.unwrap_or(0).max(0).unsigned_abs();
    p.primary_ready_threshold = a.primary_ready_threshold();
    p.canary_ready_threshold = a.canary_ready_threshold();
    let prepare = |q: String| collapse_whitespace(&scale.promql(&q));
    for (i, m) in a.metrics.iter().enumerate() {
        let at = format!("spec.analysis.metrics[{i}]");
        let builtin_window = m.interval.as_deref().unwrap_or(DEFAULT_METRIC_INTERVAL);
        let model = Model::new(c, m, builtin_window);
        let mut builtin = |kind: CheckKind, query: &str| -> Result<(), String> {
            let rendered = render(query, &model).map_err(|e| format!("{at}: {e}"))?;
            p.builtin_checks.push(check(m, kind, prepare(rendered)));
            Ok(())
        };
        if m.name == SUCCESS_RATE {
            builtin(CheckKind::SuccessRate, NGINX_SUCCESS_RATE)?;
        }
        if m.name == REQUEST_DURATION {
            builtin(CheckKind::RequestDuration, NGINX_REQUEST_DURATION)?;
        }
        if let Some(q) = m.query.as_deref().filter(|q| !q.is_empty()) {
            builtin(CheckKind::Inline, q)?;
        }
        if let Some(r) = &m.template_ref {
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace);
            let t = objects.metric_template(ns, &r.name).ok_or_else(|| {
                format!("{at}.templateRef: MetricTemplate {}.{ns} not found", r.name)
            })?;
            // Templated metrics get no default window.
            let model = Model::new(c, m, m.interval.as_deref().unwrap_or_default());
            let rendered =
                render(&t.object.spec.query, &model).map_err(|e| format!("{at}: {e}"))?;
            p.template_checks.push(check(
                m,
                CheckKind::Template(format!("{}.{ns}", r.name)),
                prepare(rendered),
            ));
        }
    }
    for (i, h) in a.webhooks.iter().enumerate() {
        let at = format!("spec.analysis.webhooks[{i}]");
        let kind = HookType::parse(h.hook_type())
            .ok_or_else(|| format!("{at}.type: unknown webhook type {:?}", h.hook_type()))?;
        let url = reqwest::Url::parse(&h.url).map_err(|e| format!("{at}.url: {e}"))?;
        let target = if is_loadtester(url.host_str().unwrap_or_default()) {
            let mut path = url.path().to_string();
            if let Some(q) = url.query() {
                path.push('?');
                path.push_str(q);
            }
            HookTarget::Loadtester(path)
        } else {
            HookTarget::Url(h.url.clone())
        };
        p.webhooks.push(Webhook {
            name: h.name.clone(),
            kind,
            url: h.url.clone(),
            target,
            timeout: scale.duration(h.timeout()),
            retries: h.retries.unwrap_or(0).max(0).unsigned_abs(),
            metadata: h.metadata.clone(),
        });
    }
    Ok(Emulated {
        policy: p,
        canary: Box::new(canary),
        deployment: Box::new(deployment),
    })
}

fn check(m: &CanaryMetric, kind: CheckKind, query: String) -> Check {
    let range = m.threshold_range;
    Check {
        metric: m.name.clone(),
        kind,
        query,
        min: range.and_then(|r| r.min),
        max: range.and_then(|r| r.max),
        threshold: m.threshold,
        has_range: range.is_some(),
    }
}

/// `trimQuery`: every run of whitespace becomes one space.
pub fn collapse_whitespace(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn fixture(name: &str) -> Manifests {
        crate::spec::load_target(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/apps")
                .join(name),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_fixture_becomes_its_policy_with_scaled_durations() {
        let m = fixture("flagger");
        let e = from_spec(&m, TimeScale::new(0.1).unwrap()).unwrap();
        let p = &e.policy;
        assert_eq!(p.name, "sample-app");
        assert_eq!(p.target, "sample-app");
        assert_eq!(p.ingress, "sample-app");
        assert_eq!(p.step_weights, [1, 2, 10, 80]);
        assert_eq!(p.max_weight, 80);
        assert_eq!(p.weight_sequence(), [1, 2, 10, 80]);
        assert_eq!(p.interval, Duration::from_secs(6), "1m × 0.1");
        assert_eq!(p.replicas, 2);
        let sr = &p.builtin_checks[0];
        assert_eq!(sr.kind, CheckKind::SuccessRate);
        assert_eq!(
            sr.query,
            r#"sum(rate(nginx_ingress_controller_requests{namespace="default",ingress="sample-app",canary!="",status!~"5.*"}[6s])) / sum(rate(nginx_ingress_controller_requests{namespace="default",ingress="sample-app",canary!=""}[6s])) * 100"#
        );
        assert_eq!(p.builtin_checks[1].kind, CheckKind::RequestDuration);
        assert!(
            p.template_checks
                .iter()
                .all(|c| matches!(c.kind, CheckKind::Template(_)))
        );
        assert!(!p.template_checks.is_empty());
        assert!(
            p.webhooks
                .iter()
                .all(|h| matches!(h.target, HookTarget::Loadtester(_)))
        );
    }

    #[test]
    fn defaults_and_clamps_apply_before_the_time_scale() {
        let mut m = fixture("flagger");
        let canary = m.others.iter_mut().find(|o| o.kind == "Canary").unwrap();
        let a = canary.value.pointer_mut("/spec/analysis").unwrap();
        a["interval"] = "5s".into();
        a["threshold"] = 0.into();
        a["metrics"] =
            serde_json::json!([{"name": "request-success-rate", "thresholdRange": {"min": 99}}]);
        let e = from_spec(&m, TimeScale::new(0.5).unwrap()).unwrap();
        // 5 s is raised to 10 s, then halved: 5 s (not 2.5 s).
        assert_eq!(e.policy.interval, Duration::from_secs(5));
        assert_eq!(e.policy.threshold, 1);
        // The builtin window defaults to 1m, scaled to 30s.
        assert!(e.policy.builtin_checks[0].query.contains("[30s]"));
        a_without_interval(&mut m);
        let e = from_spec(&m, TimeScale::default()).unwrap();
        assert_eq!(e.policy.interval, Duration::from_secs(60));
    }

    fn a_without_interval(m: &mut Manifests) {
        let canary = m.others.iter_mut().find(|o| o.kind == "Canary").unwrap();
        canary
            .value
            .pointer_mut("/spec/analysis")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("interval");
    }
}
