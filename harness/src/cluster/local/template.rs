//! From a Kubernetes pod template to what a local pod runs.
//!
//! No container runtime exists locally, so the container always runs the sample-app binary,
//! whatever its image says; what the template says about the process (env, args, readiness
//! probe, memory limit, labels) is honoured. Whatever cannot be honoured is refused with its
//! field path rather than silently dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::memlimit::parse_quantity;
use crate::cluster::{PodTemplate, Probe};

/// A field of the template the local backend cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TemplateError {
    /// Relative to the pod template, e.g. `spec.containers[0].env[2].valueFrom`.
    pub path: String,
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> TemplateError {
    TemplateError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Builds the local pod template of workload `workload` from its Kubernetes pod template.
pub fn from_k8s(
    workload: &str,
    tpl: &PodTemplateSpec,
    min_ready: Duration,
) -> Result<PodTemplate, TemplateError> {
    let spec = tpl
        .spec
        .as_ref()
        .ok_or_else(|| err("spec", "a pod template needs a spec with one container"))?;
    let container: &Container = match spec.containers.as_slice() {
        [c] => c,
        [] => return Err(err("spec.containers", "no container is defined")),
        _ => {
            return Err(err(
                "spec.containers",
                "only one container per pod can run locally (the sample app); remove the sidecars or use the kind backend",
            ));
        }
    };
    let base = "spec.containers[0]";
    let mut env = Vec::new();
    for (i, e) in container.env.iter().flatten().enumerate() {
        if e.value_from.is_some() {
            return Err(err(
                format!("{base}.env[{i}].valueFrom"),
                "only literal `value`s can be set locally",
            ));
        }
        env.push((e.name.clone(), e.value.clone().unwrap_or_default()));
    }
    if container.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(err(
            format!("{base}.envFrom"),
            "ConfigMaps and Secrets do not exist locally; use `env` with values",
        ));
    }
    let args = container.args.clone().unwrap_or_default();
    if args.iter().any(|a| a.starts_with("--listen")) {
        return Err(err(
            format!("{base}.args"),
            "--listen is chosen by gauntlet locally (each pod gets its own loopback port)",
        ));
    }
    let memory_limit = match container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    {
        Some(q) => Some(
            parse_quantity(&q.0).map_err(|e| err(format!("{base}.resources.limits.memory"), e))?,
        ),
        None => None,
    };
    let readiness = match &container.readiness_probe {
        None => Probe::default(),
        Some(p) => {
            let path = format!("{base}.readinessProbe");
            let http = p.http_get.as_ref().ok_or_else(|| {
                err(
                    path.clone(),
                    "only httpGet readiness probes can run locally",
                )
            })?;
            if let IntOrString::String(name) = &http.port {
                let named = container
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.name.as_deref() == Some(name));
                if !named {
                    return Err(err(
                        format!("{path}.httpGet.port"),
                        format!("no container port is named `{name}`"),
                    ));
                }
            }
            let secs = |v: Option<i32>, d: u64| {
                Duration::from_secs(v.map(|v| v.max(0) as u64).unwrap_or(d))
            };
            let default = Probe::default();
            Probe {
                path: http.path.clone().unwrap_or_else(|| "/".into()),
                initial_delay: secs(p.initial_delay_seconds, 0),
                period: p
                    .period_seconds
                    .map(|v| Duration::from_secs(v.max(1) as u64))
                    .unwrap_or(default.period),
                timeout: secs(p.timeout_seconds, 1),
                success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
                failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            }
        }
    };
    let labels: BTreeMap<String, String> = tpl
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(PodTemplate {
        workload: workload.into(),
        container: container.name.clone(),
        env,
        args,
        labels,
        memory_limit,
        readiness,
        min_ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(yaml: &str) -> PodTemplateSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn env_probe_limit_and_labels_carry_over() {
        let t = tpl(r#"
metadata: { labels: { app: sample-app } }
spec:
  containers:
    - name: sample-app
      image: gauntlet/sample-app:latest
      ports: [{ name: http, containerPort: 8080 }]
      env: [{ name: APP_VERSION, value: "1.0.0" }]
      readinessProbe:
        httpGet: { path: /readyz, port: http }
        periodSeconds: 2
        failureThreshold: 1
      resources: { limits: { memory: 64Mi } }
"#);
        let p = from_k8s("sample-app", &t, Duration::ZERO).unwrap();
        assert_eq!(p.container, "sample-app");
        assert_eq!(p.env, vec![("APP_VERSION".into(), "1.0.0".into())]);
        assert_eq!(p.memory_limit, Some(64 << 20));
        assert_eq!(p.readiness.period, Duration::from_secs(2));
        assert_eq!(p.readiness.failure_threshold, 1);
        assert_eq!(p.labels["app"], "sample-app");
    }

    #[test]
    fn what_cannot_run_locally_is_refused_with_its_path() {
        let t = tpl(r#"
spec:
  containers:
    - name: a
      env: [{ name: X, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
"#);
        let e = from_k8s("w", &t, Duration::ZERO).unwrap_err();
        assert_eq!(e.path, "spec.containers[0].env[0].valueFrom");
        let t = tpl("spec: { containers: [ { name: a }, { name: b } ] }");
        assert_eq!(
            from_k8s("w", &t, Duration::ZERO).unwrap_err().path,
            "spec.containers"
        );
        let t = tpl(
            "spec: { containers: [ { name: a, readinessProbe: { httpGet: { port: web } } } ] }",
        );
        assert_eq!(
            from_k8s("w", &t, Duration::ZERO).unwrap_err().path,
            "spec.containers[0].readinessProbe.httpGet.port"
        );
    }
}
