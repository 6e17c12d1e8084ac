//! gauntlet's kubelet: one Node in the cluster, kept Ready by its Lease and status, running the
//! pods the scheduler binds to it with the local backend's pod machinery ([`pod`]) in sandboxes
//! of their own ([`crate::cluster::local::net::sandbox`]), and serving the pod series cAdvisor
//! and kube-state-metrics would ([`metrics`]) and the kubelet API's logs ([`server`]).
//!
//! It speaks to the API server as `system:node:<name>`, so the Node authorizer and the
//! NodeRestriction admission plugin hold it to what a kubelet may do.

pub mod container;
pub mod images;
pub mod metrics;
pub mod pod;
pub mod server;
pub mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod as K8sPod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::images::ImageMap;
use self::pod::Stop;
use super::controlplane::NODE_NAME;
use super::memlimit::CgroupScope;
use super::net::sandbox::PodIps;
use super::net::{ClusterNet, NODE_IP, POD_CIDR};
use super::pods::Backoff;
use super::process::ProcessRegistry;
use crate::cluster::InfraError;
use crate::timeline::Timeline;

/// The kubelet's port, where the node's metrics are served.
pub const KUBELET_PORT: u16 = 10250;
/// How often the Lease is renewed (the kubelet's default), well inside the node monitor's
/// grace period.
const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;

/// What the node needs.
pub struct NodeOptions {
    /// A client with the node's identity.
    pub client: kube::Client,
    pub net: ClusterNet,
    /// Pods' files and logs go under here.
    pub dir: PathBuf,
    pub registry: ProcessRegistry,
    pub cgroups: Option<Arc<CgroupScope>>,
    pub images: ImageMap,
    pub timeline: Timeline,
    pub backoff: Backoff,
}

/// What every pod worker shares.
pub struct NodeContext {
    pub client: kube::Client,
    pub net: ClusterNet,
    pub ips: PodIps,
    pub dir: PathBuf,
    pub registry: ProcessRegistry,
    pub cgroups: Option<Arc<CgroupScope>>,
    pub images: ImageMap,
    pub timeline: Timeline,
    pub backoff: Backoff,
    workers: Mutex<BTreeMap<String, Worker>>,
    /// Every container started here and not yet stopped, keyed `namespace/pod/container`.
    containers: Mutex<BTreeMap<String, RunningContainer>>,
}

/// A container the node runs, as its series describe it.
#[derive(Clone)]
pub struct RunningContainer {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub memory_limit: Option<u64>,
    pub usage: super::pods::Usage,
    /// Its log (every run of the container), for the kubelet API's `containerLogs`.
    pub log: PathBuf,
}

struct Worker {
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

impl NodeContext {
    fn workers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunningContainer>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a started container (see [`NodeContext::running`]).
    pub fn started(&self, c: RunningContainer) {
        let key = format!("{}/{}/{}", c.namespace, c.pod, c.container);
        self.containers().insert(key, c);
    }

    /// Forgets a stopped container.
    pub fn stopped(&self, namespace: &str, pod: &str, container: &str) {
        self.containers()
            .remove(&format!("{namespace}/{pod}/{container}"));
    }

    /// The containers the node runs now.
    pub fn running(&self) -> Vec<RunningContainer> {
        self.containers().values().cloned().collect()
    }
}

/// The running node; see the module doc.
pub struct Node {
    ctx: Arc<NodeContext>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Registers the Node, keeps it Ready, and starts running the pods bound to it.
    ///
    /// # Errors
    /// The API server refused the Node or its Lease.
    pub async fn start(o: NodeOptions) -> Result<Node, InfraError> {
        std::fs::create_dir_all(&o.dir)
            .map_err(InfraError::io(format!("creating {}", o.dir.display())))?;
        register(&o.client).await?;
        renew_lease(&o.client).await?;
        let ctx = Arc::new(NodeContext {
            client: o.client,
            net: o.net,
            ips: PodIps::default(),
            dir: o.dir,
            registry: o.registry,
            cgroups: o.cgroups,
            images: o.images,
            timeline: o.timeline,
            backoff: o.backoff,
            workers: Mutex::new(BTreeMap::new()),
            containers: Mutex::new(BTreeMap::new()),
        });
        let heartbeat = {
            let client = ctx.client.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(LEASE_RENEW);
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    if let Err(e) = renew_lease(&client).await {
                        tracing::warn!("node lease: {e}");
                    }
                    // Node status (with its heartbeat times) every minute, as the kubelet's
                    // nodeStatusReportFrequency allows at most.
                    n += 1;
                    if n.is_multiple_of(6)
                        && let Err(e) = report_status(&client).await
                    {
                        tracing::warn!("node status: {e}");
                    }
                }
            })
        };
        let watch = tokio::spawn(watch_pods(ctx.clone()));
        Ok(Node {
            ctx,
            tasks: vec![heartbeat, watch],
        })
    }

    /// Every container the node runs, for the pod series.
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// Stops every pod (gracefully) and the node's loops. The Node object stays: the cluster
    /// goes with it.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        let workers: Vec<Worker> = std::mem::take(&mut *self.ctx.workers())
            .into_values()
            .collect();
        for w in &workers {
            let _ = w.stop.send(Some(Stop::Gone));
        }
        for w in workers {
            let _ = w.task.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (_, w) in std::mem::take(&mut *self.ctx.workers()) {
            w.task.abort();
        }
    }
}

/// Follows the pods bound to this node: a worker per pod, told when the pod is deleted.
async fn watch_pods(ctx: Arc<NodeContext>) {
    let api: Api<K8sPod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let mut stream = watcher(api, cfg).boxed();
    let mut listed: Option<Vec<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = Some(Vec::new()),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(l) = listed.as_mut()
                    && let Some(uid) = &p.metadata.uid
                {
                    l.push(uid.clone());
                }
                apply(&ctx, p);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods deleted while the watch was down.
                let seen = listed.take().unwrap_or_default();
                let gone: Vec<String> = ctx
                    .workers()
                    .keys()
                    .filter(|uid| !seen.contains(uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    stop(&ctx, &uid, Stop::Gone);
                }
            }
            Ok(watcher::Event::Apply(p)) => apply(&ctx, p),
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    stop(&ctx, uid, Stop::Gone);
                }
            }
            Err(e) => {
                tracing::debug!("node pod watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn apply(ctx: &Arc<NodeContext>, p: K8sPod) {
    let Some(uid) = p.metadata.uid.clone() else {
        return;
    };
    if p.metadata.deletion_timestamp.is_some() {
        if ctx.workers().contains_key(&uid) {
            stop(ctx, &uid, Stop::Deleted);
        } else {
            // Deleted before it ran here: nothing to stop, only the object to release.
            let ctx = ctx.clone();
            let (tx, rx) = watch::channel(Some(Stop::Deleted));
            let task = tokio::spawn(pod::run(ctx.clone(), p, rx));
            ctx.workers().insert(uid, Worker { stop: tx, task });
        }
        return;
    }
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let mut workers = ctx.workers();
    if workers.contains_key(&uid) {
        return;
    }
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(pod::run(ctx.clone(), p, rx));
    workers.insert(uid, Worker { stop: tx, task });
}

fn stop(ctx: &Arc<NodeContext>, uid: &str, why: Stop) {
    let w = ctx.workers().remove(uid);
    if let Some(w) = w {
        let _ = w.stop.send(Some(why));
        // The worker finishes on its own; nobody waits for it here.
        drop(w.task);
    }
}

/// Creates the Node object (or takes over one of this name) with its pod CIDR, then reports
/// its status.
async fn register(client: &kube::Client) -> Result<(), InfraError> {
    let api: Api<K8sNode> = Api::all(client.clone());
    let node: K8sNode = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "beta.kubernetes.io/os": "linux",
            },
        },
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
    }))
    .map_err(|e| InfraError::Other(format!("the Node object: {e}")))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            return Err(InfraError::Other(format!(
                "registering node {NODE_NAME}: {e}"
            )));
        }
    }
    report_status(client)
        .await
        .map_err(|e| InfraError::Other(format!("reporting the status of node {NODE_NAME}: {e}")))
}

/// The Node's status: Ready, its address, capacity and the kubelet's port.
async fn report_status(client: &kube::Client) -> Result<(), kube::Error> {
    let api: Api<K8sNode> = Api::all(client.clone());
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
        })
        .map_or_else(|| "8Gi".to_string(), |kb| format!("{kb}Ki"));
    let capacity = json!({"cpu": cpus.to_string(), "memory": memory, "pods": "110",
                          "ephemeral-storage": "100Gi"});
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let patch = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (gauntlet's local node)"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP.to_string()},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel,
            "osImage": "gauntlet local node",
            "containerRuntimeVersion": concat!("gauntlet://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.34.1",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    }});
    api.patch_status(
        NODE_NAME,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .map(|_| ())
}

/// Creates or renews the node's Lease in `kube-node-lease`, as the kubelet's heartbeat.
async fn renew_lease(client: &kube::Client) -> Result<(), InfraError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let nodes: Api<K8sNode> = Api::all(client.clone());
    let uid = nodes
        .get(NODE_NAME)
        .await
        .ok()
        .and_then(|n| n.metadata.uid)
        .unwrap_or_default();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": NODE_NAME,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE_NAME, "uid": uid}],
        },
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
    });
    let pp = PatchParams::apply("gauntlet-node").force();
    api.patch(NODE_NAME, &pp, &Patch::Apply(&lease))
        .await
        .map(|_| ())
        .map_err(|e| InfraError::Other(format!("renewing the lease of node {NODE_NAME}: {e}")))
}
