//! The rollout rules under tokio's paused clock, on a fake platform with scripted runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::cluster::{PodStatus, Probe, ReplicaCounts};

/// Pods become available at once unless their revision is marked broken.
#[derive(Default, Clone)]
struct FakePlatform {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    desired: BTreeMap<RevisionHash, u32>,
    broken: Vec<RevisionHash>,
    route: CanaryRoute,
    weights: Vec<u32>,
    services: Option<Services>,
}

impl FakePlatform {
    fn weights(&self) -> Vec<u32> {
        self.state.lock().unwrap().weights.clone()
    }
    fn desired(&self, h: &str) -> u32 {
        *self
            .state
            .lock()
            .unwrap()
            .desired
            .get(&RevisionHash(h.into()))
            .unwrap_or(&0)
    }
    fn break_revision(&self, h: &str) {
        self.state
            .lock()
            .unwrap()
            .broken
            .push(RevisionHash(h.into()));
    }
}

impl Platform for FakePlatform {
    async fn create_revision(
        &mut self,
        hash: RevisionHash,
        _: PodTemplate,
    ) -> Result<(), InfraError> {
        self.state.lock().unwrap().desired.insert(hash, 0);
        Ok(())
    }
    async fn scale(&mut self, hash: &RevisionHash, replicas: u32) -> Result<(), InfraError> {
        self.state
            .lock()
            .unwrap()
            .desired
            .insert(hash.clone(), replicas);
        Ok(())
    }
    async fn set_services(&mut self, services: Services) -> Result<(), InfraError> {
        self.state.lock().unwrap().services = Some(services);
        Ok(())
    }
    async fn set_canary_route(&mut self, route: CanaryRoute) -> Result<(), InfraError> {
        let mut s = self.state.lock().unwrap();
        if s.weights.last() != Some(&route.weight) {
            s.weights.push(route.weight);
        }
        s.route = route;
        Ok(())
    }
    fn replica_counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        let s = self.state.lock().unwrap();
        let d = *s.desired.get(hash).unwrap_or(&0);
        let up = if s.broken.contains(hash) { 0 } else { d };
        ReplicaCounts {
            desired: d,
            current: d,
            ready: up,
            available: up,
        }
    }
    fn pods(&self) -> Vec<PodStatus> {
        vec![]
    }
}

/// A run whose phase follows a script of (time since creation, phase, message).
struct ScriptRun {
    created: Instant,
    script: Vec<(Duration, RunPhase, String)>,
    phase: RunPhase,
    message: String,
    terminated: bool,
}

impl Run for ScriptRun {
    async fn advance(&mut self) {
        let elapsed = Instant::now() - self.created;
        for (at, phase, msg) in &self.script {
            if elapsed >= *at && !self.terminated {
                self.phase = *phase;
                self.message = msg.clone();
            }
        }
    }
    fn phase(&self) -> RunPhase {
        self.phase
    }
    fn message(&self) -> String {
        self.message.clone()
    }
    fn terminate(&mut self) {
        self.terminated = true;
        if !matches!(
            self.phase,
            RunPhase::Failed | RunPhase::Error | RunPhase::Inconclusive
        ) {
            self.phase = RunPhase::Successful;
            self.message = "Run Terminated".into();
        }
    }
    fn next_due(&self) -> Option<Instant> {
        if self.terminated {
            return None;
        }
        let elapsed = Instant::now() - self.created;
        self.script
            .iter()
            .map(|(at, _, _)| *at)
            .find(|at| *at > elapsed)
            .map(|at| self.created + at)
    }
}

#[derive(Default, Clone)]
struct Scripts {
    by_analysis: BTreeMap<usize, Vec<(Duration, RunPhase, String)>>,
    created: Arc<Mutex<Vec<String>>>,
}

impl RunFactory for Scripts {
    type Run = ScriptRun;
    fn create(&self, analysis: usize, name: &str, _: &Hashes) -> Result<ScriptRun, String> {
        self.created.lock().unwrap().push(name.to_string());
        Ok(ScriptRun {
            created: Instant::now(),
            script: self.by_analysis.get(&analysis).cloned().unwrap_or_default(),
            phase: RunPhase::Running,
            message: String::new(),
            terminated: false,
        })
    }
}

fn template() -> PodTemplate {
    PodTemplate {
        workload: "app".into(),
        container: "app".into(),
        env: vec![],
        args: vec![],
        labels: Default::default(),
        memory_limit: None,
        readiness: Probe::default(),
        min_ready: Duration::ZERO,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

type Ctl = ArgoController<FakePlatform, Scripts>;

async fn deployed(policy: RolloutPolicy, scripts: Scripts) -> (Ctl, FakePlatform, Timeline) {
    let platform = FakePlatform::default();
    let timeline = Timeline::new();
    let mut c = ArgoController::new(policy, platform.clone(), scripts, timeline.clone());
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Healthy);
    timeline.mark_release();
    c.apply_template(RevisionHash("v2".into()), template())
        .await
        .unwrap();
    (c, platform, timeline)
}

/// Runs passes as a driver would (on every wake-up, at least every 100 ms) until a decision or
/// the deadline; returns the decision and when it came.
async fn drive(c: &mut Ctl, within: Duration) -> Option<(Decision, Duration)> {
    let start = Instant::now();
    while Instant::now() - start < within {
        c.reconcile().await.unwrap();
        if let Some(d) = c.decision() {
            let at = Instant::now() - start;
            // The driver keeps running passes after a decision; the one that follows at once
            // is where the weight returns to 0 after promotion.
            c.reconcile().await.unwrap();
            return Some((d, at));
        }
        tokio::time::sleep(c.wait_hint(Duration::from_millis(100))).await;
    }
    None
}

fn reasons(tl: &Timeline) -> Vec<String> {
    tl.snapshot()
        .into_iter()
        .filter(|e| e.source == Source::Controller && e.kind != "phase")
        .map(|e| e.kind)
        .collect()
}

fn steps() -> Vec<Step> {
    vec![
        Step::SetWeight(20),
        Step::Pause(Some(secs(30))),
        Step::SetWeight(50),
        Step::Pause(Some(secs(30))),
    ]
}

#[tokio::test(start_paused = true)]
async fn the_initial_deploy_is_promoted_without_steps() {
    let platform = FakePlatform::default();
    let mut c = ArgoController::new(
        RolloutPolicy::new("app", 5, steps()),
        platform.clone(),
        Scripts::default(),
        Timeline::new(),
    );
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    c.reconcile().await.unwrap();
    let s = c.status();
    assert_eq!(s.phase, Phase::Healthy);
    assert_eq!(s.current_step_index, Some(4));
    assert_eq!(s.stable_rs, "v1");
    assert_eq!(platform.desired("v1"), 5);
    assert_eq!(platform.weights(), vec![0]);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_release_walks_the_steps_and_is_promoted() {
    let (mut c, platform, tl) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    let (d, t) = drive(&mut c, secs(600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    // Two 30 s pauses are the only waits.
    assert!(t >= secs(60) && t < secs(61), "{t:?}");
    let s = c.status();
    assert_eq!(s.stable_rs, s.current_pod_hash);
    assert_eq!(s.current_step_index, Some(4));
    assert!(s.message.is_empty());
    // Weights: 20, 50, then 100 once all steps are done, 0 after promotion.
    assert_eq!(platform.weights(), vec![0, 20, 50, 100, 0]);
    let r = reasons(&tl);
    let completed = r.iter().filter(|k| *k == "RolloutStepCompleted").count();
    assert_eq!(completed, 4);
    let last = r.iter().rev().find(|k| *k != "TrafficWeightUpdated");
    assert_eq!(last.unwrap(), "RolloutCompleted");
    // The old stable is scaled down only after scaleDownDelaySeconds.
    assert_eq!(platform.desired("v1"), 5);
    tokio::time::sleep(secs(31)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v1"), 0);
    assert_eq!(platform.desired("v2"), 5);
}

#[tokio::test(start_paused = true)]
async fn canary_replicas_follow_the_set_weight() {
    let (mut c, platform, _) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1, "ceil(5 * 20 / 100)");
    tokio::time::sleep(secs(1)).await;
    // Pass 2 sees the canary available and completes the step; pass 3 enters the pause.
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Paused);
    assert_eq!(c.status().message, "CanaryPauseStep");
    tokio::time::sleep(secs(31)).await;
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 3, "ceil(5 * 50 / 100)");
}

#[tokio::test(start_paused = true)]
async fn the_weight_stays_at_the_previous_step_until_the_canary_is_available() {
    let (mut c, platform, _) =
        deployed(RolloutPolicy::new("app", 5, steps()), Scripts::default()).await;
    platform.break_revision("v2");
    for _ in 0..5 {
        c.reconcile().await.unwrap();
        tokio::time::sleep(secs(1)).await;
    }
    assert_eq!(platform.weights(), vec![0]);
    assert_eq!(c.status().current_step_index, Some(0));
    assert_eq!(c.status().message, "more replicas need to be updated");
}

#[tokio::test(start_paused = true)]
async fn an_indefinite_pause_waits_for_promote() {
    let policy = RolloutPolicy::new("app", 2, vec![Step::SetWeight(50), Step::Pause(None)]);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Paused);
    tokio::time::sleep(secs(3600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(
        c.status().phase,
        Phase::Paused,
        "no timeout on an indefinite pause"
    );
    c.operate(Operation::Promote);
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(platform.weights(), vec![0, 50, 100, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_analysis_aborts_with_the_real_message() {
    let mut scripts = Scripts::default();
    let msg = r#"Metric "success-rate" assessed Failed due to failed (1) > failureLimit (0)"#;
    scripts
        .by_analysis
        .insert(0, vec![(secs(20), RunPhase::Failed, msg.to_string())]);
    let policy = RolloutPolicy::new(
        "app",
        2,
        vec![Step::SetWeight(20), Step::Analysis(0), Step::SetWeight(50)],
    );
    let (mut c, platform, tl) = deployed(policy, scripts.clone()).await;
    let (d, t) = drive(&mut c, secs(120)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(t >= secs(20) && t < secs(21), "{t:?}");
    let s = c.status();
    assert_eq!(
        s.message,
        format!(
            "RolloutAborted: Rollout aborted update to revision 2: Step-based analysis phase error/failed: {msg}"
        )
    );
    assert!(s.abort);
    assert_eq!(s.current_step_index, Some(0));
    assert_eq!(s.stable_rs, "v1");
    // Weight 0 on the pass right after the abort.
    c.reconcile().await.unwrap();
    assert_eq!(platform.weights().last(), Some(&0));
    assert_eq!(c.status().canary.weights.as_ref().unwrap().canary.weight, 0);
    assert_eq!(scripts.created.lock().unwrap().as_slice(), ["app-v2-2-1"]);
    // The canary is scaled down abortScaleDownDelaySeconds later, not before.
    assert_eq!(platform.desired("v2"), 1);
    tokio::time::sleep(secs(29)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1);
    tokio::time::sleep(secs(2)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 0);
    assert!(reasons(&tl).contains(&"RolloutAborted".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_analysis_aborts_and_an_error_does_too() {
    for phase in [RunPhase::Failed, RunPhase::Error] {
        let mut scripts = Scripts::default();
        scripts
            .by_analysis
            .insert(0, vec![(secs(15), phase, "boom".into())]);
        let mut policy = RolloutPolicy::new("app", 2, steps());
        policy.background = Some(Background {
            analysis: 0,
            starting_step: 1,
        });
        let (mut c, _, _) = deployed(policy, scripts.clone()).await;
        let (d, _) = drive(&mut c, secs(120)).await.unwrap();
        assert_eq!(d, Decision::RolledBack);
        assert!(
            c.status()
                .message
                .ends_with("Background analysis phase error/failed: boom"),
            "{}",
            c.status().message
        );
        assert_eq!(scripts.created.lock().unwrap().as_slice(), ["app-v2-2"]);
    }
}

#[tokio::test(start_paused = true)]
async fn the_background_run_starts_at_its_starting_step_and_ends_successful_on_promotion() {
    let scripts = Scripts::default();
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.background = Some(Background {
        analysis: 0,
        starting_step: 2,
    });
    let (mut c, _, _) = deployed(policy, scripts.clone()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    assert_eq!(c.status().current_step_index, Some(1));
    assert!(
        scripts.created.lock().unwrap().is_empty(),
        "not before step 2"
    );
    let (d, _) = drive(&mut c, secs(120)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(scripts.created.lock().unwrap().len(), 1);
    let bg = c
        .status()
        .canary
        .current_background_analysis_run_status
        .clone()
        .unwrap();
    assert_eq!(bg.status, "Successful");
}

#[tokio::test(start_paused = true)]
async fn an_inconclusive_run_pauses_and_promote_skips_the_step() {
    let mut scripts = Scripts::default();
    scripts
        .by_analysis
        .insert(0, vec![(secs(5), RunPhase::Inconclusive, String::new())]);
    let policy = RolloutPolicy::new("app", 2, vec![Step::SetWeight(20), Step::Analysis(0)]);
    let (mut c, _, _) = deployed(policy, scripts).await;
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Paused);
    assert_eq!(c.status().message, "InconclusiveAnalysisRun");
    assert!(c.status().controller_pause);
    // No deadline while paused.
    tokio::time::sleep(secs(3600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Paused);
    c.operate(Operation::Promote);
    let (d, _) = drive(&mut c, secs(60)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
}

#[tokio::test(start_paused = true)]
async fn abort_then_retry_restarts_from_step_zero_with_new_runs() {
    let scripts = Scripts::default();
    let policy = RolloutPolicy::new(
        "app",
        2,
        vec![
            Step::SetWeight(20),
            Step::Analysis(0),
            Step::Pause(Some(secs(5))),
        ],
    );
    let (mut c, platform, _) = deployed(policy, scripts.clone()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    c.operate(Operation::Abort);
    c.reconcile().await.unwrap();
    assert_eq!(c.decision(), Some(Decision::RolledBack));
    assert_eq!(
        c.status().message,
        "RolloutAborted: Rollout aborted update to revision 2"
    );
    assert_eq!(platform.weights().last(), Some(&0));
    c.operate(Operation::Retry);
    c.reconcile().await.unwrap();
    assert!(!c.status().abort);
    assert_eq!(c.status().phase, Phase::Progressing);
    c.reconcile().await.unwrap();
    c.reconcile().await.unwrap();
    let created = scripts.created.lock().unwrap().clone();
    assert_eq!(created, vec!["app-v2-2-1", "app-v2-2-1.1"]);
    assert_eq!(platform.weights().last(), Some(&20));
}

#[tokio::test(start_paused = true)]
async fn promote_full_skips_the_remaining_steps() {
    let (mut c, platform, tl) =
        deployed(RolloutPolicy::new("app", 3, steps()), Scripts::default()).await;
    for _ in 0..3 {
        c.reconcile().await.unwrap();
    }
    assert_eq!(c.status().phase, Phase::Paused);
    c.operate(Operation::PromoteFull);
    let (d, t) = drive(&mut c, secs(10)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t < secs(1));
    assert_eq!(platform.weights(), vec![0, 20, 100, 0]);
    assert!(
        tl.snapshot()
            .iter()
            .any(|e| e.message.ends_with("Full promotion requested"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_canary_that_never_becomes_available_times_out_and_aborts() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.progress_deadline = secs(60);
    policy.progress_deadline_abort = true;
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    platform.break_revision("v2");
    let (d, t) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(t >= secs(60) && t < secs(61), "{t:?}");
    assert_eq!(
        c.status().message,
        r#"RolloutAborted: Rollout aborted update to revision 2: ReplicaSet "app-v2" has timed out progressing."#
    );
}

#[tokio::test(start_paused = true)]
async fn without_deadline_abort_the_timeout_only_degrades() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.progress_deadline = secs(60);
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    platform.break_revision("v2");
    let (d, _) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert!(!c.status().abort);
    assert_eq!(
        c.status().message,
        r#"ProgressDeadlineExceeded: ReplicaSet "app-v2" has timed out progressing."#
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_not_checked_during_a_pause_step() {
    let mut policy = RolloutPolicy::new(
        "app",
        2,
        vec![Step::Pause(Some(secs(120))), Step::SetWeight(50)],
    );
    policy.progress_deadline = secs(30);
    policy.progress_deadline_abort = true;
    let (mut c, _, _) = deployed(policy, Scripts::default()).await;
    let (d, t) = drive(&mut c, secs(300)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t >= secs(120));
}

#[tokio::test(start_paused = true)]
async fn reverting_to_the_stable_template_skips_the_steps() {
    let (mut c, _, tl) = deployed(RolloutPolicy::new("app", 2, steps()), Scripts::default()).await;
    c.reconcile().await.unwrap();
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    let (d, t) = drive(&mut c, secs(10)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(t < secs(1));
    assert!(reasons(&tl).contains(&"SkipSteps".to_string()));
}

#[tokio::test(start_paused = true)]
async fn abort_scale_down_delay_zero_keeps_the_canary() {
    let mut policy = RolloutPolicy::new("app", 2, steps());
    policy.abort_scale_down_delay = None;
    let (mut c, platform, _) = deployed(policy, Scripts::default()).await;
    c.reconcile().await.unwrap();
    c.operate(Operation::Abort);
    c.reconcile().await.unwrap();
    tokio::time::sleep(secs(600)).await;
    c.reconcile().await.unwrap();
    assert_eq!(platform.desired("v2"), 1);
}
