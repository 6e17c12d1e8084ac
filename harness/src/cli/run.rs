//! `gauntlet run`, `validate` and `list`: find scenario files, check them all before anything
//! starts (every problem reported, exit 2), then run them, `--parallel N` at a time, each on its
//! own stack.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Semaphore, watch};

use crate::exit::Exit;
use crate::report::human::{Progress, summary_table};
use crate::report::json::write_json;
use crate::report::junit::write_junit;
use crate::report::model::RunReport;
use crate::runner::cluster::{ClusterTarget, run_on_cluster};
use crate::runner::{RunOptions, Status, run_scenario};
use crate::scenario::budget::{Plan, plan};
use crate::scenario::discover::scenario_files;
use crate::scenario::races::races;
use crate::scenario::{Scenario, ScenarioError, file};

/// Where scenarios run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Local,
    Kind,
    Kube,
}

/// Which controller decides on the local backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Controller {
    /// gauntlet's emulation (fast, time-scalable).
    #[default]
    Emulated,
    /// The real Argo Rollouts or Flagger on a local control plane, through the kube code path.
    Real,
}

/// The options of `gauntlet run`, independent of clap.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub backend: Backend,
    /// Local backend only.
    pub controller: Controller,
    /// kubeconfig context (kube backend).
    pub context: Option<String>,
    pub paths: Vec<PathBuf>,
    pub filter: Option<String>,
    pub tag: Option<String>,
    pub time_scale: Option<f64>,
    pub parallel: usize,
    pub seed: Option<u64>,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub artifacts: Option<PathBuf>,
}

/// Loads and checks every scenario under `paths`, at `time_scale` when given (its times
/// rescaled, see [`Scenario::at_time_scale`]); the selection follows `filter` and `tag`
/// (nightly scenarios only when asked for by `--tag nightly`, as in `cargo test`).
pub fn load_all(
    paths: &[PathBuf],
    seed: u64,
    time_scale: Option<f64>,
) -> Result<Vec<(Scenario, Plan)>, Vec<ScenarioError>> {
    let files = scenario_files(paths)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let at_scale = |s: Scenario| match time_scale {
            Some(f) => s.at_time_scale(f),
            None => s,
        };
        match file::load(&f, seed)
            .map(at_scale)
            .and_then(|s| plan(&s).map(|p| (s, p)))
        {
            Ok(sp) => out.push(sp),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for (s, _) in &out {
        if let Some(first) = seen.insert(s.name.clone(), s.file.clone()) {
            errors.push(ScenarioError::new(
                &s.file,
                "name",
                format!(
                    "{:?} is also the name of {}; names must be unique",
                    s.name,
                    first.display()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

pub(crate) fn selected(s: &Scenario, filter: &Option<String>, tag: &Option<String>) -> bool {
    let by_name = filter.as_ref().is_none_or(|f| s.name.contains(f.as_str()));
    let by_tag = match tag {
        Some(t) => s.tags.iter().any(|x| x == t),
        None => !s.is_nightly(),
    };
    by_name && by_tag
}

pub(crate) fn print_errors(errors: &[ScenarioError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} problem(s); nothing was run. The scenario format is in the README.",
        errors.len()
    );
}

/// The warning that validation against the CRDs was partial (no Go), once per run.
fn warn_partial_validation() {
    if let Some(notice) = crate::spec::crd::partial_notice() {
        eprintln!("warning: {notice}");
    }
}

/// The time-scale races of one scenario ([`races`]): a warning line, then one line each.
fn warn_races(s: &Scenario, p: &Plan) {
    let found = races(s, p);
    if found.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} ({}) at time scale {}: {} scaled duration(s) of the policy race parts of \
         the run that are not scaled, and the verdict may differ from the real controller's:",
        s.name,
        s.file.display(),
        p.scale.factor(),
        found.len()
    );
    for r in found {
        eprintln!("  - {r}");
    }
}

/// The scenarios under `paths` that `filter` and `tag` select, loaded and checked at
/// `time_scale`; what is wrong is printed, and the exit to end with returned.
pub(crate) fn choose(
    paths: &[PathBuf],
    seed: u64,
    time_scale: Option<f64>,
    filter: &Option<String>,
    tag: &Option<String>,
) -> Result<Vec<(Scenario, Plan)>, Exit> {
    let loaded = load_all(&default_paths(paths), seed, time_scale);
    warn_partial_validation();
    let all = loaded.map_err(|e| {
        print_errors(&e);
        Exit::BadInput
    })?;
    let chosen: Vec<(Scenario, Plan)> = all
        .into_iter()
        .filter(|(s, _)| selected(s, filter, tag))
        .collect();
    if chosen.is_empty() {
        eprintln!("error: no scenario matches (nightly ones run only with --tag nightly)");
        return Err(Exit::BadInput);
    }
    Ok(chosen)
}

/// `seed`, or the time: a run without `--seed` still prints the one it used.
pub(crate) fn seed_or_now(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

pub(crate) fn default_paths(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("suites")]
    } else {
        paths.to_vec()
    }
}

/// `gauntlet validate`.
pub fn validate(paths: &[PathBuf], time_scale: Option<f64>) -> Exit {
    let loaded = load_all(&default_paths(paths), 0, time_scale);
    warn_partial_validation();
    match loaded {
        Err(e) => {
            print_errors(&e);
            Exit::BadInput
        }
        Ok(all) => {
            for (s, p) in &all {
                let fmt = |d: Option<std::time::Duration>| {
                    d.map_or("never".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
                };
                println!(
                    "ok  {}  ({}): expects {} within {}; fastest possible: promoted {}, rolled-back {}, paused {}",
                    s.name,
                    s.file.display(),
                    s.outcome,
                    s.budget_text(),
                    fmt(p.fastest.promoted),
                    fmt(p.fastest.rolled_back),
                    fmt(p.fastest.paused)
                );
                warn_races(s, p);
            }
            Exit::Passed
        }
    }
}

/// `gauntlet list`.
pub fn list(paths: &[PathBuf]) -> Exit {
    let loaded = load_all(&default_paths(paths), 0, None);
    warn_partial_validation();
    match loaded {
        Err(e) => {
            print_errors(&e);
            Exit::BadInput
        }
        Ok(all) => {
            for (s, _) in &all {
                let tags = if s.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", s.tags.join(", "))
                };
                println!("{}{tags}  {}", s.name, s.file.display());
            }
            Exit::Passed
        }
    }
}

/// `gauntlet run`.
pub async fn run(req: RunRequest) -> Exit {
    let seed = seed_or_now(req.seed);
    let real = req.controller == Controller::Real;
    if real && req.backend != Backend::Local {
        eprintln!(
            "error: --controller applies to the local backend; kind and kube run the real controllers"
        );
        return Exit::BadInput;
    }
    // Real controllers run the policy at its own speed: each scenario's times are scaled from
    // its timeScale to 1.
    let time_scale = match req.backend {
        Backend::Local if !real => req.time_scale,
        Backend::Local | Backend::Kind | Backend::Kube => {
            if req.time_scale.is_some_and(|f| f != 1.0) {
                eprintln!(
                    "error: --time-scale applies to the emulated controller only: the real one keeps the policy's own clock"
                );
                return Exit::BadInput;
            }
            Some(1.0)
        }
    };
    let chosen = match choose(&req.paths, seed, time_scale, &req.filter, &req.tag) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    for (s, p) in &chosen {
        warn_races(s, p);
    }
    let cluster = match req.backend {
        Backend::Local if real => match connect_real(&chosen).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Infra;
            }
        },
        Backend::Local => {
            if let Err(e) = crate::cluster::local::Binaries::locate() {
                eprintln!("error: {e}");
                return Exit::Infra;
            }
            None
        }
        Backend::Kind | Backend::Kube => match connect(
            req.backend,
            req.context.as_deref(),
            std::path::Path::new("."),
            req.artifacts.is_some(),
        )
        .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Infra;
            }
        },
    };
    eprintln!(
        "running {} scenario(s), {} at a time, seed {seed} (rerun with --seed {seed})",
        chosen.len(),
        req.parallel.max(1)
    );
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        let why = crate::cli::up::interrupted().await;
        eprintln!("{why}: stopping; reports and artifacts are still written");
        let _ = stop_tx.send(true);
    });
    let opts = RunOptions {
        seed,
        artifacts: req.artifacts.clone(),
        stop: stop_rx,
    };
    let progress = Arc::new(Progress::auto());
    let gate = Arc::new(Semaphore::new(req.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (s, p)) in chosen.into_iter().enumerate() {
        let (gate, opts, progress) = (gate.clone(), opts.clone(), progress.clone());
        let cluster = cluster.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let line = progress.start(&s.name);
            let finished = match &cluster {
                None => run_scenario(&s, &p, &opts, Some(&line)).await,
                Some(c) => run_on_cluster(&s, &c.target, &opts, Some(&line)).await,
            };
            (i, finished)
        });
    }
    let mut finished = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(f) => finished.push(f),
            Err(e) => {
                eprintln!("error: a scenario task failed: {e}");
                return Exit::Infra;
            }
        }
    }
    signals.abort();
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    finished.sort_by_key(|(i, _)| *i);
    let statuses: Vec<Status> = finished.iter().map(|(_, f)| f.status).collect();
    let report = RunReport {
        version: env!("CARGO_PKG_VERSION").into(),
        backend: match req.backend {
            Backend::Local => "local",
            Backend::Kind => "kind",
            Backend::Kube => "kube",
        }
        .into(),
        started_at,
        scenarios: finished.into_iter().map(|(_, f)| f.report).collect(),
    };
    println!("{}", summary_table(&report));
    let mut exit = if statuses
        .iter()
        .any(|s| matches!(s, Status::Infra | Status::Interrupted))
    {
        Exit::Infra
    } else if statuses.contains(&Status::Failed) {
        Exit::Failed
    } else {
        Exit::Passed
    };
    if let Some(path) = &req.json
        && let Err(e) = write_json(path, &report)
    {
        eprintln!("error: writing {}: {e}", path.display());
        exit = Exit::Infra;
    }
    if let Some(path) = &req.junit
        && let Err(e) = write_junit(path, &report)
    {
        eprintln!("error: writing {}: {e}", path.display());
        exit = Exit::Infra;
    }
    exit
}

/// A cluster to run on, and what must live as long as the run (the ingress port-forward, the
/// local control plane).
#[derive(Clone)]
pub struct Connected {
    pub target: ClusterTarget,
    _forward: Option<Arc<crate::cluster::kube::portforward::PortForward>>,
    _prometheus: Option<Arc<crate::cluster::kube::portforward::PortForward>>,
    local: Option<Arc<tokio::sync::Mutex<Option<crate::cluster::local::real::RealCluster>>>>,
}

impl Connected {
    /// Stops what the run started (the local control plane); a cluster reached from outside
    /// stays as it was.
    pub async fn shutdown(self) {
        if let Some(local) = self.local
            && let Some(c) = local.lock().await.take()
        {
            c.shutdown().await;
        }
    }
}

/// The local control plane for `scenarios` (`--controller real`): started once for the run,
/// with every controller their targets need, and the node's Services under the names each
/// target uses; each scenario then runs in a namespace of its own through the kube code path.
///
/// # Errors
/// A target that does not load, or a part of the cluster that does not start (exit 3).
pub async fn connect_real(
    scenarios: &[(Scenario, Plan)],
) -> Result<Connected, crate::cluster::InfraError> {
    let mut targets = Vec::new();
    let mut kinds = Vec::new();
    for (s, _) in scenarios {
        let m = crate::spec::load_target(&s.target).map_err(|e| {
            crate::cluster::InfraError::Other(format!("{}: {e}", s.target.display()))
        })?;
        if let Ok(k) = m.controller()
            && !kinds.contains(&k)
        {
            kinds.push(k);
        }
        targets.push(m);
    }
    let cluster = crate::cli::up_real::start_cluster(kinds).await?;
    for m in &targets {
        cluster.publish_for(m).await?;
    }
    Ok(Connected {
        target: ClusterTarget {
            backend: "local",
            client: cluster.client(),
            ingress_url: cluster.ingress_url().to_string(),
            prometheus_url: Some(cluster.prometheus_url().to_string()),
        },
        _forward: None,
        _prometheus: None,
        local: Some(Arc::new(tokio::sync::Mutex::new(Some(cluster)))),
    })
}

/// Reaches the cluster: kind (the cluster of `root/kind-config.yaml`) through its host port,
/// after checking Docker and kind; kube through kubeconfig (`context`, or the current one) and
/// a port-forward to ingress-nginx, and `with_prometheus` one to `monitoring/prometheus` for
/// the artifacts (a cluster without it gets a note, not an error).
///
/// # Errors
/// `backend` is `Local`, or the cluster cannot be reached (exit 3).
pub async fn connect(
    backend: Backend,
    context: Option<&str>,
    root: &std::path::Path,
    with_prometheus: bool,
) -> Result<Connected, crate::cluster::InfraError> {
    use crate::cluster::{kind, kube};
    match backend {
        Backend::Local => Err(crate::cluster::InfraError::Other(
            "the local backend has no cluster to connect to".into(),
        )),
        Backend::Kind => {
            kind::preflight()?;
            let config = kind::KindConfig::read(root)?;
            let k = kind::KindCluster::from_config(&config);
            let client = kube::connect(Some(&k.context)).await.map_err(|e| {
                crate::cluster::InfraError::Other(format!(
                    "{e}; create the cluster first: gauntlet up --backend kind"
                ))
            })?;
            Ok(Connected {
                target: ClusterTarget {
                    backend: "kind",
                    client,
                    ingress_url: k.ingress_url,
                    prometheus_url: k.prometheus_url,
                },
                _forward: None,
                _prometheus: None,
                local: None,
            })
        }
        Backend::Kube => {
            let client = kube::connect(context).await?;
            let forward = kube::portforward::PortForward::start(
                context,
                "ingress-nginx",
                "svc/ingress-nginx-controller",
                80,
                std::time::Duration::from_secs(30),
            )
            .await?;
            // Ours (fixtures/kind/prometheus.yaml) if the cluster has it; only for artifacts.
            let prometheus = if with_prometheus {
                match kube::portforward::PortForward::start(
                    context,
                    "monitoring",
                    "svc/prometheus",
                    9090,
                    std::time::Duration::from_secs(15),
                )
                .await
                {
                    Ok(f) => Some(f),
                    Err(e) => {
                        eprintln!("note: no Prometheus range dumps in the artifacts: {e}");
                        None
                    }
                }
            } else {
                None
            };
            Ok(Connected {
                target: ClusterTarget {
                    backend: "kube",
                    client,
                    ingress_url: forward.url(),
                    prometheus_url: prometheus.as_ref().map(|p| p.url()),
                },
                _forward: Some(Arc::new(forward)),
                _prometheus: prometheus.map(Arc::new),
                local: None,
            })
        }
    }
}
