//! Pods: sample-app child processes supervised like a kubelet would.
//!
//! Each pod is one supervisor task that starts the container process, probes readiness over HTTP,
//! enforces the memory limit (cgroup or watchdog), records why the container stopped, and restarts
//! it with kubelet's back-off (`restartPolicy: Always`). State that others read (the router's
//! endpoints, replica counts, the exporter's series) lives in a shared [`PodRuntime`]; every change
//! bumps a generation counter so the router can follow without polling.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::memlimit::{self, CgroupScope, PodCgroup};
use super::net::{NetnsThread, Placement};
use super::process::{self, ProcessRegistry};
use crate::cluster::{InfraError, PodStatus, PodTemplate, RevisionHash, Termination};
use crate::timeline::{Source, Timeline};

/// kubelet's container restart back-off: 10 s doubling to 5 min, reset after 10 min of running.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// What every pod of a stack shares.
pub struct PodEnv {
    pub binary: PathBuf,
    pub namespace: String,
    pub logs: PathBuf,
    pub cgroups: Option<Arc<CgroupScope>>,
    pub registry: ProcessRegistry,
    pub timeline: Timeline,
    pub changed: watch::Sender<u64>,
    pub backoff: Backoff,
    /// `terminationGracePeriodSeconds`: SIGTERM, then SIGKILL after this long.
    pub grace: Duration,
    pub http: reqwest::Client,
    pub runtime: Runtime,
}

/// Where a pod's container runs, and how the supervisor reaches it.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// The emulated tier: the container listens on a loopback port it picks (`LISTEN=127.0.0.1:0`)
    /// and announces on its first line; probes go to that port.
    Loopback,
    /// The real tier's node: the container runs in its pod's sandbox with exactly the
    /// environment the pod spec gives it, listens where that says, and is probed at the pod IP
    /// from the node's namespace, as the kubelet probes.
    Sandbox(Box<SandboxRuntime>),
}

/// See [`Runtime::Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxRuntime {
    pub placement: Placement,
    pub ip: std::net::Ipv4Addr,
    /// The node's namespace, where probes come from.
    pub node: NetnsThread,
    /// `None`: ready as soon as the container runs, as without a readiness probe.
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
}

/// A probe with its port resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub probe: crate::cluster::Probe,
    pub port: u16,
    /// `httpGet` (with `probe.path`) or `tcpSocket`.
    pub http: bool,
}

impl PodEnv {
    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }
}

/// The observable state of one pod.
#[derive(Debug, Clone, Default)]
pub struct PodRuntime {
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub running: bool,
    pub ready_since: Option<Instant>,
    pub restarts: u32,
    pub last_termination: Option<Termination>,
    pub backing_off: bool,
    pub terminating: bool,
    /// CPU seconds used by earlier runs of the container, so the counter never goes back.
    pub cpu_before: f64,
    /// When the running container started (`state.running.startedAt`).
    pub started_at: Option<std::time::SystemTime>,
    /// Start and end of the last run that ended (`lastState.terminated`).
    pub last_run: Option<(std::time::SystemTime, std::time::SystemTime)>,
}

/// A running pod supervisor.
pub struct Pod {
    pub name: String,
    pub revision: RevisionHash,
    pub template: Arc<PodTemplate>,
    pub runtime: Arc<Mutex<PodRuntime>>,
    cgroup: Option<PodCgroup>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Pod {
    pub fn start(
        env: Arc<PodEnv>,
        name: String,
        revision: RevisionHash,
        template: Arc<PodTemplate>,
    ) -> Result<Pod, InfraError> {
        let cgroup = match (&env.cgroups, template.memory_limit) {
            (Some(scope), Some(limit)) => Some(scope.pod(&name, limit).map_err(InfraError::io(
                format!("creating the memory cgroup of {name}"),
            ))?),
            _ => None,
        };
        let runtime = Arc::new(Mutex::new(PodRuntime::default()));
        let (stop, stop_rx) = watch::channel(false);
        let sup = Supervisor {
            env: env.clone(),
            name: name.clone(),
            template: template.clone(),
            runtime: runtime.clone(),
            cgroup: cgroup.clone(),
        };
        env.timeline.emit(
            Source::Pod,
            "pod-created",
            format!("pod {name} created"),
            serde_json::json!({"pod": name, "revision": revision.0}),
        );
        let task = tokio::spawn(sup.run(stop_rx));
        Ok(Pod {
            name,
            revision,
            template,
            runtime,
            cgroup,
            stop,
            task: Some(task),
        })
    }

    pub fn status(&self) -> PodStatus {
        let rt = self.runtime();
        let now = Instant::now();
        PodStatus {
            name: self.name.clone(),
            revision: self.revision.clone(),
            port: rt.port,
            pid: rt.pid,
            running: rt.running,
            ready: rt.ready_since.is_some() && !rt.terminating,
            available: !rt.terminating
                && rt
                    .ready_since
                    .is_some_and(|s| now.duration_since(s) >= self.template.min_ready),
            restarts: rt.restarts,
            last_termination: rt.last_termination.clone(),
            backing_off: rt.backing_off,
        }
    }

    pub fn runtime(&self) -> PodRuntime {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The memory the pod uses now, as cAdvisor reports it (cgroup working set, else RSS).
    pub fn working_set(&self) -> Option<u64> {
        self.usage().working_set()
    }

    /// Cumulative CPU seconds over every run of the container.
    pub fn cpu_seconds(&self) -> f64 {
        self.usage().cpu_seconds()
    }

    /// A handle that reads the pod's state and usage, for whoever serves its series.
    pub fn usage(&self) -> Usage {
        Usage {
            runtime: self.runtime.clone(),
            cgroup: self.cgroup.clone(),
        }
    }

    /// Marks the pod terminating (it leaves the endpoints at once) and stops it gracefully.
    pub async fn stop(mut self) {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .terminating = true;
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads one pod's state and resource usage (see [`Pod::usage`]); outlives nothing it reads
/// from, only reports the container as not running once it is gone.
#[derive(Clone)]
pub struct Usage {
    runtime: Arc<Mutex<PodRuntime>>,
    cgroup: Option<PodCgroup>,
}

impl Usage {
    pub fn runtime(&self) -> PodRuntime {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// See [`Pod::working_set`].
    pub fn working_set(&self) -> Option<u64> {
        let rt = self.runtime();
        if !rt.running {
            return None;
        }
        self.cgroup
            .as_ref()
            .and_then(|c| c.working_set())
            .or_else(|| rt.pid.and_then(memlimit::rss_bytes))
    }

    /// See [`Pod::cpu_seconds`].
    pub fn cpu_seconds(&self) -> f64 {
        let rt = self.runtime();
        rt.cpu_before
            + rt.pid
                .filter(|_| rt.running)
                .and_then(memlimit::cpu_seconds)
                .unwrap_or(0.0)
    }
}

struct Supervisor {
    env: Arc<PodEnv>,
    name: String,
    template: Arc<PodTemplate>,
    runtime: Arc<Mutex<PodRuntime>>,
    cgroup: Option<PodCgroup>,
}

enum RunEnd {
    Stopped,
    Exited(Termination),
}

impl Supervisor {
    fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        f(&mut self.runtime.lock().unwrap_or_else(|p| p.into_inner()));
        self.env.bump();
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.env.backoff.initial;
        let mut first = true;
        loop {
            if is_stopped(&stop) {
                break;
            }
            if !first {
                self.update(|rt| rt.restarts += 1);
                let restarts = self.runtime.lock().map(|r| r.restarts).unwrap_or(0);
                self.env.timeline.emit(
                    Source::Pod,
                    "pod-restarted",
                    format!("pod {} restarted (restart {restarts})", self.name),
                    serde_json::json!({"pod": self.name, "restarts": restarts}),
                );
            }
            first = false;
            let started = Instant::now();
            let end = self.run_once(&mut stop).await;
            let ran = started.elapsed();
            match end {
                RunEnd::Stopped => break,
                RunEnd::Exited(term) => {
                    self.env.timeline.emit(
                        Source::Pod,
                        "pod-terminated",
                        format!("pod {} container terminated: {term}", self.name),
                        serde_json::json!({"pod": self.name, "termination": term}),
                    );
                    if ran >= self.env.backoff.reset_after {
                        backoff = self.env.backoff.initial;
                    }
                    self.update(|rt| {
                        rt.last_termination = Some(term);
                        rt.backing_off = true;
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => break,
                    }
                    self.update(|rt| rt.backing_off = false);
                    backoff = (backoff * 2).min(self.env.backoff.max);
                }
            }
        }
        self.update(|rt| {
            rt.running = false;
            rt.ready_since = None;
            rt.backing_off = false;
        });
    }

    async fn run_once(&self, stop: &mut watch::Receiver<bool>) -> RunEnd {
        let mut child = match self.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %self.name, "container failed to start: {e}");
                self.log_line(&format!("gauntlet: container failed to start: {e}"))
                    .await;
                return RunEnd::Exited(Termination::Error { exit_code: 128 });
            }
        };
        let pid = child.id().unwrap_or(0);
        self.env.registry.register(pid, &self.name);
        let oom_before = self.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
        self.update(|rt| {
            rt.pid = Some(pid);
            rt.running = true;
            rt.port = None;
            rt.started_at = Some(std::time::SystemTime::now());
        });

        let stdout = child.stdout.take();
        let listening = tokio::spawn(read_listen_line(stdout, self.log_path()));
        let mut probers: Vec<JoinHandle<()>> = Vec::new();
        let mut listening = match &self.env.runtime {
            Runtime::Loopback => Some(listening),
            Runtime::Sandbox(sb) => {
                // The kubelet probes from the container's start, whatever it prints.
                probers.extend(self.sandbox_probers(sb, pid));
                None
            }
        };
        let mut watchdog = tokio::time::interval(Duration::from_millis(100));
        let mut watchdog_killed = false;
        let use_watchdog = self.cgroup.is_none() && self.template.memory_limit.is_some();

        let end = loop {
            tokio::select! {
                status = child.wait() => {
                    let term = match status {
                        Ok(st) => self.classify(st, oom_before, watchdog_killed),
                        Err(_) => Termination::Error { exit_code: 128 },
                    };
                    break RunEnd::Exited(term);
                }
                _ = stopped(stop) => {
                    self.terminate(&mut child, pid).await;
                    break RunEnd::Stopped;
                }
                port = async { listening.as_mut().expect("guarded").await }, if listening.is_some() => {
                    listening = None;
                    if let Ok(Some(port)) = port {
                        self.update(|rt| rt.port = Some(port));
                        let check = Check::Loopback {
                            http: self.env.http.clone(),
                            url: format!("http://127.0.0.1:{port}{}", self.template.readiness.path),
                        };
                        probers.push(tokio::spawn(probe_loop(
                            self.env.clone(),
                            self.name.clone(),
                            self.template.readiness.clone(),
                            check,
                            self.runtime.clone(),
                            ProbeRole::Readiness,
                        )));
                    }
                }
                _ = watchdog.tick(), if use_watchdog => {
                    let limit = self.template.memory_limit.unwrap_or(u64::MAX);
                    if memlimit::rss_bytes(pid).is_some_and(|rss| rss > limit) {
                        watchdog_killed = true;
                        process::signal_group(pid, Signal::SIGKILL);
                    }
                }
            }
        };
        for p in probers {
            p.abort();
        }
        let cpu = memlimit::cpu_seconds(pid).unwrap_or(0.0);
        self.env.registry.unregister(pid);
        // The container is gone; its port and readiness go with it.
        let was_ready = self.runtime.lock().map(|r| r.ready_since.is_some());
        self.update(|rt| {
            rt.running = false;
            rt.ready_since = None;
            rt.port = None;
            rt.pid = None;
            rt.cpu_before += cpu;
            if let Some(started) = rt.started_at.take() {
                rt.last_run = Some((started, std::time::SystemTime::now()));
            }
        });
        if was_ready.unwrap_or(false) && matches!(end, RunEnd::Exited(_)) {
            self.env.timeline.emit(
                Source::Pod,
                "pod-unready",
                format!("pod {} not ready: container exited", self.name),
                serde_json::json!({"pod": self.name}),
            );
        }
        end
    }

    /// The kubelet's probes of a sandboxed container: readiness (or ready at once without
    /// one) and liveness, which restarts the container after `failureThreshold` failures.
    fn sandbox_probers(&self, sb: &SandboxRuntime, pid: u32) -> Vec<JoinHandle<()>> {
        let mut out = Vec::new();
        let check = |p: &ProbeSpec| {
            let addr = std::net::SocketAddr::from((sb.ip, p.port));
            if p.http {
                Check::Http {
                    node: sb.node.clone(),
                    addr,
                    path: p.probe.path.clone(),
                }
            } else {
                Check::Tcp {
                    node: sb.node.clone(),
                    addr,
                }
            }
        };
        match &sb.readiness {
            Some(p) => out.push(tokio::spawn(probe_loop(
                self.env.clone(),
                self.name.clone(),
                p.probe.clone(),
                check(p),
                self.runtime.clone(),
                ProbeRole::Readiness,
            ))),
            None => self.update(|rt| rt.ready_since = Some(Instant::now())),
        }
        if let Some(p) = &sb.liveness {
            out.push(tokio::spawn(probe_loop(
                self.env.clone(),
                self.name.clone(),
                p.probe.clone(),
                check(p),
                self.runtime.clone(),
                ProbeRole::Liveness { pid },
            )));
        }
        out
    }

    fn classify(
        &self,
        st: std::process::ExitStatus,
        oom_before: u64,
        watchdog_killed: bool,
    ) -> Termination {
        use std::os::unix::process::ExitStatusExt;
        let killed = st.signal() == Some(nix::libc::SIGKILL);
        let cgroup_oom = self
            .cgroup
            .as_ref()
            .is_some_and(|c| c.oom_kills() > oom_before);
        if killed && (cgroup_oom || watchdog_killed) {
            Termination::OOMKilled
        } else if let Some(code) = st.code() {
            if code == 0 {
                Termination::Completed
            } else {
                Termination::Error { exit_code: code }
            }
        } else {
            Termination::Error {
                exit_code: 128 + st.signal().unwrap_or(0),
            }
        }
    }

    fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = tokio::process::Command::new(&self.env.binary);
        // A container sees its own environment, not the host's.
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(self.template.env.iter().map(|(k, v)| (k, v)));
        if let Runtime::Loopback = self.env.runtime {
            cmd.env("HOSTNAME", &self.name)
                .env("POD_NAME", &self.name)
                .env("POD_NAMESPACE", &self.env.namespace)
                .env("LISTEN", "127.0.0.1:0");
        }
        cmd.args(&self.template.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        ProcessRegistry::prepare(&mut cmd);
        if let Runtime::Sandbox(sb) = &self.env.runtime {
            sb.placement.apply(&mut cmd);
        }
        if let Some(cg) = &self.cgroup {
            let fd = cg.procs_file()?;
            // SAFETY: join_in_child makes one write(2) call, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || memlimit::join_in_child(&fd));
            }
        }
        cmd.spawn()
    }

    /// SIGTERM, then SIGKILL after the grace period, as the kubelet stops a container.
    async fn terminate(&self, child: &mut tokio::process::Child, pid: u32) {
        process::signal_group(pid, Signal::SIGTERM);
        if tokio::time::timeout(self.env.grace, child.wait())
            .await
            .is_err()
        {
            process::signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.env.logs.join(format!("{}.log", self.name))
    }

    async fn log_line(&self, line: &str) {
        if let Ok(mut f) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .await
        {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
    }
}

fn is_stopped(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

/// Resolves once a stop is requested (or the pod's owner is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if is_stopped(rx) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Reads the app's `listening on http://IP:PORT` line, then copies the rest of stdout to the
/// pod's log.
async fn read_listen_line(
    stdout: Option<tokio::process::ChildStdout>,
    log: PathBuf,
) -> Option<u16> {
    let stdout = stdout?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten()?;
    let port = first
        .strip_prefix("listening on http://")
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok());
    tokio::spawn(async move {
        let Ok(mut f) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .await
        else {
            return;
        };
        let _ = f.write_all(format!("{first}\n").as_bytes()).await;
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    port
}

/// What a probe checks.
enum Check {
    /// The emulated tier: an HTTP GET on loopback.
    Loopback { http: reqwest::Client, url: String },
    /// `httpGet` at the pod IP, from the node's namespace.
    Http {
        node: NetnsThread,
        addr: std::net::SocketAddr,
        path: String,
    },
    /// `tcpSocket`: the port accepts a connection.
    Tcp {
        node: NetnsThread,
        addr: std::net::SocketAddr,
    },
}

impl Check {
    /// Success as the kubelet counts it: an answer from 200 to 399 within the timeout.
    async fn passes(&self, timeout: Duration) -> bool {
        match self {
            Check::Loopback { http, url } => matches!(
                http.get(url).timeout(timeout).send().await,
                Ok(r) if (200..400).contains(&r.status().as_u16())
            ),
            Check::Http { node, addr, path } => matches!(
                super::net::http::get(node, *addr, path, timeout).await,
                Ok((s, _)) if (200..400).contains(&s)
            ),
            Check::Tcp { node, addr } => {
                matches!(
                    tokio::time::timeout(timeout, node.connect(*addr)).await,
                    Ok(Ok(_))
                )
            }
        }
    }
}

/// What a probe's verdict changes.
#[derive(Debug, Clone, Copy)]
enum ProbeRole {
    Readiness,
    /// Restarts the container (process group `pid`) after `failureThreshold` failures.
    Liveness {
        pid: u32,
    },
}

/// Probes with `probe`'s settings until aborted.
async fn probe_loop(
    env: Arc<PodEnv>,
    name: String,
    probe: crate::cluster::Probe,
    check: Check,
    runtime: Arc<Mutex<PodRuntime>>,
    role: ProbeRole,
) {
    tokio::time::sleep(probe.initial_delay).await;
    let mut ticker = tokio::time::interval(probe.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        ticker.tick().await;
        let ok = check.passes(probe.timeout).await;
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        if let ProbeRole::Liveness { pid } = role {
            if failures >= probe.failure_threshold {
                env.timeline.emit(
                    Source::Pod,
                    "pod-liveness-failed",
                    format!("pod {name}: liveness probe failed {failures} times; restarting the container"),
                    serde_json::json!({"pod": name}),
                );
                // As the kubelet kills a container: SIGTERM, SIGKILL after the grace period.
                process::signal_group(pid, Signal::SIGTERM);
                tokio::time::sleep(env.grace).await;
                process::signal_group(pid, Signal::SIGKILL);
                return;
            }
            continue;
        }
        let ready = runtime
            .lock()
            .map(|r| r.ready_since.is_some())
            .unwrap_or(false);
        if !ready && ok && successes >= probe.success_threshold {
            runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ready_since = Some(Instant::now());
            env.bump();
            env.timeline.emit(
                Source::Pod,
                "pod-ready",
                format!("pod {name} ready"),
                serde_json::json!({"pod": name}),
            );
        } else if ready && !ok && failures >= probe.failure_threshold {
            runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ready_since = None;
            env.bump();
            env.timeline.emit(
                Source::Pod,
                "pod-unready",
                format!("pod {name} not ready: readiness probe failed {failures} times"),
                serde_json::json!({"pod": name}),
            );
        }
    }
}

/// Kubernetes' pod-name suffix alphabet (no vowels, no confusable digits).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A pod name `<workload>-<hash>-<5 chars>`, as a ReplicaSet names its pods.
pub fn pod_name(workload: &str, hash: &RevisionHash, rng: &mut impl rand::RngExt) -> String {
    let suffix: String = (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{workload}-{hash}-{suffix}")
}

/// Finds the sample-app binary: `GAUNTLET_SAMPLE_APP`, beside the running executable (and one
/// folder up, for test binaries in `target/*/deps`), or on `PATH`.
pub fn locate_sample_app() -> Result<PathBuf, InfraError> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("GAUNTLET_SAMPLE_APP") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(p.display().to_string());
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let p = dir.join("sample-app");
            if p.is_file() {
                return Ok(p);
            }
            looked.push(p.display().to_string());
        }
    }
    if let Some(p) = process::find_program("sample-app") {
        return Ok(p);
    }
    looked.push("PATH".into());
    Err(InfraError::MissingSampleApp {
        looked: looked.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pod_names_follow_replicaset_naming() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = pod_name("sample-app", &RevisionHash("6d4f9c7b8".into()), &mut rng);
        let suffix = n.strip_prefix("sample-app-6d4f9c7b8-").unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        let mut rng2 = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            n,
            pod_name("sample-app", &RevisionHash("6d4f9c7b8".into()), &mut rng2)
        );
    }
}
