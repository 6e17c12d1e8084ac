//! `gauntlet up`: a stack with the target's baseline, held until Ctrl-C.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::cluster::local::{Binaries, LocalStack};
use crate::cluster::{CanaryRoute, InfraError, Platform, Services};
use crate::exit::Exit;
use crate::target::{self, Workload};
use crate::timeline::Timeline;

/// How long the baseline's pods may take to become available before `up` gives up.
const BASELINE_WITHIN: Duration = Duration::from_secs(60);

/// Resolves on the first SIGINT or SIGTERM. Installed before anything starts, so an interrupt
/// during start-up also tears down what was started.
pub async fn interrupted() -> &'static str {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) applies; children die by PDEATHSIG.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs `start` unless `stop` (an interrupt) comes first. What it started, or the exit to end
/// with: a start that failed or was interrupted is an infrastructure exit, said on stderr (what
/// the start had made is gone by then: everything cleans up on drop).
pub(crate) async fn start_unless_stopped<T>(
    start: impl std::future::Future<Output = Result<T, InfraError>>,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = &'static str>>,
) -> Result<T, Exit> {
    tokio::select! {
        started = start => started.map_err(|e| {
            eprintln!("error: {e}");
            Exit::Infra
        }),
        why = stop => {
            eprintln!("{why}: stopped during start-up; cleaned up");
            Err(Exit::Infra)
        }
    }
}

/// `gauntlet up --backend local`: the target's baseline on a local stack, held until Ctrl-C.
pub async fn up_local(target_dir: &Path) -> Exit {
    let loaded = crate::spec::load_target(target_dir);
    if let Some(notice) = crate::spec::crd::partial_notice() {
        eprintln!("warning: {notice}");
    }
    let flagger = loaded.is_ok_and(|m| m.controller() == Ok(crate::spec::ControllerKind::Flagger));
    if flagger {
        return up_flagger(target_dir).await;
    }
    let stop = interrupted();
    tokio::pin!(stop);
    let workload = match target::load_argo(target_dir) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let bins = match Binaries::locate() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Infra;
        }
    };
    eprintln!(
        "starting nginx, Prometheus and {} pod(s) of {}/{} ...",
        workload.replicas, workload.namespace, workload.name
    );
    let started = tokio::time::Instant::now();
    let mut stack = match start_unless_stopped(baseline(&bins, &workload), stop.as_mut()).await {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    eprintln!(
        "ready in {:.1}s; Ctrl-C to stop",
        started.elapsed().as_secs_f64()
    );
    println!("ingress: {}", stack.ingress_url());
    println!("prometheus: {}", stack.prometheus_url());
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let exit = loop {
        tokio::select! {
            why = &mut stop => {
                eprintln!("{why}: stopping");
                break Exit::Passed;
            }
            _ = health.tick() => {
                if let Err(e) = stack.check_alive().await {
                    eprintln!("error: {e}");
                    break Exit::Infra;
                }
            }
        }
    };
    stack.shutdown().await;
    exit
}

/// `up` for a Flagger target: the emulated Flagger initializes the Canary (the primary serves
/// the Deployment's template), and keeps reconciling while the stack is held.
async fn up_flagger(target_dir: &Path) -> Exit {
    use crate::controller::Controller;
    use crate::controller::driver::until_decision;
    use crate::controller::flagger::FlaggerController;

    let stop = interrupted();
    tokio::pin!(stop);
    let scale = crate::controller::timescale::TimeScale::default();
    let (w, emulated) = match crate::controller::flagger::target::load_flagger(target_dir, scale) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let bins = match Binaries::locate() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Infra;
        }
    };
    eprintln!(
        "starting nginx, Prometheus and {} primary pod(s) of {}/{} ...",
        w.replicas, w.namespace, w.name
    );
    let started = tokio::time::Instant::now();
    let start = async {
        let stack = LocalStack::start(&bins, w.stack_options(0), Timeline::new()).await?;
        let prom = stack.prom().clone();
        let mut ctl = FlaggerController::new(emulated.policy, stack, prom, Timeline::new())?;
        let template = w
            .pod_template(&w.spec)
            .map_err(|e| InfraError::Other(e.to_string()))?;
        Controller::apply_template(&mut ctl, target::pod_template_hash(&w.spec), template).await?;
        if until_decision(&mut ctl, BASELINE_WITHIN).await?.is_none() {
            return Err(InfraError::Other(format!(
                "the Canary did not initialize: {}",
                ctl.status_line()
            )));
        }
        if let Some(primary) = ctl.primary_revision().cloned() {
            Controller::platform(&ctl)
                .wait_available(&primary, w.replicas, BASELINE_WITHIN)
                .await?;
        }
        Ok::<_, InfraError>(ctl)
    };
    let mut ctl = match start_unless_stopped(start, stop.as_mut()).await {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    eprintln!(
        "ready in {:.1}s; Ctrl-C to stop",
        started.elapsed().as_secs_f64()
    );
    println!("ingress: {}", Controller::platform(&ctl).ingress_url());
    println!(
        "prometheus: {}",
        Controller::platform(&ctl).prometheus_url()
    );
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let exit = loop {
        tokio::select! {
            why = &mut stop => {
                eprintln!("{why}: stopping");
                break Exit::Passed;
            }
            _ = health.tick() => {
                let alive = Controller::platform_mut(&mut ctl).check_alive().await;
                if let Err(e) = alive.and(Controller::reconcile(&mut ctl).await) {
                    eprintln!("error: {e}");
                    break Exit::Infra;
                }
            }
        }
    };
    Controller::into_platform(ctl).shutdown().await;
    exit
}

/// Starts the stack and brings the baseline revision up behind both Services at weight 0, as
/// a Rollout's initial deploy leaves it.
async fn baseline(bins: &Binaries, w: &Workload) -> Result<LocalStack, InfraError> {
    let mut stack = LocalStack::start(bins, w.stack_options(0), Timeline::new()).await?;
    let hash = target::pod_template_hash(&w.spec);
    let template = w
        .pod_template(&w.spec)
        .map_err(|e| InfraError::Other(e.to_string()))?;
    stack.create_revision(hash.clone(), template).await?;
    stack.scale(&hash, w.replicas).await?;
    stack
        .set_services(Services {
            stable: hash.clone(),
            canary: Some(hash.clone()),
        })
        .await?;
    stack.set_canary_route(CanaryRoute::weight(0)).await?;
    stack
        .wait_available(&hash, w.replicas, BASELINE_WITHIN)
        .await?;
    Ok(stack)
}

/// The workspace root for the kind backend: where `kind-config.yaml` is (the current folder).
fn kind_root() -> std::path::PathBuf {
    std::path::PathBuf::from(".")
}

/// SIGINT and SIGTERM, listened to for the whole of a kind step, so that a second one (during
/// the teardown of the first) is seen too rather than swallowed by a handler nobody polls.
struct Interrupts {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn install() -> Interrupts {
        Interrupts {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) -> &'static str {
        let int = async {
            match self.int.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let term = async {
            match self.term.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => "SIGINT",
            _ = term => "SIGTERM",
        }
    }
}

/// How long the commands of an interrupted kind step get to stop after SIGTERM (`kind create`
/// removes its half-made node containers) before they are killed.
const KIND_TEARDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs a kind step (`up` or `down`) unless interrupted. On the first SIGINT or SIGTERM the
/// commands it runs (`kind create`, `docker build`, ...) are asked to stop and get
/// [`KIND_TEARDOWN_GRACE`] to do so; a second signal kills them at once. Either way the exit is
/// the one an interrupted local `up` ends with ([`start_unless_stopped`]).
async fn kind_step<T>(
    step: impl std::future::Future<Output = Result<T, InfraError>>,
) -> Result<T, Exit> {
    let mut signals = Interrupts::install();
    // Boxed so that dropping it (below) really ends it, killing what it runs.
    let mut step = Box::pin(step);
    let why = tokio::select! {
        done = &mut step => {
            return done.map_err(|e| {
                eprintln!("error: {e}");
                Exit::Infra
            });
        }
        why = signals.next() => why,
    };
    let asked = crate::cluster::kind::stop_commands();
    if asked > 0 {
        eprintln!(
            "{why}: stopping the running `kind`/`docker` command (up to {}s; again to stop at once) ...",
            KIND_TEARDOWN_GRACE.as_secs()
        );
        tokio::select! {
            // The step ends with an error once its command has exited.
            _ = &mut step => {}
            _ = tokio::time::sleep(KIND_TEARDOWN_GRACE) => {
                eprintln!("the command did not stop within {}s: killing it", KIND_TEARDOWN_GRACE.as_secs());
            }
            again = signals.next() => eprintln!("{again}: killing it"),
        }
    }
    // Dropping the step kills whatever it still runs.
    drop(step);
    eprintln!(
        "{why}: stopped; run `gauntlet up --backend kind` again to finish (a half-made cluster is recreated)"
    );
    Err(Exit::Infra)
}

/// `gauntlet up --backend kind`: create or reuse the kind cluster and install the pinned
/// controllers, ingress-nginx and Prometheus; exit 3 naming what is missing (Docker, kind, an
/// unpinned download) when it cannot. Interrupts: see [`kind_step`].
pub async fn up_kind() -> Exit {
    let opts = crate::cluster::kind::UpOptions::new(kind_root());
    let up = async {
        let mut progress = |l: &str| eprintln!("{l}");
        crate::cluster::kind::up(&opts, &mut progress).await
    };
    match kind_step(up).await {
        Ok(k) => {
            println!("ingress: {}", k.ingress_url);
            if let Some(p) = &k.prometheus_url {
                println!("prometheus: {p}");
            }
            println!("context: {}", k.context);
            Exit::Passed
        }
        Err(exit) => exit,
    }
}

/// `gauntlet down --backend kind`.
pub async fn down_kind() -> Exit {
    let root = kind_root();
    let down = async {
        let mut progress = |l: &str| eprintln!("{l}");
        crate::cluster::kind::down(&root, &mut progress).await
    };
    match kind_step(down).await {
        Ok(()) => Exit::Passed,
        Err(exit) => exit,
    }
}
