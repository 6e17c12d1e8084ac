//! One pod on the node, from its binding to its deletion: the sandbox, a supervisor per
//! container (the local backend's pod machinery: processes, memory cgroups, probes, restarts
//! with the kubelet's back-off, OOM kills), and its status written back to the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};

use super::NodeContext;
use super::container::{self, Waiting};
use super::status::{self, ContainerState, ContainerView, Transitions};
use crate::cluster::RevisionHash;
use crate::cluster::local::net::sandbox::Sandbox;
use crate::cluster::local::pods::{self, PodEnv, Runtime, SandboxRuntime};
use crate::timeline::Source;

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The pod has a deletionTimestamp: stop its containers gracefully, then delete it.
    Deleted,
    /// The pod is gone from the API (or the node stops): stop, delete nothing.
    Gone,
}

/// What a running container of the pod is made of.
struct Running {
    name: String,
    image: String,
    pod: pods::Pod,
    changed: watch::Receiver<u64>,
}

/// Runs pod `pod` until `stop` says otherwise; see the module doc.
pub async fn run(ctx: Arc<NodeContext>, pod: K8sPod, mut stop: watch::Receiver<Option<Stop>>) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<K8sPod> = Api::namespaced(ctx.client.clone(), &namespace);
    let started = SystemTime::now();
    let mut transitions = Transitions::default();
    let spec = pod.spec.clone().unwrap_or_default();
    let dir = ctx.dir.join(format!("{namespace}_{name}_{uid}"));

    let sandbox = match Sandbox::create(&ctx.net, &ctx.ips, &namespace, &name, &dir).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("pod {namespace}/{name}: sandbox: {e}");
            None
        }
    };
    let ip = sandbox.as_ref().map(Sandbox::ip);
    let mut running: Vec<Running> = Vec::new();
    let mut refused: BTreeMap<String, (String, Waiting)> = BTreeMap::new();
    let notify = Arc::new(Notify::new());
    for (i, c) in spec.containers.iter().enumerate() {
        let image = c.image.clone().unwrap_or_default();
        let planned = match &sandbox {
            None => Err(Waiting {
                reason: "CreateContainerError",
                message: "the pod sandbox could not be created (see gauntlet's log)".into(),
            }),
            Some(sb) => container::plan(&pod, i, c, &ctx.images, sb.ip()),
        };
        let plan = match planned {
            Ok(p) => p,
            Err(w) => {
                ctx.timeline.emit(
                    Source::Pod,
                    "pod-waiting",
                    format!("pod {namespace}/{name} container {}: {}: {}", c.name, w.reason, w.message),
                    serde_json::json!({"pod": name, "namespace": namespace, "container": c.name, "reason": w.reason}),
                );
                refused.insert(c.name.clone(), (image, w));
                continue;
            }
        };
        let sb = sandbox.as_ref().expect("planned only with a sandbox");
        let (tx, rx) = watch::channel(0u64);
        let env = Arc::new(PodEnv {
            binary: plan.binary.clone(),
            namespace: namespace.clone(),
            logs: dir.clone(),
            cgroups: ctx.cgroups.clone(),
            registry: ctx.registry.clone(),
            timeline: ctx.timeline.clone(),
            changed: tx,
            backoff: ctx.backoff,
            grace: Duration::from_secs(
                spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64
            ),
            http: reqwest::Client::new(),
            runtime: Runtime::Sandbox(Box::new(SandboxRuntime {
                placement: sb.placement(),
                ip: sb.ip(),
                node: ctx.net.inside.clone(),
                readiness: plan.readiness.clone(),
                liveness: plan.liveness.clone(),
            })),
        });
        // Supervisor names key the cgroup and the log; a pod's containers each need one.
        let sup_name = if spec.containers.len() == 1 {
            name.clone()
        } else {
            format!("{name}.{}", c.name)
        };
        match pods::Pod::start(
            env,
            sup_name,
            RevisionHash(plan.template.workload.clone()),
            Arc::new(plan.template),
        ) {
            Ok(p) => {
                ctx.started(super::RunningContainer {
                    namespace: namespace.clone(),
                    pod: name.clone(),
                    container: c.name.clone(),
                    memory_limit: p.template.memory_limit,
                    usage: p.usage(),
                    log: dir.join(format!("{}.log", p.name)),
                });
                running.push(Running {
                    name: c.name.clone(),
                    image,
                    pod: p,
                    changed: rx,
                })
            }
            Err(e) => {
                refused.insert(
                    c.name.clone(),
                    (
                        image,
                        Waiting {
                            reason: "CreateContainerError",
                            message: e.to_string(),
                        },
                    ),
                );
            }
        }
    }
    for r in &running {
        let mut rx = r.changed.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                notify.notify_one();
            }
        });
    }

    let views = |running: &[Running]| -> Vec<ContainerView> {
        spec.containers
            .iter()
            .map(|c| {
                if let Some(r) = running.iter().find(|r| r.name == c.name) {
                    ContainerView {
                        name: r.name.clone(),
                        image: r.image.clone(),
                        state: ContainerState::Supervised(r.pod.runtime()),
                    }
                } else {
                    let (image, w) = refused.get(&c.name).cloned().unwrap_or_else(|| {
                        (
                            c.image.clone().unwrap_or_default(),
                            Waiting {
                                reason: "ContainerCreating",
                                message: String::new(),
                            },
                        )
                    });
                    ContainerView {
                        name: c.name.clone(),
                        image,
                        state: ContainerState::Refused(w),
                    }
                }
            })
            .collect()
    };

    let mut last_sent = serde_json::Value::Null;
    let why = loop {
        let status = status::pod_status(ip, started, &views(&running), &mut transitions);
        if status != last_sent {
            let patch = serde_json::json!({"status": status});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => last_sent = status,
                Err(kube::Error::Api(s)) if s.code == 404 => break Stop::Gone,
                Err(e) => tracing::debug!("pod {namespace}/{name}: status: {e}"),
            }
        }
        tokio::select! {
            _ = notify.notified() => {}
            // Times in the status move without a change of state (a retry after an error).
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            changed = stop.changed() => {
                match (changed, *stop.borrow()) {
                    (Ok(()), Some(why)) => break why,
                    (Err(_), _) => break Stop::Gone,
                    _ => {}
                }
            }
        }
    };

    // As the kubelet: stop the containers (SIGTERM, SIGKILL after the grace period), tear the
    // sandbox down, then remove the object the API server kept for us.
    for r in &running {
        ctx.stopped(&namespace, &name, &r.name);
    }
    let stops: Vec<_> = running.into_iter().map(|r| r.pod.stop()).collect();
    futures::future::join_all(stops).await;
    if let Some(sb) = sandbox {
        sb.remove().await;
    }
    if why == Stop::Deleted {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => tracing::debug!("pod {namespace}/{name}: delete: {e}"),
        }
    }
    // The pod's folder (its logs) stays until the cluster's folder goes.
}
