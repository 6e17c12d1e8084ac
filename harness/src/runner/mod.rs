//! Running one scenario on the local backend: stack up with the baseline
//! Healthy, load through the ingress, the release, the controller until its decision, a short
//! observation, then verdict, artifacts and teardown. Whatever happens, a report comes back;
//! infrastructure failures are told apart from broken expectations (exit 3 vs 1).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::InfraError;
use crate::cluster::local::{Binaries, LocalStack};
use crate::controller::Controller;
use crate::controller::actions::Operable;
use crate::controller::argo::from_spec::Emulated as ArgoEmulated;
use crate::controller::argo::runs::{AnalysisRuns, run_policy};
use crate::controller::argo::{ArgoController, Decision, Hashes};
use crate::controller::driver::{TICK, until_decision};
use crate::controller::flagger::{Emulated as FlaggerEmulated, FlaggerController};
use crate::judge::{self, Judgement};
use crate::load::{Load, LoadSpec, LoadStats};
use crate::prom::PromClient;
use crate::report::artifacts::{ArtifactSources, write_artifacts};
use crate::report::human::{LiveStatus, ScenarioLine};
use crate::report::model::{Expected, ScenarioReport, WrittenBudget};
use crate::scenario::budget::{Plan, Policy};
use crate::scenario::{Outcome, Scenario, Scheduled};
use crate::target;
use crate::timeline::{Source, Timeline};
use crate::verdict::{self, Evidence, GRACE};

pub mod cluster;

/// Baseline traffic before the release, so the ingress series exist and `rate()` has samples
/// when the first analysis looks.
pub const WARMUP: Duration = Duration::from_secs(3);
/// How long the harness keeps watching after the decision, for the invariants.
pub const OBSERVE: Duration = Duration::from_secs(3);
/// The baseline's pods must be available within this.
const BASELINE_WITHIN: Duration = Duration::from_secs(60);

/// How a run is done, beyond the scenario itself.
#[derive(Clone)]
pub struct RunOptions {
    pub seed: u64,
    pub artifacts: Option<PathBuf>,
    /// Turns true on Ctrl-C: the scenario ends at once, reports and artifacts are still written.
    pub stop: watch::Receiver<bool>,
}

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    /// An expectation did not hold.
    Failed,
    /// The stack could not run the scenario; says nothing about the release.
    Infra,
    Interrupted,
}

pub struct Finished {
    pub report: ScenarioReport,
    pub status: Status,
}

type ArgoCtl = ArgoController<LocalStack, AnalysisRuns<PromClient>>;
type FlaggerCtl = FlaggerController<LocalStack, PromClient>;

/// Whether the controller's state `d` ends the scenario. A pause is not the end while the
/// scenario still has something to do about it (`pending` actions), nor while the controller
/// still reacts to the last action (`reacting_to`); a rollback is not the end while a `retry`
/// is still to come or being reacted to, since a retry restarts an aborted rollout.
pub(crate) fn is_final(
    d: Decision,
    pending: &[Scheduled],
    reacting_to: Option<crate::scenario::Action>,
) -> bool {
    use crate::scenario::Action;
    match d {
        Decision::Paused => pending.is_empty() && reacting_to.is_none(),
        Decision::RolledBack => {
            !pending.iter().any(|a| a.action == Action::Retry) && reacting_to != Some(Action::Retry)
        }
        Decision::Promoted => true,
    }
}

/// Runs `s` with its checked `plan`.
pub async fn run_scenario(
    s: &Scenario,
    plan: &Plan,
    opts: &RunOptions,
    line: Option<&ScenarioLine>,
) -> Finished {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let timeline = Timeline::new();
    let mut report = new_report(s, plan.policy.controller());
    let run = Run {
        s,
        opts,
        line,
        timeline: &timeline,
        started,
        started_wall,
    };
    let status = match &plan.policy {
        Policy::Argo(e) => match provision_argo(s, plan, e, opts, &timeline).await {
            Err(err) => infra(&mut report, err),
            Ok(ctl) => {
                let queries = |c: &ArgoCtl| argo_queries(plan, e, c);
                run.finish(plan, ctl, &mut report, queries).await
            }
        },
        Policy::Flagger(e) => match provision_flagger(s, plan, e, opts, &timeline).await {
            Err(err) => infra(&mut report, err),
            Ok(ctl) => {
                let queries = |c: &FlaggerCtl| {
                    let p = c.policy();
                    (p.builtin_checks.iter().chain(&p.template_checks))
                        .map(|k| (k.metric.clone(), k.query.clone()))
                        .collect()
                };
                run.finish(plan, ctl, &mut report, queries).await
            }
        },
    };
    close(report, status, &timeline, started, line)
}

/// The timeline's record of a scenario action: done, or `failed_as` (refused, failed) and why.
pub(crate) fn record_action<E: std::fmt::Display>(
    timeline: &Timeline,
    a: &Scheduled,
    result: &Result<(), E>,
    failed_as: &str,
) {
    let name = a.action.name();
    timeline.emit(
        Source::Harness,
        "action",
        match result {
            Ok(()) => format!("action {name}"),
            Err(e) => format!("action {name} {failed_as}: {e}"),
        },
        serde_json::json!({"action": name, "at_s": a.at.as_secs_f64()}),
    );
}

/// A report with the scenario's expectations and nothing observed yet.
pub(crate) fn new_report(s: &Scenario, controller: &str) -> ScenarioReport {
    ScenarioReport {
        name: s.name.clone(),
        file: s.file.display().to_string(),
        controller: controller.into(),
        passed: false,
        failure: None,
        expected: Expected {
            outcome: s.outcome.to_string(),
            within_s: s.within.as_secs_f64(),
            client_error_max: s.client_error_max,
            time_scale: s.time_scale.unwrap_or(1.0),
            written: s.written_at.map(|w| WrittenBudget {
                within_s: s.within.as_secs_f64() * w / s.time_scale.unwrap_or(1.0),
                time_scale: w,
            }),
            fastest_s: crate::scenario::budget::plan(s)
                .ok()
                .and_then(|p| p.fastest.of(s.outcome))
                .map(|d| d.as_secs_f64()),
        },
        outcome: None,
        decision_s: None,
        elapsed_s: 0.0,
        client: Default::default(),
        timeline: Vec::new(),
        series: None,
        judge: None,
    }
}

/// The report's last fields and the progress line's last word.
pub(crate) fn close(
    mut report: ScenarioReport,
    status: Status,
    timeline: &Timeline,
    started: Instant,
    line: Option<&ScenarioLine>,
) -> Finished {
    report.timeline = timeline.snapshot();
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.passed = status == Status::Passed;
    report.series = Some(crate::report::series::build(&report));
    if let Some(l) = line {
        let summary = match (&report.outcome, report.decision_s) {
            (Some(o), Some(t)) => format!("{o} after {t:.1}s"),
            _ => report.failure.clone().unwrap_or_default(),
        };
        l.finish(report.passed, &summary);
    }
    Finished { report, status }
}

/// How the wait for the controller ended.
pub(crate) struct Ended {
    /// The decision and its time after the release, in seconds.
    pub decision: Option<(Outcome, f64)>,
    /// Seconds waited after the release.
    pub waited_s: f64,
    /// The controller's last status, for a missing or wrong decision.
    pub last_status: String,
    pub interrupted: bool,
    /// How long after the decision users may still be served by the old split: responses
    /// from then on are judged (see [`settle_time`]).
    pub settle: Duration,
}

/// How long after the decision the old split may still serve users: [`GRACE`] for requests
/// in flight and a reload, the ingress's own delay in applying a change (`ingress_sync`:
/// nothing for gauntlet's router, which applies before it reports; ingress-nginx's sync
/// rate limit on clusters), and the release's slowest answer, since a request sent to the
/// release just before the switch is answered that much later.
pub fn settle_time(s: &Scenario, ingress_sync: Duration) -> Duration {
    let slowest = s
        .faults
        .iter()
        .filter_map(|f| match f {
            crate::scenario::Fault::Latency { delay, jitter } => Some(*delay + *jitter),
            _ => None,
        })
        .max()
        .unwrap_or_default();
    GRACE + ingress_sync + slowest
}

/// What the load saw and the controller decided, judged against the scenario. Fills the
/// report's client figures and failure.
pub(crate) fn conclude(
    s: &Scenario,
    stats: &LoadStats,
    ended: Ended,
    timeline: &Timeline,
    report: &mut ScenarioReport,
) -> Status {
    let Ended {
        decision,
        waited_s,
        last_status,
        interrupted,
        settle,
    } = ended;
    let end_s = decision.map_or(waited_s, |(_, t)| t);
    let evidence = Evidence {
        decision,
        last_status,
        waited_s,
        client: verdict::client_report(&stats.between(0.0, end_s), stats.p95_ms(0.0, end_s)),
        after: decision
            .map(|(_, t)| stats.between(t + settle.as_secs_f64(), f64::INFINITY))
            .unwrap_or_default(),
    };
    report.client = evidence.client.clone();
    let requests: u64 = stats
        .windows
        .iter()
        .flat_map(|w| w.by_version.values())
        .map(|c| c.requests)
        .sum();
    timeline.emit(
        Source::Load,
        "summary",
        format!(
            "{requests} requests at {:.1}/s measured, {} resent after a reload closed their connection",
            stats.measured_rate(),
            stats.resent
        ),
        serde_json::Value::Null,
    );
    if interrupted {
        report.failure = Some("interrupted".into());
        return Status::Interrupted;
    }
    let events = timeline.snapshot();
    let mut failures = verdict::judge(s, &evidence, &events);
    report.judge = judge_decision(s, decision, end_s, &events);
    if let Some(want) = s.judge {
        match &report.judge {
            Some(j) => failures.extend(j.failure(want)),
            None => failures.push(format!("expect.judge: {want} could not be checked")),
        }
    }
    if failures.is_empty() {
        Status::Passed
    } else {
        report.failure = Some(failures.join("; "));
        Status::Failed
    }
}

/// The judge's finding on the decision, over the canary's exposure up to it (or to `end_s`,
/// the end of the wait, when none came). `None` when the versions cannot be told apart
/// (a release of the baseline's version with faults), which `Scenario::check` refuses
/// together with `expect.judge`.
fn judge_decision(
    s: &Scenario,
    decision: Option<(Outcome, f64)>,
    end_s: f64,
    events: &[crate::timeline::Event],
) -> Option<Judgement> {
    let versions = judge::Versions::new(&s.baseline_version, &s.release_version).ok()?;
    Some(judge::judge(
        events,
        &versions,
        decision.map(|(o, _)| o.into()),
        Some(end_s),
        &judge::Settings::default(),
    ))
}

fn infra(report: &mut ScenarioReport, e: InfraError) -> Status {
    report.failure = Some(format!("infrastructure: {e}"));
    Status::Infra
}

/// One scenario's run, whichever controller: the parts that do not change.
struct Run<'a> {
    s: &'a Scenario,
    opts: &'a RunOptions,
    line: Option<&'a ScenarioLine>,
    timeline: &'a Timeline,
    started: Instant,
    started_wall: SystemTime,
}

impl Run<'_> {
    /// Load, release, verdict; then artifacts (even on failure) and teardown.
    async fn finish<C: Controller<Platform = LocalStack> + Operable>(
        &self,
        plan: &Plan,
        mut ctl: C,
        report: &mut ScenarioReport,
        queries: impl Fn(&C) -> Vec<(String, String)>,
    ) -> Status {
        let status = exercise(
            self.s,
            plan,
            self.opts,
            self.line,
            self.timeline,
            &mut ctl,
            report,
        )
        .await;
        report.timeline = self.timeline.snapshot();
        report.elapsed_s = self.started.elapsed().as_secs_f64();
        report.passed = status == Status::Passed;
        if let Some(dir) = &self.opts.artifacts {
            let sources = sources(ctl.platform(), queries(&ctl), self.started_wall);
            if let Err(e) = write_artifacts(dir, report, &sources).await {
                tracing::warn!("artifacts of {}: {e}", self.s.name);
            }
        }
        ctl.into_platform().shutdown().await;
        status
    }
}

/// Every analysis query as the runs resolved it with the rollout's hashes.
fn argo_queries(plan: &Plan, e: &ArgoEmulated, ctl: &ArgoCtl) -> Vec<(String, String)> {
    let st = ctl.status();
    let hashes = Hashes {
        stable: crate::cluster::RevisionHash(st.stable_rs.clone()),
        latest: crate::cluster::RevisionHash(st.current_pod_hash.clone()),
    };
    let rollout = &plan.workload.manifests.rollouts[0];
    let mut queries = Vec::new();
    for (i, a) in e.analyses.iter().enumerate() {
        if let Ok(p) = run_policy(rollout, a, plan.scale, &format!("analysis-{i}"), &hashes) {
            for m in p.metrics {
                queries.push((m.name, m.query));
            }
        }
    }
    queries
}

/// The stack for `plan`'s workload.
async fn stack(
    plan: &Plan,
    opts: &RunOptions,
    timeline: &Timeline,
) -> Result<LocalStack, InfraError> {
    let bins = Binaries::locate()?;
    let mut stack_opts = plan.workload.stack_options(opts.seed);
    stack_opts.grace = Duration::from_secs(5);
    LocalStack::start(&bins, stack_opts, timeline.clone()).await
}

/// Flagger: stack up, the Canary initialized, the primary serving.
async fn provision_flagger(
    s: &Scenario,
    plan: &Plan,
    e: &FlaggerEmulated,
    opts: &RunOptions,
    timeline: &Timeline,
) -> Result<FlaggerCtl, InfraError> {
    let w = &plan.workload;
    let stack = stack(plan, opts, timeline).await?;
    let prom = stack.prom().clone();
    let mut ctl = FlaggerController::new(e.policy.clone(), stack, prom, timeline.clone())?;
    let spec = w.with_env(&[("APP_VERSION".into(), s.baseline_version.clone())]);
    let template = w
        .pod_template(&spec)
        .map_err(|e| InfraError::Other(e.to_string()))?;
    Controller::apply_template(&mut ctl, target::pod_template_hash(&spec), template).await?;
    match until_decision(&mut ctl, BASELINE_WITHIN).await? {
        Some((Decision::Promoted, _)) => {}
        _ => {
            return Err(InfraError::Other(format!(
                "the Canary did not initialize: {}",
                ctl.status_line()
            )));
        }
    }
    let primary = ctl
        .primary_revision()
        .cloned()
        .ok_or_else(|| InfraError::Other("the Canary initialized without a primary".into()))?;
    ctl.platform()
        .wait_available(&primary, w.replicas, BASELINE_WITHIN)
        .await?;
    Ok(ctl)
}

/// Argo: stack up, controller on it, baseline deployed and Healthy.
async fn provision_argo(
    s: &Scenario,
    plan: &Plan,
    e: &ArgoEmulated,
    opts: &RunOptions,
    timeline: &Timeline,
) -> Result<ArgoCtl, InfraError> {
    let w = &plan.workload;
    let stack = stack(plan, opts, timeline).await?;
    let rollout = w.manifests.rollouts[0].clone();
    let runs = AnalysisRuns::new(
        rollout,
        e.analyses.clone(),
        stack.prom().clone(),
        plan.scale,
        timeline.clone(),
    );
    let mut ctl = ArgoController::new(e.policy.clone(), stack, runs, timeline.clone());
    let spec = w.with_env(&[("APP_VERSION".into(), s.baseline_version.clone())]);
    let hash = target::pod_template_hash(&spec);
    let template = w
        .pod_template(&spec)
        .map_err(|e| InfraError::Other(e.to_string()))?;
    ctl.apply_template(hash.clone(), template).await?;
    match until_decision(&mut ctl, BASELINE_WITHIN).await? {
        Some((Decision::Promoted, _)) => {}
        _ => {
            return Err(InfraError::Other(format!(
                "the baseline did not become Healthy: {}",
                ctl.status().message
            )));
        }
    }
    ctl.platform()
        .wait_available(&hash, w.replicas, BASELINE_WITHIN)
        .await?;
    Ok(ctl)
}

/// Load, release, decision, observation, verdict. Fills `report`.
async fn exercise<C: Controller<Platform = LocalStack> + Operable>(
    s: &Scenario,
    plan: &Plan,
    opts: &RunOptions,
    line: Option<&ScenarioLine>,
    timeline: &Timeline,
    ctl: &mut C,
    report: &mut ScenarioReport,
) -> Status {
    let mut stop = opts.stop.clone();
    let spec = LoadSpec {
        rate: s.rate,
        connections: s.connections,
        seed: opts.seed,
        host: None,
    };
    let load = match Load::start(&ctl.platform().ingress_url(), spec, timeline.clone()).await {
        Ok(l) => l,
        Err(e) => {
            report.failure = Some(format!("infrastructure: the load generator: {e}"));
            return Status::Infra;
        }
    };
    tokio::time::sleep(WARMUP).await;

    // The release.
    let w = &plan.workload;
    let spec = w.with_env(&s.release_env());
    let hash = target::pod_template_hash(&spec);
    let template = match w.pod_template(&spec) {
        Ok(t) => t,
        Err(e) => {
            report.failure = Some(e.to_string());
            load.stop().await;
            return Status::Failed;
        }
    };
    timeline.mark_release();
    timeline.emit(
        Source::Harness,
        "release",
        format!("release {} ({hash})", s.release_version),
        serde_json::json!({"version": s.release_version, "hash": hash.0, "env": s.release_env()}),
    );
    let released = Instant::now();
    if let Err(e) = ctl.apply_template(hash, template).await {
        report.failure = Some(format!("infrastructure: {e}"));
        load.stop().await;
        return Status::Infra;
    }

    // Until the decision: a late one is still waited for (and reported late), up to a bound.
    let wait = s.within + (s.within / 2).max(Duration::from_secs(10));
    let mut decision = None;
    let mut interrupted = false;
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let mut pending = s.actions.clone();
    let mut reacted_by = Duration::ZERO;
    let mut last_action = None;
    while released.elapsed() < wait {
        // A dead nginx or Prometheus would otherwise show up as a slow, wrong verdict.
        let check = tokio::time::timeout(Duration::ZERO, health.tick())
            .await
            .is_ok();
        if check && let Err(e) = Controller::platform_mut(ctl).check_alive().await {
            report.failure = Some(format!("infrastructure: {e}"));
            load.stop().await;
            return Status::Infra;
        }
        if let Err(e) = ctl.reconcile().await {
            report.failure = Some(format!("infrastructure: {e}"));
            load.stop().await;
            return Status::Infra;
        }
        if let Some(l) = line {
            l.update(&live(ctl, &load, released));
        }
        while let Some(next) = pending.first()
            && released.elapsed() >= next.at
        {
            let a = pending.remove(0);
            reacted_by = released.elapsed() + ctl.reaction_time() + TICK;
            last_action = Some(a.action);
            record_action(timeline, &a, &ctl.act(a.action), "refused");
        }
        if let Some(d) = ctl.decision() {
            let reacting = released.elapsed() < reacted_by;
            if is_final(d, &pending, last_action.filter(|_| reacting)) {
                decision = Some((Outcome::from(d), released.elapsed().as_secs_f64()));
                break;
            }
        }
        let nap = match pending.first() {
            Some(a) => ctl
                .wait_hint(TICK)
                .min(a.at.saturating_sub(released.elapsed())),
            None => ctl.wait_hint(TICK),
        };
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = stop.changed() => { interrupted = true; break; }
        }
    }
    let waited_s = released.elapsed().as_secs_f64();
    if let Some((o, t)) = decision {
        report.outcome = Some(o.to_string());
        report.decision_s = Some(t);
        // Observe: the controller keeps reconciling (weight to 0, scale-downs).
        let until = Instant::now() + GRACE + OBSERVE;
        while Instant::now() < until && !interrupted {
            if ctl.reconcile().await.is_err() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(ctl.wait_hint(TICK)) => {}
                _ = stop.changed() => interrupted = true,
            }
        }
    }
    let stats = load.stop().await;
    let ended = Ended {
        decision,
        waited_s,
        last_status: ctl.status_line(),
        interrupted,
        settle: GRACE,
    };
    conclude(s, &stats, ended, timeline, report)
}

fn live<C: Controller>(ctl: &C, load: &Load, released: Instant) -> LiveStatus {
    let (phase, step, weight) = ctl.live();
    let counts = load.snapshot().between(0.0, f64::INFINITY);
    let (req, err) = counts
        .values()
        .fold((0, 0), |(r, e), c| (r + c.requests, e + c.errors));
    LiveStatus {
        phase,
        step,
        weight,
        error_share: (req > 0).then(|| err as f64 / req as f64),
        elapsed_s: released.elapsed().as_secs_f64(),
    }
}

/// What the artifacts folder gets from the stack: its logs, and a range dump of `queries`.
fn sources(
    stack: &LocalStack,
    queries: Vec<(String, String)>,
    from: SystemTime,
) -> ArtifactSources {
    let mut pod_logs: Vec<(String, PathBuf)> = std::fs::read_dir(stack.pod_logs())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    let name = p
                        .file_stem()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (name, p)
                })
                .collect()
        })
        .unwrap_or_default();
    pod_logs.sort();
    ArtifactSources {
        access_log: Some(stack.access_log()),
        pod_logs,
        prometheus: Some(stack.prom().clone()),
        queries,
        from,
        to: SystemTime::now(),
    }
}

impl Scenario {
    /// Checks and runs the scenario on the local backend: the Rust form of a scenario file
    /// (docs/scenarios.md), for teams whose case does not fit YAML.
    ///
    /// # Errors
    /// The scenario does not validate (the same errors `gauntlet validate` prints).
    pub async fn run_local(
        &self,
        seed: u64,
    ) -> Result<Finished, Vec<crate::scenario::ScenarioError>> {
        self.check()?;
        let plan = crate::scenario::budget::plan(self)?;
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let opts = RunOptions {
            seed,
            artifacts: None,
            stop,
        };
        Ok(run_scenario(self, &plan, &opts, None).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Action;

    #[test]
    fn a_rollback_with_a_retry_to_come_is_not_the_end() {
        let at = |action| {
            [Scheduled {
                at: Duration::from_secs(20),
                action,
            }]
        };
        assert!(!is_final(Decision::RolledBack, &at(Action::Retry), None));
        assert!(!is_final(Decision::RolledBack, &[], Some(Action::Retry)));
        assert!(is_final(Decision::RolledBack, &at(Action::Promote), None));
        assert!(!is_final(Decision::Paused, &at(Action::Promote), None));
        assert!(!is_final(Decision::Paused, &[], Some(Action::Promote)));
        assert!(is_final(Decision::Paused, &[], None));
        assert!(is_final(Decision::Promoted, &at(Action::Retry), None));
    }
}
