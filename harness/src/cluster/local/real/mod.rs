//! The local backend's real tier (`--controller real`): a Kubernetes control plane, gauntlet's
//! node, cluster DNS, the nginx router following the real Ingress objects, Prometheus
//! discovering pods through the API, and the real Argo Rollouts or Flagger, all inside one
//! network namespace, temp folder and cgroup of its own.
//!
//! A [`RealCluster`] owns everything it started. [`RealCluster::shutdown`] stops it in order;
//! dropping it without that (an error, a panic, an interrupt) kills every process group it
//! started and removes its cgroups and folder synchronously, and the namespaces go with their
//! last process. What a SIGKILLed gauntlet leaves (a folder, empty cgroups) is found by the
//! owner file in each folder and removed by `gauntlet down --backend local` ([`leftovers`]).

pub mod controllers;
pub mod leftovers;
pub mod loadtester;
pub mod publish;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use self::controllers::PROMETHEUS_PORT;
use self::publish::NodeService;
use super::Binaries;
use super::controlplane::build::ControlPlaneBinaries;
use super::controlplane::component::Component;
use super::controlplane::{ControlPlane, ControlPlaneOptions, Identity, kube_client};
use super::memlimit::CgroupScope;
use super::net::{ClusterNet, Forward, INGRESS_METRICS_PORT, INGRESS_PORT};
use super::node::images::ImageMap;
use super::node::{KUBELET_PORT, Node, NodeOptions};
use super::pods::Backoff;
use super::process::ProcessRegistry;
use super::prometheus::{Launch as PromLaunch, Prometheus};
use super::router::{Router, RouterConfig, RouterState};
use crate::cluster::InfraError;
use crate::cluster::kube::resources::Resolver;
use crate::prom::PromClient;
use crate::spec::{ControllerKind, Manifests};
use crate::timeline::Timeline;

/// What a real cluster is started with.
pub struct RealOptions {
    /// The controllers to run (both may run side by side: each acts on its own objects only).
    pub controllers: Vec<ControllerKind>,
    pub bins: Binaries,
    pub controlplane: ControlPlaneBinaries,
    pub timeline: Timeline,
    /// Each step of the start, for the user (`up` prints them).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
    pub backoff: Backoff,
}

/// A running real-tier cluster; see the module doc.
pub struct RealCluster {
    registry: ProcessRegistry,
    cgroups: Option<Arc<CgroupScope>>,
    net: ClusterNet,
    controlplane: Option<ControlPlane>,
    node: Option<Node>,
    router: Option<Arc<tokio::sync::Mutex<Router>>>,
    prometheus: Option<Prometheus>,
    controllers: Vec<Component>,
    forwards: Vec<Forward>,
    tasks: Vec<JoinHandle<()>>,
    ingress_url: String,
    prometheus_url: String,
    timeline: Timeline,
    // Declared last: dropped after everything that writes into it.
    dir: tempfile::TempDir,
}

impl RealCluster {
    /// Starts the whole cluster; see the module doc.
    ///
    /// # Errors
    /// A part did not start (exit 3), with its log's tail.
    pub async fn start(o: RealOptions) -> Result<RealCluster, InfraError> {
        let started = tokio::time::Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("gauntlet-cluster-")
            .tempdir()
            .map_err(InfraError::io("creating the cluster's temp folder"))?;
        leftovers::claim(dir.path())?;
        let registry = ProcessRegistry::default();
        let cgroups = CgroupScope::create().map(Arc::new);
        let system = match &cgroups {
            Some(c) => Some(Arc::new(
                c.unlimited("system")
                    .and_then(|cg| cg.procs_file())
                    .map_err(InfraError::io("creating the cluster's system cgroup"))?,
            )),
            None => None,
        };
        leftovers::record_cgroup(dir.path(), cgroups.as_deref())?;
        (o.progress)("creating the cluster's network namespace");
        let net = ClusterNet::create(system)
            .await
            .map_err(|e| InfraError::StartFailed {
                what: "the cluster's network namespace".into(),
                reason: format!("{e} (the real tier needs root and iproute2)"),
            })?;
        let mut cluster = RealCluster {
            registry,
            cgroups,
            net,
            controlplane: None,
            node: None,
            router: None,
            prometheus: None,
            controllers: Vec::new(),
            forwards: Vec::new(),
            tasks: Vec::new(),
            ingress_url: String::new(),
            prometheus_url: String::new(),
            timeline: o.timeline.clone(),
            dir,
        };
        cluster.bring_up(&o).await?;
        tracing::info!("cluster ready in {:.1}s", started.elapsed().as_secs_f64());
        Ok(cluster)
    }

    async fn bring_up(&mut self, o: &RealOptions) -> Result<(), InfraError> {
        let progress = o.progress.clone();
        let cp = ControlPlane::start(ControlPlaneOptions {
            dir: &self.dir.path().join("controlplane"),
            binaries: &o.controlplane,
            net: &self.net,
            registry: &self.registry,
            progress: &*progress,
        })
        .await?;
        let client = cp.client();
        self.controlplane = Some(cp);
        let mut resolver = Resolver::new(client.clone());

        progress("starting cluster DNS");
        self.start_dns(&client).await?;
        for object in NodeService::kube_dns().objects() {
            resolver.apply(&object).await?;
        }

        progress("registering the node");
        let node_id = self.cp().identity(
            "node",
            &format!("system:node:{}", super::controlplane::NODE_NAME),
            &["system:nodes"],
        )?;
        let node = Node::start(NodeOptions {
            client: kube_client(&node_id.host).await?,
            net: self.net.clone(),
            dir: self.dir.path().join("pods"),
            registry: self.registry.clone(),
            cgroups: self.cgroups.clone(),
            images: ImageMap::new(
                o.bins.sample_app.clone(),
                Some(o.controlplane.loadtester.clone()),
            ),
            timeline: self.timeline.clone(),
            backoff: o.backoff,
        })
        .await?;
        self.node = Some(node);
        self.start_kubelet_api().await?;
        let cp_options = ControlPlaneOptions {
            dir: &self.dir.path().join("controlplane"),
            binaries: &o.controlplane,
            net: &self.net,
            registry: &self.registry,
            progress: &*progress,
        };
        self.controlplane
            .as_mut()
            .expect("started above")
            .start_proxy(&cp_options)?;

        progress("starting the ingress (nginx) and Prometheus");
        self.start_ingress(o, &client).await?;
        self.start_prometheus(o, &mut resolver).await?;

        for kind in &o.controllers {
            progress(&format!("starting {}", controller_name(*kind)));
            let started = controllers::start(
                *kind,
                &controllers::Env {
                    cp: self.cp(),
                    bins: &o.controlplane,
                    net: &self.net,
                    dir: self.dir.path(),
                    registry: &self.registry,
                },
            )
            .await?;
            self.controllers.extend(started);
        }
        Ok(())
    }

    fn cp(&self) -> &ControlPlane {
        self.controlplane.as_ref().expect("started first")
    }

    async fn start_dns(&mut self, client: &kube::Client) -> Result<(), InfraError> {
        let socket = self
            .net
            .inside
            .udp(ClusterNet::node(53))
            .await
            .map_err(InfraError::io("binding cluster DNS on the node"))?;
        let domain = super::net::CLUSTER_DOMAIN;
        let empty = super::net::dns::Records::empty(domain)
            .map_err(|e| InfraError::Other(format!("cluster DNS: {e}")))?;
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(empty));
        let client = client.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = super::net::dns::follow(client, domain.into(), tx).await {
                tracing::warn!("cluster DNS: {e}");
            }
        }));
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = super::net::dns::serve(socket, rx).await {
                tracing::warn!("cluster DNS: {e}");
            }
        }));
        Ok(())
    }

    /// The node's kubelet API (logs, the pod series) over HTTPS on the kubelet's port.
    async fn start_kubelet_api(&mut self) -> Result<(), InfraError> {
        use super::node::server;
        let cp = self.cp();
        let names = super::controlplane::pki::ServingNames {
            ips: vec![std::net::IpAddr::V4(super::net::NODE_IP)],
            dns: vec![super::controlplane::NODE_NAME.to_string()],
        };
        let cert = cp.serving_cert("kubelet", super::controlplane::NODE_NAME, &names)?;
        let tls = server::server_config(&server::Tls {
            ca: cp.ca_cert(),
            cert: &cert.cert,
            key: &cert.key,
        })?;
        let listener = self
            .net
            .inside
            .listen(ClusterNet::node(KUBELET_PORT))
            .await
            .map_err(InfraError::io("binding the kubelet API on the node"))?;
        let ctx = self
            .node
            .as_ref()
            .expect("started before")
            .context()
            .clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = server::serve(listener, tls, ctx).await {
                tracing::warn!("the node's kubelet API: {e}");
            }
        }));
        Ok(())
    }

    async fn start_ingress(
        &mut self,
        o: &RealOptions,
        client: &kube::Client,
    ) -> Result<(), InfraError> {
        let router = Router::start(
            &o.bins.nginx,
            RouterConfig {
                dir: self.dir.path().join("nginx"),
                listen: ClusterNet::node(INGRESS_PORT),
                placement: Some(self.net.placement()),
            },
            RouterState::default(),
            self.registry.clone(),
        )
        .await?;
        let access_log = router.config().access_log();
        let router = Arc::new(tokio::sync::Mutex::new(router));
        let follow = super::ingress::follow(
            client.clone(),
            router.clone(),
            self.timeline.clone(),
            super::ingress::ClassOptions::default(),
        );
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = follow.await {
                tracing::error!("the ingress stopped following the cluster: {e}");
            }
        }));
        self.router = Some(router);
        let metrics = self
            .net
            .inside
            .listen(ClusterNet::node(INGRESS_METRICS_PORT))
            .await
            .map_err(InfraError::io("binding the ingress metrics on the node"))?;
        let exporter = super::exporter::Exporter::start_on(metrics, access_log, None)?;
        self.tasks.push(tokio::spawn(async move {
            // The exporter stops when dropped; keep it as long as the task.
            let _exporter = exporter;
            std::future::pending::<()>().await;
        }));
        let fwd = Forward::start(self.net.inside.clone(), ClusterNet::node(INGRESS_PORT), 0)
            .await
            .map_err(InfraError::io("relaying the ingress to the host"))?;
        self.ingress_url = format!("http://{}", fwd.local());
        self.forwards.push(fwd);
        Ok(())
    }

    async fn start_prometheus(
        &mut self,
        o: &RealOptions,
        resolver: &mut Resolver,
    ) -> Result<(), InfraError> {
        for object in prometheus_rbac() {
            resolver.apply(&object).await?;
        }
        let who: Identity = self.cp().identity(
            "prometheus",
            "system:serviceaccount:monitoring:prometheus",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:monitoring",
            ],
        )?;
        let fwd = Forward::start(
            self.net.inside.clone(),
            ClusterNet::node(PROMETHEUS_PORT),
            0,
        )
        .await
        .map_err(InfraError::io("relaying Prometheus to the host"))?;
        let url = format!("http://{}", fwd.local());
        let dir = self.dir.path().join("prometheus");
        let config =
            super::prometheus::render_cluster_config(&who.inside, self.cp().ca_cert(), &who.cert);
        // Debian's Prometheus has no kubernetes_sd_configs: the real tier's comes from its
        // pinned module, the release the kind backend runs.
        let prom = Prometheus::launch(
            &o.controlplane.prometheus,
            PromLaunch {
                dir,
                config,
                listen: ClusterNet::node(PROMETHEUS_PORT),
                placement: Some(self.net.placement()),
                url: url.clone(),
                registry: self.registry.clone(),
            },
        )
        .await?;
        self.prometheus = Some(prom);
        self.prometheus_url = url;
        self.forwards.push(fwd);
        // The name every controller's default and most templates use.
        let service =
            NodeService::tcp("monitoring", "prometheus", PROMETHEUS_PORT, PROMETHEUS_PORT);
        for object in service.objects() {
            resolver.apply(&object).await?;
        }
        Ok(())
    }

    /// Publishes what a target names that its cluster would have: the node's Prometheus under
    /// every Prometheus address it uses ([`publish`]), and for a Flagger target upstream's
    /// loadtester under every Service its webhooks call ([`loadtester`]).
    ///
    /// # Errors
    /// The API server refused an object, or the loadtester's manifests could not be read.
    pub async fn publish_for(&self, manifests: &Manifests) -> Result<Vec<NodeService>, InfraError> {
        let kind = manifests.controller().ok();
        let ns = kind.map_or("default", |k| controllers::identity_of(k).0);
        let wanted = publish::wanted(manifests, ns, PROMETHEUS_PORT);
        let mut resolver = Resolver::new(self.client());
        let namespace = |n: &str| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
        for s in &wanted {
            resolver.apply(&namespace(&s.namespace)).await?;
            for object in s.objects() {
                resolver.apply(&object).await?;
            }
        }
        if kind == Some(ControllerKind::Flagger) {
            for (ns, name, port) in publish::webhook_services(manifests, ns) {
                resolver.apply(&namespace(&ns)).await?;
                for object in loadtester::objects(&ns, &name, port)? {
                    resolver.apply(&object).await?;
                }
            }
        }
        Ok(wanted)
    }

    /// A client with the admin's rights.
    pub fn client(&self) -> kube::Client {
        self.cp().client()
    }

    /// The admin kubeconfig (for kubectl and the plugin on the host).
    pub fn kubeconfig(&self) -> &Path {
        self.cp().kubeconfig()
    }

    pub fn ingress_url(&self) -> &str {
        &self.ingress_url
    }

    pub fn prometheus_url(&self) -> &str {
        &self.prometheus_url
    }

    pub fn prom(&self) -> &PromClient {
        self.prometheus.as_ref().expect("running").client()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> PathBuf {
        self.cp().logs()
    }

    /// The pids of every process the cluster has running now.
    pub fn pids(&self) -> Vec<u32> {
        self.registry.live().into_iter().map(|(p, _)| p).collect()
    }

    /// The cgroup folder of this cluster, if cgroups are in use.
    pub fn cgroup_path(&self) -> Option<PathBuf> {
        self.cgroups.as_ref().map(|c| c.path().to_path_buf())
    }

    /// Fails when a part of the cluster has died: an infrastructure failure.
    pub async fn check_alive(&mut self) -> Result<(), InfraError> {
        if let Some(cp) = self.controlplane.as_mut() {
            cp.check_alive()?;
        }
        for c in &mut self.controllers {
            c.check_alive()?;
        }
        if let Some(p) = self.prometheus.as_mut() {
            p.check_alive()?;
        }
        if let Some(r) = &self.router {
            r.lock().await.check_alive()?;
        }
        Ok(())
    }

    /// Stops everything in order: the controllers, the pods (gracefully), the node's loops,
    /// the router and Prometheus, the control plane; then the cgroups and the folder go.
    pub async fn shutdown(mut self) {
        for c in std::mem::take(&mut self.controllers) {
            c.stop(Duration::from_secs(5)).await;
        }
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(r) = self.router.take() {
            r.lock().await.stop().await;
        }
        if let Some(p) = self.prometheus.take() {
            p.stop().await;
        }
        if let Some(cp) = self.controlplane.take() {
            cp.stop().await;
        }
        self.forwards.clear();
        // Drop does the rest.
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.forwards.clear();
        self.registry.kill_all(Duration::from_secs(2));
        // Pod supervisors may have been between a restart's back-off and its spawn: stop them,
        // then kill once more what they started.
        drop(self.node.take());
        self.registry.kill_all(Duration::from_secs(2));
        if let Some(c) = &self.cgroups {
            c.remove();
        }
    }
}

fn controller_name(kind: ControllerKind) -> &'static str {
    match kind {
        ControllerKind::Argo => "Argo Rollouts (rollouts-controller)",
        ControllerKind::Flagger => "Flagger",
    }
}

/// The ServiceAccount, ClusterRole and binding Prometheus runs with: the same objects the kind
/// backend installs (`fixtures/kind/prometheus.yaml`), read from that file.
fn prometheus_rbac() -> Vec<serde_json::Value> {
    const KIND_PROMETHEUS: &str = include_str!("../../../../../fixtures/kind/prometheus.yaml");
    serde_saphyr::from_multiple::<serde_json::Value>(KIND_PROMETHEUS)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| {
            let kind = o.get("kind").and_then(serde_json::Value::as_str);
            let name = o
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str);
            matches!(
                kind,
                Some("Namespace" | "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding")
            ) && matches!(
                name,
                Some("monitoring" | "prometheus" | "gauntlet-prometheus")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_the_kind_backends_rbac() {
        let kinds: Vec<String> = prometheus_rbac()
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding"
            ]
        );
    }
}
