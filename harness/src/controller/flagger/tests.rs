//! The scheduler rules under tokio's paused clock, on a fake platform, with scripted
//! measurements and webhook answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::webhooks::BoxFuture;
use super::*;
use crate::cluster::{CanaryRoute, PodStatus, Probe, ReplicaCounts};
use crate::prom::{QueryValue, Sample};

// ---- Fakes ------------------------------------------------------------------------------

/// Pods become available at once unless their revision is marked broken.
#[derive(Default, Clone)]
struct FakePlatform {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    desired: BTreeMap<RevisionHash, u32>,
    templates: BTreeMap<RevisionHash, PodTemplate>,
    broken: Vec<RevisionHash>,
    weights: Vec<u32>,
    services: Option<Services>,
}

impl FakePlatform {
    fn weights(&self) -> Vec<u32> {
        self.state.lock().unwrap().weights.clone()
    }
    fn desired(&self, h: &RevisionHash) -> u32 {
        *self.state.lock().unwrap().desired.get(h).unwrap_or(&0)
    }
    fn services(&self) -> Option<Services> {
        self.state.lock().unwrap().services.clone()
    }
    fn template(&self, h: &RevisionHash) -> PodTemplate {
        self.state.lock().unwrap().templates[h].clone()
    }
    fn break_revision(&self, h: &RevisionHash) {
        self.state.lock().unwrap().broken.push(h.clone());
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

/// Answers queries by the first rule whose key the query contains: each rule is a queue of
/// answers, the last repeated once the others are used. Unmatched queries get 0. Every query
/// is logged, and so is every webhook call, in one shared log to check the order.
type Answers = VecDeque<Result<QueryValue, String>>;

/// An instant vector with one series per value.
fn vector(values: &[f64]) -> Result<QueryValue, String> {
    Ok(QueryValue::Vector(
        values
            .iter()
            .map(|v| Sample {
                metric: BTreeMap::new(),
                value: *v,
            })
            .collect(),
    ))
}

#[derive(Clone, Default)]
struct Script {
    rules: Arc<Mutex<Vec<(String, Answers)>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn set(&self, key: &str, answers: Vec<Result<QueryValue, String>>) {
        let mut rules = self.rules.lock().unwrap();
        rules.retain(|(k, _)| k != key);
        rules.push((key.to_string(), answers.into()));
    }
    fn value(&self, key: &str, v: f64) {
        self.set(key, vec![vector(&[v])]);
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn queries(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.starts_with("query "))
            .count()
    }
}

impl Provider for Script {
    async fn run_query(&self, query: &str, _: Duration) -> Result<QueryValue, String> {
        self.log.lock().unwrap().push(format!("query {query}"));
        let mut rules = self.rules.lock().unwrap();
        for (k, answers) in rules.iter_mut() {
            if query.contains(k.as_str()) {
                return if answers.len() > 1 {
                    answers.pop_front().unwrap()
                } else {
                    answers.front().cloned().unwrap()
                };
            }
        }
        vector(&[0.0])
    }
}

/// Webhooks: the loadtester's paths go to the controller's loadtester; other URLs answer with
/// scripted statuses (200 unless told), after a scripted delay (none unless told).
struct Hooks {
    base: String,
    loadtester: Loadtester,
    statuses: Mutex<BTreeMap<String, u16>>,
    delays: Mutex<BTreeMap<String, Duration>>,
    log: Arc<Mutex<Vec<String>>>,
    payloads: Mutex<Vec<Payload>>,
}

impl Transport for Hooks {
    fn post<'a>(
        &'a self,
        url: &'a str,
        payload: &'a Payload,
        _: Duration,
    ) -> BoxFuture<'a, Result<Reply, String>> {
        self.log.lock().unwrap().push(format!("hook {url}"));
        self.payloads.lock().unwrap().push(payload.clone());
        let (status, body) = match url.strip_prefix(&self.base) {
            Some(path) => self
                .loadtester
                .handle(path, &serde_json::to_vec(payload).unwrap()),
            None => {
                let s = *self.statuses.lock().unwrap().get(url).unwrap_or(&200);
                (s, format!("status {s}"))
            }
        };
        let delay = self.delays.lock().unwrap().get(url).copied();
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            Ok(Reply::new(status, body))
        })
    }
}

// ---- Helpers ------------------------------------------------------------------------------

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn template(version: &str) -> PodTemplate {
    PodTemplate {
        workload: "app".into(),
        container: "app".into(),
        env: vec![("APP_VERSION".into(), version.into())],
        args: vec![],
        labels: BTreeMap::from([("app".to_string(), "app".to_string())]),
        memory_limit: None,
        readiness: Probe::default(),
        min_ready: Duration::ZERO,
    }
}

fn v(s: &str) -> RevisionHash {
    RevisionHash(s.into())
}

fn builtin(kind: CheckKind, min: Option<f64>, max: Option<f64>) -> Check {
    let (metric, query) = match kind {
        CheckKind::SuccessRate => ("request-success-rate", "success-rate-query"),
        CheckKind::RequestDuration => ("request-duration", "duration-query"),
        _ => ("custom", "custom-query"),
    };
    Check {
        metric: metric.into(),
        kind,
        query: query.into(),
        min,
        max,
        threshold: None,
        has_range: true,
    }
}

fn templated(name: &str, max: f64) -> Check {
    Check {
        metric: name.into(),
        kind: CheckKind::Template(format!("{name}.default")),
        query: format!("{name}-query"),
        min: None,
        max: Some(max),
        threshold: None,
        has_range: true,
    }
}

fn hook(name: &str, kind: HookType, target: HookTarget) -> Webhook {
    Webhook {
        name: name.into(),
        kind,
        url: match &target {
            HookTarget::Loadtester(p) => format!("http://flagger-loadtester.default{p}"),
            HookTarget::Url(u) => u.clone(),
        },
        target,
        timeout: secs(10),
        retries: 0,
        metadata: BTreeMap::new(),
    }
}

/// The fixture's shape: stepWeights [1, 2, 10, 80], interval 60 s, the success rate checked.
fn policy() -> FlaggerPolicy {
    let mut p = FlaggerPolicy::new("app", 2);
    p.step_weight = 0;
    p.step_weights = vec![1, 2, 10, 80];
    p.max_weight = 80;
    p.threshold = 2;
    p.builtin_checks = vec![builtin(CheckKind::SuccessRate, Some(99.0), None)];
    p
}

type Ctl = FlaggerController<FakePlatform, Script>;

struct World {
    c: Ctl,
    platform: FakePlatform,
    script: Script,
    hooks: Arc<Hooks>,
    tl: Timeline,
}

/// The baseline v1 initialized; the release v2 applied right after (the release mark). The
/// first tick after the release is one interval later.
async fn released(p: FlaggerPolicy) -> World {
    let mut w = initialized(p).await;
    w.tl.mark_release();
    w.c.apply_template(v("v2"), template("2.0.0"))
        .await
        .unwrap();
    assert_eq!(w.c.decision(), None, "a pending revision is no decision");
    w
}

async fn initialized(p: FlaggerPolicy) -> World {
    let platform = FakePlatform::default();
    let script = Script::default();
    script.value("success-rate-query", 100.0);
    let tl = Timeline::new();
    let mut c = FlaggerController::new(p, platform.clone(), script.clone(), tl.clone()).unwrap();
    let hooks = Arc::new(Hooks {
        base: c.gates().base_url().to_string(),
        loadtester: c.gates().loadtester().clone(),
        statuses: Mutex::default(),
        delays: Mutex::default(),
        log: script.log.clone(),
        payloads: Mutex::default(),
    });
    c.set_transport(hooks.clone());
    c.apply_template(v("v1"), template("1.0.0")).await.unwrap();
    c.reconcile().await.unwrap();
    assert_eq!(c.status().phase, Phase::Initialized);
    assert_eq!(c.decision(), Some(Decision::Promoted));
    World {
        c,
        platform,
        script,
        hooks,
        tl,
    }
}

/// Runs passes as a driver would until a decision or the deadline; the decision and when it
/// came.
async fn drive(c: &mut Ctl, within: Duration) -> Option<(Decision, Duration)> {
    let start = Instant::now();
    while Instant::now() - start <= within {
        c.reconcile().await.unwrap();
        if let Some(d) = c.decision() {
            return Some((d, Instant::now() - start));
        }
        tokio::time::sleep(c.wait_hint(Duration::from_secs(1))).await;
    }
    None
}

/// Runs exactly the next tick (and the passes before it).
async fn next_tick(c: &mut Ctl) {
    let due = c.next_tick().unwrap();
    tokio::time::sleep_until(due).await;
    c.reconcile().await.unwrap();
}

fn events(tl: &Timeline) -> Vec<String> {
    tl.snapshot()
        .into_iter()
        .filter(|e| e.source == Source::Controller && e.kind != "phase")
        .map(|e| e.message)
        .collect()
}

fn phases(tl: &Timeline) -> Vec<String> {
    tl.snapshot()
        .into_iter()
        .filter(|e| e.source == Source::Controller && e.kind == "phase")
        .map(|e| e.message)
        .collect()
}

// ---- Tests --------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_bootstrap_creates_the_primary_and_scales_the_target_to_zero() {
    let w = initialized(policy()).await;
    let primary = primary_hash(&v("v1"));
    assert_eq!(w.c.primary_revision(), Some(&primary));
    assert_eq!(w.platform.desired(&primary), 2);
    assert_eq!(w.platform.desired(&v("v1")), 0);
    assert_eq!(
        w.platform.services(),
        Some(Services {
            stable: primary.clone(),
            canary: None
        })
    );
    assert_eq!(w.platform.weights(), [0]);
    let t = w.platform.template(&primary);
    assert_eq!(t.workload, "app-primary");
    assert_eq!(t.labels["app"], "app-primary");
    assert_eq!(w.c.status().last_promoted_spec, "v1");
    assert_eq!(w.c.status().conditions[0].status, "True");
    assert!(events(&w.tl).contains(&"Initialization done! app.default".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_healthy_release_walks_the_step_weights_and_is_promoted_over_three_ticks() {
    let mut w = released(policy()).await;
    // T1 notices the revision and only scales the canary up.
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Progressing);
    assert_eq!(w.platform.desired(&v("v2")), 2);
    assert_eq!(w.platform.weights(), [0]);
    assert_eq!(w.script.queries(), 0);
    // T2 sets the first weight without a metric check.
    next_tick(&mut w.c).await;
    assert_eq!(w.platform.weights(), [0, 1]);
    assert_eq!(w.script.queries(), 0, "no check at the first step");
    // T3..T5: one check per tick, one weight per tick.
    for weight in [2, 10, 80] {
        next_tick(&mut w.c).await;
        assert_eq!(w.platform.weights().last(), Some(&weight));
    }
    assert_eq!(w.script.queries(), 3);
    // T6: the check at 80 passes, the primary gets the template: Promoting.
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Promoting);
    assert_eq!(
        w.c.weight(),
        80,
        "traffic stays on the canary while promoting"
    );
    let new_primary = primary_hash(&v("v2"));
    assert_eq!(w.platform.desired(&new_primary), 2);
    // T7: all traffic to the primary.
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Finalising);
    assert_eq!(w.c.weight(), 0);
    // T8: the canary scaled down, Succeeded.
    let (d, t) = drive(&mut w.c, secs(61)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(w.c.status().phase, Phase::Succeeded);
    assert_eq!(t, secs(60));
    assert_eq!(w.platform.weights(), [0, 1, 2, 10, 80, 0]);
    assert_eq!(w.platform.desired(&v("v2")), 0);
    assert_eq!(w.platform.desired(&primary_hash(&v("v1"))), 0);
    assert_eq!(
        w.platform.services(),
        Some(Services {
            stable: new_primary,
            canary: None
        })
    );
    assert_eq!(w.c.status().last_promoted_spec, "v2");
    let ev = events(&w.tl);
    let expected = [
        "New revision detected! Scaling up app.default",
        "Starting canary analysis for app.default",
        "Advance app.default canary weight 1",
        "Advance app.default canary weight 2",
        "Advance app.default canary weight 10",
        "Advance app.default canary weight 80",
        "Copying app.default template spec to app-primary.default",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down app.default",
    ];
    let after_release: Vec<&String> = ev
        .iter()
        .skip_while(|e| !e.starts_with("New revision"))
        .collect();
    assert_eq!(after_release, expected);
    assert_eq!(
        phases(&w.tl),
        [
            "Initializing",
            "Initialized",
            "Progressing",
            "Promoting",
            "Finalising",
            "Succeeded"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_decision_comes_eight_ticks_after_a_release_at_a_tick() {
    let mut w = released(policy()).await;
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    // Detection one interval after the release, then (n + 3) intervals with n = 4.
    assert_eq!(t, secs(8 * 60));
    let (fast, _, _) = fastest(w.c.policy());
    assert_eq!(fast, Some(secs(7 * 60)), "fastest counts detection at once");
}

#[tokio::test(start_paused = true)]
async fn step_weight_overshoots_max_weight() {
    let mut p = policy();
    p.step_weights.clear();
    p.step_weight = 30;
    p.max_weight = 50;
    let mut w = released(p).await;
    let (d, _) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(w.platform.weights(), [0, 30, 60, 0]);
}

#[tokio::test(start_paused = true)]
async fn the_threshold_is_checked_at_the_start_of_the_next_tick() {
    let mut w = released(policy()).await;
    w.script.value("success-rate-query", 61.3856);
    for _ in 0..3 {
        next_tick(&mut w.c).await; // T1 scale up, T2 weight 1, T3 first check
    }
    assert_eq!(w.c.status().failed_checks, 1);
    assert_eq!(w.c.weight(), 1, "a halt keeps the weight");
    next_tick(&mut w.c).await; // T4: second failure
    assert_eq!(w.c.status().failed_checks, 2);
    assert_eq!(w.c.status().phase, Phase::Progressing, "not yet");
    let queries = w.script.queries();
    next_tick(&mut w.c).await; // T5: threshold reached at the start: rollback, no check
    assert_eq!(w.script.queries(), queries);
    assert_eq!(w.c.decision(), Some(Decision::RolledBack));
    let s = w.c.status();
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!((s.failed_checks, s.iterations, s.canary_weight), (0, 0, 0));
    assert_eq!(s.conditions[0].status, "False");
    assert_eq!(w.platform.weights(), [0, 1, 0]);
    assert_eq!(
        w.platform.desired(&v("v2")),
        0,
        "the canary is scaled to zero"
    );
    assert_eq!(
        w.platform.desired(&primary_hash(&v("v1"))),
        2,
        "the primary keeps serving"
    );
    assert_eq!(w.platform.services().unwrap().canary, None);
    let ev = events(&w.tl);
    let tail: Vec<&str> = ev.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "Halt app.default advancement success rate 61.39% < 99%",
            "Halt app.default advancement success rate 61.39% < 99%",
            "Rolling back app.default failed checks threshold reached 2",
            "Canary failed! Scaling down app.default",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failed_checks_are_cumulative_and_no_values_found_is_a_failure() {
    let mut w = released(policy()).await;
    let ok = || vector(&[100.0]);
    w.script.set(
        "success-rate-query",
        vec![vector(&[]), ok(), ok(), vector(&[f64::NAN])],
    );
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    // T3 fails, T4 and T5 pass (weights 2, 10), T6 fails at 80 (2 of 2), T7 rolls back.
    assert_eq!(t, secs(7 * 60));
    assert_eq!(w.platform.weights(), [0, 1, 2, 10, 0]);
    let no_values = "Halt advancement no values found for nginx metric request-success-rate \
                     probably app.default is not receiving traffic: running query failed: no \
                     values found";
    assert_eq!(events(&w.tl).iter().filter(|e| *e == no_values).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_first_failure_ends_the_tick_hooks_then_builtins_then_templates() {
    let mut p = policy();
    p.template_checks = vec![templated("memory", 100.0)];
    p.webhooks = vec![hook(
        "load",
        HookType::Rollout,
        HookTarget::Url("http://checker/".into()),
    )];
    p.threshold = 10;
    let mut w = released(p).await;
    for _ in 0..2 {
        next_tick(&mut w.c).await;
    }
    assert!(w.script.log().is_empty(), "nothing before the first check");
    // T3: all pass, in order.
    next_tick(&mut w.c).await;
    let log = w.script.log();
    assert_eq!(
        log,
        [
            "hook http://checker/",
            "query success-rate-query",
            "query memory-query"
        ]
    );
    // T4: the hook fails: no query.
    w.hooks
        .statuses
        .lock()
        .unwrap()
        .insert("http://checker/".into(), 500);
    next_tick(&mut w.c).await;
    assert_eq!(w.script.log().len(), 4);
    assert_eq!(w.c.status().failed_checks, 1);
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "Halt app.default advancement external check load failed POST http://checker/ giving \
         up after 1 attempt(s)"
    );
    // T5: the builtin fails: the template is not asked.
    w.hooks.statuses.lock().unwrap().clear();
    w.script.value("success-rate-query", 50.0);
    next_tick(&mut w.c).await;
    assert_eq!(
        &w.script.log()[4..],
        ["hook http://checker/", "query success-rate-query"]
    );
    assert_eq!(w.c.status().failed_checks, 2);
    // T6: the template fails.
    w.script.value("success-rate-query", 100.0);
    w.script.value("memory-query", 120.0);
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().failed_checks, 3);
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "Halt app.default advancement memory 120.00 > 100"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_pre_rollout_hook_counts_and_keeps_weight_zero() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "smoke",
        HookType::PreRollout,
        HookTarget::Url("http://smoke/".into()),
    )];
    p.threshold = 2;
    let mut w = released(p).await;
    w.hooks
        .statuses
        .lock()
        .unwrap()
        .insert("http://smoke/".into(), 204);
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    // T2 and T3 fail, T4 rolls back.
    assert_eq!(t, secs(4 * 60));
    assert_eq!(w.platform.weights(), [0], "never any traffic");
    assert!(events(&w.tl).contains(
        &"Halt app.default advancement pre-rollout check smoke failed status 204".into()
    ));
    let payloads = w.hooks.payloads.lock().unwrap();
    assert_eq!(payloads[0].phase, "Progressing");
    assert_eq!(payloads[0].name, "app");
}

#[tokio::test(start_paused = true)]
async fn confirm_rollout_holds_the_run_in_waiting_until_the_gate_opens() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "gate",
        HookType::ConfirmRollout,
        HookTarget::Loadtester("/gate/check".into()),
    )];
    let mut w = released(p).await;
    for _ in 0..3 {
        next_tick(&mut w.c).await;
    }
    assert_eq!(w.c.status().phase, Phase::Waiting);
    assert_eq!(w.c.decision(), None, "Waiting is not a decision");
    assert_eq!(w.platform.desired(&v("v2")), 0, "not scaled up");
    let halts = events(&w.tl)
        .iter()
        .filter(|e| *e == "Halt app.default advancement waiting for approval gate")
        .count();
    assert_eq!(halts, 1, "reported when entering Waiting");
    // The first payload carried the phase of the time: Initialized.
    assert_eq!(w.hooks.payloads.lock().unwrap()[0].phase, "Initialized");
    let key = w.c.gate_key();
    assert_eq!(key, "app.default");
    w.c.gates().open(&key);
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Progressing);
    assert_eq!(w.platform.desired(&v("v2")), 2);
    let ev = events(&w.tl);
    assert_eq!(
        &ev[ev.len() - 2..],
        [
            "Confirm-rollout check gate passed",
            "New revision detected! Scaling up app.default"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn confirm_promotion_pauses_with_the_analysis_running_until_the_gate_opens() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "approve",
        HookType::ConfirmPromotion,
        HookTarget::Loadtester("/gate/check".into()),
    )];
    let mut w = released(p).await;
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Paused);
    // T6 = (n + 2) intervals after the release (detection one interval in).
    assert_eq!(t, secs(6 * 60));
    let s = w.c.status().clone();
    assert_eq!(s.phase, Phase::WaitingPromotion);
    assert_eq!(s.canary_weight, 0, "status reads 0 ...");
    assert_eq!(w.c.weight(), 80, "... while the router still sends 80 %");
    assert_eq!(s.iterations, -1);
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "Halt app.default advancement waiting for promotion approval approve"
    );
    // Held: the analysis keeps running every tick.
    let q = w.script.queries();
    next_tick(&mut w.c).await;
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::WaitingPromotion);
    assert_eq!(w.script.queries(), q + 2);
    // A status of 202 is a success too: open the gate.
    w.c.gates().open("app.default");
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Promoting);
    let (d, _) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert!(events(&w.tl).contains(&"Confirm-promotion check approve passed".to_string()));
    assert_eq!(w.platform.weights(), [0, 1, 2, 10, 80, 0]);
}

#[tokio::test(start_paused = true)]
async fn metrics_can_still_fail_a_canary_waiting_for_promotion() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "approve",
        HookType::ConfirmPromotion,
        HookTarget::Loadtester("/gate/check".into()),
    )];
    let mut w = released(p).await;
    drive(&mut w.c, secs(3600)).await.unwrap();
    w.script.value("success-rate-query", 10.0);
    next_tick(&mut w.c).await;
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().failed_checks, 2);
    next_tick(&mut w.c).await;
    assert_eq!(w.c.decision(), Some(Decision::RolledBack));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_hook_that_answers_ok_aborts_at_once() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "abort",
        HookType::Rollback,
        HookTarget::Loadtester("/rollback/check".into()),
    )];
    let mut w = released(p).await;
    for _ in 0..3 {
        next_tick(&mut w.c).await;
    }
    assert_eq!(w.c.weight(), 2);
    assert!(events(&w.tl).contains(&"Rollback hook abort not signaling a rollback".to_string()));
    let key = w.c.rollback_key();
    assert_eq!(key, "rollback.app.default");
    w.c.gates().open(&key);
    next_tick(&mut w.c).await;
    assert_eq!(w.c.decision(), Some(Decision::RolledBack));
    let ev = events(&w.tl);
    assert_eq!(
        &ev[ev.len() - 3..],
        [
            "Rollback check abort passed",
            "Rolling back app.default manual webhook invoked",
            "Canary failed! Scaling down app.default"
        ]
    );
    assert_eq!(w.c.weight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_canary_that_never_becomes_ready_is_rolled_back_after_the_progress_deadline() {
    let mut p = policy();
    p.progress_deadline = secs(120);
    let mut w = released(p).await;
    w.platform.break_revision(&v("v2"));
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    // Scaled up at T1 (60 s); not ready at T2 and T3 (retriable), T4 is past the deadline.
    assert_eq!(t, secs(4 * 60));
    let ev = events(&w.tl);
    let not_ready = "canary deployment app.default not ready: waiting for rollout to finish: 0 of \
                     2 (readyThreshold 100%) updated replicas are available";
    assert_eq!(ev.iter().filter(|e| *e == not_ready).count(), 3);
    assert_eq!(
        ev.last().unwrap(),
        "Canary failed! Scaling down app.default"
    );
    assert_eq!(
        w.c.status().failed_checks,
        0,
        "readiness waits are not failed checks"
    );
    assert_eq!(w.platform.weights(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_during_the_analysis_restarts_it() {
    let mut w = released(policy()).await;
    for _ in 0..3 {
        next_tick(&mut w.c).await;
    }
    assert_eq!(w.c.weight(), 2);
    w.c.apply_template(v("v3"), template("3.0.0"))
        .await
        .unwrap();
    // The target Deployment rolls to v3 at once.
    assert_eq!(w.platform.desired(&v("v3")), 2);
    assert_eq!(w.platform.desired(&v("v2")), 0);
    next_tick(&mut w.c).await;
    assert_eq!(w.c.weight(), 0);
    assert_eq!(w.c.status().last_applied_spec, "v3");
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "New revision detected! Restarting analysis for app.default"
    );
    let (d, _) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(w.c.status().last_promoted_spec, "v3");
}

#[tokio::test(start_paused = true)]
async fn a_revert_to_the_primary_template_starts_nothing() {
    let mut w = initialized(policy()).await;
    w.c.apply_template(v("v2"), template("2.0.0"))
        .await
        .unwrap();
    w.c.apply_template(v("v1"), template("1.0.0"))
        .await
        .unwrap();
    assert_eq!(w.c.decision(), Some(Decision::Promoted));
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Initialized);
    assert_eq!(w.platform.desired(&v("v1")), 0);
}

#[tokio::test(start_paused = true)]
async fn skip_analysis_promotes_on_the_first_ready_tick() {
    let mut p = policy();
    p.skip_analysis = true;
    let mut w = released(p).await;
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(t, secs(2 * 60));
    assert_eq!(w.script.queries(), 0);
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "Promotion completed! Canary analysis was skipped for app.default"
    );
}

#[tokio::test(start_paused = true)]
async fn step_weight_promotion_shifts_back_over_several_ticks() {
    let mut p = policy();
    p.step_weights.clear();
    p.step_weight = 50;
    p.max_weight = 50;
    p.step_weight_promotion = 20;
    let mut w = released(p).await;
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::Promoted);
    assert_eq!(w.platform.weights(), [0, 50, 30, 10, 0]);
    // T1 detect, T2 50, T3 promote, T4..T6 shift (70, 90, 100 primary), T7 succeeded.
    assert_eq!(t, secs(7 * 60));
    assert!(events(&w.tl).contains(&"Advance app.default primary weight 90".to_string()));
}

#[tokio::test(start_paused = true)]
async fn post_rollout_and_event_hooks_are_called() {
    let mut p = policy();
    p.webhooks = vec![
        hook(
            "notify",
            HookType::PostRollout,
            HookTarget::Url("http://notify/".into()),
        ),
        hook(
            "events",
            HookType::Event,
            HookTarget::Url("http://events/".into()),
        ),
    ];
    let mut w = released(p).await;
    drive(&mut w.c, secs(3600)).await.unwrap();
    tokio::task::yield_now().await;
    let payloads = w.hooks.payloads.lock().unwrap().clone();
    let post: Vec<&Payload> = payloads
        .iter()
        .filter(|p| !p.metadata.contains_key("eventMessage"))
        .collect();
    assert_eq!(post.len(), 1);
    assert_eq!(post[0].phase, "Succeeded");
    assert!(
        payloads
            .iter()
            .any(|p| p.metadata.get("eventMessage").map(String::as_str)
                == Some("Advance app.default canary weight 80")
                && p.metadata["eventType"] == "Normal")
    );
}

#[tokio::test(start_paused = true)]
async fn ticks_keep_their_grid_and_a_release_waits_for_the_next_one() {
    let mut w = initialized(policy()).await;
    let grid = w.c.next_tick().unwrap();
    // Released 25 s after the bootstrap: noticed at the tick 35 s later.
    tokio::time::sleep(secs(25)).await;
    w.tl.mark_release();
    w.c.apply_template(v("v2"), template("2.0.0"))
        .await
        .unwrap();
    w.c.reconcile().await.unwrap();
    assert_eq!(w.c.status().phase, Phase::Initialized);
    assert_eq!(w.c.wait_hint(secs(120)), secs(35));
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Progressing);
    assert_eq!(w.c.next_tick(), Some(grid + secs(60)));
}

#[tokio::test(start_paused = true)]
async fn a_tick_missed_by_the_driver_does_not_see_a_later_release() {
    let mut w = initialized(policy()).await;
    let first = w.c.next_tick().unwrap();
    // Nobody runs a pass for 70 s; the release comes after the tick due at 60 s.
    tokio::time::sleep(secs(70)).await;
    w.c.apply_template(v("v2"), template("2.0.0"))
        .await
        .unwrap();
    assert_eq!(w.c.status().phase, Phase::Initialized);
    assert_eq!(w.c.next_tick(), Some(first + secs(60)));
    w.c.reconcile().await.unwrap();
    assert_eq!(
        w.c.status().phase,
        Phase::Initialized,
        "noticed at the next tick"
    );
    next_tick(&mut w.c).await;
    assert_eq!(w.c.status().phase, Phase::Progressing);
}

#[tokio::test(start_paused = true)]
async fn confirm_traffic_increase_holds_the_weight_without_failing_checks() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "more",
        HookType::ConfirmTrafficIncrease,
        HookTarget::Loadtester("/gate/check".into()),
    )];
    let mut w = released(p).await;
    for _ in 0..4 {
        next_tick(&mut w.c).await;
    }
    // Even the first weight waits for the gate.
    assert_eq!(w.c.weight(), 0);
    assert_eq!(w.c.status().failed_checks, 0);
    assert_eq!(w.c.status().phase, Phase::Progressing);
    assert_eq!(
        events(&w.tl).last().unwrap(),
        "Halt app.default advancement waiting for traffic increase approval more"
    );
    w.c.gates().open("app.default");
    next_tick(&mut w.c).await;
    assert_eq!(w.c.weight(), 1);
    assert!(events(&w.tl).contains(&"Confirm-traffic-increase check more passed".to_string()));
}

// ---- Decided as upstream decides (issue 13) ---------------------------------------------

/// A matrix of one series whose samples would pass the check.
fn matrix() -> Result<QueryValue, String> {
    Ok(QueryValue::Matrix(vec![crate::prom::Series {
        metric: BTreeMap::new(),
        values: vec![(1.0, 0.0), (2.0, 0.0)],
    }]))
}

#[tokio::test(start_paused = true)]
async fn run_metric_checks_fails_every_tick_on_a_matrix() {
    let mut p = policy();
    p.builtin_checks.clear();
    p.template_checks = vec![templated("restarts", 0.0)];
    let mut w = released(p).await;
    w.script.set("restarts-query", vec![matrix()]);
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    // T3 and T4 fail (threshold 2), T5 rolls back: the weight never passes 1.
    assert_eq!(t, secs(5 * 60));
    assert_eq!(w.platform.weights(), [0, 1, 0]);
    let refused = "Metric query failed for restarts: query returned multiple values";
    assert_eq!(events(&w.tl).iter().filter(|e| *e == refused).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn handle_new_task_fails_a_rollout_hook_whose_cmd_task_has_no_cmd() {
    let mut p = policy();
    let mut load = hook(
        "load",
        HookType::Rollout,
        HookTarget::Loadtester("/".into()),
    );
    load.metadata = BTreeMap::from([
        ("type".to_string(), "cmd".to_string()),
        ("command".to_string(), "hey -z 1m http://app/".to_string()),
    ]);
    p.webhooks = vec![load];
    let mut w = released(p).await;
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert_eq!(t, secs(5 * 60));
    assert_eq!(w.platform.weights(), [0, 1, 0]);
    assert!(
        events(&w.tl).contains(
            &"Halt app.default advancement external check load failed cmd not found in metadata"
                .to_string()
        )
    );
    assert_eq!(w.script.queries(), 0, "the hook fails first: no query runs");
}

#[tokio::test(start_paused = true)]
async fn sync_rollout_status_leaves_a_canary_scaled_from_zero_to_the_canarys_deadline() {
    let mut p = policy();
    p.progress_deadline = secs(600);
    p.deployment_progress_deadline = secs(60);
    let mut w = released(p).await;
    w.platform.break_revision(&v("v2"));
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    // Scaled up at T1 (60 s). Kubernetes never marks it ProgressDeadlineExceeded, so the
    // Deployment's 60 s do not count; `Available` has been False for more than the Canary's
    // 600 s at T12 (720 s), the first tick past 660 s.
    assert_eq!(t, secs(12 * 60));
    let ev = events(&w.tl);
    assert!(
        !ev.iter()
            .any(|e| e.contains("exceeded its progress deadline")),
        "{ev:?}"
    );
    let not_ready = "canary deployment app.default not ready: waiting for rollout to finish: 0 of \
                     2 (readyThreshold 100%) updated replicas are available";
    assert_eq!(ev.iter().filter(|e| *e == not_ready).count(), 11);
    // The budget's lower bound follows the same rule (from the detection, at T1).
    let mut unchecked = w.c.policy().clone();
    unchecked.builtin_checks.clear();
    assert_eq!(fastest(&unchecked).1, Some(secs(11 * 60)));
}

#[tokio::test(start_paused = true)]
async fn calculate_status_decides_by_max_unavailable_whether_a_never_ready_canary_times_out() {
    let mut p = policy();
    p.progress_deadline = secs(120);
    // What `MaxUnavailable` gives a Recreate Deployment.
    p.max_unavailable = 0;
    p.replicas = 1;
    let mut w = released(p.clone()).await;
    w.platform.break_revision(&v("v2"));
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    assert_eq!(d, Decision::RolledBack);
    assert_eq!(t, secs(4 * 60));
    // With every replica allowed to be unavailable, `Available` never turns False: Flagger
    // waits for ever.
    p.max_unavailable = 1;
    let mut w = released(p).await;
    w.platform.break_revision(&v("v2"));
    assert_eq!(drive(&mut w.c, secs(3600)).await, None);
    assert_eq!(
        fastest(w.c.policy()).1,
        Some(secs(4 * 60)),
        "the checks still can"
    );
}

#[tokio::test(start_paused = true)]
async fn handle_failed_promotion_routes_all_traffic_to_the_canary_and_syncs_the_status() {
    let mut p = policy();
    p.threshold = 3;
    // The Canary's deadline is shorter than the Deployment's: during the primary's rollout the
    // old primary pods keep `Available` True, so only `ProgressDeadlineExceeded` ends it.
    p.progress_deadline = secs(60);
    p.deployment_progress_deadline = secs(120);
    p.webhooks = vec![hook(
        "notify",
        HookType::PostRollout,
        HookTarget::Url("http://notify/".into()),
    )];
    let mut w = released(p).await;
    let ok = || vector(&[100.0]);
    w.script
        .set("success-rate-query", vec![vector(&[50.0]), ok(), ok()]);
    w.platform.break_revision(&primary_hash(&v("v2")));
    let (d, t) = drive(&mut w.c, secs(3600)).await.unwrap();
    // One failed check at T3 delays each step a tick: promoted to the primary at T7 (420 s),
    // not ready at T8 and T9 (retriable), past the Deployment's 120 s at T10.
    assert_eq!(t, secs(10 * 60));
    assert_eq!(
        d,
        Decision::Promoted,
        "all traffic ends on the new version: no rollback"
    );
    let s = w.c.status().clone();
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(
        (s.canary_weight, s.failed_checks, s.iterations),
        (100, 0, 0)
    );
    assert_eq!(s.last_applied_spec, "v2");
    assert_eq!(w.c.weight(), 100);
    assert_eq!(w.platform.desired(&v("v2")), 2, "the canary keeps serving");
    let ev = events(&w.tl);
    let not_ready =
        "app-primary.default not ready: deployment \"app-primary\" exceeded its progress deadline";
    assert_eq!(
        &ev[ev.len() - 3..],
        [
            not_ready.to_string(),
            format!("Promotion of app.default failed, primary not ready: {not_ready}"),
            "Post-rollout check notify passed".to_string(),
        ]
    );
    let payloads = w.hooks.payloads.lock().unwrap();
    assert_eq!(payloads.last().unwrap().phase, "Failed");
    assert!(
        w.c.status_line()
            .starts_with("Failed, all traffic on the canary: Promotion of app.default failed"),
        "{}",
        w.c.status_line()
    );
}

#[tokio::test(start_paused = true)]
async fn send_event_to_webhook_blocks_the_tick() {
    let mut p = policy();
    p.webhooks = vec![hook(
        "events",
        HookType::Event,
        HookTarget::Url("http://events/".into()),
    )];
    let mut w = released(p).await;
    w.hooks
        .delays
        .lock()
        .unwrap()
        .insert("http://events/".into(), secs(3));
    let due = w.c.next_tick().unwrap();
    next_tick(&mut w.c).await;
    // T1 records one event ("New revision detected! ..."), and waits for its webhook.
    assert_eq!(Instant::now() - due, secs(3));
    assert_eq!(w.c.status().phase, Phase::Progressing);
    let log = w.script.log();
    assert_eq!(log.last().map(String::as_str), Some("hook http://events/"));
    // T2 records two ("Starting canary analysis", "Advance ... weight 1"): 6 s, and the
    // weight is set between them.
    let due = w.c.next_tick().unwrap();
    next_tick(&mut w.c).await;
    assert_eq!(Instant::now() - due, secs(6));
    assert_eq!(w.c.weight(), 1);
    // The ticker keeps its grid.
    assert_eq!(w.c.next_tick(), Some(due + secs(60)));
}

#[tokio::test(start_paused = true)]
async fn advance_canary_returns_before_initialize_when_suspended() {
    let mut p = policy();
    p.suspend = true;
    let platform = FakePlatform::default();
    let tl = Timeline::new();
    let mut c = FlaggerController::new(p, platform.clone(), Script::default(), tl.clone()).unwrap();
    c.apply_template(v("v1"), template("1.0.0")).await.unwrap();
    for _ in 0..3 {
        next_tick(&mut c).await;
    }
    assert_eq!(c.status().phase, Phase::Initializing);
    assert_eq!(c.decision(), None);
    assert_eq!(
        c.primary_revision(),
        None,
        "no primary Deployment is created"
    );
    assert_eq!(platform.desired(&primary_hash(&v("v1"))), 0);
    assert_eq!(
        platform.weights(),
        Vec::<u32>::new(),
        "no canary Ingress either"
    );
    assert_eq!(
        events(&tl),
        ["skipping canary run as object is suspended"; 3],
        "one event per tick, nothing else"
    );
}
