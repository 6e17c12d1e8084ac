//! The `gauntlet` command: a thin CLI over the library. clap parses, the library runs, and one
//! `match` turns the outcome into an exit code (see `gauntlet::exit::Exit`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gauntlet::exit::Exit;

#[derive(Parser)]
#[command(
    name = "gauntlet",
    version,
    about = "Prove that a progressive-delivery policy promotes good releases and rolls back bad ones, in time",
    long_about = "gauntlet stands up a rollout controller (Argo Rollouts or Flagger; emulated on the local \
backend), an NGINX ingress and Prometheus, deploys a sample app, sends real load through the ingress, \
releases a version that misbehaves, and checks that the controller promoted or rolled back within a \
time budget and that users saw no more errors than allowed.",
    after_help = "Exit codes: 0 every scenario met its expectation; 1 at least one did not; \
2 bad input (usage, parse, validation); 3 infrastructure (a stack part could not start or died).\n\
\nBackends: local runs everywhere (with `--controller real`: as root, with Go to build the \
pinned control plane once); kind needs Docker and kind (`up|down --backend kind` \
provision it); kube takes a kubeconfig context. On clusters budgets are checked at full speed \
(timeScale is local-only). Not yet implemented (exit 2): `up --backend kube`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Backend {
    /// No cluster: sample-app processes, a real nginx and Prometheus, an emulated controller.
    Local,
    /// A kind cluster with the real controllers (needs Docker and kind).
    Kind,
    /// An existing cluster from kubeconfig.
    Kube,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ControllerArg {
    /// gauntlet's emulation of the controller, reading your Rollout / Canary (fast, time-scalable).
    Emulated,
    /// The real Argo Rollouts or Flagger on a local Kubernetes control plane built from pinned
    /// Go modules (needs root and Go on first use; keeps the policy's own clock).
    Real,
}

#[derive(Args)]
struct RunArgs {
    /// Scenario files or folders.
    #[arg(default_value = "suites")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    /// Which controller decides on the local backend (real: one local control plane for the
    /// run, a namespace per scenario, the policy's own clock).
    #[arg(long, value_enum, default_value_t = ControllerArg::Emulated)]
    controller: ControllerArg,
    /// kubeconfig context (kube backend).
    #[arg(long)]
    context: Option<String>,
    /// The sample app's image as the cluster pulls it, e.g.
    /// registry.example.com/gauntlet/sample-app:0.1.0 (kube backend; replaces the targets'
    /// `gauntlet/sample-app`, which no registry serves).
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// The ingress controller's address from here, e.g. a staging load balancer (kube
    /// backend; no port-forward then).
    #[arg(long, value_name = "URL")]
    ingress_url: Option<String>,
    /// The ingress controller's Service to port-forward to when there is no --ingress-url
    /// (kube backend).
    #[arg(
        long,
        value_name = "NAMESPACE/NAME[:PORT]",
        default_value = "ingress-nginx/ingress-nginx-controller:80"
    )]
    ingress_service: String,
    /// Prometheus from here, for the artifacts' metric dumps (kube backend; without it,
    /// a port-forward to monitoring/prometheus is tried).
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Only scenarios with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Multiply every duration of the policy by F (local backend); budgets and action times,
    /// stated at the file's timeScale, scale by F / timeScale.
    #[arg(long, value_name = "F")]
    time_scale: Option<f64>,
    /// Run N scenarios at once, each with its own stack.
    #[arg(long, value_name = "N", default_value_t = 1)]
    parallel: usize,
    /// Fix every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a JUnit report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write per-scenario artifacts (timeline, logs, metric dumps, report.html) under this
    /// folder.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Write the run as one self-contained HTML page with plots here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios and check their expectations (nightly-tagged ones only with --tag nightly).
    Run(RunArgs),
    /// Check scenario files, the manifests they target and their budgets, without running them.
    Validate {
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Backend::Local)]
        backend: Backend,
        /// Check budgets at this time scale instead of the files' own (they scale with it).
        #[arg(long, value_name = "F")]
        time_scale: Option<f64>,
    },
    /// Write a starter suite for a policy: a healthy release and faults sized to its own
    /// thresholds, each number commented with where it came from.
    Init {
        /// Folder of your manifests (a Rollout and its AnalysisTemplates, or a Canary, its
        /// Deployment and MetricTemplates).
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
        /// Where to write the scenario files [default: suites/<name of the target folder>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace scenario files init writes that exist already.
        #[arg(long)]
        force: bool,
    },
    /// List the scenarios found.
    List {
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
    },
    /// Bring a stack up with a target's baseline and hold it until Ctrl-C.
    Up {
        #[arg(long, value_enum, default_value_t = Backend::Local)]
        backend: Backend,
        /// Folder of the target's manifests (a Rollout or a Deployment + Canary).
        #[arg(long, value_name = "DIR", default_value = "fixtures/apps/argo")]
        target: PathBuf,
        /// kubeconfig context (kube backend).
        #[arg(long)]
        context: Option<String>,
        /// Which controller decides on the local backend.
        #[arg(long, value_enum, default_value_t = ControllerArg::Emulated)]
        controller: ControllerArg,
    },
    /// Delete what `up --backend kind` created; with `--backend local`, what a killed gauntlet
    /// left behind (temp folders, cgroups, stray processes); with `--backend kube`, the
    /// scenario namespaces that killed runs left on the cluster.
    Down {
        #[arg(long, value_enum, default_value_t = Backend::Kind)]
        backend: Backend,
        /// kubeconfig context (kube backend).
        #[arg(long)]
        context: Option<String>,
        /// Only namespaces created longer ago than this (kube backend), so that a run still
        /// going keeps its own.
        #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
    /// Run scenarios under the emulated and the real controller (the local control plane) at
    /// the policy's own clock and report where they differ: outcome, weights, decision time
    /// (more than one analysis interval apart). Exit 1 on a difference.
    Compare {
        /// Scenario files or folders.
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Only scenarios with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Scenarios at once, per tier.
        #[arg(long, value_name = "N", default_value_t = 1)]
        parallel: usize,
        /// Fix every random choice (the same in both tiers).
        #[arg(long)]
        seed: Option<u64>,
        /// Write the comparison as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write each tier's per-scenario artifacts (emulated/, real/) and the comparison
        /// (compare.txt, compare.json, report.html) under this folder.
        #[arg(long, value_name = "DIR")]
        artifacts: Option<PathBuf>,
        /// Write both tiers' scenarios as one self-contained HTML page with plots here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Draw the HTML page of a run from the JSON report it wrote (`run --json`).
    Report {
        /// A report written by `gauntlet run --json`.
        #[arg(value_name = "RUN.json")]
        json: PathBuf,
        /// Where to write the page.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Print the scenario file's JSON Schema (docs/scenario.schema.json), which editors use
    /// to complete and check scenario files.
    Schema {
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Estimate the policy's operating characteristic without running the app: for a grid of
    /// fault magnitudes, simulate N rollouts each (the emulated controller in virtual time, its
    /// queries answered by a real Prometheus over synthetic series) and report P(rolled back),
    /// P(promoted), P(paused) and time to decision (docs/power.md).
    Power(PowerCliArgs),
    /// The local control plane of `--controller real`.
    Controlplane {
        #[command(subcommand)]
        command: ControlplaneCommand,
    },
}

#[derive(Args)]
struct PowerCliArgs {
    /// Folder (or file) of the target's manifests: a Rollout with its AnalysisTemplates, or a
    /// Deployment with its Canary and MetricTemplates.
    target: PathBuf,
    /// Requests per second through the ingress: `40`, `40/s`, `2400/m` [default: 40/s].
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Simulated rollouts per grid point [default: 200].
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Error shares of the grid, e.g. `0,0.5%,1%,2%,5%,10%,20%` (the default).
    #[arg(long, value_name = "LIST")]
    errors: Option<String>,
    /// Added latencies of the grid, e.g. `0,50ms,100ms,200ms,500ms` (the default).
    #[arg(long, value_name = "LIST")]
    latency: Option<String>,
    /// Fix every random draw [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Simulate the policy with every duration multiplied by F, as `gauntlet run
    /// --time-scale F` runs it locally [default: 1, the policy's own clock].
    #[arg(long, value_name = "F")]
    time_scale: Option<f64>,
    /// The longest a decision is waited for after the release, in virtual time [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    within: Option<std::time::Duration>,
    /// Rollouts simulated at once (threads; more: more memory) [default: 400].
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a self-contained HTML page here: the plot of P(rolled back) per fault kind with
    /// its 95 % intervals, and the table.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ControlplaneCommand {
    /// Build (or find in the cache) etcd, Kubernetes, Argo Rollouts and Flagger from the pinned
    /// Go modules; prints the folder of the binaries.
    Build,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Passed.into()
                }
                _ => Exit::BadInput.into(),
            };
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // kube's client logs every refused request at ERROR, including the ones gauntlet expects
        // (an API server still starting, a 404 it falls back from); gauntlet reports the errors
        // that matter itself. GAUNTLET_LOG overrides all of this.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GAUNTLET_LOG")
                .unwrap_or_else(|_| "warn,goose=off,kube_client::client::builder=off".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Infra.into();
        }
    };
    let exit = runtime.block_on(dispatch(cli.command));
    exit.into()
}

async fn dispatch(command: Command) -> Exit {
    match command {
        Command::Up {
            backend: Backend::Local,
            target,
            controller: ControllerArg::Real,
            ..
        } => gauntlet::cli::up_real(&target).await,
        Command::Up {
            backend: Backend::Local,
            target,
            ..
        } => gauntlet::cli::up_local(&target).await,
        Command::Up {
            controller: ControllerArg::Real,
            ..
        } => usage(
            "--controller applies to the local backend; kind and kube run the real controllers",
        ),
        Command::Up {
            backend: Backend::Kind,
            ..
        } => gauntlet::cli::up_kind().await,
        Command::Up { .. } => usage(
            "`gauntlet up --backend kube`: gauntlet does not install into an existing cluster; \
             install Argo Rollouts v1.9.1 or Flagger v1.44.0, ingress-nginx and \
             fixtures/kind/prometheus.yaml there (see fixtures/kind/README.md), then run \
             `gauntlet run --backend kube --context NAME`",
        ),
        Command::Down {
            backend: Backend::Kind,
            ..
        } => gauntlet::cli::down_kind().await,
        Command::Down {
            backend: Backend::Local,
            ..
        } => gauntlet::cli::down_local(),
        Command::Down {
            backend: Backend::Kube,
            context,
            older_than,
        } => gauntlet::cli::down_kube(context.as_deref(), older_than).await,
        Command::Controlplane {
            command: ControlplaneCommand::Build,
        } => gauntlet::cli::controlplane_build().await,
        Command::Compare {
            paths,
            filter,
            tag,
            parallel,
            seed,
            json,
            artifacts,
            html,
        } => {
            gauntlet::cli::compare_tiers(gauntlet::cli::CompareRequest {
                paths,
                filter,
                tag,
                parallel,
                seed,
                json,
                artifacts,
                html,
            })
            .await
        }
        Command::Report { json, html } => gauntlet::cli::report_html(&json, &html),
        Command::Run(a) => {
            gauntlet::cli::run(gauntlet::cli::RunRequest {
                backend: match a.backend {
                    Backend::Local => gauntlet::cli::RunBackend::Local,
                    Backend::Kind => gauntlet::cli::RunBackend::Kind,
                    Backend::Kube => gauntlet::cli::RunBackend::Kube,
                },
                controller: match a.controller {
                    ControllerArg::Emulated => gauntlet::cli::RunController::Emulated,
                    ControllerArg::Real => gauntlet::cli::RunController::Real,
                },
                context: a.context,
                reach: gauntlet::cli::KubeReach {
                    image: a.image,
                    ingress_url: a.ingress_url,
                    ingress_service: Some(a.ingress_service),
                    prometheus_url: a.prometheus_url,
                },
                paths: a.paths,
                filter: a.filter,
                tag: a.tag,
                time_scale: a.time_scale,
                parallel: a.parallel,
                seed: a.seed,
                json: a.json,
                junit: a.junit,
                artifacts: a.artifacts,
                html: a.html,
            })
            .await
        }
        Command::Validate {
            paths,
            backend: Backend::Local,
            time_scale,
        } => gauntlet::cli::validate(&paths, time_scale),
        // Real controllers run the policy at its own speed: budgets are checked at scale 1.
        Command::Validate { time_scale, .. } if time_scale.is_some_and(|f| f != 1.0) => {
            eprintln!("error: --time-scale applies to the local backend only");
            Exit::BadInput
        }
        Command::Validate { paths, .. } => gauntlet::cli::validate(&paths, Some(1.0)),
        Command::List { paths } => gauntlet::cli::list(&paths),
        Command::Schema { out } => gauntlet::cli::schema(out.as_deref()),
        Command::Init { target, out, force } => gauntlet::cli::init(target, out, force),
        Command::Power(a) => {
            gauntlet::cli::power(gauntlet::cli::PowerArgs {
                target: a.target,
                rate: a.rate,
                runs: a.runs,
                errors: a.errors,
                latency: a.latency,
                seed: a.seed,
                time_scale: a.time_scale,
                within: a.within,
                parallel: a.parallel,
                json: a.json,
                html: a.html,
            })
            .await
        }
    }
}

fn usage(why: &str) -> Exit {
    eprintln!("error: {why}");
    Exit::BadInput
}
