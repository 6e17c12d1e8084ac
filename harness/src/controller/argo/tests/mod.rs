//! The rollout rules under tokio's paused clock, on a fake platform with scripted runs.
//!
//! `flow` walks whole releases; the other modules each hold the tests of one upstream area,
//! named after the Argo Rollouts v1.9.1 function they follow.

mod analysis_runs;
mod flow;
mod pause;
mod promote;
mod replicas;
mod traffic;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::cluster::{PodStatus, Probe, ReplicaCounts};
use crate::timeline::{Source, Timeline};

/// Pods become available at once unless their revision is capped or pinned.
#[derive(Default, Clone)]
pub(super) struct FakePlatform {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    desired: BTreeMap<RevisionHash, u32>,
    /// At most this many of the revision's pods are available (0: a release that never
    /// becomes ready).
    available_cap: BTreeMap<RevisionHash, u32>,
    /// `(current, available)` whatever the spec says: pods still terminating after a
    /// scale-down, or pods that stopped being ready.
    pinned: BTreeMap<RevisionHash, (u32, u32)>,
    templates: BTreeMap<RevisionHash, PodTemplate>,
    weights: Vec<u32>,
    services: Option<Services>,
}

impl FakePlatform {
    pub(super) fn weights(&self) -> Vec<u32> {
        self.state.lock().unwrap().weights.clone()
    }
    pub(super) fn desired(&self, h: &str) -> u32 {
        *self
            .state
            .lock()
            .unwrap()
            .desired
            .get(&RevisionHash(h.into()))
            .unwrap_or(&0)
    }
    pub(super) fn break_revision(&self, h: &str) {
        self.cap_available(h, 0);
    }
    pub(super) fn cap_available(&self, h: &str, cap: u32) {
        self.state
            .lock()
            .unwrap()
            .available_cap
            .insert(RevisionHash(h.into()), cap);
    }
    pub(super) fn uncap(&self, h: &str) {
        self.state
            .lock()
            .unwrap()
            .available_cap
            .remove(&RevisionHash(h.into()));
    }
    pub(super) fn pin(&self, h: &str, current: u32, available: u32) {
        self.state
            .lock()
            .unwrap()
            .pinned
            .insert(RevisionHash(h.into()), (current, available));
    }
    pub(super) fn unpin(&self, h: &str) {
        self.state
            .lock()
            .unwrap()
            .pinned
            .remove(&RevisionHash(h.into()));
    }
    pub(super) fn template(&self, h: &str) -> Option<PodTemplate> {
        self.state
            .lock()
            .unwrap()
            .templates
            .get(&RevisionHash(h.into()))
            .cloned()
    }
    pub(super) fn canary_service(&self) -> Option<RevisionHash> {
        self.state
            .lock()
            .unwrap()
            .services
            .as_ref()
            .and_then(|s| s.canary.clone())
    }
}

impl Platform for FakePlatform {
    async fn create_revision(
        &mut self,
        hash: RevisionHash,
        template: PodTemplate,
    ) -> Result<(), InfraError> {
        let mut s = self.state.lock().unwrap();
        s.desired.insert(hash.clone(), 0);
        s.templates.insert(hash, template);
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
        Ok(())
    }
    fn replica_counts(&self, hash: &RevisionHash) -> ReplicaCounts {
        let s = self.state.lock().unwrap();
        let d = *s.desired.get(hash).unwrap_or(&0);
        if let Some((current, available)) = s.pinned.get(hash) {
            return ReplicaCounts {
                desired: d,
                current: *current,
                ready: *available,
                available: *available,
            };
        }
        let up = s.available_cap.get(hash).map_or(d, |cap| d.min(*cap));
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

/// When each phase is reached, counted from the run's creation.
pub(super) type Script = Vec<(Duration, RunPhase, String)>;

/// A run whose phase follows a script.
pub(super) struct ScriptRun {
    created: Instant,
    script: Script,
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

/// Scripts by analysis number, or by run name for one run in particular (a replacement run
/// that behaves differently from the first).
#[derive(Default, Clone)]
pub(super) struct Scripts {
    pub(super) by_analysis: BTreeMap<usize, Script>,
    pub(super) by_name: BTreeMap<String, Script>,
    pub(super) created: Arc<Mutex<Vec<String>>>,
}

impl Scripts {
    pub(super) fn analysis(mut self, analysis: usize, script: Script) -> Self {
        self.by_analysis.insert(analysis, script);
        self
    }
    pub(super) fn run(mut self, name: &str, script: Script) -> Self {
        self.by_name.insert(name.into(), script);
        self
    }
    pub(super) fn created(&self) -> Vec<String> {
        self.created.lock().unwrap().clone()
    }
}

impl RunFactory for Scripts {
    type Run = ScriptRun;
    fn create(&self, analysis: usize, name: &str, _: &Hashes) -> Result<ScriptRun, String> {
        self.created.lock().unwrap().push(name.to_string());
        let script = self
            .by_name
            .get(name)
            .or_else(|| self.by_analysis.get(&analysis))
            .cloned()
            .unwrap_or_default();
        Ok(ScriptRun {
            created: Instant::now(),
            script,
            phase: RunPhase::Running,
            message: String::new(),
            terminated: false,
        })
    }
}

/// `(at, phase)` with an empty message.
pub(super) fn at(s: u64, phase: RunPhase) -> (Duration, RunPhase, String) {
    (secs(s), phase, String::new())
}

pub(super) fn template() -> PodTemplate {
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

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) type Ctl = ArgoController<FakePlatform, Scripts>;

/// v1 deployed and Healthy, then v2 released.
pub(super) async fn deployed_with<F: RunFactory>(
    policy: RolloutPolicy,
    runs: F,
) -> (ArgoController<FakePlatform, F>, FakePlatform, Timeline) {
    let platform = FakePlatform::default();
    let timeline = Timeline::new();
    let mut c = ArgoController::new(policy, platform.clone(), runs, timeline.clone());
    c.apply_template(RevisionHash("v1".into()), template())
        .await
        .unwrap();
    // The pass that scales the baseline sees its pods from the next one on.
    for _ in 0..2 {
        c.reconcile().await.unwrap();
    }
    assert_eq!(c.status().phase, Phase::Healthy);
    timeline.mark_release();
    c.apply_template(RevisionHash("v2".into()), template())
        .await
        .unwrap();
    (c, platform, timeline)
}

pub(super) async fn deployed(
    policy: RolloutPolicy,
    scripts: Scripts,
) -> (Ctl, FakePlatform, Timeline) {
    deployed_with(policy, scripts).await
}

/// Runs passes as a driver would (on every wake-up, at least every 100 ms) until a decision or
/// the deadline; returns the decision and when it came.
pub(super) async fn drive<F: RunFactory>(
    c: &mut ArgoController<FakePlatform, F>,
    within: Duration,
) -> Option<(Decision, Duration)> {
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

/// Runs passes as a driver would for `how_long`, whatever the rollout decides meanwhile.
pub(super) async fn run_for<F: RunFactory>(
    c: &mut ArgoController<FakePlatform, F>,
    how_long: Duration,
) {
    let end = Instant::now() + how_long;
    loop {
        c.reconcile().await.unwrap();
        let now = Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep(c.wait_hint(Duration::from_millis(100)).min(end - now)).await;
    }
}

/// Runs passes until `done` holds (at most `within`); returns how long that took.
pub(super) async fn run_until<F: RunFactory>(
    c: &mut ArgoController<FakePlatform, F>,
    within: Duration,
    done: impl Fn(&ArgoController<FakePlatform, F>) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        c.reconcile().await.unwrap();
        if done(c) {
            return Some(Instant::now() - start);
        }
        let now = Instant::now();
        if now - start >= within {
            return None;
        }
        tokio::time::sleep(c.wait_hint(Duration::from_millis(100))).await;
    }
}

pub(super) fn reasons(tl: &Timeline) -> Vec<String> {
    tl.snapshot()
        .into_iter()
        .filter(|e| e.source == Source::Controller && e.kind != "phase")
        .map(|e| e.kind)
        .collect()
}

/// The fixture's steps: 20 %, 30 s, 50 %, 30 s.
pub(super) fn steps() -> Vec<Step> {
    vec![
        Step::SetWeight(20),
        Step::Pause(Some(secs(30))),
        Step::SetWeight(50),
        Step::Pause(Some(secs(30))),
    ]
}

/// A policy with a background analysis (number 0) from `starting_step`.
pub(super) fn with_background(mut policy: RolloutPolicy, starting_step: u32) -> RolloutPolicy {
    policy.background = Some(Background {
        analysis: 0,
        starting_step,
    });
    policy
}

pub(super) fn has_pause(
    c: &ArgoController<impl Platform, impl RunFactory>,
    r: PauseReason,
) -> bool {
    c.status().pause_conditions.iter().any(|p| p.reason == r)
}
