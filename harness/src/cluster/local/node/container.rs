//! From a pod's container spec to what the node runs: the binary of its image, the environment
//! the kubelet gives it, its probes with their ports resolved, its memory limit. A container the
//! node cannot run gets the `Waiting` reason the kubelet would show, with a message that names
//! the field.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe as K8sProbe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::images::ImageMap;
use crate::cluster::local::memlimit::parse_quantity;
use crate::cluster::local::net::{KUBERNETES_SERVICE_IP, NODE_IP};
use crate::cluster::local::pods::ProbeSpec;
use crate::cluster::{PodTemplate, Probe};

/// Why a container does not run, as `state.waiting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

/// What the node runs for one container.
#[derive(Debug, Clone)]
pub struct Plan {
    pub binary: PathBuf,
    pub template: PodTemplate,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

/// The plan for container `c` of `pod`, whose IP is `pod_ip`.
///
/// # Errors
/// An image the node cannot run (`ErrImagePull`-like: `ImagePullBackOff`), or a field it
/// cannot honour (`CreateContainerConfigError`).
pub fn plan(
    pod: &Pod,
    index: usize,
    c: &Container,
    images: &ImageMap,
    pod_ip: Ipv4Addr,
) -> Result<Plan, Waiting> {
    let base = format!("spec.containers[{index}]");
    let config = |field: String, why: &str| Waiting {
        reason: "CreateContainerConfigError",
        message: format!("{field}: {why} on gauntlet's local node"),
    };
    let reference = c.image.clone().unwrap_or_default();
    let image = images.resolve(&reference).map_err(|message| Waiting {
        reason: "ImagePullBackOff",
        message,
    })?;
    let mut args = Vec::new();
    if let Some(command) = &c.command {
        let first = command.first().map(String::as_str).unwrap_or("");
        let runs_binary = image
            .entrypoints
            .iter()
            .any(|e| first.rsplit('/').next() == Some(*e));
        if !runs_binary {
            return Err(Waiting {
                reason: "RunContainerError",
                message: format!(
                    "{base}.command: `{first}` is not the image's entrypoint ({}); gauntlet's \
                     node runs the image's binary only",
                    image.entrypoints.join(", ")
                ),
            });
        }
        args.extend(command.iter().skip(1).cloned());
    }
    args.extend(c.args.iter().flatten().cloned());

    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = image.env.clone();
    let mut set = |k: String, v: String| {
        env.retain(|(n, _)| *n != k);
        env.push((k, v));
    };
    set("HOSTNAME".into(), name.clone());
    set(
        "KUBERNETES_SERVICE_HOST".into(),
        KUBERNETES_SERVICE_IP.to_string(),
    );
    set("KUBERNETES_SERVICE_PORT".into(), "443".into());
    if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(config(
            format!("{base}.envFrom"),
            "ConfigMaps and Secrets as env are not supported",
        ));
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(from)) => {
                let field = from.field_ref.as_ref().ok_or_else(|| {
                    config(
                        format!("{base}.env[{i}].valueFrom"),
                        "only fieldRef is supported",
                    )
                })?;
                field_value(pod, &field.field_path, pod_ip).ok_or_else(|| {
                    config(
                        format!("{base}.env[{i}].valueFrom.fieldRef.fieldPath"),
                        &format!("`{}` is not supported", field.field_path),
                    )
                })?
            }
            (Some(v), None) => v.clone(),
            (None, None) => String::new(),
        };
        set(e.name.clone(), value);
    }

    let memory_limit = match c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    {
        Some(q) => Some(
            parse_quantity(&q.0)
                .map_err(|e| config(format!("{base}.resources.limits.memory"), &e))?,
        ),
        None => None,
    };
    let readiness = probe(
        c,
        c.readiness_probe.as_ref(),
        &format!("{base}.readinessProbe"),
    )
    .map_err(|e| config(e.0, &e.1))?;
    let liveness = probe(
        c,
        c.liveness_probe.as_ref(),
        &format!("{base}.livenessProbe"),
    )
    .map_err(|e| config(e.0, &e.1))?;
    if c.startup_probe.is_some() {
        return Err(config(
            format!("{base}.startupProbe"),
            "startup probes are not supported",
        ));
    }
    let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    let revision = labels
        .get("rollouts-pod-template-hash")
        .or_else(|| labels.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default();
    Ok(Plan {
        binary: image.binary.clone(),
        template: PodTemplate {
            workload: revision,
            container: c.name.clone(),
            env,
            args,
            labels,
            memory_limit,
            readiness: readiness
                .as_ref()
                .map(|r| r.probe.clone())
                .unwrap_or_default(),
            min_ready: Duration::ZERO,
        },
        readiness,
        liveness,
    })
}

/// The value of a downward-API `fieldRef`, as the kubelet resolves it.
fn field_value(pod: &Pod, path: &str, pod_ip: Ipv4Addr) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let key_of = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .or_else(|| path.strip_prefix(prefix)?.strip_suffix("\"]"))
            .map(str::to_string)
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => NODE_IP.to_string(),
        _ => {
            if let Some(k) = key_of("metadata.labels['") {
                meta.labels.as_ref()?.get(&k)?.clone()
            } else if let Some(k) = key_of("metadata.annotations['") {
                meta.annotations.as_ref()?.get(&k)?.clone()
            } else {
                return None;
            }
        }
    })
}

/// A probe with Kubernetes' defaults and its port resolved; `Err((field, why))` for a probe
/// the node cannot run.
fn probe(
    c: &Container,
    p: Option<&K8sProbe>,
    field: &str,
) -> Result<Option<ProbeSpec>, (String, String)> {
    let Some(p) = p else { return Ok(None) };
    let port = |port: &IntOrString, at: String| -> Result<u16, (String, String)> {
        match port {
            IntOrString::Int(n) => {
                u16::try_from(*n).map_err(|_| (at, format!("{n} is not a port")))
            }
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| (at, format!("no container port is named `{name}`"))),
        }
    };
    let (port, http, path) = if let Some(h) = &p.http_get {
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err((
                format!("{field}.httpGet.scheme"),
                "only HTTP probes are supported".into(),
            ));
        }
        (
            port(&h.port, format!("{field}.httpGet.port"))?,
            true,
            h.path.clone().unwrap_or_else(|| "/".into()),
        )
    } else if let Some(t) = &p.tcp_socket {
        (
            port(&t.port, format!("{field}.tcpSocket.port"))?,
            false,
            String::new(),
        )
    } else {
        return Err((
            field.to_string(),
            "only httpGet and tcpSocket probes are supported (exec and grpc need a container runtime)"
                .into(),
        ));
    };
    let secs = |v: Option<i32>, d: u64, min: u64| {
        Duration::from_secs(v.map(|v| (v.max(0) as u64).max(min)).unwrap_or(d))
    };
    Ok(Some(ProbeSpec {
        probe: Probe {
            path,
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: p.success_threshold.map(|v| v.max(1) as u32).unwrap_or(1),
            failure_threshold: p.failure_threshold.map(|v| v.max(1) as u32).unwrap_or(3),
        },
        port,
        http,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn images() -> ImageMap {
        ImageMap::new("/bin/sample-app".into(), None)
    }

    const POD: &str = r#"
metadata: { name: web-abc-xyz12, namespace: test, labels: { app: web, rollouts-pod-template-hash: abc } }
spec:
  nodeName: gauntlet-node
  containers:
    - name: app
      image: gauntlet/sample-app:latest
      ports: [ { name: http, containerPort: 8080 } ]
      env:
        - { name: APP_VERSION, value: "2.0.0" }
        - name: MY_NS
          valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
        - name: MY_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
      readinessProbe: { httpGet: { path: /readyz, port: http }, periodSeconds: 1 }
      livenessProbe: { tcpSocket: { port: 8080 } }
      resources: { limits: { memory: 64Mi } }
"#;

    #[test]
    fn a_sample_app_container_runs_with_the_kubelets_environment() {
        let p = pod(POD);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let plan = plan(&p, 0, c, &images(), Ipv4Addr::new(10, 244, 0, 7)).unwrap();
        let env: BTreeMap<_, _> = plan.template.env.iter().cloned().collect();
        assert_eq!(
            env["APP_VERSION"], "2.0.0",
            "the container's env wins over the image's"
        );
        assert_eq!(env["LISTEN"], "0.0.0.0:8080", "the image's own ENV");
        assert_eq!(env["MY_NS"], "test");
        assert_eq!(env["MY_IP"], "10.244.0.7");
        assert_eq!(env["HOSTNAME"], "web-abc-xyz12");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(plan.template.memory_limit, Some(64 << 20));
        let r = plan.readiness.unwrap();
        assert_eq!(
            (r.port, r.http, r.probe.path.as_str()),
            (8080, true, "/readyz")
        );
        assert_eq!(r.probe.period, Duration::from_secs(1));
        let l = plan.liveness.unwrap();
        assert_eq!((l.port, l.http), (8080, false));
        assert_eq!(
            l.probe.period,
            Duration::from_secs(10),
            "Kubernetes' default period"
        );
        assert_eq!(plan.template.workload, "abc");
    }

    #[test]
    fn an_image_the_node_cannot_run_waits_with_its_name() {
        let p = pod(&POD.replace("gauntlet/sample-app:latest", "nginx:1.27"));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let w = plan(&p, 0, c, &images(), Ipv4Addr::new(10, 244, 0, 7)).unwrap_err();
        assert_eq!(w.reason, "ImagePullBackOff");
        assert!(w.message.contains("\"nginx:1.27\""), "{}", w.message);
    }

    #[test]
    fn what_the_node_cannot_honour_names_the_field() {
        let p = pod(&POD.replace(
            "livenessProbe: { tcpSocket: { port: 8080 } }",
            "livenessProbe: { exec: { command: [true] } }",
        ));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let w = plan(&p, 0, c, &images(), Ipv4Addr::new(10, 244, 0, 7)).unwrap_err();
        assert_eq!(w.reason, "CreateContainerConfigError");
        assert!(
            w.message.starts_with("spec.containers[0].livenessProbe:"),
            "{}",
            w.message
        );
        let p = pod(&POD.replace("      env:\n", "      command: [/bin/sh]\n      env:\n"));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let w = plan(&p, 0, c, &images(), Ipv4Addr::new(10, 244, 0, 7)).unwrap_err();
        assert_eq!(w.reason, "RunContainerError");
    }
}
