//! Flagger's loadtester as its upstream install deploys it (`kustomize/tester` of the pinned
//! Flagger module: a Deployment and a Service), once per Service name a Canary's webhooks use.
//! It runs as a pod on gauntlet's node (whose image map runs the pinned loadtester binary for
//! `ghcr.io/fluxcd/flagger-loadtester`), so the API server's service proxy reaches it, as
//! gauntlet's gate actions need (it proxies to pods only).
//!
//! One change to upstream's objects, because the node has no container runtime to `exec` in:
//! the probes that run `wget --spider http://localhost:PORT/PATH` inside the container become
//! the `httpGet` probes they amount to.

use serde_json::{Value, json};

use crate::cluster::InfraError;
use crate::cluster::local::controlplane::modules;

/// Upstream's loadtester objects for the Service `namespace/name` on `port`.
///
/// # Errors
/// The pinned Flagger module's manifests could not be read.
pub fn objects(namespace: &str, name: &str, port: u16) -> Result<Vec<Value>, InfraError> {
    let folder = modules::default_module_folder();
    let upstream = modules::flagger_loadtester(&folder)
        .map_err(|e| InfraError::Other(format!("Flagger's loadtester manifests: {e}")))?;
    Ok(upstream
        .into_iter()
        .map(|mut o| {
            o["metadata"]["namespace"] = json!(namespace);
            match o.get("kind").and_then(Value::as_str) {
                Some("Service") => {
                    o["metadata"]["name"] = json!(name);
                    if let Some(ports) = o.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
                        && let Some(first) = ports.first_mut()
                    {
                        first["port"] = json!(port);
                    }
                }
                Some("Deployment") => {
                    o["metadata"]["name"] = json!(name);
                    let containers = o
                        .pointer_mut("/spec/template/spec/containers")
                        .and_then(Value::as_array_mut);
                    for c in containers.into_iter().flatten() {
                        for probe in ["livenessProbe", "readinessProbe"] {
                            exec_to_http(&mut c[probe]);
                        }
                    }
                }
                _ => {}
            }
            o
        })
        .collect())
}

/// `exec: wget ... http://localhost:PORT/PATH` → `httpGet: {port, path}`; other exec probes
/// are dropped (the container then counts as ready when it runs, as without a probe).
fn exec_to_http(probe: &mut Value) {
    let Some(command) = probe.pointer("/exec/command").and_then(Value::as_array) else {
        return;
    };
    let url = command
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("http://localhost:"));
    let http = url.and_then(|rest| {
        let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
        let port: u16 = port.parse().ok()?;
        Some(json!({"port": port, "path": format!("/{path}")}))
    });
    let Some(obj) = probe.as_object_mut() else {
        return;
    };
    obj.remove("exec");
    match http {
        Some(h) => {
            obj.insert("httpGet".into(), h);
        }
        None => *probe = Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wget_probes_become_http_probes() {
        let mut p = json!({"exec": {"command": ["wget", "--quiet", "--spider", "http://localhost:8080/healthz"]},
                           "timeoutSeconds": 5});
        exec_to_http(&mut p);
        assert_eq!(
            p,
            json!({"httpGet": {"port": 8080, "path": "/healthz"}, "timeoutSeconds": 5})
        );
        let mut p = json!({"exec": {"command": ["cat", "/tmp/ready"]}});
        exec_to_http(&mut p);
        assert!(p.is_null());
    }

    #[test]
    fn upstreams_loadtester_is_placed_under_the_webhooks_name() {
        let objs = objects("test", "flagger-loadtester", 80).unwrap();
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["Deployment", "Service"]);
        for o in &objs {
            assert_eq!(o["metadata"]["namespace"], "test");
        }
        let c = &objs[0]["spec"]["template"]["spec"]["containers"][0];
        assert!(
            c["image"]
                .as_str()
                .unwrap()
                .starts_with("ghcr.io/fluxcd/flagger-loadtester:")
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert!(c["livenessProbe"].get("exec").is_none());
    }
}
