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
    /// Where the kube backend reaches things, and the image its nodes pull.
    pub reach: KubeReach,
    pub paths: Vec<PathBuf>,
    pub filter: Option<String>,
    pub tag: Option<String>,
    pub time_scale: Option<f64>,
    pub parallel: usize,
    pub seed: Option<u64>,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub artifacts: Option<PathBuf>,
    /// The page of the run (`--html`); `report.html` goes into `artifacts` regardless.
    pub html: Option<PathBuf>,
}

/// How a run on an existing cluster (`--backend kube`) reaches it and what it runs there.
#[derive(Debug, Clone, Default)]
pub struct KubeReach {
    /// The sample app's image as the cluster pulls it (`--image`).
    pub image: Option<String>,
    /// The ingress controller's address from here (`--ingress-url`): no port-forward.
    pub ingress_url: Option<String>,
    /// The ingress controller's Service, `NAMESPACE/NAME[:PORT]` (`--ingress-service`),
    /// port-forwarded when there is no `ingress_url`.
    pub ingress_service: Option<String>,
    /// Prometheus from here, for the artifacts (`--prometheus-url`): no port-forward.
    pub prometheus_url: Option<String>,
}

/// ingress-nginx's own Service, as its deploy manifests name it.
pub const DEFAULT_INGRESS_SERVICE: &str = "ingress-nginx/ingress-nginx-controller:80";

/// `NAMESPACE/NAME[:PORT]` as the namespace, `svc/NAME` and the port (80 when left out).
pub fn parse_service(text: &str) -> Result<(String, String, u16), String> {
    let bad = || {
        format!(
            "--ingress-service {text:?}: expected NAMESPACE/NAME[:PORT], e.g. \
             {DEFAULT_INGRESS_SERVICE}"
        )
    };
    let (ns, rest) = text.split_once('/').ok_or_else(bad)?;
    let (name, port) = match rest.split_once(':') {
        Some((n, p)) => (n, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, 80),
    };
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    Ok((ns.to_string(), format!("svc/{name}"), port))
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
        "{} problem(s); nothing was run. The scenario format is in docs/scenarios.md.",
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
    if req.backend == Backend::Kube
        && let Err(e) = check_kube_request(&req, &chosen)
    {
        eprintln!("error: {e}");
        return Exit::BadInput;
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
            &req.reach,
            &chosen,
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
        schema_version: crate::report::model::SCHEMA_VERSION,
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
    if !write_pages(&report, req.html.as_deref(), req.artifacts.as_deref()) {
        exit = Exit::Infra;
    }
    exit
}

/// The page of the run to `html` and to `artifacts/report.html`; false when one could not be
/// written (said on stderr).
pub(crate) fn write_pages(
    report: &RunReport,
    html: Option<&std::path::Path>,
    artifacts: Option<&std::path::Path>,
) -> bool {
    let mut ok = true;
    let in_artifacts = artifacts.map(|d| d.join("report.html"));
    for path in html.into_iter().chain(in_artifacts.as_deref()) {
        if let Err(e) = crate::report::write_html(path, report) {
            eprintln!("error: writing {}: {e}", path.display());
            ok = false;
        }
    }
    ok
}

/// A cluster to run on, and what must live as long as the run (the ingress port-forward, the
/// local control plane).
#[derive(Clone)]
pub struct Connected {
    pub target: ClusterTarget,
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
            prometheus_url: Some(cluster.prometheus_url().to_string()),
            // gauntlet's router has applied a change before it reports it.
            ..ClusterTarget::new(
                "local",
                cluster.client(),
                cluster.ingress_url().to_string(),
                std::time::Duration::ZERO,
            )
        },
        _prometheus: None,
        local: Some(Arc::new(tokio::sync::Mutex::new(Some(cluster)))),
    })
}

/// Reaches the cluster: kind (the cluster of `root/kind-config.yaml`) through its host port,
/// after checking Docker and kind; kube through kubeconfig (`context`, or the current one),
/// after checking that it has what the `scenarios` need ([`preflight::missing`]), with the
/// ingress at `reach.ingress_url` or through a port-forward to `reach.ingress_service`, and
/// `with_prometheus` Prometheus for the artifacts (a cluster without it gets a note, not an
/// error).
///
/// # Errors
/// `backend` is `Local`, or the cluster cannot be reached or lacks something (exit 3).
pub async fn connect(
    backend: Backend,
    context: Option<&str>,
    reach: &KubeReach,
    scenarios: &[(Scenario, Plan)],
    root: &std::path::Path,
    with_prometheus: bool,
) -> Result<Connected, crate::cluster::InfraError> {
    use crate::cluster::InfraError;
    use crate::cluster::{kind, kube};
    use crate::runner::cluster::INGRESS_NGINX_SYNC;
    match backend {
        Backend::Local => Err(InfraError::Other(
            "the local backend has no cluster to connect to".into(),
        )),
        Backend::Kind => {
            kind::preflight()?;
            let config = kind::KindConfig::read(root)?;
            let k = kind::KindCluster::from_config(&config);
            let client = kube::connect(Some(&k.context)).await.map_err(|e| {
                InfraError::Other(format!(
                    "{e}; create the cluster first: gauntlet up --backend kind"
                ))
            })?;
            let mut target = ClusterTarget::new("kind", client, k.ingress_url, INGRESS_NGINX_SYNC);
            target.prometheus_url = k.prometheus_url;
            Ok(Connected {
                target,
                _prometheus: None,
                local: None,
            })
        }
        Backend::Kube => {
            let client = kube::connect(context).await?;
            let targets: Vec<crate::spec::Manifests> = scenarios
                .iter()
                .filter_map(|(s, _)| crate::spec::load_target(&s.target).ok())
                .collect();
            let missing = kube::preflight::missing(&client, &targets)
                .await
                .map_err(|e| {
                    InfraError::Other(format!(
                        "the cluster did not answer the checks before the run: {e}"
                    ))
                })?;
            if !missing.is_empty() {
                return Err(InfraError::Other(format!(
                    "the cluster lacks what the scenarios need, and gauntlet installs nothing \
                     into an existing cluster:\n  - {}",
                    missing.join("\n  - ")
                )));
            }
            let (ingress_url, forward) = match &reach.ingress_url {
                Some(url) => (url.clone(), None),
                None => {
                    let (ns, svc, port) = parse_service(
                        reach
                            .ingress_service
                            .as_deref()
                            .unwrap_or(DEFAULT_INGRESS_SERVICE),
                    )
                    .map_err(InfraError::Other)?;
                    let f = kube::portforward::PortForward::start(
                        context,
                        &ns,
                        &svc,
                        port,
                        std::time::Duration::from_secs(30),
                    )
                    .await
                    .map_err(|e| {
                        InfraError::Other(format!(
                            "{e}; name the ingress controller's Service with --ingress-service \
                             NAMESPACE/NAME[:PORT], or its address with --ingress-url URL"
                        ))
                    })?;
                    (f.url(), Some(Arc::new(f)))
                }
            };
            // Ours (fixtures/kind/prometheus.yaml) if the cluster has it; only for artifacts.
            let (prometheus_url, prometheus) = match (&reach.prometheus_url, with_prometheus) {
                (Some(url), _) => (Some(url.clone()), None),
                (None, false) => (None, None),
                (None, true) => match kube::portforward::PortForward::start(
                    context,
                    "monitoring",
                    "svc/prometheus",
                    9090,
                    std::time::Duration::from_secs(15),
                )
                .await
                {
                    Ok(f) => (Some(f.url()), Some(Arc::new(f))),
                    Err(e) => {
                        eprintln!(
                            "note: no Prometheus range dumps in the artifacts: {e} (--prometheus-url URL gives its address)"
                        );
                        (None, None)
                    }
                },
            };
            let mut target = ClusterTarget::new("kube", client, ingress_url, INGRESS_NGINX_SYNC);
            target.prometheus_url = prometheus_url;
            target.image = reach.image.clone();
            target.ingress_forward = forward;
            Ok(Connected {
                target,
                _prometheus: prometheus,
                local: None,
            })
        }
    }
}

/// What a kube run's options must say before anything starts: an image the cluster can pull
/// for every target that runs the sample app under its unpublished name.
fn check_kube_request(req: &RunRequest, chosen: &[(Scenario, Plan)]) -> Result<(), String> {
    use crate::cluster::kube::preflight::{
        SAMPLE_APP_REPOSITORY, is_unpublished_sample_app, workload_image,
    };
    if let Some(url) = &req.reach.ingress_url
        && reqwest::Url::parse(url).map_or(true, |u| !u.scheme().starts_with("http"))
    {
        return Err(format!(
            "--ingress-url {url:?} is not an http(s) URL; give the ingress's address, e.g. http://127.0.0.1:8080"
        ));
    }
    if let Some(svc) = &req.reach.ingress_service {
        parse_service(svc)?;
    }
    if req.reach.image.is_some() {
        return Ok(());
    }
    let mut needing: Vec<String> = Vec::new();
    for (s, _) in chosen {
        let image = crate::spec::load_target(&s.target)
            .ok()
            .and_then(|m| workload_image(&m));
        if let Some(image) = image.filter(|i| is_unpublished_sample_app(i)) {
            needing.push(format!("{} ({}: {image})", s.name, s.target.display()));
        }
    }
    if needing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "these scenarios run the sample app as `{SAMPLE_APP_REPOSITORY}`, which no registry serves: {}. \
         On an existing cluster, build the sample app's image, push it where the cluster pulls \
         from, and pass it with --image REF (README, \"Release gating on an existing cluster\")",
        needing.join(", ")
    ))
}
