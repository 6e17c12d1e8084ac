//! One pod on the node, from its binding to its deletion: the sandbox, a supervisor per
//! container (the local backend's pod machinery: processes, memory cgroups, probes, restarts
//! with the kubelet's back-off, OOM kills), the pod's `restartPolicy` (a container `Never` or
//! `OnFailure` does not restart ends the pod `Succeeded` or `Failed`, so Jobs complete), and its
//! status written back to the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};

use super::NodeContext;
use super::container::{self, Waiting};
use super::status::{self, ContainerState, ContainerView, Finished, Transitions};
use crate::cluster::local::net::sandbox::Sandbox;
use crate::cluster::local::pods::Backoff;
use crate::cluster::local::pods::{self, PodEnv, PodRuntime, Runtime, SandboxRuntime};
use crate::cluster::{RevisionHash, Termination};
use crate::timeline::Source;

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The pod has a deletionTimestamp: stop its containers gracefully, then delete it.
    Deleted,
    /// The pod is gone from the API (or the node stops): stop, delete nothing.
    Gone,
}

/// The pod's `restartPolicy`: whether a container that exited starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The policy of `spec.restartPolicy` (`Always` when unset, as the API server defaults it).
    pub fn of(spec: &k8s_openapi::api::core::v1::PodSpec) -> RestartPolicy {
        match spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether the kubelet starts a container again after `how` it ended: always under
    /// `Always`, only after a failure under `OnFailure`, never under `Never`.
    pub fn restarts_after(self, how: &Termination) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => *how != Termination::Completed,
            RestartPolicy::Never => false,
        }
    }

    /// The back-off the container's supervisor runs with. The supervisor restarts every exit
    /// after its back-off; under `Never` that back-off is made longer than any run, so the pod
    /// worker always sees the exit and finishes the container before a restart could come.
    /// Under `OnFailure` the worker stops a container that completed within the kubelet's
    /// back-off (10 s at least), and a failed one restarts with it as under `Always`.
    fn backoff(self, node: Backoff) -> Backoff {
        const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
        match self {
            RestartPolicy::Never => Backoff {
                initial: NEVER,
                max: NEVER,
                reset_after: node.reset_after,
            },
            _ => node,
        }
    }
}

/// The container's final state when the pod's `policy` does not restart it after its last
/// exit (the supervisor reports it exited and backing off), else `None`.
pub fn finished(policy: RestartPolicy, rt: &PodRuntime) -> Option<Finished> {
    let term = rt.last_termination.as_ref()?;
    if rt.running || !rt.backing_off || policy.restarts_after(term) {
        return None;
    }
    Some(Finished {
        termination: term.clone(),
        run: rt.last_run,
        restarts: rt.restarts,
    })
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
    let policy = RestartPolicy::of(&spec);
    let dir = ctx.dir.join(format!("{namespace}_{name}_{uid}"));

    let mut sandbox = match Sandbox::create(&ctx.net, &ctx.ips, &namespace, &name, &dir).await {
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
            backoff: policy.backoff(ctx.backoff),
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

    // Containers that exited and that the policy does not restart: name -> (image, state).
    let mut done: BTreeMap<String, (String, Finished)> = BTreeMap::new();
    let views = |running: &[Running], done: &BTreeMap<String, (String, Finished)>| {
        spec.containers
            .iter()
            .map(|c| {
                if let Some((image, f)) = done.get(&c.name) {
                    ContainerView {
                        name: c.name.clone(),
                        image: image.clone(),
                        state: ContainerState::Finished(f.clone()),
                    }
                } else if let Some(r) = running.iter().find(|r| r.name == c.name) {
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
            .collect::<Vec<ContainerView>>()
    };

    let mut last_sent = serde_json::Value::Null;
    let why = loop {
        // Containers that exited for good: their supervisors stop (no restart comes), and when
        // none is left to run the sandbox goes, as the kubelet kills a finished pod's sandbox.
        let mut i = 0;
        while i < running.len() {
            match finished(policy, &running[i].pod.runtime()) {
                Some(f) => {
                    let r = running.remove(i);
                    ctx.stopped(&namespace, &name, &r.name);
                    ctx.timeline.emit(
                        Source::Pod,
                        "pod-container-finished",
                        format!(
                            "pod {namespace}/{name} container {}: {} (restartPolicy {policy:?})",
                            r.name, f.termination
                        ),
                        serde_json::json!({"pod": name, "namespace": namespace, "container": r.name}),
                    );
                    r.pod.stop().await;
                    done.insert(r.name, (r.image, f));
                }
                None => i += 1,
            }
        }
        if running.is_empty()
            && !done.is_empty()
            && let Some(sb) = sandbox.take()
        {
            sb.remove().await;
        }
        let status = status::pod_status(ip, started, &views(&running, &done), &mut transitions);
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
    if let Some(sb) = sandbox.take() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(term: Termination) -> PodRuntime {
        PodRuntime {
            backing_off: true,
            last_termination: Some(term),
            restarts: 0,
            ..PodRuntime::default()
        }
    }

    #[test]
    fn the_policy_decides_which_exits_restart_as_the_kubelets_does() {
        let ok = exited(Termination::Completed);
        let failed = exited(Termination::Error { exit_code: 1 });
        let oom = exited(Termination::OOMKilled);
        for rt in [&ok, &failed, &oom] {
            assert!(finished(RestartPolicy::Always, rt).is_none());
            let f = finished(RestartPolicy::Never, rt).expect("Never restarts nothing");
            assert_eq!(Some(&f.termination), rt.last_termination.as_ref());
        }
        assert!(finished(RestartPolicy::OnFailure, &ok).is_some());
        assert!(finished(RestartPolicy::OnFailure, &failed).is_none());
        assert!(finished(RestartPolicy::OnFailure, &oom).is_none());
        // Still running (a previous run's termination is remembered): not finished.
        let running = PodRuntime {
            running: true,
            backing_off: false,
            ..ok.clone()
        };
        assert!(finished(RestartPolicy::Never, &running).is_none());
    }

    #[test]
    fn restart_policy_defaults_to_always_and_never_backs_off_past_any_run() {
        let spec = |p: Option<&str>| k8s_openapi::api::core::v1::PodSpec {
            restart_policy: p.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(RestartPolicy::of(&spec(None)), RestartPolicy::Always);
        assert_eq!(
            RestartPolicy::of(&spec(Some("Never"))),
            RestartPolicy::Never
        );
        assert_eq!(
            RestartPolicy::of(&spec(Some("OnFailure"))),
            RestartPolicy::OnFailure
        );
        let node = Backoff::default();
        assert!(RestartPolicy::Never.backoff(node).initial > Duration::from_secs(3600 * 24 * 365));
        assert_eq!(RestartPolicy::OnFailure.backoff(node).initial, node.initial);
    }
}
