//! Running one scenario on a real cluster (`--backend kind|kube`): the same flow and verdict as
//! the local backend, with the real controller. The cluster part (namespace, apply, release,
//! watch, patches) is `cluster::kube::KubeCluster`; this module is the scenario around it.
//!
//! Tested end to end against a fake API server, a fake ingress and a scripted controller
//! (`tests/cluster_runner.rs`); `make e2e` runs it where Docker, kind and network exist.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    Ended, Finished, OBSERVE, RunOptions, Status, WARMUP, close, conclude, new_report,
    record_action,
};
use crate::cluster::InfraError;
use crate::cluster::kube::{Action as KubeAction, Gate, KubeCluster, KubeOptions};
use crate::load::{Load, LoadSpec};
use crate::prom::PromClient;
use crate::report::artifacts::{ArtifactSources, write_artifacts};
use crate::report::human::ScenarioLine;
use crate::report::model::ScenarioReport;
use crate::scenario::{Action, Outcome, Scenario};
use crate::spec::ControllerKind;
use crate::timeline::{Source, Timeline};

/// Where the cluster is reached.
#[derive(Clone)]
pub struct ClusterTarget {
    /// `kind` or `kube`, for reports.
    pub backend: &'static str,
    pub client: ::kube::Client,
    /// The ingress controller from here (kind: the host port; kube: a port-forward).
    pub ingress_url: String,
    /// Prometheus from here, for the artifacts' range dumps (kind: the host port of
    /// `kind-config.yaml`; kube: a port-forward); `None`: no dumps, said in the artifacts.
    pub prometheus_url: Option<String>,
    /// The sample app's image as this cluster pulls it (`--image`), in place of the targets'
    /// own; `None` keeps theirs (kind loads `gauntlet/sample-app:latest` into its node).
    pub image: Option<String>,
    /// How long the ingress may take, after the controller changed the split, to apply it
    /// (see [`INGRESS_NGINX_SYNC`]); the rollback and promotion checks start that much later.
    pub ingress_sync: Duration,
    /// The port-forward carrying the load, when there is one: a drop during a scenario makes
    /// it an infrastructure failure, since the requests of the gap failed for that reason.
    pub ingress_forward: Option<std::sync::Arc<crate::cluster::kube::portforward::PortForward>>,
}

/// ingress-nginx applies Ingress changes at most 0.3 times a second (its `--sync-rate-limit`
/// default), so a correct rollback can still send users to the release for up to 3.4 s
/// after the controller wrote weight 0.
pub const INGRESS_NGINX_SYNC: Duration = Duration::from_millis(3400);

impl ClusterTarget {
    /// A cluster whose ingress is reached at `ingress_url` and applies changes within `ingress_sync`.
    pub fn new(
        backend: &'static str,
        client: ::kube::Client,
        ingress_url: String,
        ingress_sync: Duration,
    ) -> ClusterTarget {
        ClusterTarget {
            backend,
            client,
            ingress_url,
            prometheus_url: None,
            image: None,
            ingress_sync,
            ingress_forward: None,
        }
    }
}

/// Images pulled, controllers reconciling: a cluster needs far longer than local processes.
pub const PROVISION_WITHIN: Duration = Duration::from_secs(300);

/// The fixed bounds of a cluster run; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClusterLimits {
    /// The baseline must be in place within this (default [`PROVISION_WITHIN`]).
    pub provision_within: Duration,
}

impl Default for ClusterLimits {
    fn default() -> ClusterLimits {
        ClusterLimits {
            provision_within: PROVISION_WITHIN,
        }
    }
}

/// Runs `s` on the cluster.
pub async fn run_on_cluster(
    s: &Scenario,
    target: &ClusterTarget,
    opts: &RunOptions,
    line: Option<&ScenarioLine>,
) -> Finished {
    run_on_cluster_with(s, target, opts, line, &ClusterLimits::default()).await
}

/// [`run_on_cluster`] within `limits`.
pub async fn run_on_cluster_with(
    s: &Scenario,
    target: &ClusterTarget,
    opts: &RunOptions,
    line: Option<&ScenarioLine>,
    limits: &ClusterLimits,
) -> Finished {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let timeline = Timeline::new();
    let mut report = new_report(s, "");
    // The real controller judges the objects: only what gauntlet cannot emulate is let through.
    let manifests = match crate::spec::load_target(&s.target) {
        Ok(m) => Ok(m),
        Err(e) => {
            let rest = e.without_unsupported();
            if rest.0.is_empty() {
                let (m, _) = crate::spec::Manifests::load_partial(&s.target);
                Ok(m)
            } else {
                Err(rest.to_string())
            }
        }
    };
    let status = match manifests.and_then(|m| {
        report.controller = match m.controller() {
            Ok(crate::spec::ControllerKind::Flagger) => "flagger".into(),
            _ => "argo".into(),
        };
        KubeCluster::new(
            target.client.clone(),
            &m,
            KubeOptions {
                image: target.image.clone(),
                ..KubeOptions::for_scenario(&s.name, opts.seed)
            },
            timeline.clone(),
        )
        .and_then(|kc| {
            // A scenario action the target cannot take is bad input: refused before anything
            // is sent to the cluster.
            for a in &s.actions {
                match operation(a.action) {
                    Operation::Gate(g) => {
                        kc.gate_call(g)?;
                    }
                    Operation::Plugin(_) if kc.controller() == ControllerKind::Flagger => {
                        return Err(format!(
                            "`{}` is an Argo Rollouts operation; a Flagger Canary is operated \
                             through its loadtester gates (open-gate, close-gate, rollback)",
                            a.action.name()
                        ));
                    }
                    Operation::Plugin(_) => {}
                }
            }
            Ok(kc)
        })
    }) {
        Err(e) => {
            report.failure = Some(e);
            Status::Failed
        }
        Ok(mut kc) => {
            let status = exercise(s, target, opts, limits, &timeline, &mut kc, &mut report).await;
            report.timeline = timeline.snapshot();
            report.elapsed_s = started.elapsed().as_secs_f64();
            report.passed = status == Status::Passed;
            if let Some(dir) = &opts.artifacts {
                let sources = ArtifactSources {
                    access_log: None,
                    pod_logs: Vec::new(),
                    prometheus: target.prometheus_url.as_deref().map(PromClient::new),
                    queries: namespace_queries(kc.namespace()),
                    from: started_wall,
                    to: SystemTime::now(),
                };
                match write_artifacts(dir, &report, &sources).await {
                    Ok(folder) => {
                        for (path, r) in kc.collect_artifacts(&folder).await {
                            if let Err(e) = r {
                                tracing::warn!("artifact {}: {e}", path.display());
                            }
                        }
                    }
                    Err(e) => tracing::warn!("artifacts of {}: {e}", s.name),
                }
            }
            if let Err(e) = kc.teardown().await {
                tracing::warn!("teardown of {}: {e}", s.name);
            }
            status
        }
    };
    close(report, status, &timeline, started, line)
}

/// What the artifacts dump from Prometheus for a scenario's namespace: the series the analyses
/// of both controllers read (the exporters' and ingress' series), by canary and version, whatever the user's own queries.
fn namespace_queries(ns: &str) -> Vec<(String, String)> {
    let sel = format!("namespace=\"{ns}\"");
    [
        (
            "ingress-requests",
            format!("sum by (ingress, canary, status) (rate(nginx_ingress_controller_requests{{{sel}}}[30s]))"),
        ),
        (
            "ingress-p95-seconds",
            format!("histogram_quantile(0.95, sum by (ingress, canary, le) (rate(nginx_ingress_controller_response_duration_seconds_bucket{{{sel}}}[30s])))"),
        ),
        (
            "pod-memory-working-set-bytes",
            format!("container_memory_working_set_bytes{{{sel}, container!=\"\"}}"),
        ),
        (
            "pod-restarts",
            format!("kube_pod_container_status_restarts_total{{{sel}}}"),
        ),
        (
            "pod-ready",
            format!("kube_pod_status_ready{{{sel}, condition=\"true\"}}"),
        ),
    ]
    .into_iter()
    .map(|(n, q)| (n.to_string(), q))
    .collect()
}

/// What a scenario action is on a cluster.
enum Operation {
    /// The Argo Rollouts plugin's status patches.
    Plugin(KubeAction),
    /// A Flagger loadtester gate.
    Gate(Gate),
}

fn operation(a: Action) -> Operation {
    match a {
        Action::Promote => Operation::Plugin(KubeAction::Promote),
        Action::PromoteFull => Operation::Plugin(KubeAction::PromoteFull),
        Action::Abort => Operation::Plugin(KubeAction::Abort),
        Action::Retry => Operation::Plugin(KubeAction::Retry),
        Action::OpenGate => Operation::Gate(Gate::Open),
        Action::CloseGate => Operation::Gate(Gate::Close),
        Action::Rollback => Operation::Gate(Gate::Rollback),
    }
}

async fn act(kc: &mut KubeCluster, a: Action) -> Result<(), InfraError> {
    match operation(a) {
        Operation::Plugin(p) => kc.act(p).await,
        Operation::Gate(g) => kc.gate(g).await.map(|_| ()),
    }
}

/// Resolves once `stop` turns true; never when its sender is gone.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn exercise(
    s: &Scenario,
    target: &ClusterTarget,
    opts: &RunOptions,
    limits: &ClusterLimits,
    timeline: &Timeline,
    kc: &mut KubeCluster,
    report: &mut ScenarioReport,
) -> Status {
    let infra = |report: &mut ScenarioReport, e: String| {
        report.failure = Some(format!("infrastructure: {e}"));
        Status::Infra
    };
    let mut stop = opts.stop.clone();
    let baseline = [("APP_VERSION".to_string(), s.baseline_version.clone())];
    let provisioned = tokio::select! {
        r = kc.provision(&baseline, limits.provision_within) => r,
        _ = stopped(&mut stop) => {
            report.failure = Some("interrupted".into());
            return Status::Interrupted;
        }
    };
    if let Err(e) = provisioned {
        return infra(report, e.to_string());
    }
    let spec = LoadSpec {
        rate: s.rate,
        connections: s.connections,
        seed: opts.seed,
        host: kc.ingress_host().map(str::to_string),
    };
    let settle = super::settle_time(s, target.ingress_sync);
    let drops_before = target.ingress_forward.as_ref().map(|f| f.drops());
    let load = match Load::start(&target.ingress_url, spec, timeline.clone()).await {
        Ok(l) => l,
        Err(e) => return infra(report, format!("the load generator: {e}")),
    };
    tokio::select! {
        _ = tokio::time::sleep(WARMUP) => {}
        _ = stopped(&mut stop) => {
            load.stop().await;
            report.failure = Some("interrupted".into());
            return Status::Interrupted;
        }
    }
    timeline.mark_release();
    timeline.emit(
        Source::Harness,
        "release",
        format!("release {}", s.release_version),
        serde_json::json!({"version": s.release_version, "env": s.release_env()}),
    );
    let released = Instant::now();
    if let Err(e) = kc.release(&s.release_env()).await {
        load.stop().await;
        return infra(report, e.to_string());
    }
    // Until the decision: a late one is still waited for (and reported late), up to a bound. A
    // pause is no decision while an action is still to come, nor before the controller had
    // time to react to the last one.
    let wait = s.within + (s.within / 2).max(Duration::from_secs(10));
    let mut pending = s.actions.clone();
    let mut reacted_by = Duration::ZERO;
    let mut last_action = None;
    let mut decision = None;
    let mut interrupted = false;
    loop {
        while let Some(a) = pending.first().copied()
            && released.elapsed() >= a.at
            && released.elapsed() < wait
        {
            pending.remove(0);
            let r = act(kc, a.action).await;
            reacted_by = released.elapsed() + kc.reaction_time();
            last_action = Some(a.action);
            record_action(timeline, &a, &r, "failed");
            if let Err(e) = r {
                load.stop().await;
                return infra(report, format!("action {}: {e}", a.action.name()));
            }
        }
        let now = released.elapsed();
        if now >= wait {
            break;
        }
        let reacting_to = last_action.filter(|_| now < reacted_by);
        let mut until = wait;
        if let Some(a) = pending.first() {
            until = until.min(a.at);
        } else if reacting_to.is_some() {
            until = until.min(reacted_by);
        }
        let got = tokio::select! {
            r = kc.wait_decision_where(until.saturating_sub(now), |d| {
                super::is_final(d, &pending, reacting_to)
            }) => r,
            _ = stopped(&mut stop) => { interrupted = true; break; }
        };
        match got {
            Err(e) => {
                load.stop().await;
                return infra(report, e.to_string());
            }
            Ok(Some(d)) => {
                decision = Some((Outcome::from(d), released.elapsed().as_secs_f64()));
                break;
            }
            Ok(None) => {}
        }
    }
    let waited_s = released.elapsed().as_secs_f64();
    if let Some((o, t)) = decision {
        report.outcome = Some(o.to_string());
        report.decision_s = Some(t);
        if !interrupted {
            tokio::select! {
                _ = tokio::time::sleep(settle + OBSERVE) => {}
                _ = stopped(&mut stop) => interrupted = true,
            }
        }
    }
    let stats = load.stop().await;
    if let (Some(f), Some(before)) = (&target.ingress_forward, drops_before)
        && f.drops() > before
    {
        return infra(
            report,
            format!(
                "the port-forward to the ingress ({}) dropped {} time(s) during the scenario and \
                 was restarted; the requests of the gap failed for that reason, not the \
                 release's, so no verdict is given. Pass --ingress-url with an address of the \
                 ingress that needs no port-forward, if the cluster has one",
                f.what(),
                f.drops() - before
            ),
        );
    }
    let ended = Ended {
        decision,
        waited_s,
        last_status: kc.status().line,
        interrupted,
        settle,
    };
    conclude(s, &stats, ended, timeline, report)
}
