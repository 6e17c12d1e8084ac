//! Running one scenario on a real cluster (`--backend kind|kube`): the same flow and verdict as
//! the local backend, with the real controller. The cluster part (namespace, apply, release,
//! watch, patches) is `cluster::kube::KubeCluster`; this module is the scenario around it.
//!
//! Verified here only as far as it compiles against the tested `KubeCluster` API: this machine
//! has no Docker. `make e2e` runs it where Docker, kind and network exist.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Ended, Finished, OBSERVE, RunOptions, Status, WARMUP, close, conclude, new_report};
use crate::cluster::kube::{Action as KubeAction, KubeCluster, KubeOptions};
use crate::controller::Decision;
use crate::load::{Load, LoadSpec};
use crate::report::artifacts::{ArtifactSources, write_artifacts};
use crate::report::human::ScenarioLine;
use crate::report::model::ScenarioReport;
use crate::scenario::{Action, Outcome, Scenario};
use crate::timeline::{Source, Timeline};
use crate::verdict::GRACE;

/// Where the cluster is reached.
#[derive(Clone)]
pub struct ClusterTarget {
    /// `kind` or `kube`, for reports.
    pub backend: &'static str,
    pub client: ::kube::Client,
    /// The ingress controller from here (kind: the host port; kube: a port-forward).
    pub ingress_url: String,
}

/// Images pulled, controllers reconciling: a cluster needs far longer than local processes.
const PROVISION_WITHIN: Duration = Duration::from_secs(300);

/// Runs `s` on the cluster.
pub async fn run_on_cluster(
    s: &Scenario,
    target: &ClusterTarget,
    opts: &RunOptions,
    line: Option<&ScenarioLine>,
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
            KubeOptions::for_scenario(&s.name, opts.seed),
            timeline.clone(),
        )
    }) {
        Err(e) => {
            report.failure = Some(e);
            Status::Failed
        }
        Ok(mut kc) => {
            let status = exercise(s, target, opts, &timeline, &mut kc, &mut report).await;
            report.timeline = timeline.snapshot();
            report.elapsed_s = started.elapsed().as_secs_f64();
            report.passed = status == Status::Passed;
            if let Some(dir) = &opts.artifacts {
                let sources = ArtifactSources {
                    access_log: None,
                    pod_logs: Vec::new(),
                    prometheus: None,
                    queries: Vec::new(),
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

async fn exercise(
    s: &Scenario,
    target: &ClusterTarget,
    opts: &RunOptions,
    timeline: &Timeline,
    kc: &mut KubeCluster,
    report: &mut ScenarioReport,
) -> Status {
    let infra = |report: &mut ScenarioReport, e: String| {
        report.failure = Some(format!("infrastructure: {e}"));
        Status::Infra
    };
    let baseline = [("APP_VERSION".to_string(), s.baseline_version.clone())];
    if let Err(e) = kc.provision(&baseline, PROVISION_WITHIN).await {
        return infra(report, e.to_string());
    }
    let spec = LoadSpec {
        rate: s.rate,
        connections: s.connections,
        seed: opts.seed,
        host: kc.ingress_host().map(str::to_string),
    };
    let load = match Load::start(&target.ingress_url, spec, timeline.clone()).await {
        Ok(l) => l,
        Err(e) => return infra(report, format!("the load generator: {e}")),
    };
    tokio::time::sleep(WARMUP).await;
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
    let wait = s.within + (s.within / 2).max(Duration::from_secs(10));
    let mut pending = s.actions.clone();
    let mut stop = opts.stop.clone();
    let mut decision = None;
    let mut interrupted = false;
    while released.elapsed() < wait {
        let until = pending
            .first()
            .map_or(wait, |a| a.at.min(wait))
            .saturating_sub(released.elapsed());
        let got = tokio::select! {
            r = kc.wait_decision(until) => r,
            _ = stop.changed() => { interrupted = true; break; }
        };
        match got {
            Err(e) => {
                load.stop().await;
                return infra(report, e.to_string());
            }
            Ok(Some(d)) if d != Decision::Paused || pending.is_empty() => {
                decision = Some((Outcome::from(d), released.elapsed().as_secs_f64()));
                break;
            }
            Ok(_) => {
                while let Some(a) = pending.first().copied()
                    && released.elapsed() >= a.at
                {
                    pending.remove(0);
                    let r = match a.action {
                        Action::Promote => kc.act(KubeAction::Promote).await,
                        Action::PromoteFull => kc.act(KubeAction::PromoteFull).await,
                        Action::Abort => kc.act(KubeAction::Abort).await,
                        Action::Retry => kc.act(KubeAction::Retry).await,
                        other => Err(crate::cluster::InfraError::Other(format!(
                            "`{}` (a loadtester gate) is not driven on clusters yet",
                            other.name()
                        ))),
                    };
                    timeline.emit(
                        Source::Harness,
                        "action",
                        match &r {
                            Ok(()) => format!("action {}", a.action.name()),
                            Err(e) => format!("action {} failed: {e}", a.action.name()),
                        },
                        serde_json::json!({"action": a.action.name()}),
                    );
                }
                if pending.is_empty() && decision.is_none() && released.elapsed() >= wait {
                    break;
                }
            }
        }
    }
    let waited_s = released.elapsed().as_secs_f64();
    if let Some((o, t)) = decision {
        report.outcome = Some(o.to_string());
        report.decision_s = Some(t);
        if !interrupted {
            tokio::select! {
                _ = tokio::time::sleep(GRACE + OBSERVE) => {}
                _ = stop.changed() => interrupted = true,
            }
        }
    }
    let stats = load.stop().await;
    let ended = Ended {
        decision,
        waited_s,
        last_status: format!("{:?}", kc.status().judgement),
        interrupted,
    };
    conclude(s, &stats, ended, timeline, report)
}
