//! The local backend's stack: everything a kind cluster would run except the controller, as real
//! processes on loopback — sample-app pods, an nginx router, a Prometheus and a metrics exporter.
//!
//! A [`LocalStack`] owns its temp folder, ports, processes and cgroups. [`LocalStack::shutdown`]
//! stops them in order; dropping the stack without it (an error, a panic, an interrupt) kills
//! every process group it started and removes its cgroups and folder synchronously.

pub mod controlplane;
pub mod exporter;
pub mod ingress;
pub mod memlimit;
pub mod net;
pub mod node;
pub mod pods;
pub mod process;
pub mod prometheus;
pub mod real;
pub mod router;
pub mod template;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use self::exporter::{Exporter, PodSample, PodSource};
use self::memlimit::{CgroupScope, Mechanism};
use self::pods::{Backoff, Pod, PodEnv};
use self::process::ProcessRegistry;
use self::prometheus::{Prometheus, Target};
use self::router::{
    CanaryBackend, PathType, Route, RouteNames, Router, RouterConfig, RouterState, announce,
};
use super::{
    CanaryRoute, InfraError, Platform, PodStatus, PodTemplate, ReplicaCounts, RevisionHash,
    Services,
};
use crate::prom::PromClient;
use crate::timeline::{Source, Timeline};

/// What a stack is set up with; everything has a default.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The namespace the manifests name (or `default`); a label on every series.
    pub namespace: String,
    /// The Ingress the router plays, and the Services behind it.
    pub ingress: String,
    pub stable_service: String,
    pub canary_service: String,
    pub service_port: u16,
    /// Seeds pod-name suffixes, so a `--seed` run names pods the same way.
    pub seed: u64,
    pub backoff: Backoff,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            namespace: "default".into(),
            ingress: "sample-app".into(),
            stable_service: "sample-app-stable".into(),
            canary_service: "sample-app-canary".into(),
            service_port: 80,
            seed: 0,
            backoff: Backoff::default(),
            grace: Duration::from_secs(30),
        }
    }
}

struct RevisionEntry {
    template: Arc<PodTemplate>,
    desired: u32,
    pods: Vec<Pod>,
}

#[derive(Default)]
struct Routing {
    services: Option<Services>,
    route: CanaryRoute,
}

/// State shared between the stack's owner and its background tasks.
struct Shared {
    revisions: Mutex<BTreeMap<RevisionHash, RevisionEntry>>,
    routing: Mutex<Routing>,
    /// The Ingress the router plays and its Services, as the metrics name them.
    names: RouteNames,
    /// ingress-nginx's upstream name of the canary Service, `<namespace>-<service>-<port>`.
    canary_upstream: String,
}

impl Shared {
    fn revisions(&self) -> std::sync::MutexGuard<'_, BTreeMap<RevisionHash, RevisionEntry>> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn routing(&self) -> std::sync::MutexGuard<'_, Routing> {
        self.routing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the router should serve now: one Ingress without a host for `/`, each Service's
    /// ready, non-terminating pods behind it.
    fn router_state(&self) -> RouterState {
        let routing = self.routing();
        let revisions = self.revisions();
        let endpoints = |hash: Option<&RevisionHash>| -> Vec<SocketAddr> {
            let Some(entry) = hash.and_then(|h| revisions.get(h)) else {
                return vec![];
            };
            let mut ports: Vec<u16> = entry
                .pods
                .iter()
                .map(|p| p.status())
                .filter(|s| s.ready)
                .filter_map(|s| s.port)
                .collect();
            ports.sort_unstable();
            ports
                .into_iter()
                .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                .collect()
        };
        let stable = routing.services.as_ref().map(|s| &s.stable);
        let canary = routing.services.as_ref().and_then(|s| s.canary.as_ref());
        RouterState {
            routes: vec![Route {
                host: None,
                path: "/".into(),
                path_type: PathType::Prefix,
                endpoints: endpoints(stable),
                canary: Some(CanaryBackend {
                    endpoints: endpoints(canary),
                    route: routing.route.clone(),
                    upstream: self.canary_upstream.clone(),
                }),
                names: self.names.clone(),
            }],
        }
    }

    /// Every running container, as Kubernetes service discovery would list it.
    fn targets(&self, namespace: &str) -> Vec<Target> {
        let revisions = self.revisions();
        let mut out = Vec::new();
        for entry in revisions.values() {
            for pod in &entry.pods {
                let st = pod.status();
                let Some(port) = st.port else { continue };
                let mut labels: BTreeMap<String, String> = entry
                    .template
                    .labels
                    .iter()
                    .map(|(k, v)| (prometheus::label_name(k), v.clone()))
                    .collect();
                labels.insert("namespace".into(), namespace.into());
                labels.insert("pod".into(), st.name.clone());
                labels.insert("container".into(), entry.template.container.clone());
                out.push(Target {
                    targets: vec![format!("127.0.0.1:{port}")],
                    labels,
                });
            }
        }
        out
    }

    fn samples(&self) -> Vec<PodSample> {
        let revisions = self.revisions();
        revisions
            .values()
            .flat_map(|e| {
                e.pods.iter().map(|p| {
                    let st = p.status();
                    PodSample {
                        namespace: self.names.namespace.clone(),
                        pod: st.name,
                        container: e.template.container.clone(),
                        ready: st.ready,
                        restarts: st.restarts,
                        last_termination: st.last_termination,
                        working_set: p.working_set(),
                        cpu_seconds: p.cpu_seconds(),
                        memory_limit: e.template.memory_limit,
                    }
                })
            })
            .collect()
    }
}

/// The local stack; see the module doc.
pub struct LocalStack {
    opts: StackOptions,
    timeline: Timeline,
    registry: ProcessRegistry,
    cgroups: Option<Arc<CgroupScope>>,
    env: Arc<PodEnv>,
    shared: Arc<Shared>,
    router: Arc<tokio::sync::Mutex<Router>>,
    router_addr: SocketAddr,
    prometheus: Option<Prometheus>,
    exporter: Option<Exporter>,
    changed: watch::Receiver<u64>,
    sync: JoinHandle<()>,
    stopping: JoinSet<()>,
    rng: rand::rngs::StdRng,
    // Declared last: dropped after everything that writes into it.
    dir: tempfile::TempDir,
}

/// Where the stack's binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub nginx: PathBuf,
    pub prometheus: PathBuf,
    pub sample_app: PathBuf,
}

impl Binaries {
    /// Finds nginx, Prometheus and the sample app, or names the package that provides each.
    pub fn locate() -> Result<Binaries, InfraError> {
        // An explicit `GAUNTLET_<BIN>` must exist: falling back to PATH would hide a typo.
        let find = |bin: &str, env: &str, what: &'static str, package: &'static str| {
            let (found, named) = match std::env::var_os(env) {
                Some(p) => {
                    let p = PathBuf::from(p);
                    (
                        p.is_file().then(|| p.clone()),
                        format!("{} (from {env})", p.display()),
                    )
                }
                None => (process::find_program(bin), bin.to_string()),
            };
            found.ok_or(InfraError::MissingBinary {
                what,
                binary: named,
                package,
            })
        };
        Ok(Binaries {
            nginx: find("nginx", "GAUNTLET_NGINX", "nginx", "nginx")?,
            prometheus: find(
                "prometheus",
                "GAUNTLET_PROMETHEUS",
                "Prometheus",
                "prometheus",
            )?,
            sample_app: pods::locate_sample_app()?,
        })
    }
}

/// Picks a free loopback port. Another process may take it before we bind it again, so callers
/// retry a start that fails on a taken port.
fn free_port() -> Result<u16, InfraError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(InfraError::io("finding a port"))?;
    Ok(l.local_addr()
        .map_err(InfraError::io("finding a port"))?
        .port())
}

impl LocalStack {
    /// Starts nginx, Prometheus and the exporter, with no pods yet.
    pub async fn start(
        bins: &Binaries,
        opts: StackOptions,
        timeline: Timeline,
    ) -> Result<LocalStack, InfraError> {
        let started = tokio::time::Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("gauntlet-")
            .tempdir()
            .map_err(InfraError::io("creating the scenario's temp folder"))?;
        let registry = ProcessRegistry::default();
        let cgroups = CgroupScope::create().map(Arc::new);
        let (changed_tx, changed) = watch::channel(0u64);
        std::fs::create_dir_all(dir.path().join("pods"))
            .map_err(InfraError::io("creating the pod log folder"))?;
        let env = Arc::new(PodEnv {
            binary: bins.sample_app.clone(),
            namespace: opts.namespace.clone(),
            logs: dir.path().join("pods"),
            cgroups: cgroups.clone(),
            registry: registry.clone(),
            timeline: timeline.clone(),
            changed: changed_tx,
            backoff: opts.backoff,
            grace: opts.grace,
            http: reqwest::Client::new(),
            runtime: pods::Runtime::Loopback,
        });
        let shared = Arc::new(Shared {
            revisions: Mutex::new(BTreeMap::new()),
            routing: Mutex::new(Routing::default()),
            names: RouteNames {
                namespace: opts.namespace.clone(),
                ingress: opts.ingress.clone(),
                service: opts.stable_service.clone(),
            },
            canary_upstream: format!(
                "{}-{}-{}",
                opts.namespace, opts.canary_service, opts.service_port
            ),
        });

        // From here on, a failure drops what was started: the guard below cleans up.
        let mut guard = StartGuard {
            registry: registry.clone(),
            cgroups: cgroups.clone(),
        };
        let mut router = None;
        let mut last_err = None;
        for _ in 0..3 {
            let cfg = RouterConfig {
                dir: dir.path().join("nginx"),
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                placement: None,
            };
            match Router::start(&bins.nginx, cfg, shared.router_state(), registry.clone()).await {
                Ok(r) => {
                    router = Some(r);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let router = match router {
            Some(r) => r,
            None => return Err(last_err.take().expect("three attempts")),
        };

        let source: PodSource = {
            let shared = shared.clone();
            Arc::new(move || shared.samples())
        };
        let exporter = Exporter::start(router.config().access_log(), Some(source)).await?;

        let mut prometheus = None;
        for _ in 0..3 {
            match Prometheus::start(
                &bins.prometheus,
                dir.path().join("prometheus"),
                free_port()?,
                &exporter.addr().to_string(),
                registry.clone(),
            )
            .await
            {
                Ok(p) => {
                    prometheus = Some(p);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let prometheus = match prometheus {
            Some(p) => p,
            None => return Err(last_err.take().expect("three attempts")),
        };

        let router_addr = router.listen();
        let router = Arc::new(tokio::sync::Mutex::new(router));
        let sync = tokio::spawn(sync_loop(
            changed.clone(),
            shared.clone(),
            router.clone(),
            prometheus.client().clone(),
            dir.path().join("prometheus/targets/pods.json"),
            opts.namespace.clone(),
            timeline.clone(),
        ));
        guard.disarm();
        let stack = LocalStack {
            rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
            opts,
            timeline: timeline.clone(),
            registry,
            cgroups,
            env,
            shared,
            router,
            router_addr,
            prometheus: Some(prometheus),
            exporter: Some(exporter),
            changed,
            sync,
            stopping: JoinSet::new(),
            dir,
        };
        timeline.emit(
            Source::Harness,
            "stack-started",
            format!(
                "local stack up in {:.2}s: ingress {}, prometheus {}, memory limits by {}",
                started.elapsed().as_secs_f64(),
                stack.ingress_url(),
                stack.prometheus_url(),
                stack.memory_mechanism()
            ),
            serde_json::json!({
                "ingress": stack.ingress_url(),
                "prometheus": stack.prometheus_url(),
                "memory_limits": stack.memory_mechanism(),
            }),
        );
        Ok(stack)
    }

    pub fn ingress_url(&self) -> String {
        format!("http://{}", self.router_addr)
    }

    pub fn prometheus_url(&self) -> String {
        self.prom().base().to_string()
    }

    pub fn prom(&self) -> &PromClient {
        self.prometheus.as_ref().expect("running").client()
    }

    pub fn options(&self) -> &StackOptions {
        &self.opts
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn memory_mechanism(&self) -> Mechanism {
        self.cgroups
            .as_ref()
            .map(|c| c.mechanism())
            .unwrap_or(Mechanism::RssWatchdog)
    }

    /// The cgroup folder of this stack, if cgroups are in use.
    pub fn cgroup_path(&self) -> Option<PathBuf> {
        self.cgroups.as_ref().map(|c| c.path().to_path_buf())
    }

    /// The pids of every process the stack has running now.
    pub fn pids(&self) -> Vec<u32> {
        self.registry.live().into_iter().map(|(p, _)| p).collect()
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("nginx/logs/access.log")
    }

    pub fn pod_logs(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    /// How many times nginx has been reloaded.
    pub async fn reloads(&self) -> u64 {
        self.router.lock().await.reloads()
    }

    /// Fails when nginx or Prometheus has died: an infrastructure failure, not the release's.
    pub async fn check_alive(&mut self) -> Result<(), InfraError> {
        if let Some(p) = self.prometheus.as_mut() {
            p.check_alive()?;
        }
        self.router.lock().await.check_alive()
    }

    /// Waits until `hash` has `n` available pods, or fails naming what was missing.
    pub async fn wait_available(
        &self,
        hash: &RevisionHash,
        n: u32,
        within: Duration,
    ) -> Result<(), InfraError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut changed = self.changed.clone();
        loop {
            let counts = self.replica_counts(hash);
            if counts.available >= n {
                // The router follows pod changes in the background; make sure it has.
                self.sync_router().await?;
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let pods: Vec<String> = self
                    .pods()
                    .into_iter()
                    .filter(|p| &p.revision == hash)
                    .map(|p| {
                        format!(
                            "{} (running {}, ready {}, restarts {}, last {:?})",
                            p.name, p.running, p.ready, p.restarts, p.last_termination
                        )
                    })
                    .collect();
                return Err(InfraError::NotReady {
                    what: format!("revision {hash}"),
                    within,
                    detail: format!(
                        "{} of {n} pods available; pods: {}; logs in {}",
                        counts.available,
                        pods.join(", "),
                        self.pod_logs().display()
                    ),
                });
            }
            // Availability also changes with time (minReadySeconds), so wake up now and then.
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(100)),
                changed.changed(),
            )
            .await;
        }
    }

    /// Brings the router and Prometheus' targets in line with the pods now.
    async fn sync_router(&self) -> Result<(), InfraError> {
        let state = self.shared.router_state();
        let mut router = self.router.lock().await;
        let before = router.state().clone();
        router.apply(state.clone()).await?;
        drop(router);
        announce(&self.timeline, &before, &state);
        Ok(())
    }

    /// Stops everything in order: pods (gracefully), nginx, Prometheus; then removes the
    /// cgroups and the temp folder.
    pub async fn shutdown(mut self) {
        self.sync.abort();
        let pods: Vec<Pod> = {
            let mut revisions = self.shared.revisions();
            revisions
                .values_mut()
                .flat_map(|e| e.pods.drain(..))
                .collect()
        };
        for pod in pods {
            self.stopping.spawn(pod.stop());
        }
        let _ = tokio::time::timeout(self.opts.grace + Duration::from_secs(5), async {
            while self.stopping.join_next().await.is_some() {}
        })
        .await;
        if let Some(p) = self.prometheus.take() {
            p.stop().await;
        }
        let _ = (&mut self.sync).await;
        self.router.lock().await.stop().await;
        self.exporter.take();
        // Drop does the rest: anything still registered is killed, cgroups and folder removed.
    }
}

/// Follows pod changes: the router's endpoints and Prometheus' targets, as the endpoints
/// controller and service discovery would.
async fn sync_loop(
    mut changed: watch::Receiver<u64>,
    shared: Arc<Shared>,
    router: Arc<tokio::sync::Mutex<Router>>,
    _prom: PromClient,
    targets_file: PathBuf,
    namespace: String,
    timeline: Timeline,
) {
    let mut last_targets = None;
    loop {
        let state = shared.router_state();
        {
            let mut r = router.lock().await;
            let before = r.state().clone();
            match r.apply(state.clone()).await {
                Ok(()) => announce(&timeline, &before, &state),
                Err(e) => {
                    timeline.emit(
                        Source::Router,
                        "router-failed",
                        format!("router failed: {e}"),
                        serde_json::Value::Null,
                    );
                    tracing::error!("router failed: {e}");
                    return;
                }
            }
        }
        let targets = shared.targets(&namespace);
        if last_targets.as_ref() != Some(&targets) {
            let json = serde_json::to_string_pretty(&targets).expect("targets serialize");
            let tmp = targets_file.with_extension("tmp");
            if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, &targets_file).is_ok() {
                last_targets = Some(targets);
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Cleans up a half-started stack.
struct StartGuard {
    registry: ProcessRegistry,
    cgroups: Option<Arc<CgroupScope>>,
}

impl StartGuard {
    fn disarm(&mut self) {
        self.cgroups = None;
        self.registry = ProcessRegistry::default();
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        self.registry.kill_all(Duration::from_secs(2));
        if let Some(c) = &self.cgroups {
            c.remove();
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.sync.abort();
        self.stopping.abort_all();
        self.registry.kill_all(Duration::from_secs(2));
        // Supervisors are aborted with their pods; none can start a process after the kill
        // because each Pod's Drop signals stop and aborts its task first.
        for entry in self.shared.revisions().values_mut() {
            entry.pods.clear();
        }
        self.registry.kill_all(Duration::from_secs(2));
        if let Some(c) = &self.cgroups {
            c.remove();
        }
    }
}

impl Platform for LocalStack {
    async fn create_revision(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        let mut revisions = self.shared.revisions();
        revisions.entry(hash.clone()).or_insert(RevisionEntry {
            template: Arc::new(template),
            desired: 0,
            pods: Vec::new(),
        });
        drop(revisions);
        self.timeline.emit(
            Source::Pod,
            "revision-created",
            format!("revision {hash} created"),
            serde_json::json!({"revision": hash.0}),
        );
        Ok(())
    }

    async fn scale(&mut self, hash: &RevisionHash, replicas: u32) -> Result<(), InfraError> {
        let mut victims = Vec::new();
        {
            let mut revisions = self.shared.revisions();
            let entry = revisions
                .get_mut(hash)
                .ok_or_else(|| InfraError::UnknownRevision(hash.clone()))?;
            if entry.desired == replicas {
                return Ok(());
            }
            entry.desired = replicas;
            while (entry.pods.len() as u32) < replicas {
                let name = pods::pod_name(&entry.template.workload, hash, &mut self.rng);
                let pod = Pod::start(self.env.clone(), name, hash.clone(), entry.template.clone())?;
                entry.pods.push(pod);
            }
            // A ReplicaSet removes unready pods first, then the newest.
            entry.pods.sort_by_key(|p| !p.status().ready);
            while entry.pods.len() as u32 > replicas {
                let pod = entry.pods.pop().expect("more pods than replicas");
                pod.runtime
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .terminating = true;
                victims.push(pod);
            }
        }
        self.timeline.emit(
            Source::Pod,
            "scaled",
            format!("revision {hash} scaled to {replicas}"),
            serde_json::json!({"revision": hash.0, "replicas": replicas}),
        );
        // Terminating pods leave the endpoints before they get SIGTERM, as in Kubernetes.
        if !victims.is_empty() {
            self.sync_router().await?;
        }
        for pod in victims {
            self.stopping.spawn(pod.stop());
        }
        Ok(())
    }

    async fn set_services(&mut self, services: Services) -> Result<(), InfraError> {
        let changed = {
            let mut routing = self.shared.routing();
            let changed = routing.services.as_ref() != Some(&services);
            routing.services = Some(services.clone());
            changed
        };
        if changed {
            self.timeline.emit(
                Source::Router,
                "services",
                format!(
                    "stable service -> {}, canary service -> {}",
                    services.stable,
                    services
                        .canary
                        .as_ref()
                        .map(|c| c.0.as_str())
                        .unwrap_or("-")
                ),
                serde_json::json!({"stable": services.stable.0, "canary": services.canary.map(|c| c.0)}),
            );
        }
        self.sync_router().await
    }

    async fn set_canary_route(&mut self, route: CanaryRoute) -> Result<(), InfraError> {
        self.shared.routing().route = route;
        self.sync_router().await
    }

    fn replica_counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        let revisions = self.shared.revisions();
        let Some(entry) = revisions.get(hash) else {
            return ReplicaCounts::default();
        };
        let statuses: Vec<PodStatus> = entry.pods.iter().map(|p| p.status()).collect();
        ReplicaCounts {
            desired: entry.desired,
            current: statuses.len() as u32,
            ready: statuses.iter().filter(|s| s.ready).count() as u32,
            available: statuses.iter().filter(|s| s.available).count() as u32,
        }
    }

    fn pods(&self) -> Vec<PodStatus> {
        self.shared
            .revisions()
            .values()
            .flat_map(|e| e.pods.iter().map(|p| p.status()))
            .collect()
    }
}
