//! The `kind` backend: `gauntlet up --backend kind` makes a cluster that behaves like a real one
//! (ingress-nginx, Prometheus, the real controllers), then scenarios run on it exactly as on `kube` (context `kind-<name>`).
//!
//! [`up`]: check the tools ([`preflight`]), create or reuse the cluster of `kind-config.yaml`
//! (node image pinned in `fixtures/kind/manifests.lock`), build the sample app's image and
//! `kind load` it, then install ingress-nginx (with its metrics on), our Prometheus
//! (`fixtures/kind/prometheus.yaml`), Argo Rollouts v1.9.1 and Flagger v1.44.0, every download
//! checked against the lock ([`lock`]), and wait for each by watching ([`install`]).
//! [`down`] deletes the cluster.
//!
//! Only [`preflight`]'s failure and the pure parts run on a machine without Docker; the rest is
//! written for, and only verifiable on, a machine with Docker, kind and network.

pub mod install;
pub mod lock;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use serde::Deserialize;
use serde_json::Value;

use crate::cluster::InfraError;
use crate::cluster::kube::resources::Resolver;
use crate::spec::ControllerKind;

/// The kind cluster's config, relative to the workspace root.
pub const CONFIG: &str = "kind-config.yaml";
/// The lock of downloads, relative to the workspace root.
pub const LOCK: &str = "fixtures/kind/manifests.lock";
/// Our Prometheus, relative to the workspace root.
pub const PROMETHEUS: &str = "fixtures/kind/prometheus.yaml";
/// The sample app's Dockerfile, relative to the workspace root (the build context).
pub const DOCKERFILE: &str = "fixtures/sample-app/Dockerfile";
/// The image the fixtures' pod templates name (`imagePullPolicy: IfNotPresent`), built and
/// loaded into the node by `up`.
pub const SAMPLE_APP_IMAGE: &str = "gauntlet/sample-app:latest";

/// The tools the kind backend runs, found and working.
#[derive(Debug, Clone)]
pub struct KindTools {
    pub docker: PathBuf,
    pub kind: PathBuf,
    /// Only needed for port-forwards (kube backend); its absence is not an error here.
    pub kubectl: Option<PathBuf>,
    /// The Docker daemon's version, as `docker info` reports it.
    pub docker_server: String,
    pub kind_version: String,
}

const DOCKER_INSTALL: &str = "install Docker Engine (https://docs.docker.com/engine/install/) \
     or Docker Desktop, start it, and check that `docker info` works";
const KIND_INSTALL: &str = "install kind v0.29 or later \
     (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, e.g. \
     `go install sigs.k8s.io/kind@v0.29.0`) and put it on PATH";

/// Checks that Docker (a client **and** a reachable daemon) and kind are usable.
///
/// # Errors
/// An [`InfraError`] (exit 3) naming what is missing and how to get it: Docker first, since
/// kind needs it.
pub fn preflight() -> Result<KindTools, InfraError> {
    preflight_on(std::env::var_os("PATH").as_deref())
}

/// [`preflight`] with `path` as `PATH` (for tests).
///
/// # Errors
/// As [`preflight`].
pub fn preflight_on(path: Option<&std::ffi::OsStr>) -> Result<KindTools, InfraError> {
    let docker = find_on_path(path, "docker").ok_or_else(|| {
        InfraError::Other(format!(
            "the kind backend needs Docker, but `docker` is not on PATH: {DOCKER_INSTALL}"
        ))
    })?;
    let info = run_quiet(
        &docker,
        &["info", "--format", "{{.ServerVersion}}"],
        Duration::from_secs(20),
    );
    let docker_server = match info {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        Ok(_) => {
            return Err(InfraError::Other(format!(
                "the kind backend needs a running Docker daemon, but `docker info` reports none; {DOCKER_INSTALL}"
            )));
        }
        Err(why) => {
            return Err(InfraError::Other(format!(
                "the kind backend needs a running Docker daemon, but Docker is not reachable \
                 (`docker info`: {why}); start the daemon (e.g. `sudo systemctl start docker`) or \
                 point DOCKER_HOST at one; {DOCKER_INSTALL}"
            )));
        }
    };
    let kind = find_on_path(path, "kind").ok_or_else(|| {
        InfraError::Other(format!(
            "the kind backend needs kind, but `kind` is not on PATH: {KIND_INSTALL}"
        ))
    })?;
    let kind_version = run_quiet(&kind, &["version"], Duration::from_secs(20))
        .map_err(|why| InfraError::Other(format!("`kind version` failed: {why}; {KIND_INSTALL}")))?
        .trim()
        .to_string();
    Ok(KindTools {
        docker,
        kind,
        kubectl: find_on_path(path, "kubectl"),
        docker_server,
        kind_version,
    })
}

fn find_on_path(path: Option<&std::ffi::OsStr>, binary: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// Runs a short command and returns its stdout; the error is its stderr (or why it did not
/// run). A command that outlives `within` is killed.
fn run_quiet(program: &Path, args: &[&str], within: Duration) -> Result<String, String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            Err(if err.is_empty() {
                format!("exited with {}", out.status)
            } else {
                err.lines().last().unwrap_or(err).to_string()
            })
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(format!("no answer within {within:?}"))
        }
    }
}

/// What `kind-config.yaml` says that gauntlet needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindConfig {
    pub name: String,
    /// Host port of the node's port 80 (ingress-nginx), on 127.0.0.1.
    pub ingress_port: u16,
    /// Host port of the node's port 30090 (Prometheus' NodePort), when mapped.
    pub prometheus_port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    name: Option<String>,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNode {
    #[serde(default)]
    extra_port_mappings: Vec<RawMapping>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMapping {
    container_port: u16,
    host_port: Option<u16>,
}

impl KindConfig {
    pub fn parse(text: &str) -> Result<KindConfig, String> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mappings: Vec<&RawMapping> = raw
            .nodes
            .iter()
            .flat_map(|n| &n.extra_port_mappings)
            .collect();
        let host = |container: u16| {
            mappings
                .iter()
                .find(|m| m.container_port == container)
                .map(|m| m.host_port.unwrap_or(container))
        };
        Ok(KindConfig {
            name: raw.name.unwrap_or_else(|| "kind".into()),
            ingress_port: host(80).ok_or(
                "no extraPortMappings entry for containerPort 80: the ingress would not be reachable",
            )?,
            prometheus_port: host(30090),
        })
    }

    pub fn read(root: &Path) -> Result<KindConfig, InfraError> {
        let path = root.join(CONFIG);
        let text = std::fs::read_to_string(&path)
            .map_err(InfraError::io(format!("reading {}", path.display())))?;
        KindConfig::parse(&text).map_err(|e| InfraError::Other(format!("{}: {e}", path.display())))
    }

    /// The kubeconfig context kind writes.
    pub fn context(&self) -> String {
        format!("kind-{}", self.name)
    }
}

/// Where a scenario reaches the kind cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCluster {
    pub name: String,
    /// kubeconfig context, for [`crate::cluster::kube::connect`].
    pub context: String,
    /// `http://127.0.0.1:<port>`: ingress-nginx through the node's port 80.
    pub ingress_url: String,
    /// `http://127.0.0.1:<port>`: our Prometheus' NodePort, when mapped.
    pub prometheus_url: Option<String>,
}

impl KindCluster {
    /// The cluster `kind-config.yaml` describes (whether or not it runs).
    pub fn from_config(c: &KindConfig) -> KindCluster {
        KindCluster {
            name: c.name.clone(),
            context: c.context(),
            ingress_url: format!("http://127.0.0.1:{}", c.ingress_port),
            prometheus_url: c.prometheus_port.map(|p| format!("http://127.0.0.1:{p}")),
        }
    }
}

/// What `up` does beyond the files of the workspace.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The workspace root (holds `kind-config.yaml`, `fixtures/`).
    pub root: PathBuf,
    /// Which controllers to install (both by default).
    pub controllers: Vec<ControllerKind>,
    pub cache_dir: PathBuf,
    /// `GAUNTLET_PIN_DOWNLOADS=1` (see [`lock`]).
    pub pin_unpinned: bool,
    /// Skip `docker build` + `kind load` (an image already loaded).
    pub skip_image: bool,
    /// Deadline of each readiness wait.
    pub ready_within: Duration,
}

impl UpOptions {
    /// Defaults: both controllers, the user cache, the opt-in from the environment.
    pub fn new(root: impl Into<PathBuf>) -> UpOptions {
        UpOptions {
            root: root.into(),
            controllers: vec![ControllerKind::Argo, ControllerKind::Flagger],
            cache_dir: lock::default_cache_dir(),
            pin_unpinned: lock::pin_opt_in(),
            skip_image: false,
            ready_within: Duration::from_secs(300),
        }
    }
}

/// `gauntlet up --backend kind`. `progress` gets one line per step, for people.
///
/// # Errors
/// Exit 3 for all: a missing tool ([`preflight`]), a failed command (named, with the end of its
/// output), an unverified download ([`lock::fetch`]), or a component not ready in time.
pub async fn up(
    opts: &UpOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<KindCluster, InfraError> {
    let tools = preflight()?;
    progress(&format!(
        "docker {} and {} found",
        tools.docker_server, tools.kind_version
    ));
    let config = KindConfig::read(&opts.root)?;
    let lock_path = opts.root.join(LOCK);
    let locked = lock::Lock::read(&lock_path)?;

    ensure_cluster(
        &tools.kind,
        &config,
        &locked.node_image,
        &opts.root,
        None,
        progress,
    )
    .await?;

    if !opts.skip_image {
        progress(&format!(
            "building {SAMPLE_APP_IMAGE} from {DOCKERFILE} (minutes on a first build) ..."
        ));
        // The Dockerfile's cache mounts need BuildKit (the default since Docker 23).
        run_long_env(
            &tools.docker,
            &["build", "-f", DOCKERFILE, "-t", SAMPLE_APP_IMAGE, "."],
            &[("DOCKER_BUILDKIT", "1")],
            &opts.root,
            Duration::from_secs(1800),
        )
        .await?;
        progress(&format!("loading {SAMPLE_APP_IMAGE} into the node ..."));
        load_image(
            &tools.docker,
            &tools.kind,
            SAMPLE_APP_IMAGE,
            &config.name,
            &opts.root,
            progress,
        )
        .await?;
    }

    let client = crate::cluster::kube::connect(Some(&config.context())).await?;
    let mut resolver = Resolver::new(client);
    let fetch = lock::Fetch {
        lock_path: lock_path.clone(),
        cache_dir: opts.cache_dir.clone(),
        pin_unpinned: opts.pin_unpinned,
        timeout: Duration::from_secs(120),
    };

    // ingress-nginx first: the sample apps' Ingresses go through its admission webhook.
    let mut order = vec!["ingress-nginx"];
    if opts.controllers.contains(&ControllerKind::Argo) {
        order.push("argo-rollouts");
    }
    if opts.controllers.contains(&ControllerKind::Flagger) {
        order.push("flagger");
        order.push("flagger-loadtester");
    }
    for name in order {
        let c = locked.component(name).ok_or_else(|| {
            InfraError::Other(format!("{}: no component `{name}`", lock_path.display()))
        })?;
        progress(&format!("installing {name} {} ...", c.version));
        let mut docs = Vec::new();
        for f in &c.files {
            let bytes = lock::fetch(&fetch, f).await?;
            let text = String::from_utf8(bytes)
                .map_err(|_| InfraError::Other(format!("{} is not UTF-8 text", f.url)))?;
            docs.extend(
                install::parse_docs(&text)
                    .map_err(|e| InfraError::Other(format!("{}: {e}", f.url)))?,
            );
        }
        if c.namespace != "default" {
            docs.insert(0, namespace_doc(&c.namespace));
        }
        match name {
            "ingress-nginx" => {
                install::place(&mut docs, &c.namespace);
                install::ingress_nginx_with_metrics(&mut docs);
            }
            "flagger" => install::flagger_overlay(&mut docs, &c.namespace),
            "flagger-loadtester" => install::loadtester_overlay(&mut docs, &c.namespace),
            _ => install::place(&mut docs, &c.namespace),
        }
        install::apply_and_wait(&mut resolver, name, docs, opts.ready_within).await?;
    }
    progress("installing Prometheus (fixtures/kind/prometheus.yaml) ...");
    let prom = opts.root.join(PROMETHEUS);
    let text = std::fs::read_to_string(&prom)
        .map_err(InfraError::io(format!("reading {}", prom.display())))?;
    let docs = install::parse_docs(&text)
        .map_err(|e| InfraError::Other(format!("{}: {e}", prom.display())))?;
    install::apply_and_wait(&mut resolver, "prometheus", docs, opts.ready_within).await?;

    let cluster = KindCluster::from_config(&config);
    progress(&format!(
        "ready: context {}, ingress {}, prometheus {}",
        cluster.context,
        cluster.ingress_url,
        cluster.prometheus_url.as_deref().unwrap_or("(not mapped)")
    ));
    Ok(cluster)
}

/// Creates the cluster of `config`, or reuses the one of its name when it is healthy. A cluster
/// that exists but does not answer (an interrupted `kind create`, a stopped node container) is
/// deleted and created again: reusing it would fail later, at the first API call, with an
/// error that does not say why. Its health is read through `kubeconfig` (the default
/// kubeconfig, where kind writes its context, when `None`).
///
/// # Errors
/// A `kind` command failed.
pub async fn ensure_cluster(
    kind: &Path,
    config: &KindConfig,
    node_image: &str,
    root: &Path,
    kubeconfig: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(), InfraError> {
    let clusters = run_long(kind, &["get", "clusters"], root, Duration::from_secs(60)).await?;
    if clusters.lines().any(|l| l.trim() == config.name) {
        match cluster_health(&config.context(), kubeconfig).await {
            Ok(()) => {
                progress(&format!("reusing kind cluster `{}`", config.name));
                return Ok(());
            }
            Err(why) => {
                progress(&format!(
                    "kind cluster `{}` exists but is not healthy ({why}): deleting it to create \
                     it again ...",
                    config.name
                ));
                run_long(
                    kind,
                    &["delete", "cluster", "--name", &config.name],
                    root,
                    Duration::from_secs(300),
                )
                .await?;
            }
        }
    }
    progress(&format!(
        "creating kind cluster `{}` ({node_image}) ...",
        config.name
    ));
    run_long(
        kind,
        &[
            "create",
            "cluster",
            "--name",
            &config.name,
            "--config",
            CONFIG,
            "--image",
            node_image,
            "--wait",
            "180s",
        ],
        root,
        Duration::from_secs(600),
    )
    .await?;
    Ok(())
}

/// How long the API server of a cluster to reuse may take to answer `/readyz`.
const HEALTH_WITHIN: Duration = Duration::from_secs(15);

/// Whether the cluster of kubeconfig `context` (in `kubeconfig`, or the default kubeconfig)
/// answers: its API server's `/readyz` says `ok`. The error says what is wrong (no such
/// context, no answer, not ready).
pub async fn cluster_health(context: &str, kubeconfig: Option<&Path>) -> Result<(), String> {
    let client = match kubeconfig {
        None => crate::cluster::kube::connect(Some(context))
            .await
            .map_err(|e| e.to_string())?,
        Some(path) => {
            let kc = ::kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let opts = ::kube::config::KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            };
            let config = ::kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("kubeconfig context `{context}`: {e}"))?;
            ::kube::Client::try_from(config).map_err(|e| e.to_string())?
        }
    };
    let request = http::Request::builder()
        .uri("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(HEALTH_WITHIN, client.request_text(request)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => Err(format!("its API server's /readyz says {}", body.trim())),
        Ok(Err(e)) => Err(format!("its API server does not answer /readyz: {e}")),
        Err(_) => Err(format!(
            "its API server did not answer /readyz within {HEALTH_WITHIN:?}"
        )),
    }
}

/// Loads `image` from Docker into the nodes of kind cluster `cluster`. `kind load docker-image`
/// first; when it fails, `docker save` to an archive and `kind load image-archive`, which is
/// what works with Docker's containerd image store (the default from Docker Engine 29), whose
/// `docker save` of the image's other platforms makes `kind load docker-image` fail (kind issue
/// #3795). The archive is removed afterwards.
///
/// # Errors
/// Both ways failed, each named with the end of its output.
pub async fn load_image(
    docker: &Path,
    kind: &Path,
    image: &str,
    cluster: &str,
    cwd: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), InfraError> {
    let direct = run_long(
        kind,
        &["load", "docker-image", image, "--name", cluster],
        cwd,
        Duration::from_secs(600),
    )
    .await;
    let Err(direct) = direct else {
        return Ok(());
    };
    progress(&format!(
        "`kind load docker-image` failed ({}); loading {image} through `docker save` and \
         `kind load image-archive` instead (Docker's containerd image store, kind issue #3795) ...",
        last_line(&direct.to_string())
    ));
    let dir = tempfile::Builder::new()
        .prefix("gauntlet-image-")
        .tempdir()
        .map_err(InfraError::io("creating a folder for the image archive"))?;
    let archive = dir.path().join("image.tar");
    let archive_arg = archive.to_string_lossy().into_owned();
    let fallback = async {
        run_long(
            docker,
            &["save", "-o", &archive_arg, image],
            cwd,
            Duration::from_secs(600),
        )
        .await?;
        run_long(
            kind,
            &["load", "image-archive", &archive_arg, "--name", cluster],
            cwd,
            Duration::from_secs(600),
        )
        .await
    }
    .await;
    // The archive (the image's size) goes whatever happened.
    let _ = std::fs::remove_file(&archive);
    drop(dir);
    match fallback {
        Ok(_) => Ok(()),
        Err(e) => Err(InfraError::Other(format!(
            "loading {image} into kind cluster `{cluster}` failed both ways: {direct}; then {e}"
        ))),
    }
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("").trim()
}

fn namespace_doc(name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// `gauntlet down --backend kind`: deletes the cluster `up` created (the download cache and the
/// image in Docker stay).
///
/// # Errors
/// A missing tool, or `kind delete cluster` failed.
pub async fn down(root: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), InfraError> {
    let tools = preflight()?;
    let config = KindConfig::read(root)?;
    let clusters = run_long(
        &tools.kind,
        &["get", "clusters"],
        root,
        Duration::from_secs(60),
    )
    .await?;
    if !clusters.lines().any(|l| l.trim() == config.name) {
        progress(&format!(
            "no kind cluster `{}`: nothing to delete",
            config.name
        ));
        return Ok(());
    }
    progress(&format!("deleting kind cluster `{}` ...", config.name));
    run_long(
        &tools.kind,
        &["delete", "cluster", "--name", &config.name],
        root,
        Duration::from_secs(300),
    )
    .await?;
    Ok(())
}

/// Why the kind backend cannot run here, or `None` when it can (for "skipped: <reason>" in
/// `GAUNTLET_BACKEND=kind cargo test` and `make e2e`).
pub fn unavailable() -> Option<String> {
    preflight().err().map(|e| e.to_string())
}

/// Set by [`stop_commands`]: no command starts after it.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The process groups of the commands running now (their leader's pid).
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn running() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// One running command's process group. Dropped before the command ended (its caller gave up:
/// a deadline, an interrupt), it kills the whole group, so nothing `kind` or `docker` started
/// outlives the step.
struct Group {
    pgid: Option<i32>,
}

impl Group {
    fn register(pid: Option<u32>) -> Group {
        let pgid = pid.and_then(|p| i32::try_from(p).ok());
        if let Some(g) = pgid {
            running().insert(g);
        }
        Group { pgid }
    }

    /// The command ended on its own: nothing to kill.
    fn ended(&mut self) {
        if let Some(g) = self.pgid.take() {
            running().remove(&g);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(g) = self.pgid.take() {
            running().remove(&g);
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g), Signal::SIGKILL);
        }
    }
}

/// For an interrupt of `up` or `down`: asks every command running now to stop (SIGTERM to its
/// process group, so `kind` can clean up after itself) and starts no new one. Returns how many
/// were running; the step that ran each ends with an error once it exits.
pub fn stop_commands() -> usize {
    STOPPING.store(true, Ordering::SeqCst);
    let groups: Vec<i32> = running().iter().copied().collect();
    for g in &groups {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(*g), Signal::SIGTERM);
    }
    groups.len()
}

/// Runs a command to completion (at most `within`), in `cwd`; its stdout, or an error naming
/// the command with the end of its output.
async fn run_long(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    within: Duration,
) -> Result<String, InfraError> {
    run_long_env(program, args, &[], cwd, within).await
}

/// [`run_long`] with extra environment variables.
async fn run_long_env(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    cwd: &Path,
    within: Duration,
) -> Result<String, InfraError> {
    let shown = format!(
        "{} {}",
        program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into()
        ),
        args.join(" ")
    );
    if STOPPING.load(Ordering::SeqCst) {
        return Err(InfraError::Other(format!(
            "interrupted: `{shown}` not started"
        )));
    }
    // A group of its own, so that stopping it reaches what it started (kind's `docker`
    // commands) and nothing else.
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| InfraError::StartFailed {
            what: format!("`{shown}`"),
            reason: e.to_string(),
        })?;
    let mut group = Group::register(child.id());
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .map_err(|_| InfraError::NotReady {
            what: format!("`{shown}`"),
            within,
            detail: "killed".into(),
        })?
        .map_err(InfraError::io(format!("`{shown}`")))?;
    group.ended();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(InfraError::StartFailed {
        what: format!("`{shown}`"),
        reason: format!("{} : {}", out.status, tail.join("\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_kind_config_maps_the_ingress_and_prometheus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let c = KindConfig::read(&root).unwrap();
        assert_eq!(c.name, "gauntlet");
        assert_eq!(c.context(), "kind-gauntlet");
        let k = KindCluster::from_config(&c);
        assert_eq!(k.ingress_url, "http://127.0.0.1:8080");
        assert_eq!(k.prometheus_url.as_deref(), Some("http://127.0.0.1:19090"));
    }

    #[test]
    fn a_config_without_port_80_is_refused() {
        let e = KindConfig::parse("kind: Cluster\nnodes: [{role: control-plane}]\n").unwrap_err();
        assert!(e.contains("containerPort 80"), "{e}");
    }
}
