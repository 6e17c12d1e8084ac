//! One simulated rollout: the user's Rollout or Canary, relocated into a namespace of its own,
//! run by the emulated controller on a [`VirtualPlatform`] under a paused tokio clock, its
//! queries answered by the real Prometheus at the virtual time they are made.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::bridge::Bridge;
use super::feed::SharedFeed;
use super::grid::{BASELINE_VERSION, Fault};
use super::platform::{Log, VirtualPlatform};
use super::series::Identity;
use super::{RolloutId, Stop};
use crate::cluster::{InfraError, RevisionHash};
use crate::controller::analysis::MetricSource;
use crate::controller::argo::runs::{AnalysisRuns, run_policy};
use crate::controller::argo::{ArgoController, Hashes};
use crate::controller::expr::MetricValue;
use crate::controller::flagger::{FlaggerController, Payload, Provider, Reply, Transport};
use crate::controller::timescale::TimeScale;
use crate::controller::{Controller, Decision};
use crate::prom::{PromError, QueryValue};
use crate::spec::{ControllerKind, Manifests};
use crate::target::{Workload, argo_workload, pod_template_hash};
use crate::timeline::Timeline;

/// The environment variable that makes each simulated rollout's pod templates (and so their
/// hashes and pod names) its own. The sample app ignores it.
const ROLLOUT_MARKER: &str = "GAUNTLET_POWER_ROLLOUT";
/// How long the load runs on the baseline before the release, as `gauntlet run` waits.
const WARMUP: Duration = crate::runner::WARMUP;
/// How long the baseline may take to become the stable side.
const BASELINE_WITHIN: Duration = Duration::from_secs(30 * 60);

/// The policy under test, loaded and validated once.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: ControllerKind,
    pub manifests: Manifests,
    pub workload: Workload,
    pub scale: TimeScale,
}

impl Target {
    /// Loads and validates a target folder (or file), as `gauntlet validate` does.
    ///
    /// # Errors
    /// The target's problems, with file and key path.
    pub fn load(dir: &Path, scale: TimeScale) -> Result<Target, String> {
        let manifests = crate::spec::load_target(dir).map_err(|e| e.to_string())?;
        let kind = manifests.controller()?;
        let workload = match kind {
            ControllerKind::Argo => argo_workload(dir, manifests.clone()),
            ControllerKind::Flagger => {
                crate::controller::flagger::target::load_flagger(dir, scale).map(|(w, _)| w)
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(Target {
            kind,
            manifests,
            workload,
            scale,
        })
    }

    /// The series names of simulated rollout `namespace`.
    pub fn identity(&self, namespace: &str) -> Identity {
        let w = &self.workload;
        Identity {
            namespace: namespace.to_string(),
            ingress: w.ingress.clone(),
            service: w.stable_service.clone(),
            canary_upstream: format!("{namespace}-{}-{}", w.canary_service, w.service_port),
            path: ingress_path(&self.manifests, &w.namespace, &w.ingress),
        }
    }

    /// Every query the policy sends, resolved for a rollout in `namespace` (for the series
    /// names to write and the check that each query tells rollouts apart).
    ///
    /// # Errors
    /// The policy cannot be built for that namespace.
    pub fn queries(&self, namespace: &str) -> Result<Vec<String>, String> {
        let m = relocate(&self.manifests, namespace);
        match self.kind {
            ControllerKind::Argo => {
                let rollout = &m.rollouts[0];
                let e = crate::controller::argo::from_spec::from_spec(&m, rollout, self.scale)?;
                let (stable, latest) = self.hashes(namespace, &Fault::Errors(0.0));
                let hashes = Hashes { stable, latest };
                let mut out = Vec::new();
                for (i, a) in e.analyses.iter().enumerate() {
                    let p = run_policy(rollout, a, self.scale, &format!("analysis-{i}"), &hashes)?;
                    out.extend(p.metrics.into_iter().map(|m| m.query));
                }
                Ok(out)
            }
            ControllerKind::Flagger => {
                let e = crate::controller::flagger::from_spec(&m, self.scale)?;
                Ok(e.policy
                    .builtin_checks
                    .iter()
                    .chain(&e.policy.template_checks)
                    .map(|c| c.query.clone())
                    .collect())
            }
        }
    }

    fn env(&self, namespace: &str, fault: Option<&Fault>) -> Vec<(String, String)> {
        let mut env = match fault {
            Some(f) => f.release_env(),
            None => vec![("APP_VERSION".to_string(), BASELINE_VERSION.to_string())],
        };
        env.push((ROLLOUT_MARKER.to_string(), namespace.to_string()));
        env
    }

    /// The baseline's and the release's pod-template hashes in `namespace`.
    pub fn hashes(&self, namespace: &str, fault: &Fault) -> (RevisionHash, RevisionHash) {
        let w = &self.workload;
        (
            pod_template_hash(&w.with_env(&self.env(namespace, None))),
            pod_template_hash(&w.with_env(&self.env(namespace, Some(fault)))),
        )
    }
}

/// The path of the Ingress' first rule, as ingress-nginx labels its series; `/` if none.
fn ingress_path(m: &Manifests, namespace: &str, name: &str) -> String {
    m.ingress(namespace, name)
        .and_then(|i| i.object.spec.as_ref())
        .and_then(|s| s.rules.as_ref())
        .and_then(|r| r.first())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.paths.first())
        .and_then(|p| p.path.clone())
        .unwrap_or_else(|| "/".to_string())
}

/// The manifests with every namespaced object moved into `namespace`, the way a user would
/// apply the same folder to another namespace: references between the objects still hold,
/// and `{{args.namespace}}`, Flagger's `{{ namespace }}` and the ingress' labels all name it.
pub fn relocate(m: &Manifests, namespace: &str) -> Manifests {
    fn raw(v: &mut serde_json::Value, namespace: &str) {
        if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.insert("namespace".into(), namespace.into());
        }
    }
    let mut m = m.clone();
    for r in &mut m.rollouts {
        r.object.metadata.namespace = Some(namespace.to_string());
        raw(&mut r.raw, namespace);
    }
    for t in &mut m.analysis_templates {
        t.object.metadata.namespace = Some(namespace.to_string());
        raw(&mut t.raw, namespace);
    }
    for s in &mut m.services {
        s.object.metadata.namespace = Some(namespace.to_string());
        raw(&mut s.raw, namespace);
    }
    for i in &mut m.ingresses {
        i.object.metadata.namespace = Some(namespace.to_string());
        raw(&mut i.raw, namespace);
    }
    for o in &mut m.others {
        o.namespace = namespace.to_string();
        raw(&mut o.value, namespace);
    }
    m
}

/// Where a simulated rollout's queries go: its [`Feed`](super::feed::Feed) first (its data
/// written up to now), then the [`Bridge`] (a real query at the virtual time).
#[derive(Clone)]
pub struct PowerSource {
    feed: SharedFeed,
    stop: Arc<Stop>,
    bridge: Arc<Bridge>,
    start: Instant,
    base_unix: i64,
}

impl PowerSource {
    fn ask(&self, query: &str) -> Result<QueryValue, String> {
        if self.stop.stopped() {
            return Err("interrupted".into());
        }
        let t = self.start.elapsed().as_secs_f64();
        self.feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .up_to(t.floor() as u64, &self.bridge)?;
        self.bridge
            .query_at(query, self.base_unix as f64 + t)
            .map_err(|e| match e {
                PromError::Query { error_type, error } => format!("{error_type}: {error}"),
                e => e.to_string(),
            })
    }
}

impl MetricSource for PowerSource {
    async fn measure(&self, query: &str, _timeout: Duration) -> Result<MetricValue, String> {
        crate::controller::analysis::metric_value_from_query(self.ask(query)?)
    }
}

impl Provider for PowerSource {
    async fn run_query(&self, query: &str, _timeout: Duration) -> Result<QueryValue, String> {
        self.ask(query)
    }
}

/// Webhooks answered as a willing loadtester would: every gate open, every task accepted.
/// No traffic generator runs here; the model's traffic stands for the load test.
struct Accepting;

impl Transport for Accepting {
    fn post<'a>(
        &'a self,
        _url: &'a str,
        _payload: &'a Payload,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Reply, String>> {
        Box::pin(async { Ok(Reply::new(200, "")) })
    }
}

/// What one simulated rollout came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub decision: Option<Decision>,
    /// Virtual seconds from the release to the decision.
    pub decision_s: Option<f64>,
}

/// What a simulated rollout needs besides the target.
pub struct Run {
    pub id: RolloutId,
    pub namespace: String,
    pub fault: Fault,
    pub stop: Arc<Stop>,
    pub bridge: Arc<Bridge>,
    pub log: Log,
    /// Its series, following `log`.
    pub feed: SharedFeed,
    pub base_unix: i64,
    /// The longest a decision is waited for after the release (virtual).
    pub within: Duration,
    /// The driver's pass period (virtual; `controller::driver::TICK` by default).
    pub tick: Duration,
}

/// Runs one rollout to its decision on a paused runtime of its own (call on its own thread).
///
/// # Errors
/// A policy that cannot be built for the rollout, or a platform failure.
pub fn simulate(target: &Target, run: Run) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    rt.block_on(async move {
        let source = PowerSource {
            feed: run.feed.clone(),
            stop: run.stop.clone(),
            bridge: run.bridge.clone(),
            start: Instant::now(),
            base_unix: run.base_unix,
        };
        let platform = VirtualPlatform::new(run.log.clone());
        let m = relocate(&target.manifests, &run.namespace);
        let timeline = Timeline::new();
        match target.kind {
            ControllerKind::Argo => {
                let rollout = m.rollouts[0].clone();
                let e = crate::controller::argo::from_spec::from_spec(&m, &rollout, target.scale)?;
                let runs =
                    AnalysisRuns::new(rollout, e.analyses, source, target.scale, timeline.clone());
                let ctl = ArgoController::new(e.policy, platform, runs, timeline.clone());
                drive(ctl, target, &run, &timeline).await
            }
            ControllerKind::Flagger => {
                let e = crate::controller::flagger::from_spec(&m, target.scale)?;
                let mut ctl = FlaggerController::new(e.policy, platform, source, timeline.clone())
                    .map_err(|e| e.to_string())?;
                ctl.set_transport(Arc::new(Accepting));
                drive(ctl, target, &run, &timeline).await
            }
        }
    })
}

/// Baseline, warm-up, release, decision.
async fn drive<C: Controller>(
    mut ctl: C,
    target: &Target,
    run: &Run,
    timeline: &Timeline,
) -> Result<Outcome, String> {
    let infra = |e: InfraError| e.to_string();
    let w = &target.workload;
    let (baseline, release) = target.hashes(&run.namespace, &run.fault);
    let template = |fault: Option<&Fault>| {
        w.pod_template(&w.with_env(&target.env(&run.namespace, fault)))
            .map_err(|e| e.to_string())
    };
    ctl.apply_template(baseline, template(None)?)
        .await
        .map_err(infra)?;
    match until(&mut ctl, BASELINE_WITHIN, run).await.map_err(infra)? {
        Some((Decision::Promoted, _)) => {}
        _ => {
            return Err(format!(
                "the baseline did not become stable: {}",
                ctl.status_line()
            ));
        }
    }
    // The load runs on the baseline first, as in `gauntlet run`, with passes going on.
    let warm = Instant::now() + WARMUP;
    while Instant::now() < warm {
        ctl.reconcile().await.map_err(infra)?;
        tokio::time::sleep(run.tick.min(warm - Instant::now())).await;
    }
    timeline.mark_release();
    ctl.apply_template(release, template(Some(&run.fault))?)
        .await
        .map_err(infra)?;
    let decided = until(&mut ctl, run.within, run).await.map_err(infra)?;
    Ok(Outcome {
        decision: decided.map(|(d, _)| d),
        decision_s: decided.map(|(_, at)| at.as_secs_f64()),
    })
}

/// [`driver::until_decision`]'s loop with the run's own pass period, ending early when the
/// run is stopped.
async fn until<C: Controller>(
    ctl: &mut C,
    within: Duration,
    run: &Run,
) -> Result<Option<(Decision, Duration)>, InfraError> {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        ctl.reconcile().await?;
        if let Some(d) = ctl.decision() {
            return Ok(Some((d, start.elapsed())));
        }
        let now = Instant::now();
        if now >= deadline || run.stop.stopped() {
            return Ok(None);
        }
        tokio::time::sleep(ctl.wait_hint(run.tick).min(deadline - now)).await;
    }
}
